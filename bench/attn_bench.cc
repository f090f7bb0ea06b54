// bench/attn_bench.cc — attn's side of `make bench` (bench/run.py runs it once per workload).
//
//   attn_bench --list                              # workload names, one per line
//   attn_bench gemm_2048 --threads 2               # prints one JSON object:
//   {"workload":"gemm_2048","value":215.3,"unit":"GFLOP/s","median_s":0.0798,"peak_rss_mib":61.2,...}
//   attn_bench gemm_2048 --serve                   # paired mode for run.py (see bench_util.h)
//   attn_bench greedy_decode --describe            # one untimed iteration: units, parameters (check_peers.py)
//
// Each workload builds its inputs and returns a Job; `measure` runs warm-up iterations and reports
// the median time per iteration over several repeats. The PyTorch twin of every workload is in
// bench/torch_bench.py (same names, shapes and units). To add a workload: add a row to kWorkloads
// here and a function of the same name in torch_bench.py's WORKLOADS (optionally a NOTES entry in run.py).
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/attn.h"
#include "attn/train/classifier.h"
#include "bench_job.h"
#include "bench_translator.h"
#include "bench_util.h"
#include "hf_bench.h"
#include "ceiling.h"
#include "rnn_workloads.h"

using namespace attn;
using attn::bench::Job;
using attn::bench::bench_translator_options, attn::bench::kSentences, attn::bench::kSrcLen, attn::bench::kTgtLen;

