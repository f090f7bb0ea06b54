#include "ops/op_utils.h"

#include <algorithm>
#include <numeric>

namespace attn::ops {

Tensor empty_out(const Shape& shape, DType dtype, Device device) {
  return empty(shape, {.dtype = dtype, .device = device});
}

Tensor empty_dense_like(const Tensor& t) {
  const int64_t nd = t.dim();
  Shape order(static_cast<size_t>(nd));  // dims, outermost in memory first
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return t.stride(a) > t.stride(b); });
  Shape mem(order.size()), inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    mem[i] = t.size(order[i]);
    inverse[size_t(order[i])] = int64_t(i);
  }
  return empty_out(mem, t.dtype(), t.device()).permute(inverse);
}

namespace {
int rank(DType t) {
  switch (t) {
    case kBool: return 0;
    case kUInt8: return 1;
    case kInt32: return 2;
    case kInt64: return 3;
    case kBFloat16: return 4;
    case kFloat32: return 5;
    case kFloat64: return 6;
  }
  return 0;
}
}  // namespace

DType promote_types(DType a, DType b) { return rank(a) >= rank(b) ? a : b; }

void check_defined(const Tensor& t, const char* op, const char* arg) {
  if (!t.defined()) fail(std::string(op) + ": argument '" + arg + "' is an undefined tensor");
}
void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  if (a.device() != b.device())
    fail(std::string(op) + ": tensors on different devices (" + device_name(a.device()) + ", " +
         device_name(b.device()) + ")");
}
void check_floating(const Tensor& t, const char* op) {
  if (!is_floating(t.dtype()))
    fail(std::string(op) + ": expected a floating point tensor, got " + dtype_name(t.dtype()));
}

void check_inplace(const Tensor& self, const char* op, std::initializer_list<const Tensor*> others) {
  if (!grad_enabled()) return;
  if (self.requires_grad() && self.is_leaf())
    throw std::runtime_error(std::string(op) + ": a leaf tensor that requires grad " + shape_str(self.shape()) +
                             " is used in an in-place operation; do it under attn::NoGradGuard");
  bool tracked = self.requires_grad();
  for (const Tensor* o : others) tracked = tracked || (o->defined() && o->requires_grad());
  if (tracked)
    throw std::runtime_error(std::string(op) + ": in-place operations are not recorded by autograd; use the "
                             "out-of-place form, or run it under attn::NoGradGuard");
}

backend::TensorRef broadcast_ref(const Tensor& t, const Shape& shape) {
  backend::TensorRef r = ref(t);
  size_t lead = shape.size() - r.shape.size();
  Shape st(shape.size(), 0);
  for (size_t i = 0; i < r.shape.size(); ++i) st[lead + i] = r.shape[i] == 1 ? 0 : r.strides[i];
  r.shape = shape;
  r.strides = st;
  return r;
}

Tensor binary_kernel(backend::BinaryOp op, const Tensor& a, const Tensor& b) {
  check_same_device(a, b, "binary op");
  Shape shape = broadcast_shapes(a.shape(), b.shape());
  DType t = promote_types(a.dtype(), b.dtype());
  DType compute = t == kBFloat16 ? kFloat32 : t;
  // bf16 in the mix (autocast's residual adds, gradient sums) and nothing broadcast: one pass, the bf16
  // operands widened in cache instead of converted whole
  auto fp32_or_bf16 = [](DType d) { return d == kFloat32 || d == kBFloat16; };
  const bool mixed = (a.dtype() == kBFloat16 || b.dtype() == kBFloat16) && fp32_or_bf16(a.dtype()) && fp32_or_bf16(b.dtype());
  if (mixed && backend::is_mixed_binary_op(op) && a.shape() == shape && b.shape() == shape && a.is_contiguous() &&
      b.is_contiguous()) {
    Tensor out = empty_out(shape, t, a.device());
    be(a).binary_mixed(op, ref(a), ref(b), ref(out));
    return out;
  }
  Tensor x = a.dtype() == compute ? a : a.detach().to(compute);
  Tensor y = b.dtype() == compute ? b : b.detach().to(compute);
  bool cmp = op >= backend::BinaryOp::Eq;
  Tensor out = empty_out(shape, cmp ? kBool : compute, a.device());
  be(a).binary(op, broadcast_ref(x, shape), broadcast_ref(y, shape), ref(out));
  if (!cmp && t == kBFloat16) return out.to(kBFloat16);
  return out;
}

Tensor unary_kernel(backend::UnaryOp op, const Tensor& x, double alpha) {
  // bf16: the backend computes in float32 and rounds once (contiguous operands)
  const Tensor xc = x.dtype() == kBFloat16 ? x.detach().contiguous() : x;
  Tensor out = empty_like_out(xc);
  be(xc).unary(op, ref(xc), ref(out), alpha);
  return out;
}

void prefetch_hint(std::initializer_list<Tensor> tensors) {
  std::vector<backend::TensorRef> refs;
  backend::Backend* b = nullptr;
  for (const Tensor& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    backend::Backend& tb = be(t);
    if (b != nullptr && &tb != b) {  // another device: hand over what was gathered so far
      b->prefetch_hint(refs);
      refs.clear();
    }
    b = &tb;
    refs.push_back(ref(t));
  }
  if (b != nullptr) b->prefetch_hint(refs);
}

}  // namespace attn::ops
