// src/backend/cpu/packed_linear.h — y = x @ W^T + b for inference with few rows (decoding steps), on
// weights packed once into 16-column panels and cached per weight (internal; ops::linear uses it).
//
//   if (cpu::packed_linear_applies(x2, weight)) cpu::packed_linear(x2, weight, bias, y2);  // x2 (M, K), y2 (M, N)
//
// Why: a decoding step multiplies ~32 rows by every weight of the model once. oneDNN's sgemm repacks
// each weight on every call and reaches ~38 % of the FMA peak there (gemm_bench decode); here the
// panels are packed the first time a weight is seen without autograd and reused until the weight
// changes (its storage's version counter, or the storage is freed). Each output element is one
// thread's k-ordered sum of fused multiply-adds, so the bits do not depend on the thread count.
// Any float32 linear() without autograd takes it (nn::Linear in eval / no_grad, MultiheadAttention's
// packed projections, a tied output embedding); the cost is one packed copy of each such weight.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "attn/tensor.h"

namespace attn::cpu {

inline constexpr int64_t kPanelWidth = 16;         // output columns per packed panel
// More rows: oneDNN's GEMM, whose own packing then pays off. gemm_bench decode M (the decoder step's
// products): packed / oneDNN time 0.51 at 32 rows, 0.76 at 128, 0.87 at 256 with 2 threads; 0.97 at
// 512 with 1 thread.
inline constexpr int64_t kPackedLinearMaxRows = 256;

// Whether packed_linear takes this product: float32 CPU operands (or bf16 ones, packed_bf16_available()), a row-major weight (N, K), at most
// kPackedLinearMaxRows rows, a kernel for the active ISA (AVX-512, AVX2 or the reference), and the switch
// (set_packed_linear / ATTN_PACKED_LINEAR=0) on. x2: (M, K) with unit column stride.
bool packed_linear_applies(const Tensor& x2, const Tensor& weight);

// y2 (M, N) = x2 (M, K) @ weight (N, K)^T + bias (N, or undefined). y2 row-major with unit column stride.
void packed_linear(const Tensor& x2, const Tensor& weight, const Tensor& bias, const Tensor& y2);

// Tests and benchmarks: turns the path on / off (returns the old setting); the cache's size.
bool set_packed_linear(bool on);
int64_t packed_linear_cache_entries();

// The kernels on raw panels (panels: ceil(N / 16) blocks of K x 16 floats, zero past N), rows [0, M).
// pack_weight_panels reads W (n, k) row-major; pack_transposed_weight_panels reads W^T (k, n) row-major
// (leading dimension ldwt), for products with an untransposed weight (x @ Wt, e.g. RNN backward).
void pack_weight_panels(const float* w, int64_t n, int64_t k, int64_t ldw, float* panels);
void pack_transposed_weight_panels(const float* wt, int64_t n, int64_t k, int64_t ldwt, float* panels);
inline int64_t packed_panels_floats(int64_t n, int64_t k) { return (n + kPanelWidth - 1) / kPanelWidth * k * kPanelWidth; }

// For callers that pack a weight once and reuse it over many products (rnn_sequence_fast.cc's
// recurrent weights): whether a kernel serves the active ISA (and the switch is on), and
// y (m, n) = x (m, k) @ W^T + bias on W's panels, columns split over the OpenMP team as packed_linear.
bool packed_gemm_available();
void packed_gemm_team(const float* x, int64_t ldx, const float* panels, const float* bias, float* y, int64_t ldy,
                      int64_t m, int64_t n, int64_t k);
// bf16 operands (autocast's decoding steps), where the CPU has AVX512_BF16: panels of ceil(K / 2) rows
// of 16 column pairs (vdpbf16ps's layout: lane j of row kk holds W(col j, 2 kk) and W(col j, 2 kk + 1)),
// zero past N and K; float32 sums, the bias added, y rounded to bf16 once. Each output element is one
// thread's k-ordered sum. On the Amx path only with ATTN_PACKED_LINEAR_BF16=1 (not measured there yet).
inline int64_t packed_panels_bf16(int64_t n, int64_t k) {
  return (n + kPanelWidth - 1) / kPanelWidth * ((k + 1) / 2) * 2 * kPanelWidth;
}
void pack_weight_panels_bf16(const uint16_t* w, int64_t n, int64_t k, int64_t ldw, uint16_t* panels);
bool packed_bf16_available();
void packed_gemm_bf16_team(const uint16_t* x, int64_t ldx, const uint16_t* panels, const uint16_t* bias, uint16_t* y,
                           int64_t ldy, int64_t m, int64_t n, int64_t k);

// The team's split of a packed product: column blocks of 32 (two panels) over the OpenMP threads, as
// many threads as the product has shares of 2^16 multiply-adds (a few microseconds each; with 2^18 a
// one-sentence decoding step's layer products all ran on one thread: greedy batch 1 took 1.25x as long);
// run(c0, c1) computes columns [c0, c1).
template <typename Run> void split_columns_over_team(int64_t m, int64_t n, int64_t k, Run&& run) {
  const int64_t blocks = (n + 2 * kPanelWidth - 1) / (2 * kPanelWidth);
  const int threads = int(std::min<int64_t>(omp_get_max_threads(), std::max<int64_t>(1, m * n * k / (1 << 16))));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t c0 = std::min(n, (t * blocks / nt) * 2 * kPanelWidth);
    const int64_t c1 = std::min(n, ((t + 1) * blocks / nt) * 2 * kPanelWidth);
    if (c1 > c0) run(c0, c1);
  }
}

