// src/ops/op_utils.h — helpers shared by the op families (shapes, dtypes, outputs, backends).
#pragma once
#include <stdexcept>
#include <string>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "backend/backend.h"

namespace attn::ops {

inline backend::Backend& be(const Tensor& t) { return backend::backend_for(t.device()); }
using backend::ref;

// A new uninitialised contiguous tensor.
Tensor empty_out(const Shape& shape, DType dtype, Device device);
inline Tensor empty_like_out(const Tensor& t) { return empty_out(t.shape(), t.dtype(), t.device()); }
// A new uninitialised dense tensor of t's shape whose memory order follows t's strides (largest stride
// outermost; PyTorch's empty_like with preserve_format). A gradient allocated this way for a permuted
// view is the same permutation of dense memory, so the permute's backward hands on contiguous memory.
Tensor empty_dense_like(const Tensor& t);

DType promote_types(DType a, DType b);
void check_defined(const Tensor& t, const char* op, const char* arg);
void check_same_device(const Tensor& a, const Tensor& b, const char* op);
void check_floating(const Tensor& t, const char* op);

// Throws if an in-place op on `self` would have to be recorded by autograd.
void check_inplace(const Tensor& self, const char* op, std::initializer_list<const Tensor*> others = {});

// `t` broadcast to `shape` as a strided ref (stride 0 on broadcast dims), no copy.
backend::TensorRef broadcast_ref(const Tensor& t, const Shape& shape);

// Elementwise kernels with broadcasting and type promotion (no autograd).
Tensor binary_kernel(backend::BinaryOp op, const Tensor& a, const Tensor& b);
Tensor unary_kernel(backend::UnaryOp op, const Tensor& x, double alpha = 0.0);

// Tells the tensors' backends that they are read soon (Backend::prefetch_hint); undefined ones are
// skipped. A hint only.
void prefetch_hint(std::initializer_list<Tensor> tensors);

[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

}  // namespace attn::ops
