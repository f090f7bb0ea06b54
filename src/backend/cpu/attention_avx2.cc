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
static inline vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
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

}  // namespace attn::cpu::avx2_sdpa

#define ATTN_SIMD_NS avx2_sdpa
#include "backend/cpu/attention_simd.inc"
#undef ATTN_SIMD_NS

namespace attn::cpu::avx2 {
const SdpaKernels& sdpa_kernels() { return avx2_sdpa::sdpa_kernels(); }
}  // namespace attn::cpu::avx2
