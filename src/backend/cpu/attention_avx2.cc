// src/backend/cpu/attention_avx2.cc — the AVX2+FMA build of attention_simd.inc (8 float lanes, 4x2
// register tiles of the 16 registers). Compiled with -mavx2 -mfma (CMake: *_avx2.cc).
#include <immintrin.h>

#include <cstdint>

namespace attn::cpu::avx2_sdpa {

using vf = __m256;
constexpr int64_t W = 8;
constexpr int kNV = 2;  // 4 rows x 2 vectors = 8 accumulators of 16 registers

static inline vf vset1(float a) { return _mm256_set1_ps(a); }
static inline vf vzero() { return _mm256_setzero_ps(); }
static inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vfmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vfnmadd(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf vpow2i(vf p, vf n) {  // p * 2^n for integral n in [-126, 127]: build 2^n's exponent bits
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
static inline vf vzero_where_eq(vf v, vf x, vf y) { return _mm256_andnot_ps(_mm256_cmp_ps(x, y, _CMP_EQ_OQ), v); }
static inline float vhsum(vf a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
static inline float vhmax(vf a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
static inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
// lanes >= k (k may be <= 0 or >= 8) replaced by y's
static inline vf vmask_from(vf x, vf y, int64_t k) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int kk = k <= 0 ? 0 : k >= 8 ? 8 : int(k);
  const __m256 masked = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(kk), lane));  // lane < k: keep
  return _mm256_blendv_ps(y, x, masked);
}
// dst[c * ldd + r] = src[r * lds + c], r, c < 8
static inline void vtranspose_block(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {  // r[4i + k]: rows 4i .. 4i+3 of columns k (low half) and k+4 (high half)
    const __m256d a = _mm256_castps_pd(t[4 * i]), b = _mm256_castps_pd(t[4 * i + 1]),
                  c = _mm256_castps_pd(t[4 * i + 2]), d = _mm256_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_ps(dst + k * ldd, _mm256_permute2f128_ps(r[k], r[4 + k], 0x20));
    _mm256_storeu_ps(dst + (k + 4) * ldd, _mm256_permute2f128_ps(r[k], r[4 + k], 0x31));
  }
}

}  // namespace attn::cpu::avx2_sdpa

#define ATTN_SIMD_NS avx2_sdpa
#include "backend/cpu/attention_simd.inc"
#undef ATTN_SIMD_NS

namespace attn::cpu::avx2 {
const SdpaKernels& sdpa_kernels() { return avx2_sdpa::sdpa_kernels(); }
}  // namespace attn::cpu::avx2
