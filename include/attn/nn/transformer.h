// attn/nn/transformer.h — the Transformer of "Attention Is All You Need", with torch.nn's parameter
// names and semantics, so a PyTorch state_dict loads unchanged; attention layers with a key/value cache
// for incremental decoding.
//
//   auto mha = std::make_shared<nn::MultiheadAttention>(nn::MultiheadAttentionOptions{.embed_dim = 512, .num_heads = 8});
//   auto [out, weights] = mha->forward(q, k, v, {.key_padding_mask = pad});   // q: (L, N, E) -> out (L, N, E),
//                                                                             // weights (N, L, S) head-averaged
//   nn::Transformer model({.d_model = 512, .nhead = 8, .num_encoder_layers = 3, .num_decoder_layers = 3});
//   Tensor y = model.forward(src, tgt, {.tgt_mask = nn::causal_mask(T)});     // src (S, N, E), tgt (T, N, E)
//
//   // Hugging Face BERT's layout: "query", "key", "value" Linear submodules instead of in_proj_weight
//   nn::MultiheadAttention bert_self({.embed_dim = 768, .num_heads = 12, .batch_first = true,
//                                     .packed_projections = false});
//
//   // incremental decoding, caches owned by the caller (one per layer): one token per step
//   nn::DecoderLayerCache cache = layer.start_cache(memory);         // memory (N, S, E): projected once
//   for (...) y_t = layer.forward_step(x_t, cache, {.memory_key_padding_mask = pad});  // x_t (N, 1, E)
//
// Masks follow PyTorch: a bool mask is true where attention is NOT allowed; a float mask is added to
// the scores. attn_mask: (L, S) or (N*num_heads, L, S); key_padding_mask: (N, S), true at padding.
// Masks are built by ops on the tensors' device (no host loops), so they work on any backend.
#pragma once
#include <optional>

#include "attn/nn/linear.h"
#include "attn/nn/module.h"
#include "attn/nn/normalization.h"

namespace attn::nn {

// (L, L) bool, true above the diagonal: position i may attend to j <= i only.
Tensor causal_mask(int64_t L, Device device = kCPU);
// (N, S) bool, true at padding: tokens == pad_id (tokens (N, S) int64).
Tensor padding_mask(const Tensor& tokens, int64_t pad_id);
// (N, S) bool, true at positions j >= lengths[n] (lengths (N) int64).
Tensor padding_mask_from_lengths(const Tensor& lengths, int64_t S);

struct MultiheadAttentionOptions {
  int64_t embed_dim = 0;
  int64_t num_heads = 1;
  double dropout = 0.0;  // on the attention weights
  bool bias = true;
  bool batch_first = false;  // (N, L, E) instead of (L, N, E)
  // true: PyTorch's in_proj_weight (3E, E) / in_proj_bias (3E); false: Hugging Face's separate
  // "query", "key", "value" Linear(E, E) submodules. The output projection is "out_proj" either way.
  bool packed_projections = true;
};

struct AttentionForwardOptions {
  Tensor key_padding_mask = {};   // (N, S) bool, true = ignore that key
  Tensor attn_mask = {};          // (L, S) or (N*H, L, S), bool or float
  bool need_weights = true;
  bool average_attn_weights = true;  // weights (N, L, S); else per head (N, H, L, S)
  bool is_causal = false;         // a causal mask without materialising one (attn_mask must be empty)
};

// What MultiheadAttention returns (module.h: the multi-output pattern). Structured bindings work:
// auto [out, w] = mha.forward(q, k, v).
struct AttentionOutput {
  Tensor output;   // (L, N, E), or (N, L, E) with batch_first
  Tensor weights;  // (N, L, S) averaged over heads, or (N, H, L, S); undefined unless need_weights
};

// Keys and values of one attention layer for incremental decoding, owned by the caller (one per layer
// and kind). Self-attention appends each step's keys/values (the capacity doubles when full, from 16
// slots); cross-attention holds the projected memory, computed once (MultiheadAttention::cache_memory).
struct KVCache {
  Tensor k, v;         // (N, H, capacity, D): slots [0, length) are filled
  int64_t length = 0;
  int64_t capacity() const { return k.defined() ? k.size(2) : 0; }
  Tensor keys() const { return k.narrow(2, 0, length); }    // (N, H, length, D)
  Tensor values() const { return v.narrow(2, 0, length); }  // (N, H, length, D)
  // Appends (N, H, T, D) keys and values, growing the buffers (filled part copied) when full.
  void append(const Tensor& k_new, const Tensor& v_new);
  // Keeps row rows[i] as row i (rows (M) int64; beams reordered, duplicated or dropped): one copy.
  void select_rows(const Tensor& rows);
};

struct AttentionStepOptions {
  Tensor key_padding_mask = {};  // (N, S) over the cached keys, true = ignore
};

class MultiheadAttention : public Module {
 public:
  explicit MultiheadAttention(const MultiheadAttentionOptions& options);
  void reset_parameters();  // xavier_uniform_ on the q/k/v projections, zero biases (as PyTorch)
  AttentionOutput forward(const Tensor& query, const Tensor& key, const Tensor& value,
                          const AttentionForwardOptions& o = {});
  Tensor forward(const Tensor& x) override;  // self-attention, no mask
  std::string extra_repr() const override;

