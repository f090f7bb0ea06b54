// attn/nn/transformer.h — the Transformer of "Attention Is All You Need", with torch.nn's parameter
// names and semantics, so a PyTorch state_dict loads unchanged.
//
//   auto mha = std::make_shared<nn::MultiheadAttention>(nn::MultiheadAttentionOptions{.embed_dim = 512, .num_heads = 8});
//   auto [out, weights] = mha->forward(q, k, v, {.key_padding_mask = pad});   // q: (L, N, E) -> out (L, N, E),
//                                                                             // weights (N, L, S) head-averaged
//   nn::Transformer model({.d_model = 512, .nhead = 8, .num_encoder_layers = 3, .num_decoder_layers = 3});
//   Tensor y = model.forward(src, tgt, {.tgt_mask = nn::causal_mask(T)});     // src (S, N, E), tgt (T, N, E)
//
// Masks follow PyTorch: a bool mask is true where attention is NOT allowed; a float mask is added to
// the scores. attn_mask: (L, S) or (N*num_heads, L, S); key_padding_mask: (N, S), true at padding.
#pragma once
#include <optional>

#include "attn/nn/linear.h"
#include "attn/nn/module.h"
#include "attn/nn/normalization.h"

namespace attn::nn {

// (L, L) bool, true above the diagonal: position i may attend to j <= i only.
Tensor causal_mask(int64_t L, Device device = kCPU);

struct MultiheadAttentionOptions {
  int64_t embed_dim = 0;
  int64_t num_heads = 1;
  double dropout = 0.0;  // on the attention weights
  bool bias = true;
  bool batch_first = false;  // (N, L, E) instead of (L, N, E)
};

struct AttentionForwardOptions {
  Tensor key_padding_mask = {};   // (N, S) bool, true = ignore that key
  Tensor attn_mask = {};          // (L, S) or (N*H, L, S), bool or float
  bool need_weights = true;
  bool average_attn_weights = true;  // weights (N, L, S); else per head (N, H, L, S)
  bool is_causal = false;         // a causal mask without materialising one (attn_mask must be empty)
};

class MultiheadAttention : public Module {
 public:
  explicit MultiheadAttention(const MultiheadAttentionOptions& options);
  void reset_parameters();  // xavier_uniform_ in_proj_weight, zero biases (as PyTorch)
  // Returns (output, weights); weights undefined unless need_weights.
  std::pair<Tensor, Tensor> forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                    const AttentionForwardOptions& o = {});
  Tensor forward(const Tensor& x) override;  // self-attention, no mask
  std::string extra_repr() const override;

  MultiheadAttentionOptions options;
  int64_t head_dim;
  Tensor in_proj_weight;  // (3E, E): rows [W_q; W_k; W_v]
  Tensor in_proj_bias;    // (3E)
  std::shared_ptr<Linear> out_proj;
};

enum class Activation { ReLU, GELU };

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

  TransformerLayerOptions options;
  std::shared_ptr<MultiheadAttention> self_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2;
  std::shared_ptr<LayerNorm> norm1, norm2;

 private:
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

class TransformerDecoderLayer : public Module {
 public:
  explicit TransformerDecoderLayer(const TransformerLayerOptions& options);
  Tensor forward(const Tensor& tgt, const Tensor& memory, const DecoderMasks& m = {},
                 const AttentionCapture& capture = {});

  TransformerLayerOptions options;
  std::shared_ptr<MultiheadAttention> self_attn, multihead_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2, dropout3;
  std::shared_ptr<LayerNorm> norm1, norm2, norm3;
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
