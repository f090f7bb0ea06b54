// src/backend/composite_util.h — small helpers of the composite defaults (composite.cc,
// composite_attention.cc): contiguous refs, broadcast views, and scoped temporaries on a backend.
//
//   Tmp t(be, kFloat32, {rows, d});          // contiguous (rows, d) on `be`, freed at scope exit
//   be.binary(BinaryOp::Mul, *t, bcast(*scale, {rows, d}), t.as({rows * d}));
#pragma once
#include <algorithm>
#include <utility>

#include "backend/backend.h"

namespace attn::backend::composite {

inline TensorRef dense(void* data, DType dtype, Shape shape) {
  TensorRef r;
  r.data = data;
  r.dtype = dtype;
  r.strides = contiguous_strides(shape);
  r.shape = std::move(shape);
  return r;
}
// A contiguous ref seen with another shape of the same numel.
inline TensorRef reshaped(const TensorRef& r, Shape shape) { return dense(r.data, r.dtype, std::move(shape)); }
// r broadcast to `shape` (dims right-aligned; size-1 dims get stride 0).
inline TensorRef bcast(const TensorRef& r, const Shape& shape) {
  TensorRef o = r;
  const size_t lead = shape.size() - r.shape.size();
  o.shape = shape;
  o.strides.assign(shape.size(), 0);
  for (size_t i = 0; i < r.shape.size(); ++i) o.strides[lead + i] = r.shape[i] == 1 ? 0 : r.strides[i];
  return o;
}

// A contiguous temporary on backend b, freed at scope exit.
class Tmp {
 public:
  Tmp(Backend& b, DType dtype, Shape shape)
      : b_(b), bytes_(size_t(std::max<int64_t>(numel_of(shape), 1)) * element_size(dtype)) {
    r_ = dense(b.allocate(bytes_), dtype, std::move(shape));
  }
  ~Tmp() { b_.deallocate(r_.data, bytes_); }
  Tmp(const Tmp&) = delete;
  Tmp& operator=(const Tmp&) = delete;
  const TensorRef& operator*() const { return r_; }
  const TensorRef* operator->() const { return &r_; }
  TensorRef as(Shape shape) const { return reshaped(r_, std::move(shape)); }

 private:
  Backend& b_;
  size_t bytes_;
  TensorRef r_;
};

// A 0-d constant of `dtype` on b.
struct Scalar : Tmp {
  Scalar(Backend& b, DType dtype, double value) : Tmp(b, dtype, {}) { b.fill(**this, value); }
};

}  // namespace attn::backend::composite
