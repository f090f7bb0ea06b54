// src/backend/cpu/pool.cc — max and average 2-d pooling over contiguous (N, C, H, W), PyTorch semantics.
//
// Output (oh, ow) covers input rows [oh * stride - pad, oh * stride - pad + k) clipped to the input
// (ceil_mode is already in out_h / out_w: the caller drops windows that would start in the padding).
// max: the first maximum wins, NaN propagates (the last NaN's index, as PyTorch), argmax is the flat ih * W + iw index in the
// plane. avg: the divisor counts the padded window (clipped to H + pad) when count_include_pad, else
// only the input elements. Planes (n, c) are independent and split across OpenMP threads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "backend/cpu/dispatch.h"
#include "backend/cpu/linalg_kernels.h"
#include "backend/cpu/pool_simd.h"

namespace attn::cpu {

using backend::Pool2dArgs;

namespace {

constexpr int64_t kParallelWork = 1 << 15;  // below this, one thread beats waking the team

void check(const Pool2dArgs& a, const char* op) {
  bool ok = a.n >= 0 && a.c >= 0 && a.h > 0 && a.w > 0 && a.out_h > 0 && a.out_w > 0 && a.kh > 0 && a.kw > 0 &&
            a.stride_h > 0 && a.stride_w > 0 && a.pad_h >= 0 && a.pad_w >= 0 && a.pad_h * 2 <= a.kh &&
            a.pad_w * 2 <= a.kw && (a.out_h - 1) * a.stride_h - a.pad_h < a.h &&
            (a.out_w - 1) * a.stride_w - a.pad_w < a.w;
  if (!ok) {
    auto s = [](int64_t v) { return std::to_string(v); };
    throw std::invalid_argument(std::string(op) + ": inconsistent arguments (input (" + s(a.n) + ", " + s(a.c) +
                                ", " + s(a.h) + ", " + s(a.w) + "), output (" + s(a.out_h) + ", " + s(a.out_w) +
                                "), kernel (" + s(a.kh) + ", " + s(a.kw) + "), stride (" + s(a.stride_h) + ", " +
                                s(a.stride_w) + "), padding (" + s(a.pad_h) + ", " + s(a.pad_w) + "))");
  }
  if (a.dtype != kFloat32 && a.dtype != kFloat64)
    throw std::invalid_argument(std::string(op) + ": unsupported dtype " + dtype_name(a.dtype));
}

// Each kernel works on one (n, c) plane and takes the arguments by value, so the compiler keeps them
// in registers (through the shared reference of an OpenMP region they would be reloaded per element).

// PyTorch's update: a later element wins if it is greater or NaN (so the first maximum and the last
// NaN win).
template <typename T> inline void take_max(T v, int64_t i, T& best, int64_t& best_i) {
  if (v > best || v != v) {
    best = v;
    best_i = i;
  }
}

template <typename T> void max_plane(const Pool2dArgs a, const T* xp, T* yp, int64_t* ip) {
  for (int64_t oh = 0; oh < a.out_h; ++oh) {
    const int64_t h0 = std::max<int64_t>(oh * a.stride_h - a.pad_h, 0);
    const int64_t h1 = std::min(oh * a.stride_h - a.pad_h + a.kh, a.h);
    for (int64_t ow = 0; ow < a.out_w; ++ow) {
      const int64_t w0 = std::max<int64_t>(ow * a.stride_w - a.pad_w, 0);
      const int64_t w1 = std::min(ow * a.stride_w - a.pad_w + a.kw, a.w);
      T best = -std::numeric_limits<T>::infinity();
      int64_t best_i = h0 * a.w + w0;
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) take_max(xp[ih * a.w + iw], ih * a.w + iw, best, best_i);
      yp[oh * a.out_w + ow] = best;
      ip[oh * a.out_w + ow] = best_i;
    }
  }
}

#if defined(__SSE2__)
// Four 2x2 windows per step (float): deinterleave even/odd columns of both rows, max tree, and the
// argmax offset as the first lane equal to the max (0, 1, w, w + 1). Returns how many outputs of the
// row it wrote (a multiple of 4); `nan` reports a NaN in any of them.
inline int64_t max_row_2x2_sse(const float* r0, const float* r1, float* yr, int64_t* ir, int64_t n, int64_t w,
                               int64_t base, bool& nan) {
  const __m128i one = _mm_set1_epi32(1), wv = _mm_set1_epi32(int32_t(w)), w1 = _mm_set1_epi32(int32_t(w + 1));
  const __m128i zero = _mm_setzero_si128(), lanes_lo = _mm_set_epi64x(2, 0), lanes_hi = _mm_set_epi64x(6, 4);
  __m128 unord = _mm_setzero_ps();
  int64_t ow = 0;
  for (; ow + 4 <= n; ow += 4) {
    const __m128 a0 = _mm_loadu_ps(r0 + 2 * ow), a1 = _mm_loadu_ps(r0 + 2 * ow + 4);
    const __m128 b0 = _mm_loadu_ps(r1 + 2 * ow), b1 = _mm_loadu_ps(r1 + 2 * ow + 4);
    const __m128 v0 = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)), v1 = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1));
    const __m128 v2 = _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)), v3 = _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1));
    const __m128 m = _mm_max_ps(_mm_max_ps(v0, v1), _mm_max_ps(v2, v3));
    unord = _mm_or_ps(unord, _mm_or_ps(_mm_cmpunord_ps(v0, v1), _mm_cmpunord_ps(v2, v3)));
    const __m128i e0 = _mm_castps_si128(_mm_cmpeq_ps(v0, m)), e1 = _mm_castps_si128(_mm_cmpeq_ps(v1, m));
    const __m128i e2 = _mm_castps_si128(_mm_cmpeq_ps(v2, m));
    __m128i off = _mm_or_si128(_mm_and_si128(e2, wv), _mm_andnot_si128(e2, w1));  // e2 ? w : w + 1
    off = _mm_or_si128(_mm_and_si128(e1, one), _mm_andnot_si128(e1, off));        // e1 ? 1 : ...
    off = _mm_andnot_si128(e0, off);                                               // e0 ? 0 : ...
    _mm_storeu_ps(yr + ow, m);
    const __m128i b64 = _mm_set1_epi64x(base + 2 * ow);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(ir + ow),
                     _mm_add_epi64(_mm_unpacklo_epi32(off, zero), _mm_add_epi64(b64, lanes_lo)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(ir + ow + 2),
                     _mm_add_epi64(_mm_unpackhi_epi32(off, zero), _mm_add_epi64(b64, lanes_hi)));
  }
  nan |= _mm_movemask_ps(unord) != 0;
  return ow;
}
#endif

