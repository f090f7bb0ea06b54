// src/ops/embedding.cc — embedding lookup (backend index_select) with an index_add backward.
//
//   Tensor w = attn::randn({50257, 768}, {.requires_grad = true});   // (V, D)
//   Tensor h = attn::embedding(w, tokens);                            // tokens (B, T) int64 -> (B, T, 768)
//   Tensor p = attn::embedding(w, tokens, /*padding_idx=*/0);         // row 0 gets no gradient
#include <string>

#include "ops/index_check.h"
#include "ops/op_utils.h"

namespace attn {

using autograd::record;

// padding_idx < 0 means none (nn::Embedding turns PyTorch's negative padding_idx into V + padding_idx).
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx) {
  ops::check_defined(weight, "embedding", "weight");
  if (weight.dim() != 2)
    ops::fail("embedding: weight must be (num_embeddings, embedding_dim), got " + shape_str(weight.shape()));
  const int64_t v = weight.size(0), d = weight.size(1);
  if (padding_idx >= v)
    ops::fail("embedding: padding_idx " + std::to_string(padding_idx) + " is out of range for weight " +
              shape_str(weight.shape()));
  ops::check_index_range(indices, v, "embedding", "indices");
  const int64_t m = indices.numel();
  Tensor idx = indices.detach().reshape({m}).contiguous();  // (M)
  Tensor w = weight.detach().contiguous();
  Tensor out = ops::empty_out({m, d}, weight.dtype(), weight.device());
  if (m > 0 && d > 0) ops::be(w).index_select(ops::ref(w), 0, ops::ref(idx), ops::ref(out));
  Shape os = indices.shape();
  os.push_back(d);
  out = out.view(os);  // indices.shape + (D)
  const DType dt = weight.dtype();
  record("embedding", out, {weight}, [idx, v, d, m, padding_idx, dt](const Tensor& g) -> std::vector<Tensor> {
    const DType cd = dt == kBFloat16 ? kFloat32 : dt;
    Tensor gw = zeros({v, d}, {.dtype = cd, .device = g.device()});
    Tensor gs = g.reshape({m, d}).to(cd).contiguous();
    if (m > 0 && d > 0) ops::be(gw).index_add(ops::ref(gw), 0, ops::ref(idx), ops::ref(gs));
    if (padding_idx >= 0) gw.select(0, padding_idx).zero_();
    return {gw.to(dt)};
  });
  return out;
}

}  // namespace attn
