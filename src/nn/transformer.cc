// src/nn/transformer.cc — MultiheadAttention, encoder/decoder layers and stacks, nn.Transformer,
// sinusoidal positional encoding. Composites of ops; semantics of torch.nn (math path). Attention runs the
// fused scaled_dot_product_attention unless the weights are asked for (need_weights).
#include "attn/nn/transformer.h"

#include <cmath>
#include <limits>

#include "attn/autograd.h"
#include "attn/nn/init.h"
#include "attn/ops.h"

namespace attn::nn {

namespace {
[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::invalid_argument(where + ": " + what);
}
// dropout(activation(h)) of the feed-forward block; ReLU's runs fused (relu_dropout: the same values,
// gradients and draws, one pass each way, no ReLU output kept for the backward)
Tensor activate_dropout(Activation a, const Tensor& h, const Dropout& d) {
  if (a == Activation::GELU) return dropout(gelu(h), d.p, d.is_training());
  return relu_dropout(h, d.p, d.is_training());
}
}  // namespace

Tensor causal_mask(int64_t L, Device device) {
  std::vector<bool> v(size_t(L * L));
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < L; ++j) v[size_t(i * L + j)] = j > i;
  return from_vector(v, {L, L}, {.dtype = kBool, .device = device});
}

// ---- MultiheadAttention
MultiheadAttention::MultiheadAttention(const MultiheadAttentionOptions& o) : options(o) {
  if (o.embed_dim <= 0 || o.num_heads <= 0 || o.embed_dim % o.num_heads != 0)
    bad("MultiheadAttention", "embed_dim " + std::to_string(o.embed_dim) + " must be a positive multiple of num_heads " +
                                  std::to_string(o.num_heads));
  head_dim = o.embed_dim / o.num_heads;
  in_proj_weight = register_parameter("in_proj_weight", empty({3 * o.embed_dim, o.embed_dim}));
  in_proj_bias = register_parameter("in_proj_bias", o.bias ? empty({3 * o.embed_dim}) : Tensor());
  out_proj = register_module("out_proj", Linear(o.embed_dim, o.embed_dim, o.bias));
  reset_parameters();
}

void MultiheadAttention::reset_parameters() {
  NoGradGuard ng;
  init::xavier_uniform_(in_proj_weight);
  if (in_proj_bias.defined()) in_proj_bias.zero_();
  if (out_proj->bias.defined()) out_proj->bias.zero_();
}

std::string MultiheadAttention::extra_repr() const {
  return "embed_dim=" + std::to_string(options.embed_dim) + ", num_heads=" + std::to_string(options.num_heads) +
         ", dropout=" + std::to_string(options.dropout) + (options.batch_first ? ", batch_first=true" : "");
}

Tensor MultiheadAttention::forward(const Tensor& x) { return forward(x, x, x, {.need_weights = false}).first; }

