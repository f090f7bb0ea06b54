// src/backend/cpu/elementwise_bf16.cc — bf16 elementwise kernels (autocast's GELU, ReLU, ... and their
// backward) as the float32 kernels on blocks widened into the cache: one pass over memory instead of
// the three of widen, compute, narrow through full-size float32 temporaries. Same bits as that composite:
// each element is widened exactly, computed by the same float32 kernel (or unary_scalar where the op
// has none) and rounded to nearest even as BFloat16(float).
//
//   cpu::unary_bf16(UnaryOp::GeluErf, x, y, n, 0.f);          // x, y: n contiguous bf16 values
//   cpu::unary_backward_bf16(UnaryGradOp::GeluErf, x, gy, gx, n, 0.f);
//
// Transcendental ops on large inputs read a table of all 65536 bf16 inputs made by the same kernel.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "attn/dtype.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/scalar_math.h"

namespace attn::cpu {
namespace {

constexpr int64_t kBlock = 2048;  // 8 KiB of float32 per buffer: three fit in L1 beside the kernel's data

// body(lo, m, a, b, out) on blocks of float32 buffers, the blocks split over the threads when large.
template <typename Body> void blocks(int64_t n, Body body) {
  const int64_t count = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t c = 0; c < count; ++c) {
    alignas(64) float a[kBlock], b[kBlock], out[kBlock];
    const int64_t lo = c * kBlock, m = std::min(kBlock, n - lo);
    body(lo, m, a, b, out);
  }
}

}  // namespace

void widen_bf16(const uint16_t* h, float* f, int64_t n) { kernels().widen_bf16(h, f, n); }
void narrow_bf16(const float* f, uint16_t* h, int64_t n) { kernels().narrow_bf16(f, h, n); }

namespace ref {
void widen_bf16(const uint16_t* h, float* f, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = uint32_t(h[i]) << 16;
    std::memcpy(f + i, &u, sizeof u);
  }
}

void narrow_bf16(const float* f, uint16_t* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, f + i, sizeof u);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    h[i] = uint16_t((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : rounded);
  }
}
}  // namespace ref

namespace {
void unary_blocks(UnaryOp op, const uint16_t* x, uint16_t* y, int64_t n, float alpha) {
  blocks(n, [&](int64_t lo, int64_t m, float* a, float*, float* out) {
    widen_bf16(x + lo, a, m);
    if (!unary(op, a, out, m, alpha))
      for (int64_t i = 0; i < m; ++i) out[i] = unary_scalar<float>(op, a[i], alpha);
    narrow_bf16(out, y + lo, m);
  });
}

// The transcendental ops cost more per element (GELU's erf: ~90 cycles per 16 lanes with its tail) than
// a load from a table of all 65536 bf16 inputs, made once per op, alpha and ISA by unary_blocks itself:
// the same bits at a lookup per element (MiniLM's bf16 GELU: docs/benchmarks.md).
bool tabulated(UnaryOp op) {
  switch (op) {
    case UnaryOp::GeluErf: case UnaryOp::GeluTanh: case UnaryOp::Sigmoid: case UnaryOp::Tanh:
    case UnaryOp::Exp: case UnaryOp::Log: case UnaryOp::Sin: case UnaryOp::Cos:
      return true;
    default:
      return false;
  }
}
const uint16_t* table_of(UnaryOp op, float alpha) {
  static std::mutex mu;
  static std::map<std::tuple<int, uint32_t, int>, std::vector<uint16_t>> tables;  // never erased
  uint32_t alpha_bits;
  std::memcpy(&alpha_bits, &alpha, sizeof alpha_bits);
  const std::lock_guard lock(mu);
  std::vector<uint16_t>& t = tables[{int(op), alpha_bits, int(active_isa())}];
  if (t.empty()) {
    std::vector<uint16_t> all(65536);
    for (size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i);
    t.resize(all.size());
    unary_blocks(op, all.data(), t.data(), int64_t(all.size()), alpha);
  }
  return t.data();
}
}  // namespace

void unary_bf16(UnaryOp op, const uint16_t* x, uint16_t* y, int64_t n, float alpha) {
  if (n < kParallelGrain || !tabulated(op)) return unary_blocks(op, x, y, n, alpha);
  const uint16_t* t = table_of(op, alpha);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = t[x[i]];
}

void binary_mixed(BinaryOp op, const void* a, bool a_bf16, const void* b, bool b_bf16, void* out, bool out_bf16,
                  int64_t n) {
  blocks(n, [&](int64_t lo, int64_t m, float* fa, float* fb, float* fo) {
    auto operand = [&](const void* p, bool bf16, float* buf) -> const float* {
      if (!bf16) return static_cast<const float*>(p) + lo;
      widen_bf16(static_cast<const uint16_t*>(p) + lo, buf, m);
      return buf;
    };
    const float *x = operand(a, a_bf16, fa), *y = operand(b, b_bf16, fb);
    float* o = out_bf16 ? fo : static_cast<float*>(out) + lo;
    if (!binary(op, x, m, y, m, o, m)) throw std::invalid_argument("binary_mixed: only Add .. Minimum");
    if (out_bf16) narrow_bf16(fo, static_cast<uint16_t*>(out) + lo, m);
  });
}

namespace {
float bf16_dropout_scale(double p) { return float(BFloat16(float(1.0 / (1.0 - p)))); }
}  // namespace

// Blocks start at multiples of kBlock (of 64): whole keep / pass bytes and Philox blocks each.
void dropout_bf16(const uint16_t* x, int64_t n, double p, uint64_t seed, uint64_t counter, uint16_t* out,
                  uint8_t* keep, uint8_t* pass) {
  static_assert(kBlock % 64 == 0);
  const float keep_below = float(1.0 - p), scale = bf16_dropout_scale(p);
  blocks(n, [&](int64_t lo, int64_t m, float* a, float*, float* o) {
    widen_bf16(x + lo, a, m);
    dropout_scaled(a, m, keep_below, scale, seed, counter + uint64_t(lo / 4), o, keep + lo / 8,
                   pass ? pass + lo / 8 : nullptr);
    narrow_bf16(o, out + lo, m);
  });
}

void dropout_backward_bf16(const uint16_t* gy, const uint8_t* keep, const uint8_t* pass, double p, uint16_t* gx,
                           int64_t n) {
  const float scale = bf16_dropout_scale(p);
  blocks(n, [&](int64_t lo, int64_t m, float* g, float*, float* o) {
    widen_bf16(gy + lo, g, m);
    if (pass) kernels().relu_dropout_backward(g, keep + lo / 8, pass + lo / 8, scale, o, m);
    else kernels().dropout_backward(g, keep + lo / 8, scale, o, m);
    narrow_bf16(o, gx + lo, m);
  });
}

void unary_backward_bf16(UnaryGradOp op, const uint16_t* x_or_y, const uint16_t* gy, uint16_t* gx, int64_t n,
                         float alpha) {
  blocks(n, [&](int64_t lo, int64_t m, float* v, float* g, float* out) {
    widen_bf16(x_or_y + lo, v, m);
    widen_bf16(gy + lo, g, m);
    if (!unary_backward(op, v, g, out, m, alpha))
      for (int64_t i = 0; i < m; ++i) out[i] = unary_grad_scalar<float>(op, v[i], g[i], alpha);
    narrow_bf16(out, gx + lo, m);
  });
}

}  // namespace attn::cpu