// 2x2 windows, stride 2, no padding (the usual CNN pool) without data-dependent branches: random
// data would mispredict most of them. The max comes from a max tree, the argmax is the first window
// position holding it (= the first maximum). Rows with a NaN are redone by the exact loop above.
template <typename T> void max_plane_2x2(const Pool2dArgs a, const T* xp, T* yp, int64_t* ip, bool avx512) {
  const int64_t w = a.w, ow_n = a.out_w;
  for (int64_t oh = 0; oh < a.out_h; ++oh) {
    const T* r0 = xp + 2 * oh * w;
    const T* r1 = r0 + w;
    T* yr = yp + oh * ow_n;
    int64_t* ir = ip + oh * ow_n;
    bool nan = false;
    int64_t ow = 0;
    if constexpr (std::is_same_v<T, float>) {
      if (w < (int64_t(1) << 30)) {
        if (avx512) ow = avx512::max_row_2x2(r0, r1, yr, ir, ow_n, w, 2 * oh * w, nan);
#if defined(__SSE2__)
        else ow = max_row_2x2_sse(r0, r1, yr, ir, ow_n, w, 2 * oh * w, nan);
#endif
      }
    }
    for (; ow < ow_n; ++ow) {
      const T v0 = r0[2 * ow], v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
      const T m = std::max(std::max(v0, v1), std::max(v2, v3));
      const int64_t k = int64_t(v0 != m) * (1 + int64_t(v1 != m) * (1 + int64_t(v2 != m)));  // 0..3
      yr[ow] = m;
      ir[ow] = 2 * oh * w + 2 * ow + (k & 1) + (k >> 1) * w;
      nan |= (v0 + v1 + v2 + v3) != (v0 + v1 + v2 + v3);  // also true for inf - inf: harmless
    }
    if (nan) {  // redo this row exactly
      Pool2dArgs row = a;
      row.h = 2;
      row.out_h = 1;
      max_plane(row, r0, yr, ir);
      for (int64_t i = 0; i < ow_n; ++i) ir[i] += 2 * oh * w;
    }
  }
}

inline bool is_2x2_stride_2(const Pool2dArgs& a) {
  return a.kh == 2 && a.kw == 2 && a.stride_h == 2 && a.stride_w == 2 && a.pad_h == 0 && a.pad_w == 0 &&
         2 * a.out_h <= a.h && 2 * a.out_w <= a.w;
}

// Backward of one (n, c) plane of the 2x2 / stride 2 pool without a zero fill + scatter: each window
// is written whole (grad at its argmax, 0 elsewhere), then the rows / column the windows leave out are
// zeroed. False (nothing meaningful written) if an index lies outside its window: the caller scatters.
inline bool max_plane_2x2_backward(const Pool2dArgs& a, const float* g, const int64_t* ip, float* gp) {
  const int64_t w = a.w, ow_n = a.out_w;
  for (int64_t oh = 0; oh < a.out_h; ++oh) {
    float* r0 = gp + 2 * oh * w;
    if (!avx512::max_row_2x2_backward(g + oh * ow_n, ip + oh * ow_n, r0, r0 + w, ow_n, w, 2 * oh * w)) return false;
    for (int64_t c = 2 * ow_n; c < w; ++c) r0[c] = r0[w + c] = 0.0f;
  }
  std::fill(gp + 2 * a.out_h * w, gp + a.h * w, 0.0f);
  return true;
}

