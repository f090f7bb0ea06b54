// src/ops/attention.cc — scaled_dot_product_attention: the fused backend kernel (backend.h, SdpaArgs)
// for the forward and, attached right here, its backward (which recomputes the probabilities from the
// saved logsumexp). Masks are handed to the kernel as strided refs, never expanded.
//
//   Tensor o = attn::scaled_dot_product_attention(q, k, v, {.attn_mask = m});   // m: (L, S) bool
//   o.sum().backward();                                                        // q, k, v get .grad
#include <cmath>
#include <string>

#include "attn/random.h"
#include "ops/autocast.h"
#include "ops/op_utils.h"

namespace attn {

using autograd::record;

namespace {
constexpr const char* kName = "scaled_dot_product_attention";

// m broadcastable to `to` (right-aligned, each dim 1 or equal)?
bool broadcastable(const Shape& m, const Shape& to) {
  if (m.size() > to.size()) return false;
  for (size_t i = 0; i < m.size(); ++i) {
    const int64_t a = m[m.size() - 1 - i], b = to[to.size() - 1 - i];
    if (a != 1 && a != b) return false;
  }
  return true;
}

// Checks q (N, H, L, D), k (N, H, S, D), v (N, H, S, Dv), the options and the masks; errors name `op`.
void check_inputs(const char* op, const Tensor& query, const Tensor& key, const Tensor& value, const SdpaOptions& o) {
  auto bad = [op](const std::string& what) { ops::fail(std::string(op) + ": " + what); };
  ops::check_defined(query, op, "query");
  ops::check_defined(key, op, "key");
  ops::check_defined(value, op, "value");
  if (query.dim() != 4 || key.dim() != 4 || value.dim() != 4)
    bad("expects 4-d query (N, H, L, D), key (N, H, S, D) and value (N, H, S, Dv), got " + shape_str(query.shape()) +
        ", " + shape_str(key.shape()) + ", " + shape_str(value.shape()));
  const int64_t N = query.size(0), H = query.size(1), L = query.size(2), D = query.size(3), S = key.size(2);
  if (key.size(0) != N || key.size(1) != H || key.size(3) != D || value.size(0) != N || value.size(1) != H ||
      value.size(2) != S)
    bad("shapes do not match: query " + shape_str(query.shape()) + " (N, H, L, D), key " + shape_str(key.shape()) +
        " (N, H, S, D), value " + shape_str(value.shape()) + " (N, H, S, Dv)");
  if (key.dtype() != query.dtype() || value.dtype() != query.dtype())
    bad(std::string("query, key and value must have one dtype, got ") + dtype_name(query.dtype()) + ", " +
        dtype_name(key.dtype()) + ", " + dtype_name(value.dtype()));
  ops::check_floating(query, op);
  ops::check_same_device(query, key, op);
  ops::check_same_device(query, value, op);
  if (!(o.dropout_p >= 0.0 && o.dropout_p < 1.0)) bad("dropout_p must be in [0, 1), got " + std::to_string(o.dropout_p));
  if (o.is_causal && o.attn_mask.defined()) bad("pass either attn_mask or is_causal, not both");
  const Shape full{N, H, L, S};
  if (o.attn_mask.defined()) {
    const Tensor& m = o.attn_mask;
    if (!(m.dtype() == kBool || is_floating(m.dtype())) || !broadcastable(m.shape(), full))
      bad("attn_mask " + shape_str(m.shape()) + " (" + dtype_name(m.dtype()) +
          ") must be bool or float and broadcastable to (N, H, L, S) = " + shape_str(full));
  }
  if (o.key_padding_mask.defined()) {
    const Tensor& m = o.key_padding_mask;
    if (!(m.dtype() == kBool || is_floating(m.dtype())) || m.shape() != Shape{N, S})
      bad("key_padding_mask " + shape_str(m.shape()) + " (" + dtype_name(m.dtype()) +
          ") must be bool or float of shape (N, S) = " + shape_str(Shape{N, S}));
  }
}

// One call's kernel arguments (dropout draws reserved from the global generator, as dropout() does)
// and its masks in the compute dtype (a copy of a mask only when its dtype differs).
struct Prepared {
  backend::SdpaArgs a;
  Tensor mask, kpm;
};
Prepared prepare(const Tensor& q, const Tensor& k, const Tensor& v, const SdpaOptions& o) {
  const DType dt = backend::sdpa_compute_dtype(q.dtype());  // float masks in it
  auto as_mask = [dt](const Tensor& m) {
    if (!m.defined()) return m;
    return m.dtype() == kBool || m.dtype() == dt ? m.detach() : m.detach().to(dt);
  };
  Prepared p{.a = {}, .mask = as_mask(o.attn_mask), .kpm = as_mask(o.key_padding_mask)};
  const int64_t N = q.size(0), H = q.size(1), L = q.size(2), D = q.size(3), S = k.size(2), Dv = v.size(3);
  p.a = backend::SdpaArgs{.n = N, .h = H, .l = L, .s = S, .d = D, .dv = Dv,
                          .scale = o.scale.value_or(D > 0 ? 1.0 / std::sqrt(double(D)) : 1.0),
                          .is_causal = o.is_causal, .dropout_p = o.dropout_p, .seed = 0, .offset = 0,
                          .attn_mask = {}, .key_padding_mask = {}};
  if (p.mask.defined()) p.a.attn_mask = ops::broadcast_ref(p.mask, Shape{N, H, L, S});
  if (p.kpm.defined()) p.a.key_padding_mask = ops::ref(p.kpm);
  if (p.a.dropout_p > 0) {
    Generator& g = default_generator();
    p.a.seed = g.seed();
    p.a.offset = g.reserve(backend::sdpa_dropout_blocks(p.a));
  }
  return p;
}

// The forward on detached q, k, v (read through their strides). The output is (N, H, L, Dv) over
// (N, L, H, Dv) memory: merging the heads afterwards ((N, L, H * Dv), what MultiheadAttention's
// out_proj reads) is then a free view instead of a copy.
Tensor run_forward(const Prepared& p, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& lse) {
  const backend::SdpaArgs& a = p.a;
  Tensor y = ops::empty_out({a.n, a.l, a.h, a.dv}, q.dtype(), q.device()).permute({0, 2, 1, 3});  // (N, H, L, Dv)
  lse = ops::empty_out({a.n, a.h, a.l}, backend::sdpa_compute_dtype(q.dtype()), q.device());     // (N, H, L)
  ops::be(q).sdpa_forward(a, ops::ref(q), ops::ref(k), ops::ref(v), ops::ref(y), ops::ref(lse));
  return y;
}

// The backward into gq, gk, gv (shapes of q, k, v, any non-overlapping strides; overwritten).
void run_backward(const Prepared& p, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& y,
                  const Tensor& lse, const Tensor& g, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  const Tensor go = g.dtype() == y.dtype() ? g : g.to(y.dtype());
  ops::be(q).sdpa_backward(p.a, ops::ref(q), ops::ref(k), ops::ref(v), ops::ref(y), ops::ref(lse), ops::ref(go),
                           ops::ref(gq), ops::ref(gk), ops::ref(gv));
}

std::vector<Tensor> saved_tensors(const Prepared& p, std::vector<Tensor> t) {
  if (p.mask.defined()) t.push_back(p.mask);
  if (p.kpm.defined()) t.push_back(p.kpm);
  return t;
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& query, const Tensor& key, const Tensor& value, const SdpaOptions& o) {
  if (ops::autocast::active())
    return ops::autocast::redispatch("scaled_dot_product_attention", scaled_dot_product_attention, query, key, value, o);
  check_inputs(kName, query, key, value, o);
  // bf16: the kernels widen tiles as they read them (forward and backward); the graph saves the bf16 operands
  const Prepared p = prepare(query, key, value, o);
  const Tensor q = query.detach(), k = key.detach(), v = value.detach();
  Tensor lse;
  Tensor y = run_forward(p, q, k, v, lse);
  if (!autograd::needs_grad({&query, &key, &value})) return y;
  Tensor out = y.permute({0, 1, 2, 3});  // a distinct handle for the graph; y stays a plain tensor (no cycle)
  record(kName, out, {query, key, value},
         [p, q, k, v, y, lse](const Tensor& g) -> std::vector<Tensor> {
           // gradients laid out like their inputs: for the usual permuted head views, the permute's
           // backward then hands contiguous memory to the projection (no copy)
           Tensor gq = ops::empty_dense_like(q), gk = ops::empty_dense_like(k), gv = ops::empty_dense_like(v);
           run_backward(p, q, k, v, y, lse, g, gq, gk, gv);
           return {gq, gk, gv};
         },
         saved_tensors(p, {q, k, v, y}));
  return out;
}

namespace {
constexpr const char* kPacked = "packed_scaled_dot_product_attention";

// (N, T, C) source -> the (N, H, T, E / H) heads of columns [column, column + E)
Tensor heads_of(const Tensor& source, int64_t column, int64_t H, int64_t E) {
  return source.narrow(2, column, E).view({source.size(0), source.size(1), H, E / H}).permute({0, 2, 1, 3});
}
}  // namespace

Tensor packed_scaled_dot_product_attention(const HeadBlock& query, const HeadBlock& key, const HeadBlock& value,
                                           int64_t num_heads, int64_t embed_dim, const SdpaOptions& o) {
  if (ops::autocast::active())
    return ops::autocast::redispatch("packed_scaled_dot_product_attention", packed_scaled_dot_product_attention, query,
                                     key, value, num_heads, embed_dim, o);
  const int64_t H = num_heads, E = embed_dim;
  auto fail = [](const std::string& what) { ops::fail(std::string(kPacked) + ": " + what); };
  if (H <= 0 || E <= 0 || E % H != 0)
    fail("embed_dim " + std::to_string(E) + " must be a positive multiple of num_heads " + std::to_string(H));
  const HeadBlock* blocks[3] = {&query, &key, &value};
  const char* names[3] = {"query", "key", "value"};
  for (int i = 0; i < 3; ++i) {
    const Tensor& s = blocks[i]->source;
    ops::check_defined(s, kPacked, names[i]);
    if (s.dim() != 3 || blocks[i]->column < 0 || blocks[i]->column + E > s.size(2))
      fail(std::string(names[i]) + " columns [" + std::to_string(blocks[i]->column) + ", " +
           std::to_string(blocks[i]->column + E) + ") are not within the last dim of a 3-d (N, T, C) source, got " +
           shape_str(s.shape()));
  }
  if (key.source.size(1) != value.source.size(1))
    fail("key " + shape_str(key.source.shape()) + " and value " + shape_str(value.source.shape()) +
         " sources must have the same number of rows");
  const bool bf16 =
      query.source.dtype() == kBFloat16 || key.source.dtype() == kBFloat16 || value.source.dtype() == kBFloat16;
  if (bf16 && (key.source.dtype() != query.source.dtype() || value.source.dtype() != query.source.dtype())) {
    auto f32 = [](const HeadBlock& b) { return HeadBlock{b.source.to(kFloat32), b.column}; };
    return packed_scaled_dot_product_attention(f32(query), f32(key), f32(value), H, E, o).to(kBFloat16);
  }
  // The graph's inputs: one per source tensor, unless blocks of it overlap (their gradients must add up).
  std::vector<Tensor> inputs;
  std::vector<std::vector<int64_t>> columns;  // blocks per input
  int which[3];
  for (int i = 0; i < 3; ++i) {
    const HeadBlock& b = *blocks[i];
    which[i] = -1;
    for (size_t j = 0; j < inputs.size() && which[i] < 0; ++j) {
      if (!inputs[j].is_same(b.source)) continue;
      bool overlap = false;
      for (int64_t c : columns[j]) overlap = overlap || (b.column < c + E && c < b.column + E);
      if (!overlap) which[i] = int(j);
    }
    if (which[i] < 0) {
      which[i] = int(inputs.size());
      inputs.push_back(b.source);
      columns.emplace_back();
    }
    columns[size_t(which[i])].push_back(b.column);
  }
  const Tensor q = heads_of(query.source.detach(), query.column, H, E);  // (N, H, L, D)
  const Tensor k = heads_of(key.source.detach(), key.column, H, E);      // (N, H, S, D)
  const Tensor v = heads_of(value.source.detach(), value.column, H, E);  // (N, H, S, D)
  check_inputs(kPacked, q, k, v, o);
  const Prepared p = prepare(q, k, v, o);
  Tensor lse;
  Tensor y = run_forward(p, q, k, v, lse);
  if (!autograd::needs_grad(inputs)) return y;
  Tensor out = y.permute({0, 1, 2, 3});
  const int64_t qc = query.column, kc = key.column, vc = value.column;
  record(kPacked, out, inputs,
         [p, q, k, v, y, lse, inputs, columns, which, qc, kc, vc, H, E](const Tensor& g) -> std::vector<Tensor> {
           std::vector<Tensor> grads;
           for (size_t j = 0; j < inputs.size(); ++j) {
             Tensor gs = ops::empty_dense_like(inputs[j]);
             if (int64_t(columns[j].size()) * E != inputs[j].size(2)) gs.detach().zero_();  // uncovered columns
             grads.push_back(gs);
           }
           run_backward(p, q, k, v, y, lse, g, heads_of(grads[size_t(which[0])], qc, H, E),
                        heads_of(grads[size_t(which[1])], kc, H, E), heads_of(grads[size_t(which[2])], vc, H, E));
           return grads;
         },
         saved_tensors(p, {q, k, v, y}));
  return out;
}

}  // namespace attn
