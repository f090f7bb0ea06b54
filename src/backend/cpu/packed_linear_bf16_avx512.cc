// src/backend/cpu/packed_linear_bf16_avx512.cc — the AVX512_BF16 kernel of packed_linear.h's bf16 path:
// y = x @ W^T + b on pair-interleaved 16-column panels, one thread, columns [0, n).
//
// The fp32 kernel's tile (packed_linear_avx512.cc) with k stepping by pairs: up to 12 rows x 2 panels of
// float32 accumulators; per pair two panel loads, one 32-bit broadcast of x per row and vdpbf16ps.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "backend/cpu/packed_linear.h"

namespace attn::cpu::avx512 {

namespace {

// x's pair kk of a row as 32 bits; the last of an odd k has a zero high half (x past k may be anything).
inline __m512i pair_of(const uint16_t* row, int64_t kk, int64_t k) {
  if (2 * kk + 1 < k) {
    uint32_t v;
    std::memcpy(&v, row + 2 * kk, 4);
    return _mm512_set1_epi32(int(v));
  }
  return _mm512_set1_epi32(int(row[2 * kk]));
}

template <int MR, int NP>
void tile(const uint16_t* x, int64_t ldx, const uint16_t* panels, int64_t k, const uint16_t* bias, uint16_t* y,
          int64_t ldy, int64_t cols, const uint16_t* pf, int64_t pf_lines) {
  const int64_t pairs = (k + 1) / 2, lane = 2 * kPanelWidth;  // bf16 per panel row (64 bytes)
  __m512 acc[MR][NP];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j) acc[r][j] = _mm512_setzero_ps();
  const uint16_t* p[NP];
  for (int j = 0; j < NP; ++j) p[j] = panels + j * pairs * lane;
  for (int64_t kk = 0; kk < pairs; ++kk) {
    if (kk < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + kk * lane), _MM_HINT_T1);
    if (kk + pairs < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + (kk + pairs) * lane), _MM_HINT_T1);
    __m512bh w[NP];
    for (int j = 0; j < NP; ++j) w[j] = (__m512bh)_mm512_loadu_si512(p[j] + kk * lane);
    for (int r = 0; r < MR; ++r) {
      const __m512bh a = (__m512bh)pair_of(x + r * ldx, kk, k);
      for (int j = 0; j < NP; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], a, w[j]);
    }
  }
  const __mmask16 last = __mmask16((1u << cols) - 1u);
  for (int j = 0; j < NP; ++j) {
    const __mmask16 mask = j == NP - 1 ? last : __mmask16(0xFFFF);
    alignas(64) uint32_t wide[kPanelWidth] = {};  // the bias as float32 bits
    for (int64_t c = 0; bias && c < (j == NP - 1 ? cols : kPanelWidth); ++c) wide[c] = uint32_t(bias[j * kPanelWidth + c]) << 16;
    const __m512 b = _mm512_castsi512_ps(_mm512_load_si512(wide));
    for (int r = 0; r < MR; ++r) {
      const __m256i out = (__m256i)_mm512_cvtneps_pbh(_mm512_add_ps(acc[r][j], b));  // nearest even
      _mm256_mask_storeu_epi16(y + r * ldy + j * kPanelWidth, mask, out);
    }
  }
}

template <int NP>
void tile_rows(int64_t mr, const uint16_t* x, int64_t ldx, const uint16_t* panels, int64_t k, const uint16_t* bias,
               uint16_t* y, int64_t ldy, int64_t cols, const uint16_t* pf, int64_t pf_lines) {
  with_row_count(mr, [&](auto rows) {
    tile<decltype(rows)::value, NP>(x, ldx, panels, k, bias, y, ldy, cols, pf, pf_lines);
  });
}

}  // namespace

void packed_gemm_bf16(const uint16_t* x, int64_t ldx, const uint16_t* panels, const uint16_t* bias, uint16_t* y,
                      int64_t ldy, int64_t m, int64_t n, int64_t k) {
  walk_panel_tiles(x, ldx, panels, bias, y, ldy, m, n, (k + 1) / 2, 2 * kPanelWidth,
                   [&](int64_t np, int64_t rows, const uint16_t* xr, const uint16_t* pp, const uint16_t* bp,
                       uint16_t* yr, int64_t cols, const uint16_t* pf, int64_t pf_lines) {
                     if (np == 2) return tile_rows<2>(rows, xr, ldx, pp, k, bp, yr, ldy, cols, pf, pf_lines);
                     tile_rows<1>(rows, xr, ldx, pp, k, bp, yr, ldy, cols, pf, pf_lines);
                   });
}

}  // namespace attn::cpu::avx512
