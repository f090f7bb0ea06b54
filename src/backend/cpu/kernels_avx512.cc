// src/backend/cpu/kernels_avx512.cc — the AVX-512 build of kernels_simd.inc (16 float lanes, masked tails).
// Compiled with -mavx512f/bw/vl/dq (CMake: *_avx512.cc); only called when the CPU supports AVX-512F.
// GCC 12 reports the self-initialised _mm512_undefined_*() inside AVX-512 intrinsics as
// -W(maybe-)uninitialized once inlined; the pragma must precede <immintrin.h> to cover those locations.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstdint>

namespace attn::cpu::avx512 {

using vf = __m512;
using vi = __m512i;
using vm = __mmask16;
constexpr int64_t W = 16;

static inline vf vset1(float a) { return _mm512_set1_ps(a); }
static inline vf vzero() { return _mm512_setzero_ps(); }
static inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
static inline vi vload_u16(const uint16_t* p) {  // W values zero-extended to 32 bits
  return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
static inline void vstore_u16(uint16_t* p, vi v) {  // the low 16 bits of each lane
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(v));
}
static inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
static inline vm vtail(int64_t n) { return __mmask16((1u << n) - 1u); }  // 0 <= n < W
static inline vf vload_n(const float* p, int64_t n, vf fill) { return _mm512_mask_loadu_ps(fill, vtail(n), p); }
static inline void vstore_n(float* p, vf v, int64_t n) { _mm512_mask_storeu_ps(p, vtail(n), v); }
static inline void vstream(float* p, vf v) { _mm512_stream_ps(p, v); }  // p 64-byte aligned; non-temporal
static inline void vsfence() { _mm_sfence(); }
static inline vf vrcp(vf a) { return _mm512_rcp14_ps(a); }  // relative error < 2^-14
// p * 2^n for integral n in [-150, 128] (exact scaling, subnormal/overflow results rounded correctly)
#define ATTN_HAVE_SCALEF 1
static inline vf vscale2n(vf p, vf n) { return _mm512_scalef_ps(p, n); }
// t[idx & 31] per lane from a 64-byte aligned table of 32 floats (one two-register permute)
#define ATTN_HAVE_LUT32 1
static inline vf vlut32(const float* t, vi idx) {
  return _mm512_permutex2var_ps(_mm512_load_ps(t), idx, _mm512_load_ps(t + 16));
}

static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vfmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
static inline vf vfnmadd(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
// x86 max/min return the second operand when either is NaN: vmax(c, x) keeps a NaN x.
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vsqrt(vf a) { return _mm512_sqrt_ps(a); }
static inline vf vabs(vf a) { return _mm512_abs_ps(a); }
static inline vf vround(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vi vcvt_i(vf a) { return _mm512_cvtps_epi32(a); }  // exact for integral a
static inline vf vcvt_f(vi a) { return _mm512_cvtepi32_ps(a); }
static inline vi vbits(vf a) { return _mm512_castps_si512(a); }
static inline vf vfrom_bits(vi a) { return _mm512_castsi512_ps(a); }
static inline vi viset1(int32_t a) { return _mm512_set1_epi32(a); }
static inline vi viadd(vi a, vi b) { return _mm512_add_epi32(a, b); }
static inline vi visub(vi a, vi b) { return _mm512_sub_epi32(a, b); }
static inline vi viand(vi a, vi b) { return _mm512_and_si512(a, b); }
static inline vi vior(vi a, vi b) { return _mm512_or_si512(a, b); }
static inline vi vixor(vi a, vi b) { return _mm512_xor_si512(a, b); }
template <int S> static inline vi vsrli(vi a) { return _mm512_srli_epi32(a, S); }
template <int S> static inline vi vsrai(vi a) { return _mm512_srai_epi32(a, S); }
template <int S> static inline vi vslli(vi a) { return _mm512_slli_epi32(a, S); }

static inline vm vlt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static inline vm vle(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
static inline vm vgt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
static inline vm veq(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
static inline vm visnan(vf a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
static inline vm vm_or(vm a, vm b) { return vm(a | b); }
static inline vm vm_none() { return 0; }
static inline bool vm_any(vm a) { return a != 0; }
static inline int64_t vm_first(vm a) { return __builtin_ctz(unsigned(a)); }  // a has a lane set
static inline vf vselect(vm m, vf a, vf b) { return _mm512_mask_blend_ps(m, b, a); }  // m ? a : b
static inline vm vm_from_bits(const uint8_t* p) { return vm(uint32_t(p[0]) | (uint32_t(p[1]) << 8)); }  // lane l: bit l

static inline float vhsum(vf a) { return _mm512_reduce_add_ps(a); }
static inline float vhmax(vf a) { return _mm512_reduce_max_ps(a); }
static inline float vhmin(vf a) { return _mm512_reduce_min_ps(a); }

}  // namespace attn::cpu::avx512

#define ATTN_SIMD_NS avx512
#include "backend/cpu/kernels_simd.inc"
#include "backend/cpu/rnn_gates_simd.inc"  // the fused RNN gate kernels (rnn_gates.h)
#undef ATTN_SIMD_NS
#undef ATTN_HAVE_SCALEF
#undef ATTN_HAVE_LUT32
