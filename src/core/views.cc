// src/core/views.cc — views that share storage, copies and conversions; each with its backward.
#include <numeric>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "ops/op_utils.h"

namespace attn {

namespace {

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Strides for viewing (shape, strides) as new_shape without copying, or empty if impossible
// (same algorithm as PyTorch's computeStride).
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape) {
  Shape ns(new_shape.size());
  if (numel_of(shape) == 0 || shape.empty()) return contiguous_strides(new_shape);
  int64_t view_d = int64_t(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = int64_t(shape.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= shape[tensor_d];
    if (tensor_d == 0 || (shape[tensor_d - 1] != 1 && strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        ns[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (tensor_d > 0) {
        chunk_base_stride = strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return ns;
}

Shape infer_shape(Shape shape, int64_t numel, const Shape& from) {
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) throw std::invalid_argument("view: only one dimension can be -1 in " + shape_str(shape));
      infer = int64_t(i);
    } else if (shape[i] < 0) {
      throw std::invalid_argument("view: invalid shape " + shape_str(shape));
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      throw std::invalid_argument("view: shape " + shape_str(shape) + " is invalid for input of shape " + shape_str(from));
    shape[infer] = numel / known;
  } else if (known != numel) {
    throw std::invalid_argument("view: shape " + shape_str(shape) + " is invalid for input of shape " + shape_str(from));
  }
  return shape;
}

}  // namespace

Tensor Tensor::view(Shape new_shape) const {
  new_shape = infer_shape(std::move(new_shape), numel(), shape());
  auto st = view_strides(shape(), strides(), new_shape);
  if (!st)
    throw std::invalid_argument("view: shape " + shape_str(new_shape) + " is not compatible with the strides of input " +
                                shape_str(shape()) + "; use reshape()");
  Tensor out = make_view(*this, new_shape, *st, storage_offset());
  Shape in_shape = shape();
  autograd::record("view", out, {*this}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {g.reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::reshape(Shape new_shape) const {
  new_shape = infer_shape(std::move(new_shape), numel(), shape());
  if (view_strides(shape(), strides(), new_shape)) return view(new_shape);
  return contiguous().view(new_shape);
}

Tensor Tensor::permute(Shape dims) const {
  if (int64_t(dims.size()) != dim())
    throw std::invalid_argument("permute: got " + std::to_string(dims.size()) + " dims for a tensor of shape " + shape_str(shape()));
  Shape ns(dims.size()), nst(dims.size()), inverse(dims.size());
  std::vector<bool> used(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim());
    if (used[d]) throw std::invalid_argument("permute: repeated dim in " + shape_str(dims));
    used[d] = true;
    ns[i] = shape()[d];
    nst[i] = strides()[d];
    inverse[d] = int64_t(i);
  }
  Tensor out = make_view(*this, ns, nst, storage_offset());
  autograd::record("permute", out, {*this}, [inverse](const Tensor& g) -> std::vector<Tensor> {
    return {g.permute(inverse)};
  });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  if (dim() == 0) return *this;
  d0 = wrap_dim(d0, dim());
  d1 = wrap_dim(d1, dim());
  Shape p(dim());
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[d0], p[d1]);
  return permute(p);
}

Tensor Tensor::t() const {
  if (dim() > 2) throw std::invalid_argument("t(): expects a tensor with <= 2 dims, got " + shape_str(shape()));
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim());
  if (step <= 0) throw std::invalid_argument("slice: step must be positive");
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape ns = shape(), nst = strides();
  ns[d] = (end - start + step - 1) / step;
  nst[d] *= step;
  Tensor out = make_view(*this, ns, nst, storage_offset() + start * strides()[d]);
  Shape in_shape = shape();
  DType dt = dtype();
  autograd::record("slice", out, {*this}, [in_shape, dt, d, start, end, step](const Tensor& g) -> std::vector<Tensor> {
    Tensor gi = zeros(in_shape, {.dtype = dt, .device = g.device()});
    gi.slice(d, start, end, step).copy_(g);
    return {gi};
  });
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim());
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (start < 0 || length < 0 || start + length > n)
    throw std::out_of_range("narrow: start " + std::to_string(start) + " length " + std::to_string(length) +
                            " out of range for dim " + std::to_string(d) + " of shape " + shape_str(shape()));
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim());
  int64_t n = shape()[d];
  if (index < -n || index >= n)
    throw std::out_of_range("select: index " + std::to_string(index) + " out of range for dim " + std::to_string(d) +
                            " of shape " + shape_str(shape()));
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(Shape target) const {
  if (int64_t(target.size()) < dim())
    throw std::invalid_argument("expand: target " + shape_str(target) + " has fewer dims than " + shape_str(shape()));
  size_t lead = target.size() - shape().size();
  Shape ns(target.size()), nst(target.size());
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      if (target[i] < 0) throw std::invalid_argument("expand: -1 not allowed for new leading dims");
      ns[i] = target[i];
      nst[i] = 0;
      continue;
    }
    int64_t cur = shape()[i - lead];
    int64_t want = target[i] == -1 ? cur : target[i];
    if (cur == want) {
      ns[i] = cur;
      nst[i] = strides()[i - lead];
    } else if (cur == 1) {
      ns[i] = want;
      nst[i] = 0;
    } else {
      throw std::invalid_argument("expand: cannot expand " + shape_str(shape()) + " to " + shape_str(target));
    }
  }
  if (ns == shape()) return *this;
  Tensor out = make_view(*this, ns, nst, storage_offset());
  Shape in_shape = shape();
  autograd::record("expand", out, {*this}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {autograd::sum_to(g, in_shape)};
  });
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1);
  Shape ns = shape(), nst = strides();
  int64_t st = d < dim() ? strides()[d] * shape()[d] : 1;
  ns.insert(ns.begin() + d, 1);
  nst.insert(nst.begin() + d, st);
  Tensor out = make_view(*this, ns, nst, storage_offset());
  Shape in_shape = shape();
  autograd::record("unsqueeze", out, {*this}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {g.reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  d = wrap_dim(d, dim());
  if (shape()[d] != 1) return *this;
  Shape ns = shape(), nst = strides();
  ns.erase(ns.begin() + d);
  nst.erase(nst.begin() + d);
  Tensor out = make_view(*this, ns, nst, storage_offset());
  Shape in_shape = shape();
  autograd::record("squeeze", out, {*this}, [in_shape](const Tensor& g) -> std::vector<Tensor> {
    return {g.reshape(in_shape)};
  });
  return out;
}

Tensor Tensor::squeeze() const {
  Shape ns;
  for (int64_t v : shape())
    if (v != 1) ns.push_back(v);
  return ns.size() == shape().size() ? *this : reshape(ns);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = wrap_dim(start, dim());
  end = wrap_dim(end, dim());
  if (start > end) throw std::invalid_argument("flatten: start_dim after end_dim");
  Shape ns(shape().begin(), shape().begin() + start);
  int64_t m = 1;
  for (int64_t d = start; d <= end; ++d) m *= shape()[d];
  ns.push_back(m);
  ns.insert(ns.end(), shape().begin() + end + 1, shape().end());
  return reshape(ns);
}

Tensor Tensor::clone() const {
  Tensor out = ops::empty_like_out(*this);
  ops::be(*this).copy(ops::ref(*this), ops::ref(out));
  autograd::record("clone", out, {*this}, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return out;
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = ops::empty_out(shape(), t, device());
  ops::be(*this).copy(ops::ref(*this), ops::ref(out));
  if (is_floating(t) && is_floating(dtype())) {
    DType from = dtype();
    autograd::record("to", out, {*this}, [from](const Tensor& g) -> std::vector<Tensor> { return {g.to(from)}; });
  }
  return out;
}

// Between devices through host memory: the source backend's copy_to_host, the target's copy_from_host
// (the CPU side of either is a plain copy). Differentiable: the gradient goes back the same way.
Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor out = ops::empty_out(shape(), dtype(), d);
  if (numel() > 0) {
    if (device().type == DeviceType::CPU) {
      Tensor src = contiguous();
      ops::be(out).copy_from_host(src.raw_data(), ops::ref(out));
    } else if (d.type == DeviceType::CPU) {
      ops::be(*this).copy_to_host(ops::ref(*this), out.raw_data());
    } else {
      Tensor host = detach().to(kCPU);  // contiguous
      ops::be(out).copy_from_host(host.raw_data(), ops::ref(out));
    }
  }
  if (is_floating(dtype())) {
    Device from = device();
    autograd::record("to", out, {*this}, [from](const Tensor& g) -> std::vector<Tensor> { return {g.to(from)}; });
  }
  return out;
}

}  // namespace attn
