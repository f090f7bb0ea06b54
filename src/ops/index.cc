// src/ops/index.cc — gather, index_select, masked_fill and one_hot.
//
//   Tensor picked = attn::gather(logp, 1, labels.unsqueeze(1));       // (N, C), (N, 1) -> (N, 1)
//   Tensor rows = attn::index_select(table, 0, ids);                  // (V, D), (K) -> (K, D)
//   Tensor s = attn::masked_fill(scores, causal_mask, -INFINITY);     // mask (T, T) broadcasts to (B, H, T, T)
//   Tensor oh = attn::one_hot(labels, 10);                             // (N) -> (N, 10) int64
#include <string>

#include "ops/index_check.h"
#include "ops/op_utils.h"

namespace attn {

using autograd::record;
using autograd::sum_to;

namespace {
// scatter_add / index_add accumulate in float32 for bfloat16
DType accum_dtype(DType t) { return t == kBFloat16 ? kFloat32 : t; }
}  // namespace

// out[i][j][k] = x[i][index[i][j][k]][k] (dim = 1); index has x's rank, index.size(d) <= x.size(d) for d != dim
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  ops::check_defined(x, "gather", "input");
  ops::check_index_dtype(index, "gather", "index");
  if (x.dim() == 0 || index.dim() == 0) {
    if (x.dim() > 1 || index.dim() > 1)
      ops::fail("gather: index " + shape_str(index.shape()) + " and input " + shape_str(x.shape()) +
                " must have the same number of dims");
    wrap_dim(dim, 1);
    return gather(x.reshape({x.numel()}), 0, index.reshape({index.numel()})).reshape(index.shape());
  }
  dim = wrap_dim(dim, x.dim());
  if (index.dim() != x.dim())
    ops::fail("gather: index " + shape_str(index.shape()) + " and input " + shape_str(x.shape()) +
              " must have the same number of dims");
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim && index.size(d) > x.size(d))
      ops::fail("gather: index " + shape_str(index.shape()) + " is larger than input " + shape_str(x.shape()) +
                " in dim " + std::to_string(d));
  ops::check_index_range(index, x.size(dim), "gather", "index");
  Tensor idx = index.detach().contiguous();
  Tensor out = ops::empty_out(index.shape(), x.dtype(), x.device());
  if (out.numel() > 0) ops::be(x).gather(ops::ref(x), dim, ops::ref(idx), ops::ref(out));
  Shape xs = x.shape();
  DType dt = x.dtype();
  record("gather", out, {x}, [idx, dim, xs, dt](const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = zeros(xs, {.dtype = accum_dtype(dt), .device = g.device()});
    Tensor gs = g.to(accum_dtype(dt)).contiguous();
    if (gs.numel() > 0) ops::be(gx).scatter_add(ops::ref(gx), dim, ops::ref(idx), ops::ref(gs));
    return {gx.to(dt)};
  });
  return out;
}

// out = x with dim `dim` replaced by x[index]; index 1-d (or 0-d, one element)
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  ops::check_defined(x, "index_select", "input");
  ops::check_index_dtype(index, "index_select", "index");
  if (index.dim() > 1)
    ops::fail("index_select: index must be 0-d or 1-d, got " + shape_str(index.shape()));
  if (x.dim() == 0) {
    wrap_dim(dim, 1);
    Tensor r = index_select(x.reshape({1}), 0, index);
    return index.dim() == 0 ? r.reshape({}) : r;
  }
  dim = wrap_dim(dim, x.dim());
  ops::check_index_range(index, x.size(dim), "index_select", "index");
  const int64_t k = index.numel();
  Tensor idx = index.detach().reshape({k}).contiguous();
  Shape os = x.shape();
  os[dim] = k;
  Tensor out = ops::empty_out(os, x.dtype(), x.device());
  // a view is gathered from as it is (the backend's strided path), not copied whole first
  if (out.numel() > 0) ops::be(x).index_select(ops::ref(x.detach()), dim, ops::ref(idx), ops::ref(out));
  Shape xs = x.shape();
  DType dt = x.dtype();
  record("index_select", out, {x}, [idx, dim, xs, dt](const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = zeros(xs, {.dtype = accum_dtype(dt), .device = g.device()});
    Tensor gs = g.to(accum_dtype(dt)).contiguous();
    if (gs.numel() > 0) ops::be(gx).index_add(ops::ref(gx), dim, ops::ref(idx), ops::ref(gs));
    return {gx.to(dt)};
  });
  return out;
}