  // ---- incremental decoding (no attention weights; the fused kernel)
  // Self-attention over the cache and x itself: x (N, T, E) with batch_first, else (T, N, E), the next T
  // positions; their keys/values are appended to `cache`, position i of x sees the cache and x's 0..i.
  Tensor forward_step(const Tensor& x, KVCache& cache);
  // The keys/values of `memory` ((N, S, E) or (S, N, E)) for cross-attention, projected once.
  KVCache cache_memory(const Tensor& memory);
  // Attention of x ((N, T, E) or (T, N, E)) to a cache as it is (cross-attention to cache_memory's keys).
  Tensor forward_cached(const Tensor& x, const KVCache& cache, const AttentionStepOptions& o = {});

  MultiheadAttentionOptions options;
  int64_t head_dim;
  Tensor in_proj_weight;  // (3E, E): rows [W_q; W_k; W_v] (packed_projections)
  Tensor in_proj_bias;    // (3E)
  std::shared_ptr<Linear> query, key, value;  // each Linear(E, E) (!packed_projections)
  std::shared_ptr<Linear> out_proj;
  // Set by quantize_linears_int8 (inference): the packed projections run as int8 products.
  std::shared_ptr<const Int8Matrix> in_proj_int8;

 private:
  // x's projection by rows [row, row + E * count) of the packed weight, or by the separate Linear(s)
  Tensor project(const Tensor& x, int64_t row, int64_t count);
  Tensor split_heads(const Tensor& x) const;  // (N, T, E) -> (N, H, T, D), a view
  Tensor merge_heads_and_project(const Tensor& ctx) const;  // (N, H, T, D) -> out_proj, in the module's layout
};

// GELU: the exact (erf) form, BERT's "gelu"; GELUTanh: the tanh approximation, GPT-2's "gelu_new";
// SiLU: x * sigmoid(x) ("swish", Marian's default).
enum class Activation { ReLU, GELU, GELUTanh, SiLU };

struct TransformerLayerOptions {
  int64_t d_model = 512;
  int64_t nhead = 8;
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  Activation activation = Activation::ReLU;
  double layer_norm_eps = 1e-5;
  bool batch_first = false;
  bool norm_first = false;  // pre-LN; the paper and the lecture use post-LN (false)
  bool bias = true;
  // Hugging Face layouts (BERT, GPT-2): separate query/key/value Linears (MultiheadAttentionOptions), and
  // the dropouts on the attention weights and after the feed-forward activation (< 0: `dropout`; HF has
  // attention_probs_dropout_prob and no dropout after the activation, i.e. 0).
  bool packed_projections = true;
  double attention_dropout = -1;
  double activation_dropout = -1;
};

struct EncoderMasks {
  Tensor mask = {};                  // (S, S)
  Tensor src_key_padding_mask = {};  // (N, S)
  bool is_causal = false;
};

// Where a layer stores its per-head attention weights (N, H, L, S) when asked (for pictures).
struct AttentionCapture {
  Tensor* self_attention = nullptr;
  Tensor* cross_attention = nullptr;  // decoder layers only
};

class TransformerEncoderLayer : public Module {
 public:
  explicit TransformerEncoderLayer(const TransformerLayerOptions& options);
  Tensor forward(const Tensor& src, const EncoderMasks& m, const AttentionCapture& capture = {});
  Tensor forward(const Tensor& src) override { return forward(src, EncoderMasks{}); }
  // Causal self-attention over `cache` and x's next positions (a decoder-only model such as GPT-2):
  // forward() of the whole prefix with is_causal, for the new positions only. x (N, T, E) with
  // batch_first, else (T, N, E); their keys/values are appended to `cache`.
  Tensor forward_step(const Tensor& x, KVCache& cache);

  TransformerLayerOptions options;
  std::shared_ptr<MultiheadAttention> self_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2;
  std::shared_ptr<LayerNorm> norm1, norm2;

