// src/ops/attention.cc — scaled_dot_product_attention: the fused backend kernel (backend.h, SdpaArgs)
// for the forward and, attached right here, its backward (which recomputes the probabilities from the
// saved logsumexp). Masks are handed to the kernel as strided refs, never expanded.
//
//   Tensor o = attn::scaled_dot_product_attention(q, k, v, {.attn_mask = m});   // m: (L, S) bool
//   o.sum().backward();                                                        // q, k, v get .grad
#include <cmath>
#include <string>

#include "attn/random.h"
#include "ops/op_utils.h"

namespace attn {

using autograd::record;

namespace {
constexpr const char* kName = "scaled_dot_product_attention";

[[noreturn]] void bad(const std::string& what) { ops::fail(std::string(kName) + ": " + what); }

// m broadcastable to `to` (right-aligned, each dim 1 or equal)?
bool broadcastable(const Shape& m, const Shape& to) {
  if (m.size() > to.size()) return false;
  for (size_t i = 0; i < m.size(); ++i) {
    const int64_t a = m[m.size() - 1 - i], b = to[to.size() - 1 - i];
    if (a != 1 && a != b) return false;
  }
  return true;
}
}  // namespace

Tensor scaled_dot_product_attention(const Tensor& query, const Tensor& key, const Tensor& value, const SdpaOptions& o) {
  ops::check_defined(query, kName, "query");
  ops::check_defined(key, kName, "key");
  ops::check_defined(value, kName, "value");
  if (query.dim() != 4 || key.dim() != 4 || value.dim() != 4)
    bad("expects 4-d query (N, H, L, D), key (N, H, S, D) and value (N, H, S, Dv), got " + shape_str(query.shape()) +
        ", " + shape_str(key.shape()) + ", " + shape_str(value.shape()));
  const int64_t N = query.size(0), H = query.size(1), L = query.size(2), D = query.size(3), S = key.size(2),
                Dv = value.size(3);
  if (key.size(0) != N || key.size(1) != H || key.size(3) != D || value.size(0) != N || value.size(1) != H ||
      value.size(2) != S)
    bad("shapes do not match: query " + shape_str(query.shape()) + " (N, H, L, D), key " + shape_str(key.shape()) +
        " (N, H, S, D), value " + shape_str(value.shape()) + " (N, H, S, Dv)");
  if (key.dtype() != query.dtype() || value.dtype() != query.dtype())
    bad(std::string("query, key and value must have one dtype, got ") + dtype_name(query.dtype()) + ", " +
        dtype_name(key.dtype()) + ", " + dtype_name(value.dtype()));
  ops::check_floating(query, kName);
  ops::check_same_device(query, key, kName);
  ops::check_same_device(query, value, kName);
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
  if (query.dtype() == kBFloat16) {
    SdpaOptions o32 = o;
    return scaled_dot_product_attention(query.to(kFloat32), key.to(kFloat32), value.to(kFloat32), o32).to(kBFloat16);
  }
  const DType dt = query.dtype();
  // float masks in the compute dtype (a copy of the mask as given, only when its dtype differs)
  auto as_mask = [dt](const Tensor& m) {
    if (!m.defined()) return m;
    return m.dtype() == kBool || m.dtype() == dt ? m.detach() : m.detach().to(dt);
  };
  const Tensor mask = as_mask(o.attn_mask), kpm = as_mask(o.key_padding_mask);

  backend::SdpaArgs a{.n = N, .h = H, .l = L, .s = S, .d = D, .dv = Dv,
                      .scale = o.scale.value_or(D > 0 ? 1.0 / std::sqrt(double(D)) : 1.0),
                      .is_causal = o.is_causal, .dropout_p = o.dropout_p, .seed = 0, .offset = 0,
                      .attn_mask = {}, .key_padding_mask = {}};
  if (mask.defined()) a.attn_mask = ops::broadcast_ref(mask, full);
  if (kpm.defined()) a.key_padding_mask = ops::ref(kpm);
  if (a.dropout_p > 0) {  // the keep-mask comes from the global generator, as dropout()
    Generator& g = default_generator();
    a.seed = g.seed();
    a.offset = g.reserve(backend::sdpa_dropout_blocks(a));
  }
  const Tensor q = query.detach(), k = key.detach(), v = value.detach();  // read through their strides
  // (N, H, L, Dv) over (N, L, H, Dv) memory: merging the heads afterwards ((N, L, H * Dv), what
  // MultiheadAttention's out_proj reads) is then a free view instead of a copy.
  Tensor y = ops::empty_out({N, L, H, Dv}, dt, query.device()).permute({0, 2, 1, 3});  // (N, H, L, Dv)
  Tensor lse = ops::empty_out({N, H, L}, dt, query.device());             // (N, H, L)
  ops::be(q).sdpa_forward(a, ops::ref(q), ops::ref(k), ops::ref(v), ops::ref(y), ops::ref(lse));
  if (!autograd::needs_grad({&query, &key, &value})) return y;
  Tensor out = y.permute({0, 1, 2, 3});  // a distinct handle for the graph; y stays a plain tensor (no cycle)
  std::vector<Tensor> saved{q, k, v, y};
  if (mask.defined()) saved.push_back(mask);
  if (kpm.defined()) saved.push_back(kpm);
  record(kName, out, {query, key, value},
         [a, q, k, v, y, lse, mask, kpm](const Tensor& g) -> std::vector<Tensor> {
           const Tensor go = g.dtype() == y.dtype() ? g : g.to(y.dtype());
           Tensor gq = ops::empty_like_out(q), gk = ops::empty_like_out(k), gv = ops::empty_like_out(v);
           ops::be(q).sdpa_backward(a, ops::ref(q), ops::ref(k), ops::ref(v), ops::ref(y), ops::ref(lse),
                                    ops::ref(go), ops::ref(gq), ops::ref(gk), ops::ref(gv));
           return {gq, gk, gv};
         },
         saved);
  return out;
}

}  // namespace attn
