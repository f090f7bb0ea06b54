// src/backend/cpu/kernels_avx2.cc — the AVX2+FMA build of kernels_simd.inc (8 float lanes; masks are
// all-ones lanes, tails use maskload/maskstore). Compiled with -mavx2 -mfma (CMake: *_avx2.cc).
#include <immintrin.h>

#include <cstdint>

namespace attn::cpu::avx2 {

using vf = __m256;
using vi = __m256i;
using vm = __m256;  // lane mask: all bits set where true
constexpr int64_t W = 8;

static inline vf vset1(float a) { return _mm256_set1_ps(a); }
static inline vf vzero() { return _mm256_setzero_ps(); }
static inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
static inline vi vtail(int64_t n) {  // lanes < n set, 0 <= n < W
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vf vload_n(const float* p, int64_t n, vf fill) {
  vi m = vtail(n);
  return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline void vstore_n(float* p, vf v, int64_t n) { _mm256_maskstore_ps(p, vtail(n), v); }
static inline void vstream(float* p, vf v) { _mm256_stream_ps(p, v); }  // p 32-byte aligned; non-temporal
static inline void vsfence() { _mm_sfence(); }
static inline vf vrcp(vf a) { return _mm256_rcp_ps(a); }  // relative error < 1.5 * 2^-12

static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vfmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vfnmadd(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vsqrt(vf a) { return _mm256_sqrt_ps(a); }
static inline vf vabs(vf a) { return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }
static inline vi vcvt_i(vf a) { return _mm256_cvtps_epi32(a); }
static inline vf vcvt_f(vi a) { return _mm256_cvtepi32_ps(a); }
static inline vi vbits(vf a) { return _mm256_castps_si256(a); }
static inline vf vfrom_bits(vi a) { return _mm256_castsi256_ps(a); }
static inline vi viset1(int32_t a) { return _mm256_set1_epi32(a); }
static inline vi viadd(vi a, vi b) { return _mm256_add_epi32(a, b); }
static inline vi visub(vi a, vi b) { return _mm256_sub_epi32(a, b); }
static inline vi viand(vi a, vi b) { return _mm256_and_si256(a, b); }
static inline vi vior(vi a, vi b) { return _mm256_or_si256(a, b); }
static inline vi vixor(vi a, vi b) { return _mm256_xor_si256(a, b); }
template <int S> static inline vi vsrli(vi a) { return _mm256_srli_epi32(a, S); }
template <int S> static inline vi vsrai(vi a) { return _mm256_srai_epi32(a, S); }
template <int S> static inline vi vslli(vi a) { return _mm256_slli_epi32(a, S); }

static inline vm vlt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline vm vle(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
static inline vm vgt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline vm veq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
static inline vi vload_u16(const uint16_t* p) {  // W values zero-extended to 32 bits
  return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
static inline void vstore_u16(uint16_t* p, vi v) {  // lanes < 2^16: packed in-lane, then the two halves joined
  const __m256i pk = _mm256_permute4x64_epi64(_mm256_packus_epi32(v, v), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(pk));
}
static inline vm visnan(vf a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
static inline vm vm_or(vm a, vm b) { return _mm256_or_ps(a, b); }
static inline vm vm_none() { return _mm256_setzero_ps(); }
static inline bool vm_any(vm a) { return _mm256_movemask_ps(a) != 0; }
static inline int64_t vm_first(vm a) { return __builtin_ctz(unsigned(_mm256_movemask_ps(a))); }  // a has a lane set
static inline vf vselect(vm m, vf a, vf b) { return _mm256_blendv_ps(b, a, m); }
static inline vm vm_from_bits(const uint8_t* p) {  // lane l: bit l of *p
  const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(*p), bit), bit));
}

static inline float vhsum(vf a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline float vhmax(vf a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline float vhmin(vf a) {
  __m128 s = _mm_min_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_min_ps(s, _mm_movehl_ps(s, s));
  s = _mm_min_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace attn::cpu::avx2

#define ATTN_SIMD_NS avx2
#include "backend/cpu/kernels_simd.inc"
#include "backend/cpu/rnn_gates_simd.inc"  // the fused RNN gate kernels (rnn_gates.h)
#undef ATTN_SIMD_NS
