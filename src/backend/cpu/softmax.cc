// src/backend/cpu/softmax.cc — softmax / log_softmax over the last dim of contiguous (rows, d).
// float32 runs the vectorized kernel of the active ISA (kernels_simd.inc); float64 is a parallel
// max-subtracted scalar loop. Oracle: ref::softmax in reference.cc.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"

namespace attn::cpu {

void softmax(const float* x, float* y, int64_t rows, int64_t d, bool log) {
  if (rows <= 0 || d <= 0) return;
  kernels().softmax(x, y, rows, d, log);
}

void softmax_backward(const float* y, const float* gy, float* gx, int64_t rows, int64_t d, bool log) {
  if (rows <= 0 || d <= 0) return;
  kernels().softmax_backward(y, gy, gx, rows, d, log);
}

void softmax(const double* x, double* y, int64_t rows, int64_t d, bool log) {
  if (rows <= 0 || d <= 0) return;
#pragma omp parallel for schedule(static) if (rows * d >= kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = x + r * d;
    double* yr = y + r * d;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < d; ++j) mx = std::max(mx, xr[j]);
    double sum = 0.0;
    if (log) {
      for (int64_t j = 0; j < d; ++j) sum += std::exp(xr[j] - mx);
      const double sub = mx + std::log(sum);
      for (int64_t j = 0; j < d; ++j) yr[j] = xr[j] - sub;
    } else {
      for (int64_t j = 0; j < d; ++j) {
        yr[j] = std::exp(xr[j] - mx);
        sum += yr[j];
      }
      const double inv = 1.0 / sum;
      for (int64_t j = 0; j < d; ++j) yr[j] *= inv;
    }
  }
}

void softmax_backward(const double* y, const double* gy, double* gx, int64_t rows, int64_t d, bool log) {
  if (rows <= 0 || d <= 0) return;
#pragma omp parallel for schedule(static) if (rows * d >= kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const double* yr = y + r * d;
    const double* gr = gy + r * d;
    double* out = gx + r * d;
    double s = 0.0;
    if (log) {
      for (int64_t j = 0; j < d; ++j) s += gr[j];
      for (int64_t j = 0; j < d; ++j) out[j] = gr[j] - std::exp(yr[j]) * s;
    } else {
      for (int64_t j = 0; j < d; ++j) s += gr[j] * yr[j];
      for (int64_t j = 0; j < d; ++j) out[j] = yr[j] * (gr[j] - s);
    }
  }
}

}  // namespace attn::cpu