std::pair<Tensor, Tensor> MultiheadAttention::forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                                      const AttentionForwardOptions& o) {
  const std::string where = "MultiheadAttention";
  const int64_t E = options.embed_dim, H = options.num_heads, D = head_dim;
  if (q_in.dim() != 3 || k_in.dim() != 3 || v_in.dim() != 3)
    bad(where, "expects 3-d query/key/value, got " + shape_str(q_in.shape()) + ", " + shape_str(k_in.shape()) + ", " +
                   shape_str(v_in.shape()));
  bool self_attention = q_in.is_same(k_in) && k_in.is_same(v_in);
  Tensor query = options.batch_first ? q_in.transpose(0, 1) : q_in;  // (L, N, E)
  Tensor key = options.batch_first ? k_in.transpose(0, 1) : k_in;    // (S, N, E)
  Tensor value = options.batch_first ? v_in.transpose(0, 1) : v_in;  // (S, N, E)
  const int64_t L = query.size(0), N = query.size(1), S = key.size(0);
  if (query.size(2) != E || key.size(2) != E || value.size(2) != E)
    bad(where, "embedding dims of query " + shape_str(q_in.shape()) + ", key " + shape_str(k_in.shape()) +
                   ", value " + shape_str(v_in.shape()) + " must equal embed_dim " + std::to_string(E));
  if (key.size(1) != N || value.size(1) != N || value.size(0) != S)
    bad(where, "key/value shapes " + shape_str(k_in.shape()) + ", " + shape_str(v_in.shape()) +
                   " do not match the query " + shape_str(q_in.shape()));

  // Projections in the inputs' own layout ((N, L, E) when batch_first: no transposed copies): one
  // [q | k | v] GEMM for self-attention, q and one [k | v] GEMM when key is value (encoder-decoder
  // attention), else three. q, k, v are column blocks [qc|kc|vc, + E) of their sources.
  auto proj = [&](const Tensor& x, int64_t row, int64_t rows) {
    const Tensor b = in_proj_bias.defined() ? in_proj_bias.narrow(0, row, rows) : Tensor();
    return linear(x, in_proj_weight.narrow(0, row, rows), b);
  };
  Tensor q_src, k_src, v_src;  // (N, L|S, C) when batch_first, else (L|S, N, C)
  int64_t qc = 0, kc = 0, vc = 0;
  if (self_attention) {
    q_src = k_src = v_src = linear(q_in, in_proj_weight, in_proj_bias);
    kc = E, vc = 2 * E;
  } else if (k_in.is_same(v_in)) {
    q_src = proj(q_in, 0, E);
    k_src = v_src = proj(k_in, E, 2 * E);
    vc = E;
  } else {
    q_src = proj(q_in, 0, E), k_src = proj(k_in, E, E), v_src = proj(v_in, 2 * E, E);
  }
  const double neg_inf = -std::numeric_limits<double>::infinity();
  Tensor m = o.attn_mask;  // (L, S) or (N, H, L, S)
  if (m.defined()) {
    if (o.is_causal) bad(where, "pass either attn_mask or is_causal, not both");
    if (m.dim() == 2) {
      if (m.size(0) != L || m.size(1) != S)
        bad(where, "attn_mask " + shape_str(m.shape()) + " must be (" + std::to_string(L) + ", " + std::to_string(S) + ")");
    } else if (m.dim() == 3) {
      if (m.size(0) != N * H || m.size(1) != L || m.size(2) != S)
        bad(where, "attn_mask " + shape_str(m.shape()) + " must be (N*num_heads, L, S) = (" + std::to_string(N * H) +
                       ", " + std::to_string(L) + ", " + std::to_string(S) + ")");
      m = m.reshape({N, H, L, S});
    } else {
      bad(where, "attn_mask must be 2-d or 3-d, got " + shape_str(m.shape()));
    }
  }
  const Tensor& kpm = o.key_padding_mask;
  if (kpm.defined() && (kpm.dim() != 2 || kpm.size(0) != N || kpm.size(1) != S))
    bad(where, "key_padding_mask " + shape_str(kpm.shape()) + " must be (N, S) = (" + std::to_string(N) + ", " +
                   std::to_string(S) + ")");
  const double p_drop = options.dropout > 0 && is_training() ? options.dropout : 0.0;

  if (!o.need_weights) {  // the fused kernel: no (N, H, L, S) scores, masks or weights are materialised
    // (N, L|S, C) views of the sources, one handle per distinct source (so the kernel's backward writes
    // each source's gradient whole)
    auto nlc = [&](const Tensor& t) { return options.batch_first ? t : t.transpose(0, 1); };
    const Tensor qs = nlc(q_src);
    const Tensor ks = k_src.is_same(q_src) ? qs : nlc(k_src);
    const Tensor vs = v_src.is_same(q_src) ? qs : v_src.is_same(k_src) ? ks : nlc(v_src);
    // attn_mask: MultiheadAttention's bool means "masked", SDPA's means "take part" (a copy the mask's size)
    Tensor ctx = packed_scaled_dot_product_attention(
        {qs, qc}, {ks, kc}, {vs, vc}, H, E,
        {.attn_mask = m.defined() && m.dtype() == kBool ? logical_not(m) : m, .key_padding_mask = kpm,
         .dropout_p = p_drop, .is_causal = o.is_causal});  // (N, H, L, D) over (N, L, H, D) memory
    if (options.batch_first)  // merging the heads is a view
      return {out_proj->forward(ctx.permute({0, 2, 1, 3}).reshape({N, L, E})), Tensor()};  // (N, L, E)
    return {out_proj->forward(ctx.permute({2, 0, 1, 3}).reshape({L, N, E})), Tensor()};    // (L, N, E)
  }

  Tensor q = q_src.narrow(-1, qc, E), k = k_src.narrow(-1, kc, E), v = v_src.narrow(-1, vc, E);
  if (options.batch_first) q = q.transpose(0, 1), k = k.transpose(0, 1), v = v.transpose(0, 1);  // (L|S, N, E)
  // need_weights: the composite path, which also returns the (N, H, L, S) weights
  q = mul(q, 1.0 / std::sqrt(double(D))).reshape({L, N, H, D}).permute({1, 2, 0, 3});  // (N, H, L, D)
  k = k.reshape({S, N, H, D}).permute({1, 2, 3, 0});                                   // (N, H, D, S)
  v = v.reshape({S, N, H, D}).permute({1, 2, 0, 3});                                   // (N, H, S, D)
  Tensor scores = matmul(q, k);                                                        // (N, H, L, S)

  if (m.defined()) {
    scores = m.dtype() == kBool ? masked_fill(scores, m.dim() == 2 ? m.view({1, 1, L, S}) : m, neg_inf)
                                : add(scores, m.dim() == 2 ? m.view({1, 1, L, S}) : m);
  } else if (o.is_causal) {
    scores = masked_fill(scores, causal_mask(L, q_in.device()).slice(1, 0, S), neg_inf);
  }
  if (kpm.defined()) {
    Tensor km = kpm.view({N, 1, 1, S});
    scores = kpm.dtype() == kBool ? masked_fill(scores, km, neg_inf) : add(scores, km);
  }
  Tensor weights = softmax(scores, -1);  // (N, H, L, S)
  if (p_drop > 0) weights = dropout(weights, p_drop, true);
  Tensor ctx = matmul(weights, v).permute({2, 0, 1, 3}).reshape({L, N, E});  // (L, N, E)
  Tensor out = out_proj->forward(ctx);
  if (options.batch_first) out = out.transpose(0, 1);
  Tensor w_out;
  if (o.need_weights) w_out = o.average_attn_weights ? mean(weights, {1}) : weights;
  return {out, w_out};
}