void index_select_out(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  ops::check_defined(x, "index_select_out", "input");
  ops::check_defined(out, "index_select_out", "out");
  ops::check_index_dtype(index, "index_select_out", "index");
  if (index.dim() > 1) ops::fail("index_select_out: index must be 0-d or 1-d, got " + shape_str(index.shape()));
  if (x.dim() == 0) ops::fail("index_select_out: input must have at least 1 dimension");
  dim = wrap_dim(dim, x.dim());
  Shape want = x.shape();
  want[dim] = index.numel();
  if (out.shape() != want || out.dtype() != x.dtype() || out.device() != x.device())
    ops::fail("index_select_out: out " + shape_str(out.shape()) + " " + dtype_name(out.dtype()) + " must be " +
              shape_str(want) + " " + dtype_name(x.dtype()) + " (input " + shape_str(x.shape()) + ", dim " +
              std::to_string(dim) + ")");
  if (grad_enabled() && (x.requires_grad() || out.requires_grad()))
    ops::fail("index_select_out: input or out requires grad; out= forms are not differentiable (use index_select)");
  ops::check_index_range(index, x.size(dim), "index_select_out", "index");
  if (out.numel() == 0) return;
  const Tensor idx = index.detach().reshape({index.numel()}).contiguous();
  ops::be(x).index_select(ops::ref(x), dim, ops::ref(idx), ops::ref(out));
  out.bump_version();
}

// value where mask is true, x elsewhere; x and mask broadcast together (PyTorch's out-of-place form)
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  ops::check_defined(x, "masked_fill", "input");
  ops::check_defined(mask, "masked_fill", "mask");
  if (mask.dtype() != kBool)
    ops::fail(std::string("masked_fill: mask must be bool, got ") + dtype_name(mask.dtype()) + " of shape " +
              shape_str(mask.shape()));
  ops::check_same_device(x, mask, "masked_fill");
  Shape shape = broadcast_shapes(x.shape(), mask.shape());
  Tensor fill = full({}, value, {.dtype = x.dtype(), .device = x.device()});
  Tensor out = ops::empty_out(shape, x.dtype(), x.device());
  ops::be(x).where(ops::broadcast_ref(mask, shape), ops::broadcast_ref(fill, shape),
                   ops::broadcast_ref(x.detach(), shape), ops::ref(out));
  Shape xs = x.shape();
  record("masked_fill", out, {x}, [mask, xs](const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(where(mask, zeros({}, {.dtype = g.dtype(), .device = g.device()}), g), xs)};
  });
  return out;
}

// indices (*) -> (*, num_classes) int64; num_classes = -1 infers max(indices) + 1
Tensor one_hot(const Tensor& indices, int64_t num_classes) {
  ops::check_index_dtype(indices, "one_hot", "indices");
  if (num_classes < -1) ops::fail("one_hot: num_classes must be -1 or non-negative, got " + std::to_string(num_classes));
  NoGradGuard ng;
  if (num_classes == -1) {
    if (indices.numel() == 0) ops::fail("one_hot: cannot infer the number of classes from an empty tensor");
    num_classes = amax(indices).item<int64_t>() + 1;
  }
  ops::check_index_range(indices, num_classes, "one_hot", "indices");
  Tensor classes = arange(num_classes, {.dtype = indices.dtype(), .device = indices.device()});
  return eq(indices.unsqueeze(-1), classes).to(kInt64);
}

}  // namespace attn
