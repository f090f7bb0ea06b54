// src/nn/transformer.cc — MultiheadAttention (packed or separate projections, key/value caches for
// incremental decoding), encoder/decoder layers and stacks, nn.Transformer, sinusoidal positional
// encoding. Composites of ops; semantics of torch.nn (math path). Attention runs the fused
// scaled_dot_product_attention unless the weights are asked for (need_weights).
#include "attn/nn/transformer.h"

#include <cmath>
#include <limits>
#include <typeinfo>

#include "attn/autograd.h"
#include "attn/nn/init.h"
#include "attn/nn/int8_linear.h"
#include "attn/ops.h"
#include "ops/autocast.h"
#include "ops/op_utils.h"

namespace attn::nn {

namespace {
[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::invalid_argument(where + ": " + what);
}
// dropout(activation(h)) of the feed-forward block; ReLU's runs fused (relu_dropout: the same values,
// gradients and draws, one pass each way, no ReLU output kept for the backward)
Tensor activate_dropout(Activation a, const Tensor& h, const Dropout& d) {
  if (a == Activation::GELU) return dropout(gelu(h), d.p, d.is_training());
  if (a == Activation::GELUTanh) return dropout(gelu(h, GeluApproximate::Tanh), d.p, d.is_training());
  if (a == Activation::SiLU) return dropout(mul(h, sigmoid(h)), d.p, d.is_training());
  return relu_dropout(h, d.p, d.is_training());
}
// Separate q/k/v projections that are plain Linears (not LoRA-wrapped or int8, whose forwards differ)
// run self-attention as one GEMM on [W_q; W_k; W_v], stacked per call from the parameters (HF names kept).
bool stacks_separate_projections(const MultiheadAttention& a) {
  auto plain = [](const std::shared_ptr<Linear>& l) { return l && typeid(*l) == typeid(Linear); };
  return !a.options.packed_projections && plain(a.query) && plain(a.key) && plain(a.value) &&
         a.query->bias.defined() == a.key->bias.defined() && a.key->bias.defined() == a.value->bias.defined();
}
}  // namespace

Tensor causal_mask(int64_t L, Device device) {
  if (L < 0) bad("causal_mask", "size must be >= 0, got " + std::to_string(L));
  Tensor pos = arange(L, {.dtype = kInt64, .device = device});
  return gt(pos.view({1, L}), pos.view({L, 1}));  // [i, j] = j > i
}

Tensor padding_mask(const Tensor& tokens, int64_t pad_id) { return eq(tokens, double(pad_id)); }

Tensor padding_mask_from_lengths(const Tensor& lengths, int64_t S) {
  if (lengths.dim() != 1 || S < 0)
    bad("padding_mask_from_lengths", "expects lengths (N) and S >= 0, got " + shape_str(lengths.shape()) + " and " +
                                         std::to_string(S));
  Tensor pos = arange(S, {.dtype = kInt64, .device = lengths.device()});
  return ge(pos.view({1, S}), lengths.to(kInt64).view({lengths.size(0), 1}));  // [n, j] = j >= lengths[n]
}

// ---- KVCache
void KVCache::append(const Tensor& k_new, const Tensor& v_new) {
  if (k_new.dim() != 4 || v_new.shape() != k_new.shape() ||
      (k.defined() && (k_new.size(0) != k.size(0) || k_new.size(1) != k.size(1) || k_new.size(3) != k.size(3))))
    bad("KVCache::append", "keys " + shape_str(k_new.shape()) + " and values " + shape_str(v_new.shape()) +
                               " must be (N, H, T, D) and match the cache " +
                               (k.defined() ? shape_str(k.shape()) : std::string("(empty)")));
  const int64_t T = k_new.size(2), need = length + T;
  if (need > capacity()) {  // grow: double (at least 16 slots), copy the filled part
    const int64_t cap = std::max<int64_t>({16, 2 * length, need});
    for (Tensor* c : {&k, &v}) {
      Tensor grown = empty({k_new.size(0), k_new.size(1), cap, k_new.size(3)},
                           {.dtype = k_new.dtype(), .device = k_new.device()});
      if (length > 0) grown.narrow(2, 0, length).copy_(c->narrow(2, 0, length));
      *c = grown;
    }
  }
  k.narrow(2, length, T).copy_(k_new);
  v.narrow(2, length, T).copy_(v_new);
  length = need;
}

// Only the filled slots are copied (the capacity doubles, so up to half of it may be empty); a cache
// that autograd records (decoding with grad mode on) takes the differentiable whole copy.
void KVCache::select_rows(const Tensor& rows) {
  for (Tensor* c : {&k, &v}) {
    if (!c->defined()) continue;
    if (grad_enabled() && c->requires_grad()) {
      *c = index_select(*c, 0, rows);
      continue;
    }
    Tensor fresh = empty({rows.numel(), c->size(1), c->size(2), c->size(3)}, {.dtype = c->dtype(), .device = c->device()});
    if (length > 0) index_select_out(c->narrow(2, 0, length), 0, rows, fresh.narrow(2, 0, length));
    *c = fresh;
  }
}

// ---- MultiheadAttention
MultiheadAttention::MultiheadAttention(const MultiheadAttentionOptions& o) : options(o) {
  if (o.embed_dim <= 0 || o.num_heads <= 0 || o.embed_dim % o.num_heads != 0)
    bad("MultiheadAttention", "embed_dim " + std::to_string(o.embed_dim) + " must be a positive multiple of num_heads " +
                                  std::to_string(o.num_heads));
  head_dim = o.embed_dim / o.num_heads;
  if (o.packed_projections) {
    in_proj_weight = register_parameter("in_proj_weight", empty({3 * o.embed_dim, o.embed_dim}));
    in_proj_bias = register_parameter("in_proj_bias", o.bias ? empty({3 * o.embed_dim}) : Tensor());
  } else {
    query = register_module("query", Linear(o.embed_dim, o.embed_dim, o.bias));
    key = register_module("key", Linear(o.embed_dim, o.embed_dim, o.bias));
    value = register_module("value", Linear(o.embed_dim, o.embed_dim, o.bias));
  }
  out_proj = register_module("out_proj", Linear(o.embed_dim, o.embed_dim, o.bias));
  reset_parameters();
}

void MultiheadAttention::reset_parameters() {
  NoGradGuard ng;
  if (options.packed_projections) {
    init::xavier_uniform_(in_proj_weight);
    if (in_proj_bias.defined()) in_proj_bias.zero_();
  } else {
    for (const auto& l : {query, key, value}) {
      init::xavier_uniform_(l->weight);
      if (l->bias.defined()) l->bias.zero_();
    }
  }
  if (out_proj->bias.defined()) out_proj->bias.zero_();
}

Tensor MultiheadAttention::project(const Tensor& x, int64_t first, int64_t count) {
  if (!options.packed_projections) {
    if (count == 3 && stacks_separate_projections(*this)) {
      // one (rows, 3E) GEMM on [W_q; W_k; W_v] stacked per call (a 3E x E copy, ~1 % of the product's
      // time at BERT's shapes); the stack's backward hands each Linear its own rows of the gradient
      const Tensor w = cat({query->weight, key->weight, value->weight}, 0);
      const Tensor b = query->bias.defined() ? cat({query->bias, key->bias, value->bias}, 0) : Tensor();
      return linear(x, w, b);
    }
    if (count != 1) bad("MultiheadAttention", "separate projections are applied one at a time");
    return (first == 0 ? query : first == 1 ? key : value)->forward(x);
  }
  const int64_t E = options.embed_dim;
  if (in_proj_int8) {
    if (is_training()) bad("MultiheadAttention", "int8 weights are for inference (call eval())");
    const Tensor b = in_proj_bias.defined() && count < 3 ? in_proj_bias.narrow(0, first * E, count * E) : in_proj_bias;
    return (count == 3 ? in_proj_int8 : in_proj_int8->rows(first * E, count * E))->linear(x, b);
  }
  if (count == 3) return linear(x, in_proj_weight, in_proj_bias);
  // Under autocast the rows come from the whole weight's cached copy: a view of the float32 weight is a
  // new tensor at every call, so it would be cast (and its panels packed) again at every decoding step.
  const auto compute = [](const Tensor& t) {
    return ops::autocast::active() && t.defined() ? ops::autocast::cast(t, autocast_dtype()) : t;
  };
  const Tensor b = in_proj_bias.defined() ? compute(in_proj_bias).narrow(0, first * E, count * E) : Tensor();
  return linear(x, compute(in_proj_weight).narrow(0, first * E, count * E), b);
}

Tensor MultiheadAttention::split_heads(const Tensor& x) const {
  const int64_t N = x.size(0), T = x.size(1);
  return x.reshape({N, T, options.num_heads, head_dim}).permute({0, 2, 1, 3});
}

Tensor MultiheadAttention::merge_heads_and_project(const Tensor& ctx) const {
  const int64_t N = ctx.size(0), T = ctx.size(2);
  Tensor out = out_proj->forward(ctx.permute({0, 2, 1, 3}).reshape({N, T, options.embed_dim}));  // (N, T, E)
  return options.batch_first ? out : out.transpose(0, 1);
}

std::string MultiheadAttention::extra_repr() const {
  return "embed_dim=" + std::to_string(options.embed_dim) + ", num_heads=" + std::to_string(options.num_heads) +
         ", dropout=" + std::to_string(options.dropout) + (options.batch_first ? ", batch_first=true" : "") +
         (options.packed_projections ? "" : ", packed_projections=false");
}

Tensor MultiheadAttention::forward(const Tensor& x) { return forward(x, x, x, {.need_weights = false}).output; }

AttentionOutput MultiheadAttention::forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                            const AttentionForwardOptions& o) {
  const std::string where = "MultiheadAttention";
  const int64_t E = options.embed_dim, H = options.num_heads, D = head_dim;
  if (q_in.dim() != 3 || k_in.dim() != 3 || v_in.dim() != 3)
    bad(where, "expects 3-d query/key/value, got " + shape_str(q_in.shape()) + ", " + shape_str(k_in.shape()) + ", " +
                   shape_str(v_in.shape()));
  bool self_attention = q_in.is_same(k_in) && k_in.is_same(v_in);
  // sequence-first views for the checks (the members query/key/value are the separate projections)
  const Tensor q_seq = options.batch_first ? q_in.transpose(0, 1) : q_in;  // (L, N, E)
  const Tensor k_seq = options.batch_first ? k_in.transpose(0, 1) : k_in;  // (S, N, E)
  const Tensor v_seq = options.batch_first ? v_in.transpose(0, 1) : v_in;  // (S, N, E)
  const int64_t L = q_seq.size(0), N = q_seq.size(1), S = k_seq.size(0);
  if (q_seq.size(2) != E || k_seq.size(2) != E || v_seq.size(2) != E)
    bad(where, "embedding dims of query " + shape_str(q_in.shape()) + ", key " + shape_str(k_in.shape()) +
                   ", value " + shape_str(v_in.shape()) + " must equal embed_dim " + std::to_string(E));
  if (k_seq.size(1) != N || v_seq.size(1) != N || v_seq.size(0) != S)
    bad(where, "key/value shapes " + shape_str(k_in.shape()) + ", " + shape_str(v_in.shape()) +
                   " do not match the query " + shape_str(q_in.shape()));

  // Projections in the inputs' own layout ((N, L, E) when batch_first: no transposed copies). Packed:
  // one [q | k | v] GEMM for self-attention, q and one [k | v] GEMM when key is value (encoder-decoder
  // attention), else three; separate: three. q, k, v are column blocks [qc|kc|vc, + E) of their sources.
  Tensor q_src, k_src, v_src;  // (N, L|S, C) when batch_first, else (L|S, N, C)
  int64_t qc = 0, kc = 0, vc = 0;
  if ((options.packed_projections || stacks_separate_projections(*this)) && self_attention) {
    q_src = k_src = v_src = project(q_in, 0, 3);
    kc = E, vc = 2 * E;
  } else if (options.packed_projections && k_in.is_same(v_in)) {
    q_src = project(q_in, 0, 1);
    k_src = v_src = project(k_in, 1, 2);
    vc = E;
  } else {
    q_src = project(q_in, 0, 1), k_src = project(k_in, 1, 1), v_src = project(v_in, 2, 1);
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

// ---- MultiheadAttention: incremental decoding
namespace {
void check_step_input(const MultiheadAttention& a, const Tensor& x, const char* what) {
  if (x.dim() != 3 || x.size(2) != a.options.embed_dim)
    bad(std::string("MultiheadAttention::") + what,
        "expects " + std::string(a.options.batch_first ? "(N, T, " : "(T, N, ") +
            std::to_string(a.options.embed_dim) + ") input, got " + shape_str(x.shape()));
}
}  // namespace

Tensor MultiheadAttention::forward_step(const Tensor& x_in, KVCache& cache) {
  check_step_input(*this, x_in, "forward_step");
  const Tensor x = options.batch_first ? x_in : x_in.transpose(0, 1);  // (N, T, E)
  const int64_t N = x.size(0), T = x.size(1);
  if (cache.k.defined() && cache.k.size(0) != N)
    bad("MultiheadAttention::forward_step", "input " + shape_str(x_in.shape()) + " has " + std::to_string(N) +
                                                " rows, the cache " + shape_str(cache.k.shape()));
  Tensor q, k, v;  // (N, H, T, D) views of the projections
  if (options.packed_projections) {
    std::vector<Tensor> qkv = chunk(project(x, 0, 3), 3, -1);  // one GEMM, (N, T, E) each
    q = split_heads(qkv[0]), k = split_heads(qkv[1]), v = split_heads(qkv[2]);
  } else {
    q = split_heads(project(x, 0, 1)), k = split_heads(project(x, 1, 1)), v = split_heads(project(x, 2, 1));
  }
  cache.append(k, v);
  SdpaOptions so;
  if (T > 1) {  // new position i (cache slot length - T + i) sees slots j <= length - T + i
    const TensorOptions io{.dtype = kInt64, .device = x.device()};
    Tensor slot = arange(double(cache.length - T), double(cache.length), 1.0, io).view({T, 1});
    Tensor j = arange(cache.length, io).view({1, cache.length});
    so.attn_mask = le(j, slot);  // (T, length), true = take part
  }
  return merge_heads_and_project(scaled_dot_product_attention(q, cache.keys(), cache.values(), so));
}

KVCache MultiheadAttention::cache_memory(const Tensor& memory_in) {
  check_step_input(*this, memory_in, "cache_memory");
  const Tensor memory = options.batch_first ? memory_in : memory_in.transpose(0, 1);  // (N, S, E)
  KVCache c;
  c.k = split_heads(project(memory, 1, 1)).contiguous();  // (N, H, S, D)
  c.v = split_heads(project(memory, 2, 1)).contiguous();
  c.length = memory.size(1);
  return c;
}

Tensor MultiheadAttention::forward_cached(const Tensor& x_in, const KVCache& cache, const AttentionStepOptions& o) {
  check_step_input(*this, x_in, "forward_cached");
  const Tensor x = options.batch_first ? x_in : x_in.transpose(0, 1);  // (N, T, E)
  if (!cache.k.defined() || cache.k.size(0) != x.size(0))
    bad("MultiheadAttention::forward_cached", "input " + shape_str(x_in.shape()) + " against the cache " +
                                                  (cache.k.defined() ? shape_str(cache.k.shape()) : "(empty)"));
  const Tensor& kpm = o.key_padding_mask;
  if (kpm.defined() && (kpm.dim() != 2 || kpm.size(0) != x.size(0) || kpm.size(1) != cache.length))
    bad("MultiheadAttention::forward_cached",
        "key_padding_mask " + shape_str(kpm.shape()) + " must be (N, S) = (" + std::to_string(x.size(0)) + ", " +
            std::to_string(cache.length) + ")");
  Tensor q = split_heads(project(x, 0, 1));  // (N, H, T, D)
  return merge_heads_and_project(
      scaled_dot_product_attention(q, cache.keys(), cache.values(), {.key_padding_mask = kpm}));
}

// ---- encoder layer
TransformerEncoderLayer::TransformerEncoderLayer(const TransformerLayerOptions& o) : options(o) {
  self_attn = register_module("self_attn", MultiheadAttention({.embed_dim = o.d_model, .num_heads = o.nhead,
                                                                .dropout = o.attention_dropout < 0 ? o.dropout
                                                                                                   : o.attention_dropout,
                                                                .bias = o.bias, .batch_first = o.batch_first,
                                                                .packed_projections = o.packed_projections}));
  linear1 = register_module("linear1", Linear(o.d_model, o.dim_feedforward, o.bias));
  dropout = register_module("dropout", Dropout(o.activation_dropout < 0 ? o.dropout : o.activation_dropout));
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

template <typename SelfAttention>
Tensor TransformerEncoderLayer::blocks(const Tensor& src, SelfAttention&& sa) {
  Tensor x = src;
  if (options.norm_first) {
    x = add(x, sa(norm1->forward(x)));
    x = add(x, feed_forward_block(norm2->forward(x)));
  } else {
    x = norm1->forward(add(x, sa(x)));
    x = norm2->forward(add(x, feed_forward_block(x)));
  }
  return x;
}

Tensor TransformerEncoderLayer::forward(const Tensor& src, const EncoderMasks& m, const AttentionCapture& capture) {
  return blocks(src, [&](const Tensor& h) { return self_attention_block(h, m, capture.self_attention); });
}

Tensor TransformerEncoderLayer::forward_step(const Tensor& x, KVCache& cache) {
  return blocks(x, [&](const Tensor& h) { return dropout1->forward(self_attn->forward_step(h, cache)); });
}

// ---- decoder layer
TransformerDecoderLayer::TransformerDecoderLayer(const TransformerLayerOptions& o) : options(o) {
  MultiheadAttentionOptions mo{.embed_dim = o.d_model, .num_heads = o.nhead,
                               .dropout = o.attention_dropout < 0 ? o.dropout : o.attention_dropout, .bias = o.bias,
                               .batch_first = o.batch_first, .packed_projections = o.packed_projections};
  self_attn = register_module("self_attn", MultiheadAttention(mo));
  multihead_attn = register_module("multihead_attn", MultiheadAttention(mo));
  linear1 = register_module("linear1", Linear(o.d_model, o.dim_feedforward, o.bias));
  dropout = register_module("dropout", Dropout(o.activation_dropout < 0 ? o.dropout : o.activation_dropout));
  linear2 = register_module("linear2", Linear(o.dim_feedforward, o.d_model, o.bias));
  LayerNormOptions lo{.normalized_shape = {o.d_model}, .eps = o.layer_norm_eps, .bias = o.bias};
  norm1 = register_module("norm1", LayerNorm(lo));
  norm2 = register_module("norm2", LayerNorm(lo));
  norm3 = register_module("norm3", LayerNorm(lo));
  dropout1 = register_module("dropout1", Dropout(o.dropout));
  dropout2 = register_module("dropout2", Dropout(o.dropout));
  dropout3 = register_module("dropout3", Dropout(o.dropout));
}

template <typename SelfAttention, typename CrossAttention>
Tensor TransformerDecoderLayer::blocks(const Tensor& tgt, SelfAttention&& sa, CrossAttention&& ca) {
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
  return blocks(tgt, sa, ca);
}

void DecoderLayerCache::select_rows(const Tensor& rows, bool cross) {
  self_attn.select_rows(rows);
  if (cross) cross_attn.select_rows(rows);
}

DecoderLayerCache TransformerDecoderLayer::start_cache(const Tensor& memory) {
  return {.self_attn = {}, .cross_attn = multihead_attn->cache_memory(memory)};
}

Tensor TransformerDecoderLayer::forward_step(const Tensor& x, DecoderLayerCache& cache, const DecoderStepMasks& m) {
  // The step's two attentions read both caches right after products that stream this layer's weights;
  // the backend may fetch them while those products run (docs/benchmarks.md: ~2 % of greedy decoding).
  auto keys = [](const KVCache& c) { return c.k.defined() ? c.keys() : Tensor(); };
  auto values = [](const KVCache& c) { return c.v.defined() ? c.values() : Tensor(); };
  ops::prefetch_hint({keys(cache.self_attn), values(cache.self_attn), keys(cache.cross_attn), values(cache.cross_attn)});
  auto sa = [&](const Tensor& h) { return dropout1->forward(self_attn->forward_step(h, cache.self_attn)); };
  auto ca = [&](const Tensor& h) {
    return dropout2->forward(
        multihead_attn->forward_cached(h, cache.cross_attn, {.key_padding_mask = m.memory_key_padding_mask}));
  };
  return blocks(x, sa, ca);
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
  encoder = register_module("encoder", TransformerEncoder(lo, o.num_encoder_layers, o.final_norm));
  decoder = register_module("decoder", TransformerDecoder(lo, o.num_decoder_layers, o.final_norm));
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
  {
    // By ops, in float64 then rounded to float32, in the order of the scalar formula (so the values are
    // bit-identical to it): div_i = exp(i * (-ln(10000) / d)) for even i, angle = pos * div_i, then
    // sin and cos interleaved as columns 2i and 2i + 1.
    NoGradGuard ng;
    const int64_t half = (o.d_model + 1) / 2;
    Tensor i = arange(0.0, double(2 * half), 2.0, {.dtype = kFloat64});                       // (half)
    Tensor div = exp(mul(i, -std::log(10000.0) / double(o.d_model)));                        // (half)
    Tensor angle = mul(arange(0.0, double(o.max_len), 1.0, {.dtype = kFloat64}).view({o.max_len, 1}),
                       div.view({1, half}));                                                 // (max_len, half)
    Tensor sin_cos = stack({sin(angle).to(kFloat32), cos(angle).to(kFloat32)}, 2);           // (max_len, half, 2)
    table.copy_(sin_cos.reshape({o.max_len, 2 * half}).narrow(1, 0, o.d_model));
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
