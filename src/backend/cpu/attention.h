// src/backend/cpu/attention.h — fused scaled-dot-product attention on CPU (FlashAttention-2 style).
//
//   backend::SdpaArgs a{.n = N, .h = H, .l = L, .s = S, .d = D, .dv = Dv, .scale = 0.125};
//   attn::cpu::sdpa_forward(a, q, k, v, out, lse);       // TensorRefs: q (N, H, L, D), ..., lse (N, H, L)
//   attn::cpu::ref::sdpa_forward(a, q, k, v, out, lse);  // the naive oracle (tests)
//
// attention.cc tiles queries and keys in blocks of 64 and keeps O(block x block) working memory per
// thread (plus (S, D) gradient accumulators in the backward); the float32 tile products and the exps run
// the active ISA's micro-kernels (attention_simd.inc, built as attention_avx512.cc / attention_avx2.cc).
#pragma once
#include <cstdint>

#include "attn/random.h"
#include "backend/backend.h"

namespace attn::cpu {

// Dropout keep-mask of backend::SdpaArgs: score (row, j) with row = (n*H + h)*L + i.
inline uint64_t sdpa_row_counter(const backend::SdpaArgs& a, int64_t row) {
  return a.offset + uint64_t(row) * uint64_t((a.s + 3) / 4);
}
inline bool sdpa_keep_value(uint32_t bits, double p) { return double(uint32_to_unit_float(bits)) < 1.0 - p; }
inline bool sdpa_keep(const backend::SdpaArgs& a, int64_t row, int64_t j) {
  const Philox4 r = philox4x32(a.seed, sdpa_row_counter(a, row) + uint64_t(j / 4));
  return sdpa_keep_value(r.v[j % 4], a.dropout_p);
}
// f(c, kept) for keys j0 + c, c < count, of one row (one Philox block per 4 keys).
template <typename F>
inline void sdpa_for_each_keep(const backend::SdpaArgs& a, int64_t row, int64_t j0, int64_t count, F&& f) {
  const uint64_t base = sdpa_row_counter(a, row);
  for (int64_t j = j0; j < j0 + count;) {
    const Philox4 r = philox4x32(a.seed, base + uint64_t(j / 4));
    for (int64_t lane = j % 4; lane < 4 && j < j0 + count; ++lane, ++j)
      f(j - j0, sdpa_keep_value(r.v[lane], a.dropout_p));
  }
}
// keep[c] for keys j0 .. j0 + count - 1 of one row.
inline void sdpa_keep_row(const backend::SdpaArgs& a, int64_t row, int64_t j0, int64_t count, uint8_t* keep) {
  sdpa_for_each_keep(a, row, j0, count, [keep](int64_t c, bool kept) { keep[c] = kept; });
}

// mult[c] = keep_scale if key j0 + c of score row `row` is kept (sdpa_keep), else 0, for c < count; the
// float32 kernels' dropout. Vectorised (16 Philox blocks at a time) on AVX-512 when j0 % 4 == 0, the
// scalar sdpa_keep_row otherwise. mult must have room for count rounded up to a multiple of 64.
void sdpa_keep_scales(const backend::SdpaArgs& a, int64_t row, int64_t j0, int64_t count, float keep_scale,
                      float* mult);

// float32 micro-kernels of one ISA, on contiguous row-major tiles; n is a multiple of 16.
struct SdpaKernels {
  // c (m, n) = a (m, k) @ b (k, n)  (+ c when accumulate)
  void (*gemm)(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m,
               int64_t k, int64_t n, bool accumulate);
  // s[j] = exp(s[j] - m), 0 where s[j] == -inf; returns the sum. m finite.
  float (*exp_row)(float* s, int64_t n, float m);
  // c (m, n) = a (k, m)ᵀ @ b (k, n)  (+ c when accumulate)
  void (*gemm_at)(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m,
                  int64_t k, int64_t n, bool accumulate);
  // dst[c][r] = src[r][c]; rows and cols multiples of 16
  void (*transpose)(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows, int64_t cols);
  // s[r][c] = s[r][c] * scale + bias[c], -inf where c >= causal_first + r; ncols a multiple of 16
  void (*score_tile)(float* s, int64_t lds, int64_t rows, int64_t ncols, float scale, const float* bias,
                     int64_t causal_first);
  // online softmax step per row r: m[r] = max(m[r], s[r][.]), s = exp(s - m) (0 at -inf), l[r] and o's row
  // rescaled by exp(m_old - m_new) and l[r] += rowsum; rows with m = -inf zeroed
  void (*softmax_tile)(float* s, int64_t lds, int64_t rows, int64_t ncols, float* m, float* l, float* o,
                       int64_t ldo, int64_t ocols);
  // s = exp(s - lse[r]) (0 at -inf; whole row 0 where lse[r] = +inf)
  void (*prob_tile)(float* s, int64_t lds, int64_t rows, int64_t ncols, const float* lse);
  // dp = scale * p * (dp - dr[r])
  void (*ds_tile)(const float* p, int64_t ldp, float* dp, int64_t lddp, int64_t rows, int64_t ncols,
                  const float* dr, float scale);
  // sum a[e] b[e], n a multiple of 16
  float (*row_dot)(const float* a, const float* b, int64_t n);
  // s[r][.] *= 1 / l[r] (0 where l[r] = 0)
  void (*scale_rows)(float* s, int64_t lds, int64_t rows, int64_t ncols, const float* l);
};
namespace avx512 { const SdpaKernels& sdpa_kernels(); }
namespace avx2 { const SdpaKernels& sdpa_kernels(); }

using backend::SdpaArgs;
using backend::TensorRef;
void sdpa_forward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v, const TensorRef& out,
                  const TensorRef& logsumexp);
void sdpa_backward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                   const TensorRef& out, const TensorRef& logsumexp, const TensorRef& grad_out, const TensorRef& grad_q,
                   const TensorRef& grad_k, const TensorRef& grad_v);

namespace ref {
// Naive oracles (reference.cc): one full score row at a time, double accumulation, serial.
void sdpa_forward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v, const TensorRef& out,
                  const TensorRef& logsumexp);
void sdpa_backward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                   const TensorRef& out, const TensorRef& logsumexp, const TensorRef& grad_out, const TensorRef& grad_q,
                   const TensorRef& grad_k, const TensorRef& grad_v);
}  // namespace ref

}  // namespace attn::cpu