template <typename T> void max_fwd(const Pool2dArgs& a, const T* x, T* y, int64_t* idx) {
  const int64_t planes = a.n * a.c, in_plane = a.h * a.w, out_plane = a.out_h * a.out_w;
  const bool k2s2 = is_2x2_stride_2(a);
  const bool avx512 = active_isa() == Isa::Avx512;
#pragma omp parallel for schedule(static) if (planes * out_plane * a.kh * a.kw > kParallelWork)
  for (int64_t p = 0; p < planes; ++p) {
    if (k2s2)
      max_plane_2x2(a, x + p * in_plane, y + p * out_plane, idx + p * out_plane, avx512);
    else
      max_plane(a, x + p * in_plane, y + p * out_plane, idx + p * out_plane);
  }
}

template <typename T> void max_bwd(const Pool2dArgs& a, const T* gy, const int64_t* idx, T* gx) {
  const int64_t planes = a.n * a.c, in_plane = a.h * a.w, out_plane = a.out_h * a.out_w;
  bool bad = false;
  const bool fast = std::is_same_v<T, float> && is_2x2_stride_2(a) && active_isa() == Isa::Avx512 &&
                    a.w < (int64_t(1) << 30);
#pragma omp parallel for schedule(static) reduction(|| : bad) if (planes * (in_plane + out_plane) > kParallelWork)
  for (int64_t p = 0; p < planes; ++p) {
    T* gp = gx + p * in_plane;
    const T* g = gy + p * out_plane;
    const int64_t* ip = idx + p * out_plane;
    if constexpr (std::is_same_v<T, float>) {
      if (fast && max_plane_2x2_backward(a, g, ip, gp)) continue;
    }
    std::fill(gp, gp + in_plane, T(0));
    for (int64_t o = 0; o < out_plane; ++o) {
      const int64_t i = ip[o];
      if (i < 0 || i >= in_plane) {
        bad = true;
        continue;
      }
      gp[i] += g[o];
    }
  }
  if (bad) throw std::invalid_argument("max_pool2d_backward: argmax index outside the input plane");
}

// Window bounds and divisor for output position o along one axis (PyTorch's avg_pool2d).
struct Span {
  int64_t lo, hi, padded;
};
inline Span span(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t size) {
  int64_t lo = o * stride - pad, hi = std::min(lo + k, size + pad);
  const int64_t padded = hi - lo;
  return {std::max<int64_t>(lo, 0), std::min(hi, size), padded};
}
inline int64_t divisor(const Pool2dArgs& a, const Span& sh, const Span& sw) {
  return a.count_include_pad ? sh.padded * sw.padded : (sh.hi - sh.lo) * (sw.hi - sw.lo);
}

// Separable: for each output row, the window's input rows are summed into one row (vectorisable), then
// each output sums its columns of that row. Spans and divisors depend on the position only, so they are
// computed once per call.
struct AvgPlan {
  std::vector<Span> rows, cols;
  bool pairs = true;  // every column window is [2 ow, 2 ow + 2), unclipped (kernel 2, stride 2, no padding)
  explicit AvgPlan(const Pool2dArgs& a) {
    for (int64_t oh = 0; oh < a.out_h; ++oh) rows.push_back(span(oh, a.stride_h, a.pad_h, a.kh, a.h));
    for (int64_t ow = 0; ow < a.out_w; ++ow) {
      cols.push_back(span(ow, a.stride_w, a.pad_w, a.kw, a.w));
      pairs = pairs && cols.back().lo == 2 * ow && cols.back().hi == 2 * ow + 2 && cols.back().padded == 2;
    }
  }
  // The divisor shared by every window of an output row when `pairs`, else 0 (use the per-window path).
  int64_t row_divisor(const Pool2dArgs& a, const Span& sh) const {
    return pairs && !cols.empty() ? divisor(a, sh, cols[0]) : 0;
  }
};

