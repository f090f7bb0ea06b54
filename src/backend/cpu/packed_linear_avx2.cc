// src/backend/cpu/packed_linear_avx2.cc — the AVX2 kernel of packed_linear.h: y = x @ W^T + b on
// 16-column weight panels, one thread, columns [0, n). The same k-ordered fused multiply-adds per
// element as the reference and the AVX-512 kernel, so the three give the same bits.
//
// Register tile: up to 6 rows x one panel (two 8-float halves) = 12 accumulators, two panel loads and
// one broadcast of x per row and k: 15 of the 16 ymm registers. A panel (K x 16 floats, 32 KiB at
// K = 512) serves every row block from L1/L2 while the blocks prefetch the next panel.
#include <immintrin.h>

#include <algorithm>

#include "backend/cpu/packed_linear.h"
#include "backend/cpu/side_prefetch.h"

namespace attn::cpu::avx2 {

namespace {

constexpr int kHalf = 8;  // floats per ymm

// Lanes [0, valid) of a ymm's 8: all-ones int32 where the lane is written.
__m256i lanes(int64_t valid) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::clamp<int64_t>(valid, 0, kHalf))), index);
}

// rows [0, MR) of one panel; `cols` valid columns in it (16 = all). Step kk also prefetches line kk of
// `pf` below pf_lines (the next panel, which comes from memory) and one announced line (`side`).
template <int MR, bool Side>
void tile(const float* x, int64_t ldx, const float* panel, int64_t k, const float* bias, float* y, int64_t ldy,
          int64_t cols, const float* pf, int64_t pf_lines, SideWalk& side) {
  __m256 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  SideWalk walk = side;
  for (int64_t kk = 0; kk < k; ++kk) {
    if (kk < pf_lines) _mm_prefetch(reinterpret_cast<const char*>(pf + kk * kPanelWidth), _MM_HINT_T1);
    if constexpr (Side)
      if (walk.active()) _mm_prefetch(walk.next(), _MM_HINT_T1);  // one announced line a step (side_prefetch.h)
    const __m256 w0 = _mm256_loadu_ps(panel + kk * kPanelWidth), w1 = _mm256_loadu_ps(panel + kk * kPanelWidth + kHalf);
    for (int r = 0; r < MR; ++r) {
      const __m256 a = _mm256_broadcast_ss(x + r * ldx + kk);
      acc[r][0] = _mm256_fmadd_ps(a, w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, w1, acc[r][1]);
    }
  }
  side = walk;
  if (cols == kPanelWidth) {
    const __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    const __m256 b1 = bias ? _mm256_loadu_ps(bias + kHalf) : _mm256_setzero_ps();
    for (int r = 0; r < MR; ++r) {
      _mm256_storeu_ps(y + r * ldy, _mm256_add_ps(acc[r][0], b0));
      _mm256_storeu_ps(y + r * ldy + kHalf, _mm256_add_ps(acc[r][1], b1));
    }
    return;
  }
  const __m256i m0 = lanes(cols), m1 = lanes(cols - kHalf);
  const __m256 b0 = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
  const __m256 b1 = bias ? _mm256_maskload_ps(bias + kHalf, m1) : _mm256_setzero_ps();
  for (int r = 0; r < MR; ++r) {
    _mm256_maskstore_ps(y + r * ldy, m0, _mm256_add_ps(acc[r][0], b0));
    _mm256_maskstore_ps(y + r * ldy + kHalf, m1, _mm256_add_ps(acc[r][1], b1));
  }
}

// The tile without the announced-line check where nothing is announced.
template <int MR>
void tile_any(const float* x, int64_t ldx, const float* panel, int64_t k, const float* bias, float* y, int64_t ldy,
              int64_t cols, const float* pf, int64_t pf_lines, SideWalk& side) {
  if (side.active()) tile<MR, true>(x, ldx, panel, k, bias, y, ldy, cols, pf, pf_lines, side);
  else tile<MR, false>(x, ldx, panel, k, bias, y, ldy, cols, pf, pf_lines, side);
}

void tile_rows(int64_t mr, const float* x, int64_t ldx, const float* panel, int64_t k, const float* bias, float* y,
               int64_t ldy, int64_t cols, const float* pf, int64_t pf_lines, SideWalk& side) {
  switch (mr) {
    case 6: return tile_any<6>(x, ldx, panel, k, bias, y, ldy, cols, pf, pf_lines, side);
    case 5: return tile_any<5>(x, ldx, panel, k, bias, y, ldy, cols, pf, pf_lines, side);
    case 4: return tile_any<4>(x, ldx, panel, k, bias, y, ldy, cols, pf, pf_lines, side);
    case 3: return tile_any<3>(x, ldx, panel, k, bias, y, ldy, cols, pf, pf_lines, side);
    case 2: return tile_any<2>(x, ldx, panel, k, bias, y, ldy, cols, pf, pf_lines, side);
    default: return tile_any<1>(x, ldx, panel, k, bias, y, ldy, cols, pf, pf_lines, side);
  }
}

}  // namespace

void packed_gemm(const float* x, int64_t ldx, const float* panels, const float* bias, float* y, int64_t ldy,
                 int64_t m, int64_t n, int64_t k) {
  if (m <= 0) return;
  SideCursor& cursor = side_cursor();
  SideWalk side = cursor.walk;  // in registers; stored back below
  constexpr int64_t kRows = 6;
  const int64_t blocks = (m + kRows - 1) / kRows;
  for (int64_t c0 = 0; c0 < n; c0 += kPanelWidth) {
    const int64_t cols = std::min<int64_t>(kPanelWidth, n - c0);
    const float* pp = panels + (c0 / kPanelWidth) * k * kPanelWidth;
    const float* bp = bias ? bias + c0 : nullptr;
    // the next panel (k lines of 64 bytes) into L2, spread evenly over the row blocks' steps
    const int64_t next_lines = c0 + kPanelWidth < n ? k : 0;
    const float* next = pp + k * kPanelWidth;
    const int64_t per_block = (next_lines + blocks - 1) / blocks;
    for (int64_t b = 0; b < blocks; ++b) {  // rows split evenly: 32 -> 5, 5, 5, 6, 5, 6
      const int64_t r0 = b * m / blocks, r1 = (b + 1) * m / blocks;
      const int64_t pf_first = std::min(next_lines, b * per_block), pf_lines = std::min(per_block, next_lines - pf_first);
      tile_rows(r1 - r0, x + r0 * ldx, ldx, pp, k, bp, y + r0 * ldy + c0, ldy, cols, next + pf_first * kPanelWidth,
                pf_lines, side);
    }
  }
  cursor.walk = side;
}

}  // namespace attn::cpu::avx2