// ---- encoder layer
TransformerEncoderLayer::TransformerEncoderLayer(const TransformerLayerOptions& o) : options(o) {
  self_attn = register_module("self_attn", MultiheadAttention({.embed_dim = o.d_model, .num_heads = o.nhead,
                                                                .dropout = o.dropout, .bias = o.bias,
                                                                .batch_first = o.batch_first}));
  linear1 = register_module("linear1", Linear(o.d_model, o.dim_feedforward, o.bias));
  dropout = register_module("dropout", Dropout(o.dropout));
  linear2 = register_module("linear2", Linear(o.dim_feedforward, o.d_model, o.bias));
  norm1 = register_module("norm1", LayerNorm({.normalized_shape = {o.d_model}, .eps = o.layer_norm_eps, .bias = o.bias}));
  norm2 = register_module("norm2", LayerNorm({.normalized_shape = {o.d_model}, .eps = o.layer_norm_eps, .bias = o.bias}));
  dropout1 = register_module("dropout1", Dropout(o.dropout));
  dropout2 = register_module("dropout2", Dropout(o.dropout));
}

Tensor TransformerEncoderLayer::self_attention_block(const Tensor& x, const EncoderMasks& m, Tensor* weights) {
  auto [a, w] = self_attn->forward(x, x, x, {.key_padding_mask = m.src_key_padding_mask, .attn_mask = m.mask,
                                             .need_weights = weights != nullptr, .average_attn_weights = false,
                                             .is_causal = m.is_causal && !m.mask.defined()});
  if (weights) *weights = w.detach();
  return dropout1->forward(a);
}

Tensor TransformerEncoderLayer::feed_forward_block(const Tensor& x) {
  return dropout2->forward(linear2->forward(activate_dropout(options.activation, linear1->forward(x), *dropout)));
}

