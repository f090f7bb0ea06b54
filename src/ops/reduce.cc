// src/ops/reduce.cc — reductions over any dims, each with its backward.
#include <algorithm>
#include <cmath>

#include "ops/op_utils.h"

namespace attn {

using autograd::record;
using backend::ReduceOp;

namespace {

// Normalised, sorted, unique dims; empty input means all dims.
Shape reduce_dims(const Tensor& x, const Shape& dims) {
  Shape r;
  if (dims.empty()) {
    for (int64_t d = 0; d < x.dim(); ++d) r.push_back(d);
    return r;
  }
  for (int64_t d : dims) r.push_back(wrap_dim(d, x.dim()));
  std::sort(r.begin(), r.end());
  if (std::adjacent_find(r.begin(), r.end()) != r.end())
    throw std::invalid_argument("reduction: repeated dim in " + shape_str(dims));
  return r;
}

Shape keep_shape(const Tensor& x, const Shape& dims) {
  Shape s = x.shape();
  for (int64_t d : dims) s[d] = 1;
  return s;
}

Shape drop_dims(const Shape& kept, const Shape& dims) {
  Shape s;
  for (int64_t d = 0; d < int64_t(kept.size()); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) s.push_back(kept[d]);
  return s;
}

Tensor reduce_kernel(ReduceOp op, const Tensor& x, const Shape& dims, bool keepdim) {
  Shape ks = keep_shape(x, dims);
  DType t = x.dtype();
  Tensor in = x;
  if (t == kBFloat16) in = x.detach().to(kFloat32);
  if (t == kBool) in = x.detach().to(kInt64);
  if ((op == ReduceOp::Mean) && is_integral(t)) in = x.detach().to(kFloat32);
  Tensor out = ops::empty_out(ks, in.dtype(), x.device());
  if (x.dim() == 0) ops::be(x).copy(ops::ref(in), ops::ref(out));
  else ops::be(x).reduce(op, ops::ref(in), ops::ref(out));
  if (!keepdim) out = out.view(drop_dims(ks, dims));
  if (t == kBFloat16) out = out.to(kBFloat16);  // float32 accumulation, one rounding (PyTorch's dtype)
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, Shape dims_in, bool keepdim) {
  Shape dims = reduce_dims(x, dims_in);
  Tensor out = reduce_kernel(ReduceOp::Sum, x, dims, keepdim);
  Shape in_shape = x.shape(), ks = keep_shape(x, dims);
  record("sum", out, {x}, [in_shape, ks](const Tensor& g) -> std::vector<Tensor> {
    return {g.reshape(ks).expand(in_shape).contiguous()};
  });
  return out;
}

Tensor mean(const Tensor& x, Shape dims_in, bool keepdim) {
  Shape dims = reduce_dims(x, dims_in);
  Tensor out = reduce_kernel(ReduceOp::Mean, x, dims, keepdim);
  Shape in_shape = x.shape(), ks = keep_shape(x, dims);
  int64_t n = 1;
  for (int64_t d : dims) n *= x.shape()[d];
  record("mean", out, {x}, [in_shape, ks, n](const Tensor& g) -> std::vector<Tensor> {
    return {mul(g.reshape(ks), 1.0 / double(n)).expand(in_shape).contiguous()};
  });
  return out;
}

namespace {
// Backward of amax/amin: the gradient is shared equally among the elements equal to the extreme (a NaN
// extreme equals nothing: NaN gradients, as PyTorch's amax). max(x) / min(x) over all elements
// (nan_to_nans) send it to the NaN elements instead, shared equally (PyTorch's evenly_distribute_backward).
Tensor extreme(ReduceOp op, const char* name, const Tensor& x, Shape dims_in, bool keepdim, bool nan_to_nans = false) {
  Shape dims = reduce_dims(x, dims_in);
  for (int64_t d : dims)
    if (x.shape()[d] == 0) throw std::invalid_argument(std::string(name) + ": reduction over a zero-size dim of " + shape_str(x.shape()));
  Tensor out = reduce_kernel(op, x, dims, keepdim);
  Shape ks = keep_shape(x, dims);
  Tensor y = out.detach();
  record(name, out, {x}, [x, y, ks, dims, nan_to_nans](const Tensor& g) -> std::vector<Tensor> {
    // a NaN extreme picks the NaN elements: chosen on the device, no read of y on the host
    Tensor yk = y.reshape(ks);
    Tensor mask = (nan_to_nans ? where(ne(yk, yk), ne(x, x), eq(x, yk)) : eq(x, yk)).to(g.dtype());
    Tensor count = sum(mask, dims, true);
    return {mul(div(g.reshape(ks), count), mask)};
  }, {x, y});
  return out;
}
}  // namespace

Tensor amax(const Tensor& x, Shape dims, bool keepdim) { return extreme(ReduceOp::Max, "amax", x, std::move(dims), keepdim); }
Tensor amin(const Tensor& x, Shape dims, bool keepdim) { return extreme(ReduceOp::Min, "amin", x, std::move(dims), keepdim); }
Tensor max(const Tensor& x) { return extreme(ReduceOp::Max, "max", x, {}, false, true); }
Tensor min(const Tensor& x) { return extreme(ReduceOp::Min, "min", x, {}, false, true); }

namespace {
std::pair<Tensor, Tensor> arg_extreme(ReduceOp op, const char* name, const Tensor& x, int64_t dim, bool keepdim) {
  if (x.dim() == 0) {
    Tensor v = x.detach().clone();
    return {v, zeros({}, {.dtype = kInt64, .device = x.device()})};
  }
  dim = wrap_dim(dim, x.dim());
  if (x.shape()[dim] == 0) throw std::invalid_argument(std::string(name) + ": dim " + std::to_string(dim) + " of " + shape_str(x.shape()) + " is empty");
  Shape ks = x.shape();
  ks[dim] = 1;
  Tensor in = x.dtype() == kBFloat16 || x.dtype() == kBool ? x.detach().to(x.dtype() == kBool ? kInt64 : kFloat32) : x;
  Tensor values = ops::empty_out(ks, in.dtype(), x.device());
  Tensor indices = ops::empty_out(ks, kInt64, x.device());
  ops::be(x).arg_reduce(op, ops::ref(in), dim, ops::ref(values), ops::ref(indices));
  if (!keepdim) {
    values = values.squeeze(dim);
    indices = indices.squeeze(dim);
  }
  Shape in_shape = x.shape();
  Tensor idx_keep = indices.dim() == x.dim() ? indices : indices.unsqueeze(dim);
  DType dt = x.dtype();
  record(name, values, {x}, [in_shape, idx_keep, dim, ks, dt](const Tensor& g) -> std::vector<Tensor> {
    Tensor gi = zeros(in_shape, {.dtype = dt, .device = g.device()});
    ops::be(g).scatter_add(ops::ref(gi), dim, ops::ref(idx_keep.contiguous()), ops::ref(g.reshape(ks).contiguous()));
    return {gi};
  });
  return {values, indices};
}
}  // namespace

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) { return arg_extreme(ReduceOp::Max, "max", x, dim, keepdim); }
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) { return arg_extreme(ReduceOp::Min, "min", x, dim, keepdim); }
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return arg_extreme(ReduceOp::Max, "argmax", x, dim, keepdim).second;
}
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  ops::check_defined(x, "topk", "input");
  const Tensor x1 = x.dim() == 0 ? x.reshape({1}) : x;
  dim = wrap_dim(dim, x1.dim());
  if (k < 0 || k > x1.size(dim))
    ops::fail("topk: k " + std::to_string(k) + " out of range for dim " + std::to_string(dim) + " of " +
              shape_str(x.shape()) + " (0.." + std::to_string(x1.size(dim)) + ")");
  if (x.dtype() == kBool) ops::fail("topk: bool input is not supported");
  Shape ks = x1.shape();
  ks[dim] = k;
  const Tensor in = x.dtype() == kBFloat16 ? x1.detach().to(kFloat32) : x1.detach();
  Tensor values = ops::empty_out(ks, in.dtype(), x.device());
  const Tensor indices = ops::empty_out(ks, kInt64, x.device());
  ops::be(x).topk(ops::ref(in), dim, k, largest, ops::ref(values), ops::ref(indices));
  if (x.dtype() == kBFloat16) values = values.to(kBFloat16);
  if (x.dim() == 0) {
    values = values.reshape({});
    return {values, indices.reshape({})};
  }
  const Shape in_shape = x.shape();
  const DType dt = x.dtype();
  record("topk", values, {x}, [in_shape, indices, dim, dt](const Tensor& g) -> std::vector<Tensor> {
    Tensor gi = zeros(in_shape, {.dtype = dt, .device = g.device()});
    ops::be(g).scatter_add(ops::ref(gi), dim, ops::ref(indices), ops::ref(g.contiguous()));
    return {gi};
  });
  return {values, indices};
}

Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard ng;
  return arg_extreme(ReduceOp::Min, "argmin", x, dim, keepdim).second;
}

Tensor var(const Tensor& x, Shape dims_in, int64_t correction, bool keepdim) {
  ops::check_floating(x, "var");
  Shape dims = reduce_dims(x, dims_in);
  int64_t n = 1;
  for (int64_t d : dims) n *= x.shape()[d];
  // composite of primitives: mean((x - mean(x))^2) * n / (n - correction)
  Tensor centered = sub(x, mean(x, dims, true));
  Tensor s = sum(mul(centered, centered), dims, keepdim);
  return div(s, double(std::max<int64_t>(n - correction, 0)));
}

Tensor std(const Tensor& x, Shape dims, int64_t correction, bool keepdim) {
  return sqrt(var(x, std::move(dims), correction, keepdim));
}

}  // namespace attn
