// src/core/inplace.cc — in-place updates. They bump the storage version (so autograd notices saved
// tensors that changed) and are not recorded themselves.
#include "attn/autograd.h"
#include "attn/random.h"
#include "ops/op_utils.h"

namespace attn {

using backend::BinaryOp;
using ops::be;
using ops::broadcast_ref;
using ops::ref;

namespace {
void binary_inplace(Tensor& self, BinaryOp op, const Tensor& other, const char* name) {
  ops::check_inplace(self, name, {&other});
  Shape target = broadcast_shapes(self.shape(), other.shape());
  if (target != self.shape())
    throw std::invalid_argument(std::string(name) + ": cannot broadcast " + shape_str(other.shape()) +
                                " into the in-place target " + shape_str(self.shape()));
  Tensor o = other.dtype() == self.dtype() ? other.detach() : other.detach().to(self.dtype());
  if (o.impl()->storage == self.impl()->storage && !o.is_same(self)) o = o.clone();
  be(self).binary(op, ref(self), broadcast_ref(o, self.shape()), ref(self));
  self.bump_version();
}
}  // namespace

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::fill_(double value) {
  ops::check_inplace(*this, "fill_");
  be(*this).fill(ref(*this), value);
  bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  ops::check_inplace(*this, "copy_", {&src});
  Shape target = broadcast_shapes(shape(), src.shape());
  if (target != shape())
    throw std::invalid_argument("copy_: cannot copy " + shape_str(src.shape()) + " into " + shape_str(shape()));
  be(*this).copy(broadcast_ref(src, shape()), ref(*this));
  bump_version();
  return *this;
}

Tensor& Tensor::add_(const Tensor& o, double alpha) {
  if (alpha == 1.0) binary_inplace(*this, BinaryOp::Add, o, "add_");
  else binary_inplace(*this, BinaryOp::Add, mul(o.detach(), alpha), "add_");
  return *this;
}
Tensor& Tensor::mul_(const Tensor& o) {
  binary_inplace(*this, BinaryOp::Mul, o, "mul_");
  return *this;
}
Tensor& Tensor::div_(const Tensor& o) {
  if (!is_floating(dtype()))  // true division's floating result cannot be stored in place (as PyTorch)
    throw std::invalid_argument(std::string("div_: true division gives a floating-point result, which cannot be "
                                            "stored in place in a ") + dtype_name(dtype()) + " tensor " +
                                shape_str(shape()));
  binary_inplace(*this, BinaryOp::Div, o, "div_");
  return *this;
}
Tensor& Tensor::mul_(double s) {
  ops::check_inplace(*this, "mul_");
  be(*this).unary(backend::UnaryOp::MulScalar, ref(*this), ref(*this), s);
  bump_version();
  return *this;
}
Tensor& Tensor::clamp_(double lo, double hi) {
  ops::check_inplace(*this, "clamp_");
  be(*this).unary(backend::UnaryOp::ClampMin, ref(*this), ref(*this), lo);
  be(*this).unary(backend::UnaryOp::ClampMax, ref(*this), ref(*this), hi);
  bump_version();
  return *this;
}
Tensor& Tensor::masked_fill_(const Tensor& mask, double value) {
  ops::check_inplace(*this, "masked_fill_");
  if (mask.dtype() != kBool) throw std::invalid_argument("masked_fill_: mask must be bool, got " + std::string(dtype_name(mask.dtype())));
  Tensor fill = full({}, value, {.dtype = dtype(), .device = device()});
  be(*this).where(broadcast_ref(mask, shape()), broadcast_ref(fill, shape()), ref(*this), ref(*this));
  bump_version();
  return *this;
}
Tensor& Tensor::uniform_(double lo, double hi) {
  ops::check_inplace(*this, "uniform_");
  Tensor tmp = is_contiguous() ? *this : ops::empty_like_out(*this);
  Generator& g = default_generator();
  uint64_t counter = g.reserve(uint64_t((numel() + 3) / 4));
  be(*this).uniform(ref(tmp), lo, hi, g.seed(), counter);
  if (!tmp.is_same(*this)) be(*this).copy(ref(tmp), ref(*this));
  bump_version();
  return *this;
}
Tensor& Tensor::normal_(double mean, double std) {
  ops::check_inplace(*this, "normal_");
  Tensor tmp = is_contiguous() ? *this : ops::empty_like_out(*this);
  Generator& g = default_generator();
  uint64_t counter = g.reserve(uint64_t((numel() + 1) / 2));
  be(*this).normal(ref(tmp), mean, std, g.seed(), counter);
  if (!tmp.is_same(*this)) be(*this).copy(ref(tmp), ref(*this));
  bump_version();
  return *this;
}

}  // namespace attn
