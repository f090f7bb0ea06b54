// src/backend/cpu/cross_entropy.h — the naive oracle of the fused cross-entropy kernel (owner: nnops).
//
//   attn::cpu::ref::cross_entropy(x, t, w, rows, c, -100, 0.1, loss);         // serial double loops
//   attn::cpu::ref::cross_entropy_backward(x, t, w, rows, c, -100, 0.1, g, gx);
// Same contract as Backend::cross_entropy / cross_entropy_backward (src/backend/backend.h); w may be
// nullptr. tests/test_nn_ops.cc compares CpuBackend's fast kernel with these.
#pragma once
#include <cstdint>

namespace attn::cpu::ref {

template <typename T>
void cross_entropy(const T* x, const int64_t* target, const T* w, int64_t rows, int64_t c, int64_t ignore_index,
                   double label_smoothing, T* loss);
template <typename T>
void cross_entropy_backward(const T* x, const int64_t* target, const T* w, int64_t rows, int64_t c,
                            int64_t ignore_index, double label_smoothing, const T* grad_loss, T* grad_x);

}  // namespace attn::cpu::ref
