// src/backend/cpu/packed_linear_avx512.cc — the AVX-512 kernel of packed_linear.h: y = x @ W^T + b on
// 16-column weight panels, one thread, columns [0, n).
//
// Register tile: up to 8 rows x 3 panels (48 columns) = 24 accumulators; per k three panel loads and
// one broadcast of x per row. Three panels (K x 48 floats, 96 KiB at K = 512) serve every row block
// (32 rows: 8, 8, 8, 8) from L2 while the blocks prefetch the next three from memory. One or two rows
// take 4 panels per tile instead (packed_gemm below).
#include <immintrin.h>

#include <algorithm>

#include "backend/cpu/packed_linear.h"
#include "backend/cpu/side_prefetch.h"

namespace attn::cpu::avx512 {

namespace {

// rows [0, MR) x panels [0, NP) of y; `cols` valid columns in the last panel (16 = all). Step kk also
// prefetches lines kk, kk + k, ... (one per panel) of `pf` below pf_lines (the next panels, from memory),
// and (Side) one line of what was announced for this thread (`side`).
template <int MR, int NP, bool Side>
void tile(const float* x, int64_t ldx, const float* panels, int64_t k, const float* bias, float* y, int64_t ldy,
          int64_t cols, const float* pf, int64_t pf_lines, SideWalk& side) {
  __m512 acc[MR][NP];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j) acc[r][j] = _mm512_setzero_ps();
  const float* p[NP];
  for (int j = 0; j < NP; ++j) p[j] = panels + j * k * kPanelWidth;
  SideWalk walk = side;
  for (int64_t kk = 0; kk < k; ++kk) {
    for (int j = 0; j < NP; ++j)
      if (kk + j * k < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + (kk + j * k) * kPanelWidth), _MM_HINT_T1);
    if constexpr (Side)
      if (walk.active()) _mm_prefetch(walk.next(), _MM_HINT_T1);  // one announced line a step (side_prefetch.h)
    __m512 w[NP];
    for (int j = 0; j < NP; ++j) w[j] = _mm512_load_ps(p[j] + kk * kPanelWidth);
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(x[r * ldx + kk]);
      for (int j = 0; j < NP; ++j) acc[r][j] = _mm512_fmadd_ps(a, w[j], acc[r][j]);
    }
  }
  side = walk;
  const __mmask16 last = __mmask16((1u << cols) - 1u);
  for (int j = 0; j < NP; ++j) {
    const __mmask16 mask = j == NP - 1 ? last : __mmask16(0xFFFF);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + j * kPanelWidth) : _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) _mm512_mask_storeu_ps(y + r * ldy + j * kPanelWidth, mask, _mm512_add_ps(acc[r][j], b));
  }
}

// The tile without the announced-line check where nothing is announced (it cost the kernel ~1-2 %).
template <int MR, int NP>
void tile_any(const float* x, int64_t ldx, const float* panels, int64_t k, const float* bias, float* y, int64_t ldy,
              int64_t cols, const float* pf, int64_t pf_lines, SideWalk& side) {
  if (side.active()) tile<MR, NP, true>(x, ldx, panels, k, bias, y, ldy, cols, pf, pf_lines, side);
  else tile<MR, NP, false>(x, ldx, panels, k, bias, y, ldy, cols, pf, pf_lines, side);
}

template <int NP>
void tile_rows(int64_t mr, const float* x, int64_t ldx, const float* panels, int64_t k, const float* bias, float* y,
               int64_t ldy, int64_t cols, const float* pf, int64_t pf_lines, SideWalk& side) {
  with_row_count(mr, [&](auto rows) {
    tile_any<decltype(rows)::value, NP>(x, ldx, panels, k, bias, y, ldy, cols, pf, pf_lines, side);
  });
}

}  // namespace

void packed_gemm(const float* x, int64_t ldx, const float* panels, const float* bias, float* y, int64_t ldy,
                 int64_t m, int64_t n, int64_t k) {
  SideCursor& cursor = side_cursor();
  SideWalk side = cursor.walk;  // in registers; stored back below
  auto tile_block = [&](int64_t np, int64_t rows, const float* xr, const float* pp, const float* bp, float* yr,
                        int64_t cols, const float* pf, int64_t pf_lines) {
    if (np == 2) return tile_rows<2>(rows, xr, ldx, pp, k, bp, yr, ldy, cols, pf, pf_lines, side);
    if (np == 1) return tile_rows<1>(rows, xr, ldx, pp, k, bp, yr, ldy, cols, pf, pf_lines, side);
    with_row_count(std::min<int64_t>(rows, 8), [&](auto r) {  // 3-4 panels: at most 8 rows (4 only for 1-2)
      constexpr int MR = decltype(r)::value;
      if constexpr (MR <= 2)
        if (np == 4) return tile_any<MR, 4>(xr, ldx, pp, k, bp, yr, ldy, cols, pf, pf_lines, side);
      tile_any<MR, 3>(xr, ldx, pp, k, bp, yr, ldy, cols, pf, pf_lines, side);
    });
  };
  // One or two rows (a single sentence's greedy step): with 2 panels a tile would have only 2-4 accumulators,
  // each a chain of dependent FMAs (4 cycles apart), so they take 4 panels (64 columns) at a time. More rows:
  // 8 x 3 panels halves the broadcasts per multiply-add of 11 x 2 (gemm_bench decode, hot weights: the
  // decoder step's products ~3 % faster, docs/benchmarks.md).
  if (m <= 2) walk_panel_tiles<4>(x, ldx, panels, bias, y, ldy, m, n, k, kPanelWidth, tile_block);
  else walk_panel_tiles<3, 8>(x, ldx, panels, bias, y, ldy, m, n, k, kPanelWidth, tile_block);
  cursor.walk = side;
}

}  // namespace attn::cpu::avx512
