// src/backend/cpu/layer_norm.cc — layer norm forward/backward over the last dim of contiguous (rows, d).
// float32 runs the vectorized kernel of the active ISA (kernels_simd.inc), float64 parallel scalar loops
// here; both use two-pass (mean, then centred variance) statistics. Oracle: ref::layer_norm.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_budget.h"

namespace attn::cpu {

namespace {

void layer_norm_f64(const double* x, const double* w, const double* b, double eps, double* y, double* mean,
                    double* rstd, int64_t rows, int64_t d) {
#pragma omp parallel for schedule(static) if (rows * d >= kParallelGrain && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = x + r * d;
    double* yr = y + r * d;
    double mu = 0.0, var = 0.0;
    for (int64_t j = 0; j < d; ++j) mu += xr[j];
    mu /= double(d);
    for (int64_t j = 0; j < d; ++j) var += (xr[j] - mu) * (xr[j] - mu);
    var /= double(d);
    const double rs = 1.0 / std::sqrt(var + eps);
    if (mean) mean[r] = mu;
    if (rstd) rstd[r] = rs;
    for (int64_t j = 0; j < d; ++j) {
      double v = (xr[j] - mu) * rs;
      if (w) v *= w[j];
      if (b) v += b[j];
      yr[j] = v;
    }
  }
}

void layer_norm_backward_f64(const double* gy, const double* x, const double* w, const double* mean,
                             const double* rstd, double* gx, double* gw, double* gb, int64_t rows, int64_t d) {
  // one partial sum per slice of rows, nt slices whatever the team: the same bits with any team
  const int nt = (rows * d >= kParallelGrain && rows > 1) ? partition_threads() : 1;
  const bool need_wb = gw || gb;
  std::vector<double> acc(need_wb ? size_t(nt) * 2 * size_t(d) : 0, 0.0);
#pragma omp parallel for schedule(static) if (nt > 1)
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t nth = nt;
    const int64_t r0 = rows * t / nth, r1 = rows * (t + 1) / nth;
    double* sw = need_wb ? acc.data() + size_t(t) * 2 * size_t(d) : nullptr;
    double* sb = need_wb ? sw + d : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
      const double* xr = x + r * d;
      const double* gr = gy + r * d;
      const double mu = mean[r], rs = rstd[r];
      double mg = 0.0, mgx = 0.0;
      for (int64_t j = 0; j < d; ++j) {
        const double xh = (xr[j] - mu) * rs;
        const double g = w ? gr[j] * w[j] : gr[j];
        mg += g;
        mgx += g * xh;
        if (need_wb) {
          sw[j] += gr[j] * xh;
          sb[j] += gr[j];
        }
      }
      mg /= double(d);
      mgx /= double(d);
      if (!gx) continue;
      for (int64_t j = 0; j < d; ++j) {
        const double xh = (xr[j] - mu) * rs;
        const double g = w ? gr[j] * w[j] : gr[j];
        gx[r * d + j] = rs * (g - mg - xh * mgx);
      }
    }
  }
  if (!need_wb) return;
  for (int64_t j = 0; j < d; ++j) {
    double a = 0.0, c = 0.0;
    for (int t = 0; t < nt; ++t) {
      a += acc[size_t(t) * 2 * size_t(d) + size_t(j)];
      c += acc[size_t(t) * 2 * size_t(d) + size_t(d + j)];
    }
    if (gw) gw[j] = a;
    if (gb) gb[j] = c;
  }
}

}  // namespace

template <typename T, typename S>
void layer_norm(const T* x, const T* w, const T* b, double eps, T* y, S* mean, S* rstd, int64_t rows, int64_t d) {
  if (rows <= 0 || d <= 0) return;
  using Native = std::conditional_t<std::is_same_v<T, float>, float, double>;  // the kernel's stats type
  Native* m = nullptr;
  Native* rs = nullptr;
  std::vector<Native> tm, tr;
  if constexpr (std::is_same_v<S, Native>) {
    m = mean;
    rs = rstd;
  }
  if (!m) {
    tm.resize(size_t(rows));
    tr.resize(size_t(rows));
    m = tm.data();
    rs = tr.data();
  }
  if constexpr (std::is_same_v<T, float>) kernels().layer_norm(x, w, b, eps, y, m, rs, rows, d);
  else layer_norm_f64(x, w, b, eps, y, m, rs, rows, d);
  if (!tm.empty()) {
    for (int64_t r = 0; r < rows; ++r) {
      if (mean) mean[r] = S(tm[size_t(r)]);
      if (rstd) rstd[r] = S(tr[size_t(r)]);
    }
  }
}

template <typename T, typename S>
void layer_norm_backward(const T* gy, const T* x, const T* w, const S* mean, const S* rstd, T* gx, T* gw, T* gb,
                         int64_t rows, int64_t d) {
  if (d <= 0) return;
  if (rows <= 0) {
    for (int64_t j = 0; j < d; ++j) {
      if (gw) gw[j] = T(0);
      if (gb) gb[j] = T(0);
    }
    return;
  }
  using Native = std::conditional_t<std::is_same_v<T, float>, float, double>;
  const Native* m = nullptr;
  const Native* rs = nullptr;
  std::vector<Native> tm, tr;
  if constexpr (std::is_same_v<S, Native>) {
    m = mean;
    rs = rstd;
  } else {
    tm.assign(mean, mean + rows);
    tr.assign(rstd, rstd + rows);
    m = tm.data();
    rs = tr.data();
  }
  if constexpr (std::is_same_v<T, float>) kernels().layer_norm_backward(gy, x, w, m, rs, gx, gw, gb, rows, d);
  else layer_norm_backward_f64(gy, x, w, m, rs, gx, gw, gb, rows, d);
}

template void layer_norm<float, float>(const float*, const float*, const float*, double, float*, float*, float*,
                                       int64_t, int64_t);
template void layer_norm<float, double>(const float*, const float*, const float*, double, float*, double*,
                                        double*, int64_t, int64_t);
template void layer_norm<double, float>(const double*, const double*, const double*, double, double*, float*,
                                        float*, int64_t, int64_t);
template void layer_norm<double, double>(const double*, const double*, const double*, double, double*, double*,
                                         double*, int64_t, int64_t);
template void layer_norm_backward<float, float>(const float*, const float*, const float*, const float*,
                                                const float*, float*, float*, float*, int64_t, int64_t);
template void layer_norm_backward<float, double>(const float*, const float*, const float*, const double*,
                                                 const double*, float*, float*, float*, int64_t, int64_t);
template void layer_norm_backward<double, float>(const double*, const double*, const double*, const float*,
                                                 const float*, double*, double*, double*, int64_t, int64_t);
template void layer_norm_backward<double, double>(const double*, const double*, const double*, const double*,
                                                  const double*, double*, double*, double*, int64_t, int64_t);

}  // namespace attn::cpu
