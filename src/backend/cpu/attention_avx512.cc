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
static inline vf vround(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vf vpow2i(vf p, vf n) { return _mm512_scalef_ps(p, n); }  // p * 2^n, n integral
static inline vf vzero_where_eq(vf v, vf x, vf y) {                   // x == y ? 0 : v
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, y, _CMP_NEQ_UQ), v);
}
static inline float vhsum(vf a) { return _mm512_reduce_add_ps(a); }

}  // namespace attn::cpu::avx512_sdpa

#define ATTN_SIMD_NS avx512_sdpa
#include "backend/cpu/attention_simd.inc"
#undef ATTN_SIMD_NS

namespace attn::cpu::avx512 {
const SdpaKernels& sdpa_kernels() { return avx512_sdpa::sdpa_kernels(); }
}  // namespace attn::cpu::avx512
