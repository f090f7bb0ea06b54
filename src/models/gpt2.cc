// src/models/gpt2.cc — GPT-2 from nn modules (HF's Conv1D weights transposed on load), its key/value
// cache and generation with transformers' logits processors.
#include "attn/models/gpt2.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>

#include "attn/autograd.h"
#include "attn/models/hf_model_dir.h"
#include "attn/ops.h"

namespace attn::models {

namespace {
[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::invalid_argument(where + ": " + what);
}

void check_ids(const Tensor& ids, const char* where) {
  if (!ids.defined() || ids.dim() != 2 || ids.size(1) == 0 || (ids.dtype() != kInt64 && ids.dtype() != kInt32))
    bad(where, "input_ids must be (N, T) int64 with T >= 1, got " +
                   (ids.defined() ? shape_str(ids.shape()) : std::string("undefined")));
}
}  // namespace

GPT2Config GPT2Config::from_file(const std::string& path) { return from_config(io::HFConfig::load(path)); }

GPT2Config GPT2Config::from_config(const io::HFConfig& c) {
  const std::string path = "'" + c.file() + "'";
  const std::string type = c.get_string("model_type", "gpt2");
  if (type != "gpt2") throw std::runtime_error(path + ": key 'model_type' = \"" + type + "\", expected \"gpt2\"");
  GPT2Config g;
  g.vocab_size = c.get_int("vocab_size", 1, int64_t(1) << 24);
  g.n_positions = c.get_int("n_positions", 1, 1 << 20);
  g.n_embd = c.get_int("n_embd", 1, 1 << 16);
  g.n_layer = c.get_int("n_layer", 0, 1024);
  g.n_head = c.get_int("n_head", 1, g.n_embd);
  if (g.n_embd % g.n_head != 0)
    throw std::runtime_error(path + ": key 'n_embd' = " + std::to_string(g.n_embd) + " is not a multiple of 'n_head' = " +
                             std::to_string(g.n_head));
  g.n_inner = c.get_int("n_inner", 0, 1 << 20, 0);
  g.layer_norm_epsilon = c.get_float("layer_norm_epsilon", 0.0, 1.0, 1e-5);
  g.resid_pdrop = c.get_float("resid_pdrop", 0.0, 1.0, 0.1);
  g.embd_pdrop = c.get_float("embd_pdrop", 0.0, 1.0, 0.1);
  g.attn_pdrop = c.get_float("attn_pdrop", 0.0, 1.0, 0.1);
  g.activation_function = hf_activation(c, "activation_function", "gelu_new");
  g.tie_word_embeddings = c.get_bool("tie_word_embeddings", true);
  g.bos_token_id = c.get_int("bos_token_id", -1, g.vocab_size - 1, -1);
  g.eos_token_id = c.get_int("eos_token_id", -1, g.vocab_size - 1, -1);
  if (!c.get_bool("scale_attn_weights", true) || c.get_bool("scale_attn_by_inverse_layer_idx", false) ||
      c.get_bool("reorder_and_upcast_attn", false))
    throw std::runtime_error(path + ": unsupported attention variant (scale_attn_weights must be true, "
                             "scale_attn_by_inverse_layer_idx and reorder_and_upcast_attn false)");
  // each field may be in range and the whole still absurd (a hostile config must not allocate terabytes)
  const double E = double(g.n_embd), inner = g.n_inner > 0 ? double(g.n_inner) : 4 * E;
  const double params = E * double(g.vocab_size + g.n_positions) + double(g.n_layer) * (4 * E * E + 2 * E * inner);
  if (params > 2e10)
    throw std::runtime_error(path + ": the config describes " + std::to_string(params) +
                             " parameters (more than 2e10): check vocab_size, n_embd, n_layer, n_inner");
  return g;
}

// ---- the model
GPT2LMHeadModel::GPT2LMHeadModel(const GPT2Config& c) : config(c) {
  wte = register_module("wte", nn::Embedding(c.vocab_size, c.n_embd));
  wpe = register_module("wpe", nn::Embedding(c.n_positions, c.n_embd));
  drop = register_module("drop", nn::Dropout(c.embd_pdrop));
  // GPT-2's block: pre-LN, attention-weights dropout attn_pdrop, residual dropouts resid_pdrop, none
  // after the activation
  nn::TransformerLayerOptions layer{.d_model = c.n_embd, .nhead = c.n_head,
                                    .dim_feedforward = c.n_inner > 0 ? c.n_inner : 4 * c.n_embd,
                                    .dropout = c.resid_pdrop, .activation = c.activation_function,
                                    .layer_norm_eps = c.layer_norm_epsilon, .batch_first = true, .norm_first = true,
                                    .bias = true, .packed_projections = true, .attention_dropout = c.attn_pdrop,
                                    .activation_dropout = 0.0};
  h = register_module("h", nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) h->push_back(nn::TransformerEncoderLayer(layer));
  ln_f = register_module("ln_f", nn::LayerNorm({.normalized_shape = {c.n_embd}, .eps = c.layer_norm_epsilon}));
  if (!c.tie_word_embeddings) lm_head = register_module("lm_head", nn::Linear(c.n_embd, c.vocab_size, false));
}

Tensor GPT2LMHeadModel::embed(const Tensor& ids, int64_t start) {
  check_ids(ids, "GPT2LMHeadModel");
  const int64_t T = ids.size(1);
  if (start + T > config.n_positions)
    bad("GPT2LMHeadModel", "positions " + std::to_string(start) + ".." + std::to_string(start + T - 1) +
                               " exceed n_positions " + std::to_string(config.n_positions));
  Tensor pos = arange(double(start), double(start + T), 1.0, {.dtype = kInt64, .device = ids.device()});
  return drop->forward(add(wte->forward(ids), wpe->forward(pos).unsqueeze(0)));  // (N, T, E)
}

Tensor GPT2LMHeadModel::head(const Tensor& hidden) {
  Tensor x = ln_f->forward(hidden);
  return lm_head ? lm_head->forward(x) : linear(x, wte->weight);  // (N, T, V)
}

Tensor GPT2LMHeadModel::forward(const Tensor& ids, const Tensor& attention_mask) {
  Tensor x = embed(ids, 0);
  nn::EncoderMasks masks{.is_causal = true};
  if (attention_mask.defined()) {
    if (attention_mask.shape() != ids.shape())
      bad("GPT2LMHeadModel", "attention_mask " + shape_str(attention_mask.shape()) + " must match input_ids " +
                                 shape_str(ids.shape()));
    masks.src_key_padding_mask = eq(attention_mask, 0.0);
  }
  for (const auto& l : *h) x = std::static_pointer_cast<nn::TransformerEncoderLayer>(l)->forward(x, masks);
  return head(x);
}

Tensor GPT2LMHeadModel::forward_step(const Tensor& ids, GPT2Cache& cache) {
  if (cache.layers.empty()) cache.layers.resize(h->size());
  if (cache.layers.size() != h->size())
    bad("GPT2LMHeadModel::forward_step", "the cache has " + std::to_string(cache.layers.size()) +
                                             " layers, the model " + std::to_string(h->size()));
  Tensor x = embed(ids, cache.length());
  for (size_t i = 0; i < h->size(); ++i)
    x = h->at<nn::TransformerEncoderLayer>(int64_t(i))->forward_step(x, cache.layers[i]);
  return head(x);
}

void GPT2LMHeadModel::load(const nn::VarBuilder& root) {
  const bool prefixed = root.contains("transformer.wte.weight");
  const nn::VarBuilder vb = prefixed ? root.pp("transformer") : root;
  nn::load_embedding(vb.pp("wte"), *wte);
  nn::load_embedding(vb.pp("wpe"), *wpe);
  constexpr auto T = nn::VarBuilder::Transposed;  // Conv1D stores (in, out)
  for (int64_t i = 0; i < config.n_layer; ++i) {
    const nn::VarBuilder l = vb.pp("h").pp(i);
    auto layer = h->at<nn::TransformerEncoderLayer>(i);
    nn::load_layer_norm(l.pp("ln_1"), *layer->norm1);
    l.load("attn.c_attn.weight", layer->self_attn->in_proj_weight, T);  // (E, 3E) -> (3E, E): [W_q; W_k; W_v]
    l.load("attn.c_attn.bias", layer->self_attn->in_proj_bias);
    nn::load_linear(l.pp("attn").pp("c_proj"), *layer->self_attn->out_proj, T);
    nn::load_layer_norm(l.pp("ln_2"), *layer->norm2);
    nn::load_linear(l.pp("mlp").pp("c_fc"), *layer->linear1, T);
    nn::load_linear(l.pp("mlp").pp("c_proj"), *layer->linear2, T);
  }
  nn::load_layer_norm(vb.pp("ln_f"), *ln_f);
  if (lm_head) nn::load_linear(root.pp("lm_head"), *lm_head);
  hf_parameters_ = root.loaded();
  // the causal-mask buffers older checkpoints keep; a tied head's copy of wte
  std::vector<std::string> ignore = {".attn.bias", ".attn.masked_bias"};
  if (!lm_head) ignore.push_back("lm_head.weight");
  root.finish({.strict = true, .ignore = ignore});
}

std::shared_ptr<GPT2LMHeadModel> GPT2LMHeadModel::from_pretrained(const std::string& dir) {
  const auto ck = open_hf_checkpoint(dir);
  auto model = std::make_shared<GPT2LMHeadModel>(GPT2Config::from_config(ck->config()));
  model->load(nn::VarBuilder(hf_weights(ck)));
  return model;
}

// ---- logits processing and generation
namespace {
void check_generation_options(const GenerationOptions& o) {
  if (!(o.temperature > 0) || o.top_k < 0 || !(o.top_p > 0 && o.top_p <= 1) || !(o.repetition_penalty > 0) ||
      o.max_new_tokens < 0)
    bad("generate", "needs temperature > 0, top_k >= 0, 0 < top_p <= 1, repetition_penalty > 0, max_new_tokens >= 0");
}

// One row of scores through the processors (float32 arithmetic, as transformers does on float32 logits).
void process_row(float* row, int64_t V, const int64_t* ids, int64_t T, const GenerationOptions& o) {
  constexpr float kRemoved = -std::numeric_limits<float>::infinity();
  if (o.repetition_penalty != 1.0) {
    const float p = float(o.repetition_penalty);
    for (int64_t id : std::set<int64_t>(ids, ids + T)) {
      if (id < 0 || id >= V) bad("process_logits", "token id " + std::to_string(id) + " outside the vocabulary");
      row[id] = row[id] < 0 ? row[id] * p : row[id] / p;
    }
  }
  if (o.temperature != 1.0)
    for (int64_t v = 0; v < V; ++v) row[v] = row[v] / float(o.temperature);
  if (o.top_k > 0 && o.top_k < V) {
    std::vector<float> sorted(row, row + V);
    std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(), std::greater<float>());
    const float kth = sorted[size_t(o.top_k - 1)];
    for (int64_t v = 0; v < V; ++v)
      if (row[v] < kth) row[v] = kRemoved;
  }
  if (o.top_p < 1.0) {
    std::vector<int64_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return row[a] < row[b]; });  // ascending
    const float mx = row[order.back()];
    std::vector<float> e(static_cast<size_t>(V));
    float total = 0;
    for (int64_t i = 0; i < V; ++i) total += e[size_t(i)] = std::exp(row[order[size_t(i)]] - mx);
    float cum = 0;
    const float threshold = float(1.0 - o.top_p);
    for (int64_t i = 0; i + 1 < V; ++i) {  // the largest token always stays
      cum += e[size_t(i)] / total;
      if (cum <= threshold) row[order[size_t(i)]] = kRemoved;
    }
  }
}