// f(std::integral_constant<int, R>{}) for a runtime row count r in [1, 12] (the kernels' register tiles are
// templates on their row count).
template <typename F> void with_row_count(int64_t r, F&& f) {
  switch (r) {
    case 12: return f(std::integral_constant<int, 12>{});
    case 11: return f(std::integral_constant<int, 11>{});
    case 10: return f(std::integral_constant<int, 10>{});
    case 9: return f(std::integral_constant<int, 9>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 7: return f(std::integral_constant<int, 7>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 2: return f(std::integral_constant<int, 2>{});
    default: return f(std::integral_constant<int, 1>{});
  }
}

// The SIMD kernels' walk over y (float32 and bf16 alike): Group panels at a time (2: 32 columns) left to
// right, rows in even blocks of at most Rows (12: 32 -> 10, 11, 11), and the next Group panels (Group x `lines`
// lines of 64 bytes, `line` elements each) prefetched into L2 spread evenly over the row blocks' steps (T1
// measured ahead of T0 and of a two-pair distance with gemm_bench decode). tile(np, rows, x, panels, bias,
// y, cols, pf, pf_lines) computes one block: np <= Group panels, `cols` valid columns in the last one.
template <int Group = 2, int Rows = 12, typename T, typename Tile>
void walk_panel_tiles(const T* x, int64_t ldx, const T* panels, const T* bias, T* y, int64_t ldy, int64_t m,
                      int64_t n, int64_t lines, int64_t line, Tile&& tile) {
  const int64_t blocks = (m + Rows - 1) / Rows;
  for (int64_t c0 = 0; c0 < n; c0 += Group * kPanelWidth) {
    const int64_t width = std::min<int64_t>(Group * kPanelWidth, n - c0);
    const int64_t np = (width + kPanelWidth - 1) / kPanelWidth, cols = width - (np - 1) * kPanelWidth;
    const T* pp = panels + (c0 / kPanelWidth) * lines * line;
    const T* bp = bias ? bias + c0 : nullptr;
    const int64_t next_lines = c0 + Group * kPanelWidth < n ? Group * lines : 0;
    const T* next = pp + Group * lines * line;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t r0 = b * m / blocks, r1 = (b + 1) * m / blocks;
      const int64_t per_block = (next_lines + blocks - 1) / blocks;
      const int64_t pf_first = std::min(next_lines, b * per_block), pf_lines = std::min(per_block, next_lines - pf_first);
      tile(np, r1 - r0, x + r0 * ldx, pp, bp, y + r0 * ldy + c0, cols, next + pf_first * line, pf_lines);
    }
  }
}

namespace ref {
// Per element the sum vdpbf16ps makes: for each pair, acc += x1 w1, then acc += x0 w0 (exact products,
// one rounding each).
void packed_gemm_bf16(const uint16_t* x, int64_t ldx, const uint16_t* panels, const uint16_t* bias, uint16_t* y,
                      int64_t ldy, int64_t m, int64_t n, int64_t k);
void packed_gemm(const float* x, int64_t ldx, const float* panels, const float* bias, float* y, int64_t ldy,
                 int64_t m, int64_t n, int64_t k);
}
namespace avx512 {
void packed_gemm_bf16(const uint16_t* x, int64_t ldx, const uint16_t* panels, const uint16_t* bias, uint16_t* y,
                      int64_t ldy, int64_t m, int64_t n, int64_t k);
void packed_gemm(const float* x, int64_t ldx, const float* panels, const float* bias, float* y, int64_t ldy,
                 int64_t m, int64_t n, int64_t k);
}
namespace avx2 {
void packed_gemm(const float* x, int64_t ldx, const float* panels, const float* bias, float* y, int64_t ldy,
                 int64_t m, int64_t n, int64_t k);
}

}  // namespace attn::cpu
