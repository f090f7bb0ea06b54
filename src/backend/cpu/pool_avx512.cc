// src/backend/cpu/pool_avx512.cc — AVX-512 rows of the 2x2 / stride 2 max pool (forward and backward),
// called by pool.cc when the active ISA is AVX-512; pool.cc's SSE2 and scalar loops are the fallback
// and, with max_plane, the oracle (tests/test_pool.cc compares them on random and NaN-laden planes).
//
//   bool nan = false;
//   int64_t done = avx512::max_row_2x2(r0, r1, yr, ir, out_w, w, base, nan);  // outputs [0, done) written
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/pool_simd.h"

namespace attn::cpu::avx512 {

namespace {
inline __mmask16 first_n(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }
}  // namespace

// 16 windows per step: the two input rows' 32 floats are split into even and odd columns with one
// permute each; max tree; the argmax offset is the first of (0, 1, w, w + 1) whose value equals the max.
int64_t max_row_2x2(const float* r0, const float* r1, float* yr, int64_t* ir, int64_t n, int64_t w, int64_t base,
                    bool& nan) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32(int32_t(w)), w1 = _mm512_set1_epi32(int32_t(w + 1));
  __mmask16 unord = 0;
  for (int64_t ow = 0; ow < n; ow += 16) {
    const int64_t cnt = n - ow < 16 ? n - ow : 16;  // outputs this step
    const int64_t in = 2 * cnt;                     // inputs per row
    const __mmask16 m_lo = first_n(in), m_hi = first_n(in - 16 > 0 ? in - 16 : 0), m_out = first_n(cnt);
    const __m512 a0 = _mm512_maskz_loadu_ps(m_lo, r0 + 2 * ow), a1 = _mm512_maskz_loadu_ps(m_hi, r0 + 2 * ow + 16);
    const __m512 b0 = _mm512_maskz_loadu_ps(m_lo, r1 + 2 * ow), b1 = _mm512_maskz_loadu_ps(m_hi, r1 + 2 * ow + 16);
    const __m512 v0 = _mm512_permutex2var_ps(a0, even, a1), v1 = _mm512_permutex2var_ps(a0, odd, a1);
    const __m512 v2 = _mm512_permutex2var_ps(b0, even, b1), v3 = _mm512_permutex2var_ps(b0, odd, b1);
    const __m512 m = _mm512_max_ps(_mm512_max_ps(v0, v1), _mm512_max_ps(v2, v3));
    unord |= __mmask16((_mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v2, v3, _CMP_UNORD_Q)) & m_out);
    const __mmask16 e0 = _mm512_cmp_ps_mask(v0, m, _CMP_EQ_OQ), e1 = _mm512_cmp_ps_mask(v1, m, _CMP_EQ_OQ);
    const __mmask16 e2 = _mm512_cmp_ps_mask(v2, m, _CMP_EQ_OQ);
    __m512i off = _mm512_mask_blend_epi32(e2, w1, wv);        // e2 ? w : w + 1
    off = _mm512_mask_blend_epi32(e1, off, one);               // e1 ? 1 : ...
    off = _mm512_maskz_mov_epi32(__mmask16(~e0), off);         // e0 ? 0 : ...
    _mm512_mask_storeu_ps(yr + ow, m_out, m);
    // flat index = base + 2 (ow + lane) + off, widened to int64 in two halves
    const __m512i rel = _mm512_add_epi32(off, lane2);
    const __m512i b64 = _mm512_set1_epi64(base + 2 * ow);
    const __m512i lo = _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(rel)), b64);
    const __m512i hi = _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(rel, 1)), b64);
    _mm512_mask_storeu_epi64(ir + ow, __mmask8(m_out & 0xFF), lo);
    if (cnt > 8) _mm512_mask_storeu_epi64(ir + ow + 8, __mmask8(m_out >> 8), hi);
  }
  nan |= unord != 0;
  return n;
}

