// src/backend/cpu/cross_entropy.cc — fused softmax cross-entropy (owner: nnops).
//
// Forward: per block of rows, log_softmax into a small per-thread scratch buffer (the vectorized
// softmax kernel, cache-resident), then the loss from it; nothing of size (rows, C) is written.
// Backward: softmax straight into grad_x, then one in-place pass turns p into the gradient
//   grad_x[r, c] = g[r]·((1-ε)·w[t] + ε/C·W)·p[c] - g[r]·ε/C·w[c] - g[r]·(1-ε)·w[t]·δ(c,t).
// bf16 logits (autocast's): each block widened into the thread's scratch, then the float32 code; the
// gradient computed there in float32 and rounded into grad_x once (the float32 kernel on a widened copy,
// bit for bit, without the (rows, C) copy and the float32 gradient).
// Oracle: ref::cross_entropy / ref::cross_entropy_backward at the end of this file (serial double
// loops, declared in cross_entropy.h); tests/test_nn_ops.cc compares both ISAs against them.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cross_entropy.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"

namespace attn::cpu {

using backend::TensorRef;

namespace {

inline int64_t target_at(const TensorRef& t, int64_t r) {
  return t.dtype == kInt64 ? static_cast<const int64_t*>(t.data)[r] : int64_t(static_cast<const int32_t*>(t.data)[r]);
}

// Σ a[j] and Σ a[j]·b[j] with 16 independent partial sums (vectorizes without -ffast-math).
template <typename T> double row_sum(const T* a, int64_t n) {
  T acc[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) acc[k] += a[j + k];
  double s = 0.0;
  for (int k = 0; k < 16; ++k) s += double(acc[k]);
  for (; j < n; ++j) s += double(a[j]);
  return s;
}
template <typename T> double dot(const T* a, const T* b, int64_t n) {
  T acc[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) acc[k] += a[j + k] * b[j + k];
  double s = 0.0;
  for (int k = 0; k < 16; ++k) s += double(acc[k]);
  for (; j < n; ++j) s += double(a[j]) * double(b[j]);
  return s;
}

// Rows per block so that a block of logits stays in L2 (about 64 KiB of scratch per thread).
inline int64_t block_rows(int64_t c, size_t es) { return std::max<int64_t>(1, int64_t(65536 / es) / std::max<int64_t>(c, 1)); }

// Rows [r0, r0 + nr) of x as T: x's own memory, or (bf16 x, T = float) widened into `wide`.
template <typename T> const T* block_of(const TensorRef& x, int64_t r0, int64_t nr, std::vector<T>& wide) {
  const int64_t c = x.shape[1];
  if constexpr (std::is_same_v<T, float>)
    if (x.dtype == kBFloat16) {
      widen_bf16(static_cast<const uint16_t*>(x.data) + r0 * c, wide.data(), nr * c);
      return wide.data();
    }
  return static_cast<const T*>(x.data) + r0 * c;
}

template <typename T>
void ce_forward(const TensorRef& x, const TensorRef& target, const TensorRef& weight, int64_t ignore_index,
                double eps, const TensorRef& loss) {
  const int64_t rows = x.shape[0], c = x.shape[1];
  if (rows == 0) return;
  const bool bf16 = x.dtype == kBFloat16;
  const T* w = static_cast<const T*>(weight.data);
  T* out = static_cast<T*>(loss.data);
  const int64_t br = block_rows(c, sizeof(T));
  const int64_t nblocks = (rows + br - 1) / br;
  const double smooth = eps / double(c);
#pragma omp parallel if (rows * c >= kParallelGrain && nblocks > 1)
  {
    std::vector<T> scratch(size_t(br * c)), wide(bf16 ? size_t(br * c) : 0);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t r0 = b * br, nr = std::min(br, rows - r0);
      softmax(block_of(x, r0, nr, wide), scratch.data(), nr, c, /*log=*/true);
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t r = r0 + i, t = target_at(target, r);
        if (t == ignore_index) {
          out[r] = T(0);
          continue;
        }
        const T* lp = scratch.data() + i * c;
        const double wt = w ? double(w[t]) : 1.0;
        double l = -(1.0 - eps) * wt * double(lp[t]);
        if (eps > 0.0) l -= smooth * (w ? dot(w, lp, c) : row_sum(lp, c));
        out[r] = T(l);
      }
    }
  }
}

