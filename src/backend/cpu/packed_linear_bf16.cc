// src/backend/cpu/packed_linear_bf16.cc — packed_linear.h's bf16 pieces: the pair-interleaved packing,
// the reference kernel, which kernel serves the active ISA and bf16 path, and the team product.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "backend/cpu/dispatch.h"
#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_linear.h"

namespace attn::cpu {

namespace {

float widen(uint16_t h) {
  float f;
  widen_bf16(&h, &f, 1);
  return f;
}
uint16_t narrow(float f) {
  uint16_t h;
  narrow_bf16(&f, &h, 1);
  return h;
}

using Kernel = void (*)(const uint16_t*, int64_t, const uint16_t*, const uint16_t*, uint16_t*, int64_t, int64_t,
                        int64_t, int64_t);

bool amx_opt_in() {
  static const bool on = [] {
    const char* e = std::getenv("ATTN_PACKED_LINEAR_BF16");
    return e && std::string(e) == "1";
  }();
  return on;
}

Kernel kernel_for_path() {
  const Bf16Path path = bf16_path();
  if (path == Bf16Path::Convert || (path == Bf16Path::Amx && !amx_opt_in())) return nullptr;
  switch (active_isa()) {
    case Isa::Avx512: return avx512::packed_gemm_bf16;
    case Isa::Reference: return ref::packed_gemm_bf16;
    case Isa::Avx2: return nullptr;
  }
  return nullptr;
}

}  // namespace

void pack_weight_panels_bf16(const uint16_t* w, int64_t n, int64_t k, int64_t ldw, uint16_t* panels) {
  const int64_t count = (n + kPanelWidth - 1) / kPanelWidth, pairs = (k + 1) / 2;
#pragma omp parallel for schedule(static) if (n * k > (1 << 16))
  for (int64_t p = 0; p < count; ++p) {
    uint16_t* out = panels + p * pairs * 2 * kPanelWidth;
    const int64_t r0 = p * kPanelWidth, rows = std::min(kPanelWidth, n - r0);
    for (int64_t kk = 0; kk < pairs; ++kk)
      for (int64_t j = 0; j < kPanelWidth; ++j)
        for (int64_t e = 0; e < 2; ++e) {
          const int64_t col = 2 * kk + e;
          out[(kk * kPanelWidth + j) * 2 + e] = j < rows && col < k ? w[(r0 + j) * ldw + col] : 0;
        }
  }
}

namespace ref {
void packed_gemm_bf16(const uint16_t* x, int64_t ldx, const uint16_t* panels, const uint16_t* bias, uint16_t* y,
                      int64_t ldy, int64_t m, int64_t n, int64_t k) {
  const int64_t pairs = (k + 1) / 2;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t col = 0; col < n; ++col) {
      const uint16_t* p = panels + (col / kPanelWidth) * pairs * 2 * kPanelWidth + (col % kPanelWidth) * 2;
      float acc = 0.0f;
      for (int64_t kk = 0; kk < pairs; ++kk) {
        const float x0 = widen(x[i * ldx + 2 * kk]), x1 = 2 * kk + 1 < k ? widen(x[i * ldx + 2 * kk + 1]) : 0.0f;
        acc = std::fma(x1, widen(p[kk * 2 * kPanelWidth + 1]), acc);
        acc = std::fma(x0, widen(p[kk * 2 * kPanelWidth]), acc);
      }
      y[i * ldy + col] = narrow(acc + (bias ? widen(bias[col]) : 0.0f));
    }
}
}  // namespace ref

bool packed_bf16_available() { return packed_gemm_available() && kernel_for_path(); }

void packed_gemm_bf16_team(const uint16_t* x, int64_t ldx, const uint16_t* p, const uint16_t* b, uint16_t* y,
                           int64_t ldy, int64_t m, int64_t n, int64_t k) {
  const Kernel kernel = kernel_for_path();
  const int64_t panel = ((k + 1) / 2) * 2 * kPanelWidth;  // elements per panel
  split_columns_over_team(m, n, k, [&](int64_t c0, int64_t c1) {
    kernel(x, ldx, p + (c0 / kPanelWidth) * panel, b ? b + c0 : nullptr, y + c0, ldy, m, c1 - c0, k);
  });
}

}  // namespace attn::cpu
