// src/backend/cpu/random_avx512.cc — Philox 4x32-10 for 16 blocks at once and the fused float32
// dropout built on it (AVX-512 build; see random_simd.h). Bit-identical to the scalar stream.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/dispatch.h"
#include "backend/cpu/random_simd.h"

namespace attn::cpu::avx512 {

namespace {
// 16 Philox blocks at once (AVX-512): lanes hold blocks counter + b0 .. b0 + 15. The 32x32 -> 64-bit
// products come from vpmuludq on the even and (shifted) odd lanes. Returns the 64 words in element
// order (block-major: word l of block b is element 4 b + l) in four vectors.
// 32 x 32 -> 64-bit products of the 16 lanes of c with m: vpmuludq on the even and (shifted) odd lanes.
inline void mul_hi_lo(__m512i c, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(c, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
  hi = _mm512_mask_blend_epi32(__mmask16(0xAAAA), _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(__mmask16(0xAAAA), even, _mm512_slli_epi64(odd, 32));
}

inline void philox16(uint64_t seed, uint64_t counter, __m512i out[4]) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i lo_base = _mm512_set1_epi32(int32_t(uint32_t(counter)));
  __m512i c0 = _mm512_add_epi32(lo_base, lane);
  const __mmask16 carry = _mm512_cmplt_epu32_mask(c0, lo_base);  // low word wrapped
  __m512i c1 = _mm512_mask_add_epi32(_mm512_set1_epi32(int32_t(uint32_t(counter >> 32))), carry,
                                     _mm512_set1_epi32(int32_t(uint32_t(counter >> 32))), _mm512_set1_epi32(1));
  __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53u), m1 = _mm512_set1_epi64(0xCD9E8D57u);
  for (int r = 0; r < 10; ++r) {
    __m512i hi0, lo0, hi1, lo1;
    mul_hi_lo(c0, m0, hi0, lo0);
    mul_hi_lo(c2, m1, hi1, lo1);
    const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(int32_t(k0)));
    const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(int32_t(k1)));
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  // (word, block) -> element order: 4x4 transposes inside 128-bit lanes, then across them
  const __m512i l01 = _mm512_unpacklo_epi32(c0, c1), h01 = _mm512_unpackhi_epi32(c0, c1);
  const __m512i l23 = _mm512_unpacklo_epi32(c2, c3), h23 = _mm512_unpackhi_epi32(c2, c3);
  const __m512i a = _mm512_unpacklo_epi64(l01, l23), b = _mm512_unpackhi_epi64(l01, l23);
  const __m512i c = _mm512_unpacklo_epi64(h01, h23), d = _mm512_unpackhi_epi64(h01, h23);
  const __m512i t0 = _mm512_shuffle_i32x4(a, b, 0x44), t1 = _mm512_shuffle_i32x4(c, d, 0x44);
  const __m512i t2 = _mm512_shuffle_i32x4(a, b, 0xEE), t3 = _mm512_shuffle_i32x4(c, d, 0xEE);
  out[0] = _mm512_shuffle_i32x4(t0, t1, 0x88);
  out[1] = _mm512_shuffle_i32x4(t0, t1, 0xDD);
  out[2] = _mm512_shuffle_i32x4(t2, t3, 0x88);
  out[3] = _mm512_shuffle_i32x4(t2, t3, 0xDD);
}

}  // namespace

namespace {
// float32 dropout (of relu(x) when Relu) over whole groups of 16 blocks (64 elements)
template <bool Relu>
int64_t dropout_groups(const float* x, int64_t n, float keep_below, float scale, uint64_t seed, uint64_t counter,
                       float* out, uint8_t* keep, uint8_t* pass) {
  const int64_t groups = n / 64;
  const __m512 unit = _mm512_set1_ps(1.0f / 16777216.0f), kb = _mm512_set1_ps(keep_below), sc = _mm512_set1_ps(scale);
  const __m512 zero = _mm512_setzero_ps();
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t g = 0; g < groups; ++g) {
    __m512i w[4];
    philox16(seed, counter + uint64_t(16 * g), w);
    for (int q = 0; q < 4; ++q) {
      const int64_t e = 64 * g + 16 * q;
      const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w[q], 8)), unit);
      const __mmask16 k = _mm512_cmp_ps_mask(u, kb, _CMP_LT_OQ);
      keep[e / 8] = uint8_t(k);  // lanes 0-7: elements e .. e + 7
      keep[e / 8 + 1] = uint8_t(k >> 8);
      __m512 v = _mm512_loadu_ps(x + e);
      if constexpr (Relu) {
        v = _mm512_max_ps(zero, v);  // NaN stays NaN, as UnaryOp::Relu
        const __mmask16 pm = _mm512_cmp_ps_mask(v, zero, _CMP_NLE_UQ);  // !(y <= 0): ReLU's backward passes
        pass[e / 8] = uint8_t(pm);
        pass[e / 8 + 1] = uint8_t(pm >> 8);
      }
      _mm512_storeu_ps(out + e, _mm512_mul_ps(v, _mm512_maskz_mov_ps(k, sc)));
    }
  }
  return groups * 64;
}
}  // namespace

int64_t dropout_f32(const float* x, int64_t n, float keep_below, float scale, uint64_t seed, uint64_t counter,
                    float* out, uint8_t* keep, uint8_t* pass) {
  return pass ? dropout_groups<true>(x, n, keep_below, scale, seed, counter, out, keep, pass)
              : dropout_groups<false>(x, n, keep_below, scale, seed, counter, out, keep, nullptr);
}

void keep_scales64(uint64_t seed, uint64_t counter, uint32_t keep_below24, float scale, float* mult) {
  __m512i w[4];
  philox16(seed, counter, w);
  const __m512i kb = _mm512_set1_epi32(int32_t(keep_below24));
  const __m512 sc = _mm512_set1_ps(scale);
  for (int q = 0; q < 4; ++q)
    _mm512_storeu_ps(mult + 16 * q, _mm512_maskz_mov_ps(_mm512_cmplt_epu32_mask(_mm512_srli_epi32(w[q], 8), kb), sc));
}

}  // namespace attn::cpu::avx512
