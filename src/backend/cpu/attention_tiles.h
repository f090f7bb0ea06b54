// src/backend/cpu/attention_tiles.h — what the two tiled attention paths share (internal to the CPU
// backend): tile sizes, strided operand views, the masks applied to a score row, and the scalar path's
// entries (attention_scalar.cc: float64, and float32 / bf16 on the Reference ISA), which attention.cc
// (the float32 / bf16 SIMD path) falls back to.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

#include "attn/dtype.h"
#include "backend/backend.h"
#include "backend/cpu/kernels.h"

namespace attn::cpu::sdpa_tiles {

using backend::SdpaArgs;
using backend::TensorRef;

constexpr int64_t kBr = 64, kBc = 64;  // query rows, keys per tile
inline int64_t pad16(int64_t x) { return (x + 15) / 16 * 16; }

// A strided 4-d operand (N, H, rows, cols).
template <typename T> struct Op4 {
  T* p;
  int64_t s0, s1, s2, s3;
  explicit Op4(const TensorRef& r)
      : p(static_cast<T*>(r.data)), s0(r.strides[0]), s1(r.strides[1]), s2(r.strides[2]), s3(r.strides[3]) {}
  T* row(int64_t n, int64_t h, int64_t i) const { return p + n * s0 + h * s1 + i * s2; }
};

// Masks of one call, applied to one row of a score tile.
template <typename T> struct Masker {
  const SdpaArgs& a;
  const bool* mb = nullptr;  // attn_mask, bool: true = take part
  const T* mf = nullptr;     // attn_mask, float: added
  int64_t ms[4] = {0, 0, 0, 0};
  const bool* kb = nullptr;  // key_padding_mask, bool: true = ignore
  const T* kf = nullptr;     // key_padding_mask, float: added
  int64_t ks[2] = {0, 0};
  explicit Masker(const SdpaArgs& args) : a(args) {
    if (a.attn_mask.data) {
      if (a.attn_mask.dtype == kBool) mb = static_cast<const bool*>(a.attn_mask.data);
      else mf = static_cast<const T*>(a.attn_mask.data);
      for (int i = 0; i < 4; ++i) ms[i] = a.attn_mask.strides[size_t(i)];
    }
    if (a.key_padding_mask.data) {
      if (a.key_padding_mask.dtype == kBool) kb = static_cast<const bool*>(a.key_padding_mask.data);
      else kf = static_cast<const T*>(a.key_padding_mask.data);
      for (int i = 0; i < 2; ++i) ks[i] = a.key_padding_mask.strides[size_t(i)];
    }
  }
  bool has_key_bias() const { return kb || kf; }
  // the key padding of keys j0 .. j0 + bc of batch n as an additive bias (0 or -inf, or the float mask):
  // the same for every query row, so made once per key block
  void key_bias(int64_t n, int64_t j0, int64_t bc, T* bias) const {
    constexpr T ninf = -std::numeric_limits<T>::infinity();
    if (kb) {
      const bool* m = kb + n * ks[0] + j0 * ks[1];
      for (int64_t c = 0; c < bc; ++c) bias[c] = m[c * ks[1]] ? ninf : T(0);
    } else {
      const T* m = kf + n * ks[0] + j0 * ks[1];
      for (int64_t c = 0; c < bc; ++c) bias[c] = m[c * ks[1]];
    }
  }
  bool has_attn_mask() const { return mb || mf; }
  // attn_mask only (key padding and causal are handled by the caller)
  void apply_attn_mask(T* s, int64_t n, int64_t h, int64_t i, int64_t j0, int64_t bc) const {
    constexpr T ninf = -std::numeric_limits<T>::infinity();
    if (mb) {
      const bool* m = mb + n * ms[0] + h * ms[1] + i * ms[2] + j0 * ms[3];
      for (int64_t c = 0; c < bc; ++c)
        if (!m[c * ms[3]]) s[c] = ninf;
    } else if (mf) {
      const T* m = mf + n * ms[0] + h * ms[1] + i * ms[2] + j0 * ms[3];
      for (int64_t c = 0; c < bc; ++c) s[c] += m[c * ms[3]];
    }
  }
  // s[c]: the score of key j0 + c, c < bc, for query i of (n, h); kbias from key_bias() or null.
  void apply(T* s, int64_t n, int64_t h, int64_t i, int64_t j0, int64_t bc, const T* kbias) const {
    constexpr T ninf = -std::numeric_limits<T>::infinity();
    apply_attn_mask(s, n, h, i, j0, bc);
    if (kbias)
      for (int64_t c = 0; c < bc; ++c) s[c] += kbias[c];
    if (a.is_causal)
      for (int64_t c = std::max<int64_t>(0, i - j0 + 1); c < bc; ++c) s[c] = ninf;
  }
};

// Keys a query block [i0, i0 + br) can see: all S, or j <= i0 + br - 1 when causal.
inline int64_t key_end(const SdpaArgs& a, int64_t i0, int64_t br) {
  return a.is_causal ? std::min(a.s, i0 + br) : a.s;
}

template <typename T> bool worth_threads(const SdpaArgs& a) {
  return double(a.n * a.h) * double(a.l) * double(a.s) * double(a.d + a.dv) >= double(1 << 18);
}

// one output row of Dv values (already normalised) into a float32 or bf16 row with stride s3
inline void store_row(float* dst, int64_t s3, const float* src, int64_t dv) {
  if (s3 == 1) std::copy(src, src + dv, dst);
  else
    for (int64_t e = 0; e < dv; ++e) dst[e * s3] = src[e];
}
inline void store_row(BFloat16* dst, int64_t s3, const float* src, int64_t dv) {
  if (s3 == 1) narrow_bf16(src, reinterpret_cast<uint16_t*>(dst), dv);  // the same rounding, on vectors
  else
    for (int64_t e = 0; e < dv; ++e) dst[e * s3] = BFloat16(src[e]);
}

// The scalar tiled path (attention_scalar.cc), T = float or double: lse has q's dtype.
template <typename T>
void forward_tiled(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v, const TensorRef& out,
                   T* lse);
template <typename T>
void backward_tiled(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                    const TensorRef& out, const T* lse, const TensorRef& gout, const TensorRef& gq, const TensorRef& gk,
                    const TensorRef& gv);
// bf16 operands without SIMD kernels: float32 copies through the scalar path, each result rounded once.
void forward_bf16_widened(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                          const TensorRef& out, float* lse);
void backward_bf16_widened(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                           const TensorRef& out, const float* lse, const TensorRef& gout, const TensorRef& gq,
                           const TensorRef& gk, const TensorRef& gv);

}  // namespace attn::cpu::sdpa_tiles