 private:
  template <typename SelfAttention>
  Tensor blocks(const Tensor& src, SelfAttention&& sa);  // the two residual blocks, norm per norm_first
  Tensor self_attention_block(const Tensor& x, const EncoderMasks& m, Tensor* weights);
  Tensor feed_forward_block(const Tensor& x);
};

struct DecoderMasks {
  Tensor tgt_mask = {};                     // (T, T)
  Tensor memory_mask = {};                  // (T, S)
  Tensor tgt_key_padding_mask = {};         // (N, T)
  Tensor memory_key_padding_mask = {};      // (N, S)
  bool tgt_is_causal = false;
};

// One decoder layer's caches for incremental decoding (TransformerDecoderLayer::start_cache).
struct DecoderLayerCache {
  KVCache self_attn;   // grows by the new positions at every step
  KVCache cross_attn;  // the memory's keys/values, projected once
  // Keeps row rows[i] as row i in both; `cross` false when the rows' source sentences did not change
  // (beam search reordering beams within sentences), which skips copying the memory's keys/values.
  void select_rows(const Tensor& rows, bool cross = true);
};

struct DecoderStepMasks {
  Tensor memory_key_padding_mask = {};  // (N, S), true at source padding
};

class TransformerDecoderLayer : public Module {
 public:
  explicit TransformerDecoderLayer(const TransformerLayerOptions& options);
  Tensor forward(const Tensor& tgt, const Tensor& memory, const DecoderMasks& m = {},
                 const AttentionCapture& capture = {});
  // Incremental decoding: forward() of the whole prefix with a causal tgt_mask, one step at a time.
  DecoderLayerCache start_cache(const Tensor& memory);
  // x: the next positions (N, T, E) with batch_first, else (T, N, E) -> the layer's output for them.
  Tensor forward_step(const Tensor& x, DecoderLayerCache& cache, const DecoderStepMasks& m = {});

  TransformerLayerOptions options;
  std::shared_ptr<MultiheadAttention> self_attn, multihead_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2, dropout3;
  std::shared_ptr<LayerNorm> norm1, norm2, norm3;

 private:
  // the three residual blocks, norm placement per norm_first
  template <typename SelfAttention, typename CrossAttention>
  Tensor blocks(const Tensor& tgt, SelfAttention&& sa, CrossAttention&& ca);
};

// A stack of encoder layers ("layers.0", ...) and an optional final norm ("norm").
class TransformerEncoder : public Module {
 public:
  TransformerEncoder(const TransformerLayerOptions& layer, int64_t num_layers, bool final_norm);
  Tensor forward(const Tensor& src, const EncoderMasks& m);
  Tensor forward(const Tensor& src) override { return forward(src, EncoderMasks{}); }
  std::shared_ptr<ModuleList> layers;
  std::shared_ptr<LayerNorm> norm;  // null without final_norm
};

class TransformerDecoder : public Module {
 public:
  TransformerDecoder(const TransformerLayerOptions& layer, int64_t num_layers, bool final_norm);
  Tensor forward(const Tensor& tgt, const Tensor& memory, const DecoderMasks& m = {});
  std::shared_ptr<ModuleList> layers;
  std::shared_ptr<LayerNorm> norm;
};

struct TransformerOptions {
  int64_t d_model = 512;
  int64_t nhead = 8;
  int64_t num_encoder_layers = 6;
  int64_t num_decoder_layers = 6;
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  Activation activation = Activation::ReLU;
  double layer_norm_eps = 1e-5;
  bool batch_first = false;
  bool norm_first = false;
  bool bias = true;
  // The final LayerNorm of each stack ("encoder.norm", "decoder.norm"), as torch.nn.Transformer always
  // has; false gives the paper's (and Marian's) post-LN stacks, which end in the last layer's norm.
  bool final_norm = true;
};

struct TransformerMasks {
  Tensor src_mask = {}, tgt_mask = {}, memory_mask = {};
  Tensor src_key_padding_mask = {}, tgt_key_padding_mask = {}, memory_key_padding_mask = {};
};

// torch.nn.Transformer: encoder and decoder, each with a final LayerNorm ("encoder.norm", "decoder.norm").
class Transformer : public Module {
 public:
  explicit Transformer(const TransformerOptions& options);
  void reset_parameters();  // xavier_uniform_ on every parameter with more than one dim (as PyTorch)
  Tensor forward(const Tensor& src, const Tensor& tgt, const TransformerMasks& m = {});
  TransformerOptions options;
  std::shared_ptr<TransformerEncoder> encoder;
  std::shared_ptr<TransformerDecoder> decoder;
};

// Sinusoidal positional encoding of the paper: PE(pos, 2i) = sin(pos / 10000^(2i/d)),
// PE(pos, 2i+1) = cos(...). Adds PE to x (L, N, E) or (N, L, E) with batch_first; then dropout.
struct PositionalEncodingOptions {
  int64_t d_model = 512;
  int64_t max_len = 5000;
  double dropout = 0.1;
  bool batch_first = false;
};
class PositionalEncoding : public Module {
 public:
  explicit PositionalEncoding(const PositionalEncodingOptions& options);
  Tensor forward(const Tensor& x) override;
  Tensor forward(const Tensor& x, int64_t start_pos);  // positions start_pos.. (incremental decoding)
  PositionalEncodingOptions options;
  Tensor pe;  // (max_len, d_model), non-persistent buffer
  std::shared_ptr<Dropout> dropout;
};

}  // namespace attn::nn