Tensor TransformerEncoderLayer::forward(const Tensor& src, const EncoderMasks& m, const AttentionCapture& capture) {
  Tensor x = src;
  if (options.norm_first) {
    x = add(x, self_attention_block(norm1->forward(x), m, capture.self_attention));
    x = add(x, feed_forward_block(norm2->forward(x)));
  } else {
    x = norm1->forward(add(x, self_attention_block(x, m, capture.self_attention)));
    x = norm2->forward(add(x, feed_forward_block(x)));
  }
  return x;
}

// ---- decoder layer
TransformerDecoderLayer::TransformerDecoderLayer(const TransformerLayerOptions& o) : options(o) {
  MultiheadAttentionOptions mo{.embed_dim = o.d_model, .num_heads = o.nhead, .dropout = o.dropout, .bias = o.bias,
                               .batch_first = o.batch_first};
  self_attn = register_module("self_attn", MultiheadAttention(mo));
  multihead_attn = register_module("multihead_attn", MultiheadAttention(mo));
  linear1 = register_module("linear1", Linear(o.d_model, o.dim_feedforward, o.bias));
  dropout = register_module("dropout", Dropout(o.dropout));
  linear2 = register_module("linear2", Linear(o.dim_feedforward, o.d_model, o.bias));
  LayerNormOptions lo{.normalized_shape = {o.d_model}, .eps = o.layer_norm_eps, .bias = o.bias};
  norm1 = register_module("norm1", LayerNorm(lo));
  norm2 = register_module("norm2", LayerNorm(lo));
  norm3 = register_module("norm3", LayerNorm(lo));
  dropout1 = register_module("dropout1", Dropout(o.dropout));
  dropout2 = register_module("dropout2", Dropout(o.dropout));
  dropout3 = register_module("dropout3", Dropout(o.dropout));
}

Tensor TransformerDecoderLayer::forward(const Tensor& tgt, const Tensor& memory, const DecoderMasks& m,
                                        const AttentionCapture& capture) {
  auto sa = [&](const Tensor& x) {
    auto [a, w] = self_attn->forward(x, x, x, {.key_padding_mask = m.tgt_key_padding_mask, .attn_mask = m.tgt_mask,
                                               .need_weights = capture.self_attention != nullptr,
                                               .average_attn_weights = false,
                                               .is_causal = m.tgt_is_causal && !m.tgt_mask.defined()});
    if (capture.self_attention) *capture.self_attention = w.detach();
    return dropout1->forward(a);
  };
  auto ca = [&](const Tensor& x) {
    auto [a, w] = multihead_attn->forward(x, memory, memory, {.key_padding_mask = m.memory_key_padding_mask,
                                                              .attn_mask = m.memory_mask,
                                                              .need_weights = capture.cross_attention != nullptr,
                                                              .average_attn_weights = false});
    if (capture.cross_attention) *capture.cross_attention = w.detach();
    return dropout2->forward(a);
  };
  auto ff = [&](const Tensor& x) {
    return dropout3->forward(linear2->forward(activate_dropout(options.activation, linear1->forward(x), *dropout)));
  };
  Tensor x = tgt;
  if (options.norm_first) {
    x = add(x, sa(norm1->forward(x)));
    x = add(x, ca(norm2->forward(x)));
    x = add(x, ff(norm3->forward(x)));
  } else {
    x = norm1->forward(add(x, sa(x)));
    x = norm2->forward(add(x, ca(x)));
    x = norm3->forward(add(x, ff(x)));
  }
  return x;
}

// ---- stacks
TransformerEncoder::TransformerEncoder(const TransformerLayerOptions& layer, int64_t num_layers, bool final_norm) {
  layers = register_module("layers", ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) layers->push_back(TransformerEncoderLayer(layer));
  if (final_norm)
    norm = register_module("norm", LayerNorm({.normalized_shape = {layer.d_model}, .eps = layer.layer_norm_eps, .bias = layer.bias}));
}

Tensor TransformerEncoder::forward(const Tensor& src, const EncoderMasks& m) {
  Tensor x = src;
  for (const auto& l : *layers) x = std::static_pointer_cast<TransformerEncoderLayer>(l)->forward(x, m);
  return norm ? norm->forward(x) : x;
}

