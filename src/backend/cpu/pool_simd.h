// src/backend/cpu/pool_simd.h — instruction-set-specific rows of the 2x2 / stride 2 max pool
// (pool_avx512.cc), chosen by pool.cc when cpu::active_isa() is AVX-512.
//
//   int64_t done = attn::cpu::avx512::max_row_2x2(r0, r1, y_row, idx_row, out_w, w, 2 * oh * w, nan);
#pragma once
#include <cstdint>

namespace attn::cpu::avx512 {
// Forward of one output row from input rows r0, r1 (r1 = r0 + w): writes out_w maxima and flat argmax
// indices base + offset; sets `nan` if a window holds a NaN (the caller then redoes the row exactly).
int64_t max_row_2x2(const float* r0, const float* r1, float* yr, int64_t* ir, int64_t out_w, int64_t w,
                    int64_t base, bool& nan);
// Backward of one output row: writes both input rows' first 2 * out_w columns (grad at the argmax, 0
// elsewhere). Returns false, having written nothing, if an index lies outside its window.
bool max_row_2x2_backward(const float* g, const int64_t* ir, float* r0, float* r1, int64_t out_w, int64_t w,
                          int64_t base);
}  // namespace attn::cpu::avx512