template <typename T> void avg_plane(const Pool2dArgs& a, const AvgPlan& plan, const T* xp, T* yp, T* row) {
  for (int64_t oh = 0; oh < a.out_h; ++oh) {
    const Span& sh = plan.rows[size_t(oh)];
    std::fill(row, row + a.w, T(0));
    for (int64_t ih = sh.lo; ih < sh.hi; ++ih) {
      const T* x = xp + ih * a.w;
#pragma omp simd
      for (int64_t iw = 0; iw < a.w; ++iw) row[iw] += x[iw];
    }
    if (const int64_t div = plan.row_divisor(a, sh); div > 0) {  // 2 x 2 / stride 2: one divisor per row
      T* y = yp + oh * a.out_w;
#pragma omp simd
      for (int64_t ow = 0; ow < a.out_w; ++ow) y[ow] = (row[2 * ow] + row[2 * ow + 1]) / T(div);
      continue;
    }
    for (int64_t ow = 0; ow < a.out_w; ++ow) {
      const Span& sw = plan.cols[size_t(ow)];
      const int64_t div = divisor(a, sh, sw);
      T acc = 0;
      for (int64_t iw = sw.lo; iw < sw.hi; ++iw) acc += row[iw];
      yp[oh * a.out_w + ow] = div > 0 ? acc / T(div) : T(0);
    }
  }
}

template <typename T> void avg_plane_backward(const Pool2dArgs& a, const AvgPlan& plan, const T* g, T* gp, T* row) {
  std::fill(gp, gp + a.h * a.w, T(0));
  for (int64_t oh = 0; oh < a.out_h; ++oh) {
    const Span& sh = plan.rows[size_t(oh)];
    std::fill(row, row + a.w, T(0));
    if (const int64_t div = plan.row_divisor(a, sh); div > 0) {
      const T* gr = g + oh * a.out_w;
#pragma omp simd
      for (int64_t ow = 0; ow < a.out_w; ++ow) row[2 * ow] = row[2 * ow + 1] = gr[ow] / T(div);
    } else {
      for (int64_t ow = 0; ow < a.out_w; ++ow) {
        const Span& sw = plan.cols[size_t(ow)];
        const int64_t div = divisor(a, sh, sw);
        if (div <= 0) continue;
        const T v = g[oh * a.out_w + ow] / T(div);
        for (int64_t iw = sw.lo; iw < sw.hi; ++iw) row[iw] += v;
      }
    }
    for (int64_t ih = sh.lo; ih < sh.hi; ++ih) {
      T* x = gp + ih * a.w;
#pragma omp simd
      for (int64_t iw = 0; iw < a.w; ++iw) x[iw] += row[iw];
    }
  }
}

template <typename T> void avg_fwd(const Pool2dArgs& a, const T* x, T* y) {
  const int64_t planes = a.n * a.c, in_plane = a.h * a.w, out_plane = a.out_h * a.out_w;
  const AvgPlan plan(a);
#pragma omp parallel if (planes * out_plane * a.kh * a.kw > kParallelWork)
  {
    std::vector<T> row(size_t(a.w));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) avg_plane(a, plan, x + p * in_plane, y + p * out_plane, row.data());
  }
}

template <typename T> void avg_bwd(const Pool2dArgs& a, const T* gy, T* gx) {
  const int64_t planes = a.n * a.c, in_plane = a.h * a.w, out_plane = a.out_h * a.out_w;
  const AvgPlan plan(a);
#pragma omp parallel if (planes * out_plane * a.kh * a.kw > kParallelWork)
  {
    std::vector<T> row(size_t(a.w));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) avg_plane_backward(a, plan, gy + p * out_plane, gx + p * in_plane, row.data());
  }
}

}  // namespace

void max_pool2d(const Pool2dArgs& a, const void* x, void* y, int64_t* indices) {
  check(a, "max_pool2d");
  if (a.dtype == kFloat32)
    max_fwd(a, static_cast<const float*>(x), static_cast<float*>(y), indices);
  else
    max_fwd(a, static_cast<const double*>(x), static_cast<double*>(y), indices);
}

void max_pool2d_backward(const Pool2dArgs& a, const void* grad_y, const int64_t* indices, void* grad_x) {
  check(a, "max_pool2d_backward");
  if (a.dtype == kFloat32)
    max_bwd(a, static_cast<const float*>(grad_y), indices, static_cast<float*>(grad_x));
  else
    max_bwd(a, static_cast<const double*>(grad_y), indices, static_cast<double*>(grad_x));
}

void avg_pool2d(const Pool2dArgs& a, const void* x, void* y) {
  check(a, "avg_pool2d");
  if (a.dtype == kFloat32)
    avg_fwd(a, static_cast<const float*>(x), static_cast<float*>(y));
  else
    avg_fwd(a, static_cast<const double*>(x), static_cast<double*>(y));
}

void avg_pool2d_backward(const Pool2dArgs& a, const void* grad_y, void* grad_x) {
  check(a, "avg_pool2d_backward");
  if (a.dtype == kFloat32)
    avg_bwd(a, static_cast<const float*>(grad_y), static_cast<float*>(grad_x));
  else
    avg_bwd(a, static_cast<const double*>(grad_y), static_cast<double*>(grad_x));
}

}  // namespace attn::cpu