TransformerDecoder::TransformerDecoder(const TransformerLayerOptions& layer, int64_t num_layers, bool final_norm) {
  layers = register_module("layers", ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) layers->push_back(TransformerDecoderLayer(layer));
  if (final_norm)
    norm = register_module("norm", LayerNorm({.normalized_shape = {layer.d_model}, .eps = layer.layer_norm_eps, .bias = layer.bias}));
}

Tensor TransformerDecoder::forward(const Tensor& tgt, const Tensor& memory, const DecoderMasks& m) {
  Tensor x = tgt;
  for (const auto& l : *layers) x = std::static_pointer_cast<TransformerDecoderLayer>(l)->forward(x, memory, m);
  return norm ? norm->forward(x) : x;
}

// ---- nn.Transformer
Transformer::Transformer(const TransformerOptions& o) : options(o) {
  TransformerLayerOptions lo{.d_model = o.d_model, .nhead = o.nhead, .dim_feedforward = o.dim_feedforward,
                             .dropout = o.dropout, .activation = o.activation, .layer_norm_eps = o.layer_norm_eps,
                             .batch_first = o.batch_first, .norm_first = o.norm_first, .bias = o.bias};
  encoder = register_module("encoder", TransformerEncoder(lo, o.num_encoder_layers, true));
  decoder = register_module("decoder", TransformerDecoder(lo, o.num_decoder_layers, true));
  reset_parameters();
}

void Transformer::reset_parameters() {
  NoGradGuard ng;
  for (auto& p : parameters())
    if (p.dim() > 1) init::xavier_uniform_(p);
}

Tensor Transformer::forward(const Tensor& src, const Tensor& tgt, const TransformerMasks& m) {
  Tensor memory = encoder->forward(src, {.mask = m.src_mask, .src_key_padding_mask = m.src_key_padding_mask});
  return decoder->forward(tgt, memory, {.tgt_mask = m.tgt_mask, .memory_mask = m.memory_mask,
                                        .tgt_key_padding_mask = m.tgt_key_padding_mask,
                                        .memory_key_padding_mask = m.memory_key_padding_mask});
}

// ---- positional encoding
PositionalEncoding::PositionalEncoding(const PositionalEncodingOptions& o) : options(o) {
  if (o.d_model <= 0 || o.max_len <= 0)
    bad("PositionalEncoding", "d_model and max_len must be positive, got " + std::to_string(o.d_model) + " and " +
                                  std::to_string(o.max_len));
  Tensor table = empty({o.max_len, o.d_model});  // (max_len, d_model); the shape and allocator checks come first
  float* v = table.data_ptr<float>();
  for (int64_t pos = 0; pos < o.max_len; ++pos)
    for (int64_t i = 0; i < o.d_model; i += 2) {
      double div = std::exp(double(i) * (-std::log(10000.0) / double(o.d_model)));
      v[pos * o.d_model + i] = float(std::sin(double(pos) * div));
      if (i + 1 < o.d_model) v[pos * o.d_model + i + 1] = float(std::cos(double(pos) * div));
    }
  pe = register_buffer("pe", table, /*persistent=*/false);
  dropout = register_module("dropout", Dropout(o.dropout));
}

Tensor PositionalEncoding::forward(const Tensor& x) { return forward(x, 0); }

Tensor PositionalEncoding::forward(const Tensor& x, int64_t start) {
  if (x.dim() != 3 || x.size(2) != options.d_model)
    bad("PositionalEncoding", "expects (L, N, " + std::to_string(options.d_model) + ") input, got " + shape_str(x.shape()));
  int64_t L = options.batch_first ? x.size(1) : x.size(0);
  if (start < 0 || start + L > options.max_len)
    bad("PositionalEncoding", "positions " + std::to_string(start) + ".." + std::to_string(start + L - 1) +
                                  " exceed max_len " + std::to_string(options.max_len));
  Tensor p = pe.narrow(0, start, L);  // (L, E)
  p = options.batch_first ? p.unsqueeze(0) : p.unsqueeze(1);
  return dropout->forward(add(x, p));
}

}  // namespace attn::nn