int64_t choose_token(const float* row, int64_t V, bool sample, std::mt19937_64& rng) {
  if (!sample) return std::max_element(row, row + V) - row;  // the first maximum, like torch.argmax
  const float mx = *std::max_element(row, row + V);
  std::vector<double> p(static_cast<size_t>(V));
  double total = 0;
  for (int64_t v = 0; v < V; ++v) total += p[size_t(v)] = std::isinf(row[v]) ? 0.0 : std::exp(double(row[v] - mx));
  double u = std::uniform_real_distribution<double>(0.0, total)(rng);
  for (int64_t v = 0; v < V; ++v)
    if ((u -= p[size_t(v)]) < 0 && p[size_t(v)] > 0) return v;
  for (int64_t v = V - 1; v >= 0; --v)  // rounding left u >= 0: the last possible token
    if (p[size_t(v)] > 0) return v;
  return 0;
}
}  // namespace

Tensor process_logits(const Tensor& scores, const Tensor& input_ids, const GenerationOptions& o) {
  check_generation_options(o);
  if (scores.dim() != 2 || input_ids.dim() != 2 || input_ids.size(0) != scores.size(0))
    bad("process_logits", "scores must be (N, V) and input_ids (N, T), got " + shape_str(scores.shape()) + " and " +
                              shape_str(input_ids.shape()));
  const int64_t N = scores.size(0), V = scores.size(1), T = input_ids.size(1);
  std::vector<float> s = scores.contiguous().to_vector<float>();
  const std::vector<int64_t> ids = input_ids.contiguous().to_vector<int64_t>();
  for (int64_t n = 0; n < N; ++n) process_row(s.data() + n * V, V, ids.data() + n * T, T, o);
  return from_vector(s, {N, V});
}