// Backward of one output row: the window of output o gets grad[o] at its argmax and 0 elsewhere (the
// windows do not overlap, so every input element of the two rows is written once). Returns false,
// writing nothing, when an index is not inside its own window (then the caller scatters instead).
bool max_row_2x2_backward(const float* g, const int64_t* ir, float* r0, float* r1, int64_t n, int64_t w,
                          int64_t base) {
  const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32(int32_t(w)), w1 = _mm512_set1_epi32(int32_t(w + 1));
  const __m512i zero = _mm512_setzero_si512();
  // pass 1: validate (cheap; the indices come from the forward, so this never fails in practice)
  for (int64_t ow = 0; ow < n; ow += 16) {
    const int64_t cnt = n - ow < 16 ? n - ow : 16;
    const __mmask16 m_out = first_n(cnt);
    const __m512i b64 = _mm512_set1_epi64(base + 2 * ow);
    const __m512i lo = _mm512_sub_epi64(_mm512_maskz_loadu_epi64(__mmask8(m_out & 0xFF), ir + ow), b64);
    const __m512i hi = _mm512_sub_epi64(_mm512_maskz_loadu_epi64(__mmask8(m_out >> 8), ir + ow + 8), b64);
    // relative offsets must fit int32 before narrowing: compare in 64 bits against [0, w + 32)
    const __m512i lim = _mm512_set1_epi64(w + 32);
    const __mmask8 v_lo = __mmask8(m_out & 0xFF), v_hi = __mmask8(m_out >> 8);  // only the valid lanes
    if ((_mm512_mask_cmp_epi64_mask(v_lo, lo, _mm512_setzero_si512(), _MM_CMPINT_LT) |
         _mm512_mask_cmp_epi64_mask(v_lo, lo, lim, _MM_CMPINT_NLT) |
         _mm512_mask_cmp_epi64_mask(v_hi, hi, _mm512_setzero_si512(), _MM_CMPINT_LT) |
         _mm512_mask_cmp_epi64_mask(v_hi, hi, lim, _MM_CMPINT_NLT)) != 0)
      return false;
    const __m512i rel = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(lo)), _mm512_cvtepi64_epi32(hi), 1);
    const __m512i off = _mm512_sub_epi32(rel, lane2);
    const __mmask16 ok = _mm512_cmpeq_epi32_mask(off, zero) | _mm512_cmpeq_epi32_mask(off, one) |
                         _mm512_cmpeq_epi32_mask(off, wv) | _mm512_cmpeq_epi32_mask(off, w1);
    if ((ok & m_out) != m_out) return false;
  }
  const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t ow = 0; ow < n; ow += 16) {
    const int64_t cnt = n - ow < 16 ? n - ow : 16;
    const int64_t in = 2 * cnt;
    const __mmask16 m_out = first_n(cnt), m_lo = first_n(in), m_hi = first_n(in - 16 > 0 ? in - 16 : 0);
    const __m512i b64 = _mm512_set1_epi64(base + 2 * ow);
    const __m512i lo = _mm512_sub_epi64(_mm512_maskz_loadu_epi64(__mmask8(m_out & 0xFF), ir + ow), b64);
    const __m512i hi = _mm512_sub_epi64(_mm512_maskz_loadu_epi64(__mmask8(m_out >> 8), ir + ow + 8), b64);
    const __m512i rel = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(lo)), _mm512_cvtepi64_epi32(hi), 1);
    const __m512i off = _mm512_sub_epi32(rel, lane2);
    const __m512 gv = _mm512_maskz_loadu_ps(m_out, g + ow);
    const __m512 g0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(off, zero), gv);
    const __m512 g1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(off, one), gv);
    const __m512 g2 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(off, wv), gv);
    const __m512 g3 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(off, w1), gv);
    // interleave (even, odd) columns back into the two input rows
    _mm512_mask_storeu_ps(r0 + 2 * ow, m_lo, _mm512_permutex2var_ps(g0, ilo, g1));
    _mm512_mask_storeu_ps(r0 + 2 * ow + 16, m_hi, _mm512_permutex2var_ps(g0, ihi, g1));
    _mm512_mask_storeu_ps(r1 + 2 * ow, m_lo, _mm512_permutex2var_ps(g2, ilo, g3));
    _mm512_mask_storeu_ps(r1 + 2 * ow + 16, m_hi, _mm512_permutex2var_ps(g2, ihi, g3));
  }
  return true;
}

}  // namespace attn::cpu::avx512