namespace {

// Training step of a classifier: forward, cross-entropy, backward, Adam.
Job train_step(const std::shared_ptr<nn::Module>& model, const Tensor& x, const Tensor& y) {
  auto opt = std::make_shared<optim::Adam>(model->parameters(), optim::AdamOptions{.lr = 1e-3});
  return {.iteration =
              [=] {
                Tensor loss = cross_entropy((*model)(x), y);
                opt->zero_grad();
                loss.backward();
                opt->step();
              },
          .unit = "steps/s",
          .extra = {{"parameters", model->num_parameters()}}};
}

// Forward + backward of a row-wise op on (64 * 128, 512); the gradient is a fixed random tensor.
Job fwd_bwd(const std::function<Tensor(const Tensor&)>& op, const std::vector<Tensor>& params = {}) {
  Tensor x = randn({64 * 128, 512}, {.requires_grad = true});  // (B * T, C)
  Tensor g = randn({64 * 128, 512});
  return {.iteration =
              [=]() mutable {
                x.set_grad(Tensor());
                for (auto p : params) p.set_grad(Tensor());
                Tensor y = op(x);
                y.backward(g);
              },
          .unit = "it/s"};
}


// One training step of the translator exactly as train_translator() runs it (minus clipping and the LR
// schedule): batch of 32 pairs x (32 source + 32 target) random tokens, no padding. autocast: forward
// and loss under attn::Autocast (bf16 GEMMs, fp32 master weights), as transformer_train_step_bf16.
Job transformer_train_step(bool autocast = false) {
  auto model = std::make_shared<models::Translator>(bench_translator_options());
  model->train();
  const int64_t V = model->options.vocab_size;
  Tensor src = randint(4, V, {kSentences, kSrcLen});      // ids 0-3 are pad/unk/bos/eos
  Tensor tgt_in = randint(4, V, {kSentences, kTgtLen});
  Tensor tgt_out = randint(4, V, {kSentences, kTgtLen});
  auto opt = std::make_shared<optim::Adam>(model->parameters(),
                                           optim::AdamOptions{.lr = 1e-4, .betas = {0.9, 0.98}, .eps = 1e-9});
  return {.iteration =
              [=] {
                Tensor loss;
                {
                  Autocast ac(kBFloat16, autocast);
                  Tensor logits = model->forward(src, tgt_in);  // (N, T, V)
                  loss = cross_entropy(logits.flatten(0, 1), tgt_out.flatten(),
                                       {.ignore_index = model->options.pad_id, .label_smoothing = 0.1});
                }
                loss.backward();
                opt->step();
                opt->zero_grad();
              },
          .units_per_iteration = double(src.numel() + tgt_in.numel()),
          .unit = "tokens/s",
          .options = {.warmup = 2, .repeats = 5},
          .extra = {{"parameters", model->num_parameters()}}};
}

// Greedy decoding of 32 source sentences (32 tokens each) to exactly 32 target tokens with the
// key/value-cached decoder (models/decoding.h), eval mode, no_grad; greedy_decode_bf16 with the model
// converted to bf16 (Module::to, as the `pytorch` peer's model.to(torch.bfloat16) and as `attn translate
// --precision bf16` decodes). EOS gets a -1e9 output bias on both sides so that no sentence stops early:
// every run does the same 32 steps.
Job greedy_decode_bench(bool bf16 = false) {
  auto model = std::make_shared<models::Translator>(bench_translator_options());
  model->eval();
  {
    NoGradGuard ng;
    model->output_bias.narrow(0, model->options.eos_id, 1).fill_(-1e9);
  }
  if (bf16) model->to(kBFloat16);
  Tensor src = randint(4, model->options.vocab_size, {kSentences, kSrcLen});
  auto generated = std::make_shared<int64_t>(0);
  return {.iteration =
              [=] {
                NoGradGuard ng;
                auto dec = model->start_decoding(src);
                auto out = models::greedy_decode(*dec, {.max_len = kTgtLen});
                *generated = 0;
                for (const auto& o : out) *generated += int64_t(o.size());
              },
          .units_per_iteration = double(kSentences * kTgtLen),
          .unit = "tokens/s",
          .options = {.warmup = 2, .repeats = 5},
          .check =
              [=] {
                if (*generated != kSentences * kTgtLen)
                  throw std::runtime_error("greedy_decode: " + std::to_string(*generated) +
                                           " tokens generated, expected " + std::to_string(kSentences * kTgtLen));
              },
          .extra = {{"parameters", model->num_parameters()}}};
}

// 2048^3 matmul of float32 (gemm_2048) or bfloat16 (gemm_2048_bf16: float32 accumulation, bf16 out).
Job gemm_2048(DType dtype = kFloat32) {
  const int64_t n = 2048;
  Tensor a = randn({n, n}).to(dtype), b = randn({n, n}).to(dtype);
  return {.iteration = [=] { (void)matmul(a, b); },
          .units_per_iteration = 2.0 * double(n) * double(n) * double(n) / 1e9,
          .unit = "GFLOP/s",
          .options = {.warmup = 2, .repeats = 7},
          // the float32 FMA peak: a ceiling for float32 only
          .probe = dtype == kFloat32 ? std::function<double()>([] { return bench::fma_peak_gflops(); }) : nullptr};
}

struct Workload {
  const char* name;
  std::function<Job()> make;
};

const std::vector<Workload> kWorkloads = {
    {"gemm_2048", [] { return gemm_2048(); }},
    {"gemm_2048_bf16", [] { return gemm_2048(kBFloat16); }},
    {"mlp_train_step",
     [] {
       auto model = train::make_mlp();  // 784-512-256-10
       return train_step(model, randn({128, 1, 28, 28}), randint(0, 10, {128}));
     }},
    {"cnn_train_step",
     [] {
       auto model = train::make_cnn();
       return train_step(model, randn({64, 1, 28, 28}), randint(0, 10, {64}));
     }},
    {"softmax_fwd_bwd", [] { return fwd_bwd([](const Tensor& x) { return softmax(x, -1); }); }},
    {"layer_norm_fwd_bwd",
     [] {
       Tensor w = ones({512}, {.requires_grad = true}), b = zeros({512}, {.requires_grad = true});
       return fwd_bwd([w, b](const Tensor& x) { return layer_norm(x, {512}, w, b); }, {w, b});
     }},
    {"gelu_fwd_bwd", [] { return fwd_bwd([](const Tensor& x) { return gelu(x); }); }},
    {"transformer_train_step", [] { return transformer_train_step(); }},
    {"transformer_train_step_bf16", [] { return transformer_train_step(true); }},
    {"greedy_decode", [] { return greedy_decode_bench(); }},
    {"greedy_decode_bf16", [] { return greedy_decode_bench(true); }},
    {"lstm_lm_train_step", [] { return bench::char_lm_train_step(train::RecurrentCell::LSTM); }},
    {"gru_lm_train_step", [] { return bench::char_lm_train_step(train::RecurrentCell::GRU); }},
    {"lstm_lm_train_step_bf16", [] { return bench::char_lm_train_step(train::RecurrentCell::LSTM, true); }},
    {"gru_lm_train_step_bf16", [] { return bench::char_lm_train_step(train::RecurrentCell::GRU, true); }},
    {"lstm_sample", bench::lstm_sample},
    {"textcnn_train_step", bench::textcnn_train_step},
    {"minilm_embed", [] { return bench::minilm_embed(); }},
    {"minilm_finetune_step", [] { return bench::minilm_finetune_step(); }},
    {"minilm_embed_bf16", [] { return bench::minilm_embed(true); }},
    {"minilm_finetune_step_bf16", [] { return bench::minilm_finetune_step(true); }},
    {"gpt2_generate", bench::gpt2_generate},
};

// Workloads for attn-vs-attn A/B runs only (bench/ab.py): not in --list, so `make bench` and check_peers.py,
// which pair every listed workload with a PyTorch twin, leave them out.
const std::vector<Workload> kAbWorkloads = {
    {"bilstm_text_train", [] { return bench::birnn_step(train::RecurrentCell::LSTM, true, true); }},
    {"bilstm_text_infer", [] { return bench::birnn_step(train::RecurrentCell::LSTM, true, false); }},
    {"bigru_text_train", [] { return bench::birnn_step(train::RecurrentCell::GRU, true, true); }},
    {"bigru_text_infer", [] { return bench::birnn_step(train::RecurrentCell::GRU, true, false); }},
    {"bilstm_lm_train", [] { return bench::birnn_step(train::RecurrentCell::LSTM, false, true); }},
    {"bilstm_lm_infer", [] { return bench::birnn_step(train::RecurrentCell::LSTM, false, false); }},
    {"bigru_lm_train", [] { return bench::birnn_step(train::RecurrentCell::GRU, false, true); }},
    {"bigru_lm_infer", [] { return bench::birnn_step(train::RecurrentCell::GRU, false, false); }},
};

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s --list | <workload> [--threads N] [--serve | --describe]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // The baseline of "peak above baseline": the process as started (libattn and its dependencies
  // loaded), before any workload is built; torch_bench.py's baseline is taken after `import torch`.
  const double baseline_rss_mib = bench::current_rss_mib();
  std::string name;
  int threads = 2;
  bool serve = false, describe = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--list") {
      for (auto& w : kWorkloads) std::printf("%s\n", w.name);
      return 0;
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (a == "--serve") {
      serve = true;
    } else if (a == "--describe") {
      describe = true;
    } else if (!a.empty() && a[0] != '-' && name.empty()) {
      name = a;
    } else {
      return usage(argv[0]);
    }
  }
  if (name.empty()) return usage(argv[0]);
  std::vector<Workload> all = kWorkloads;
  all.insert(all.end(), kAbWorkloads.begin(), kAbWorkloads.end());
  for (auto& w : all) {
    if (name != w.name) continue;
    if (threads > 0) omp_set_num_threads(threads);
    manual_seed(0);
    try {
      Job job = w.make();
      nlohmann::ordered_json j = {{"workload", name}};
      if (describe) {
        job.iteration();  // untimed: the check below and the counts are what check_peers.py compares
        j["unit"] = job.unit;
      } else if (serve) {
        // Paired mode: run.py sends "run" per repeat and computes the throughputs from the repeats' times;
        // the summary after "quit" carries what they are worth (units_per_iteration, unit) and peak RSS.
        bench::serve(job.iteration, job.options, job.probe);
        j["unit"] = job.unit;
      } else {
        bench::Timing t = bench::measure(job.iteration, job.options);
        j["value"] = job.units_per_iteration / t.median_s;
        j["unit"] = job.unit;
        j["median_s"] = t.median_s;
        j["min_s"] = t.min_s;
        j["max_s"] = t.max_s;
        j["iters_per_repeat"] = t.iters_per_repeat;
        j["repeats"] = t.repeats;
        if (job.probe) j["fma_peak_gflops"] = job.probe();
      }
      if (job.check) job.check();
      j["units_per_iteration"] = job.units_per_iteration;
      j["threads"] = threads > 0 ? threads : omp_get_max_threads();  // the requested count (the team follows the load)
      const double peak = bench::peak_rss_mib();
      j["peak_rss_mib"] = peak;
      j["baseline_rss_mib"] = baseline_rss_mib;
      j["peak_above_baseline_mib"] = std::max(0.0, peak - baseline_rss_mib);
      for (auto& [k, v] : job.extra.items()) j[k] = v;
      std::printf("%s\n", j.dump().c_str());
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "attn_bench %s: %s\n", name.c_str(), e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "attn_bench: unknown workload '%s' (--list shows them)\n", name.c_str());
  return 2;
}
