// src/backend/cpu/attention_avx512.cc — the AVX-512 build of attention_simd.inc (16 float lanes, 4x4
// register tiles). Compiled with -mavx512f/bw/vl/dq (CMake: *_avx512.cc); used only when the CPU has them.
// (See kernels_avx512.cc for why the -W(maybe-)uninitialized pragmas precede <immintrin.h>.)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstdint>

namespace attn::cpu::avx512_sdpa {

using vf = __m512;
constexpr int64_t W = 16;
constexpr int kNV = 4;  // vectors per register tile row: 4 rows x 4 = 16 accumulators of 32 registers

static inline vf vset1(float a) { return _mm512_set1_ps(a); }
static inline vf vzero() { return _mm512_setzero_ps(); }
static inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vfmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
static inline vf vfnmadd(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
static inline vf vpow2i(vf p, vf n) { return _mm512_scalef_ps(p, n); }  // p * 2^n, n integral
static inline vf vzero_where_eq(vf v, vf x, vf y) {                   // x == y ? 0 : v
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, y, _CMP_NEQ_UQ), v);
}
static inline float vhsum(vf a) { return _mm512_reduce_add_ps(a); }
static inline float vhmax(vf a) { return _mm512_reduce_max_ps(a); }
static inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
// lanes >= k (k may be <= 0 or >= 16) replaced by y's
static inline vf vmask_from(vf x, vf y, int64_t k) {
  const __mmask16 keep = k <= 0 ? __mmask16(0) : k >= 16 ? __mmask16(0xffff) : __mmask16((1u << k) - 1);
  return _mm512_mask_blend_ps(keep, y, x);
}
// dst[c * ldd + r] = src[r * lds + c], r, c < 16
static inline void vtranspose_block(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // r[4i + k]: rows 4i .. 4i+3 of columns k, k+4, k+8, k+12 (one per 128-bit lane)
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]),
                  c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; ++k) {
    const __m512 u0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44), u1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xEE),
                 u2 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44),
                 u3 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xEE);
    _mm512_storeu_ps(dst + (k + 0) * ldd, _mm512_shuffle_f32x4(u0, u2, 0x88));
    _mm512_storeu_ps(dst + (k + 4) * ldd, _mm512_shuffle_f32x4(u0, u2, 0xDD));
    _mm512_storeu_ps(dst + (k + 8) * ldd, _mm512_shuffle_f32x4(u1, u3, 0x88));
    _mm512_storeu_ps(dst + (k + 12) * ldd, _mm512_shuffle_f32x4(u1, u3, 0xDD));
  }
}

}  // namespace attn::cpu::avx512_sdpa

#define ATTN_SIMD_NS avx512_sdpa
#include "backend/cpu/attention_simd.inc"
#undef ATTN_SIMD_NS

namespace attn::cpu::avx512 {
const SdpaKernels& sdpa_kernels() { return avx512_sdpa::sdpa_kernels(); }
}  // namespace attn::cpu::avx512