template <typename T>
void ce_backward(const TensorRef& x, const TensorRef& target, const TensorRef& weight, int64_t ignore_index,
                 double eps, const TensorRef& grad_loss, const TensorRef& grad_x) {
  const int64_t rows = x.shape[0], c = x.shape[1];
  if (rows == 0) return;
  const bool bf16 = x.dtype == kBFloat16;
  const T* w = static_cast<const T*>(weight.data);
  const T* gl = static_cast<const T*>(grad_loss.data);
  const int64_t gstride = grad_loss.strides.empty() ? 0 : grad_loss.strides[0];
  double wsum = double(c);
  if (w) {
    wsum = 0.0;
    for (int64_t j = 0; j < c; ++j) wsum += double(w[j]);
  }
  const double smooth = eps / double(c);
  const int64_t br = block_rows(c, sizeof(T));
  const int64_t nblocks = (rows + br - 1) / br;
#pragma omp parallel if (rows * c >= kParallelGrain && nblocks > 1)
  {
    std::vector<T> wide(bf16 ? size_t(br * c) : 0), grad(bf16 ? size_t(br * c) : 0);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t r0 = b * br, nr = std::min(br, rows - r0);
      T* blk = bf16 ? grad.data() : static_cast<T*>(grad_x.data) + r0 * c;  // the block's gradient rows
      softmax(block_of(x, r0, nr, wide), blk, nr, c, /*log=*/false);         // = p
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t r = r0 + i, t = target_at(target, r);
        T* row = blk + i * c;
        if (t == ignore_index) {
          std::fill(row, row + c, T(0));
          continue;
        }
        const double g = double(gl[r * gstride]);
        const double wt = w ? double(w[t]) : 1.0;
        const T a = T(g * ((1.0 - eps) * wt + smooth * wsum));
        if (eps > 0.0 && w) {
          const T s = T(g * smooth);
          for (int64_t j = 0; j < c; ++j) row[j] = a * row[j] - s * w[j];
        } else {
          const T s = T(g * smooth);
          for (int64_t j = 0; j < c; ++j) row[j] = a * row[j] - s;
        }
        row[t] -= T(g * (1.0 - eps) * wt);
      }
      if constexpr (std::is_same_v<T, float>)
        if (bf16) narrow_bf16(blk, static_cast<uint16_t*>(grad_x.data) + r0 * c, nr * c);
    }
  }
}

[[noreturn]] void ce_unsupported(DType t) {
  throw std::invalid_argument(std::string("cpu backend: cross_entropy does not support dtype ") + dtype_name(t));
}

}  // namespace

void CpuBackend::cross_entropy(const TensorRef& x, const TensorRef& target, const TensorRef& weight,
                               int64_t ignore_index, double label_smoothing, const TensorRef& loss) {
  if (x.dtype == kFloat32 || x.dtype == kBFloat16)
    return ce_forward<float>(x, target, weight, ignore_index, label_smoothing, loss);
  if (x.dtype == kFloat64) return ce_forward<double>(x, target, weight, ignore_index, label_smoothing, loss);
  ce_unsupported(x.dtype);
}

void CpuBackend::cross_entropy_backward(const TensorRef& x, const TensorRef& target, const TensorRef& weight,
                                        int64_t ignore_index, double label_smoothing, const TensorRef& grad_loss,
                                        const TensorRef& grad_x) {
  if (x.dtype == kFloat32 || x.dtype == kBFloat16)
    return ce_backward<float>(x, target, weight, ignore_index, label_smoothing, grad_loss, grad_x);
  if (x.dtype == kFloat64)
    return ce_backward<double>(x, target, weight, ignore_index, label_smoothing, grad_loss, grad_x);
  ce_unsupported(x.dtype);
}

// ---- naive oracle
namespace ref {

namespace {
template <typename T> double row_lse(const T* xr, int64_t c) {
  double mx = -INFINITY;
  for (int64_t j = 0; j < c; ++j) mx = std::max(mx, double(xr[j]));
  double s = 0.0;
  for (int64_t j = 0; j < c; ++j) s += std::exp(double(xr[j]) - mx);
  return mx + std::log(s);
}
}  // namespace

template <typename T>
void cross_entropy(const T* x, const int64_t* target, const T* w, int64_t rows, int64_t c, int64_t ignore_index,
                   double eps, T* loss) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * c;
    const int64_t t = target[r];
    if (t == ignore_index) {
      loss[r] = T(0);
      continue;
    }
    const double lse = row_lse(xr, c);
    double nll = -(w ? double(w[t]) : 1.0) * (double(xr[t]) - lse), smooth = 0.0;
    for (int64_t j = 0; j < c; ++j) smooth -= (w ? double(w[j]) : 1.0) * (double(xr[j]) - lse);
    loss[r] = T((1.0 - eps) * nll + eps / double(c) * smooth);
  }
}

template <typename T>
void cross_entropy_backward(const T* x, const int64_t* target, const T* w, int64_t rows, int64_t c,
                            int64_t ignore_index, double eps, const T* grad_loss, T* grad_x) {
  double wsum = 0.0;
  for (int64_t j = 0; j < c; ++j) wsum += w ? double(w[j]) : 1.0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * c;
    T* gr = grad_x + r * c;
    const int64_t t = target[r];
    if (t == ignore_index) {
      for (int64_t j = 0; j < c; ++j) gr[j] = T(0);
      continue;
    }
    const double lse = row_lse(xr, c), g = double(grad_loss[r]), wt = w ? double(w[t]) : 1.0;
    for (int64_t j = 0; j < c; ++j) {
      const double p = std::exp(double(xr[j]) - lse), wj = w ? double(w[j]) : 1.0;
      gr[j] = T(g * ((1.0 - eps) * wt * (p - (j == t ? 1.0 : 0.0)) + eps / double(c) * (wsum * p - wj)));
    }
  }
}

template void cross_entropy<float>(const float*, const int64_t*, const float*, int64_t, int64_t, int64_t, double,
                                   float*);
template void cross_entropy<double>(const double*, const int64_t*, const double*, int64_t, int64_t, int64_t, double,
                                    double*);
template void cross_entropy_backward<float>(const float*, const int64_t*, const float*, int64_t, int64_t, int64_t,
                                            double, const float*, float*);
template void cross_entropy_backward<double>(const double*, const int64_t*, const double*, int64_t, int64_t,
                                             int64_t, double, const double*, double*);

}  // namespace ref

}  // namespace attn::cpu
