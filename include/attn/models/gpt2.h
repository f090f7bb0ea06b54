// attn/models/gpt2.h — GPT-2 (transformers' GPT2LMHeadModel): learned positions, pre-LN
// nn::TransformerEncoderLayer blocks with causal attention and GELU (tanh), a final LayerNorm and the
// output head tied to the token embeddings; generation with a key/value cache (greedy, temperature,
// top-k, top-p, repetition penalty; transformers' semantics, seeded sampling).
//
//   auto gpt2 = attn::models::GPT2LMHeadModel::from_pretrained(dir);   // HF's Conv1D weights transposed on load
//   gpt2->eval();
//   Tensor logits = gpt2->forward(ids);                                 // ids (N, T) int64 -> (N, T, V)
//   Tensor out = gpt2->generate(prompt, {.max_new_tokens = 20});        // greedy: (N, T + 20)
//   Tensor s = gpt2->generate(prompt, {.max_new_tokens = 20, .do_sample = true, .temperature = 0.8,
//                                      .top_k = 50, .top_p = 0.95, .repetition_penalty = 1.2, .seed = 7});
//   attn::models::GPT2Cache cache;                                      // incremental, caller-owned
//   Tensor step_logits = gpt2->forward_step(ids, cache);                // (N, T, V) for the new positions
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attn/models/hf_model_dir.h"
#include "attn/nn/embedding.h"
#include "attn/nn/linear.h"
#include "attn/nn/normalization.h"
#include "attn/nn/transformer.h"
#include "attn/nn/var_builder.h"

namespace attn::models {

struct GPT2Config {
  int64_t vocab_size = 50257;
  int64_t n_positions = 1024;
  int64_t n_embd = 768;
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_inner = 0;  // 0: 4 * n_embd
  double layer_norm_epsilon = 1e-5;
  double resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0.1;
  nn::Activation activation_function = nn::Activation::GELUTanh;  // "gelu_new"
  bool tie_word_embeddings = true;
  int64_t bos_token_id = 50256, eos_token_id = 50256;
  static GPT2Config from_file(const std::string& path);  // config.json, checked
  static GPT2Config from_config(const io::HFConfig& config);
};

// One KVCache per layer; the positions cached so far are the next token's position.
struct GPT2Cache {
  std::vector<nn::KVCache> layers;
  int64_t length() const { return layers.empty() ? 0 : layers.front().length; }
};

struct GenerationOptions {
  int64_t max_new_tokens = 20;
  bool do_sample = false;           // false: greedy (argmax of the processed scores)
  double temperature = 1.0;         // sampling only, like transformers
  int64_t top_k = 0;                // 0: off
  double top_p = 1.0;               // 1: off
  double repetition_penalty = 1.0;  // 1: off; applies to greedy decoding too
  uint64_t seed = 0;                // sampling draws from this seed only: the same seed, the same text
  int64_t eos_token_id = -1;        // -1: none (generate max_new_tokens)
  int64_t pad_token_id = -1;        // after a row's EOS; -1: eos_token_id
  bool use_cache = true;            // false: the whole prefix again at each step (for checking)
};

// transformers' logits processors in generate's order: repetition penalty (over every id in
// input_ids, prompt included: negative scores times the penalty, others divided), then the sampling
// warpers temperature, top-k (keeps scores >= the k-th largest), top-p (drops the smallest tokens whose
// cumulative probability is <= 1 - top_p, keeping at least one) — removed scores become -inf.
// scores (N, V) float32, input_ids (N, T) int64 -> processed (N, V).
Tensor process_logits(const Tensor& scores, const Tensor& input_ids, const GenerationOptions& o);

class GPT2LMHeadModel : public nn::Module {
 public:
  explicit GPT2LMHeadModel(const GPT2Config& config);
  static std::shared_ptr<GPT2LMHeadModel> from_pretrained(const std::string& dir);
  // Causal LM logits (N, T, V); attention_mask (N, T) (1 = token, 0 = padding) optional.
  Tensor forward(const Tensor& input_ids, const Tensor& attention_mask);
  Tensor forward(const Tensor& input_ids) override { return forward(input_ids, {}); }
  // Logits (N, T, V) of the next T positions given the cached ones; appends their keys/values.
  Tensor forward_step(const Tensor& input_ids, GPT2Cache& cache);
  // prompt (N, T) int64 (no padding) -> (N, T + generated); rows that hit EOS are padded.
  Tensor generate(const Tensor& prompt, const GenerationOptions& o = {});
  // "transformer.wte.weight", "transformer.h.<i>.attn.c_attn.weight" (transposed), ... under vb.
  void load(const nn::VarBuilder& vb);
  // Each parameter with its Hugging Face key (set by load / from_pretrained).
  const std::vector<nn::VarBuilder::Loaded>& hf_parameters() const { return hf_parameters_; }

  GPT2Config config;
  std::shared_ptr<nn::Embedding> wte, wpe;
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<nn::ModuleList> h;  // pre-LN TransformerEncoderLayer, GELU (tanh), causal
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::shared_ptr<nn::Linear> lm_head;  // null when tied: the head is wte's weight

 private:
  Tensor embed(const Tensor& input_ids, int64_t start_pos);  // (N, T) -> (N, T, E)
  Tensor head(const Tensor& hidden);                         // ln_f, then the (tied) projection
  std::vector<nn::VarBuilder::Loaded> hf_parameters_;
};

}  // namespace attn::models