Tensor GPT2LMHeadModel::generate(const Tensor& prompt, const GenerationOptions& o) {
  check_ids(prompt, "GPT2LMHeadModel::generate");
  check_generation_options(o);
  if (prompt.size(1) + o.max_new_tokens > config.n_positions)
    bad("GPT2LMHeadModel::generate", "prompt length " + std::to_string(prompt.size(1)) + " + max_new_tokens " +
                                         std::to_string(o.max_new_tokens) + " exceeds n_positions " +
                                         std::to_string(config.n_positions));
  NoGradGuard ng;
  const int64_t N = prompt.size(0), V = config.vocab_size;
  const int64_t pad = o.pad_token_id >= 0 ? o.pad_token_id : o.eos_token_id;
  GenerationOptions processing = o;  // greedy decoding ignores the sampling warpers, like transformers
  if (!o.do_sample) processing.temperature = 1.0, processing.top_k = 0, processing.top_p = 1.0;
  std::mt19937_64 rng(o.seed);
  Tensor seq = prompt.to(kInt64);
  GPT2Cache cache;
  Tensor logits = o.use_cache ? forward_step(seq, cache) : forward(seq);  // (N, T, V)
  std::vector<bool> finished(static_cast<size_t>(N), false);
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    Tensor last = logits.select(1, logits.size(1) - 1).contiguous();  // (N, V)
    const std::vector<float> s = process_logits(last, seq, processing).to_vector<float>();
    std::vector<int64_t> next(static_cast<size_t>(N));
    bool all_done = true;
    for (int64_t n = 0; n < N; ++n) {
      next[size_t(n)] = finished[size_t(n)] ? pad : choose_token(s.data() + n * V, V, o.do_sample, rng);
      if (o.eos_token_id >= 0 && next[size_t(n)] == o.eos_token_id) finished[size_t(n)] = true;
      all_done = all_done && finished[size_t(n)];
    }
    Tensor next_t = from_vector(next, {N, 1});
    seq = cat({seq, next_t}, 1);
    if (all_done || step + 1 == o.max_new_tokens) break;
    logits = o.use_cache ? forward_step(next_t, cache) : forward(seq);
  }
  return seq;
}

}  // namespace attn::models
