// src/backend/cpu/strided.h — N-d strided iteration over several operands (one shared shape).
//
//   StridedLoop<2> loop(out.shape, {out.strides, x.strides});
//   loop.run([&](const int64_t* off, const int64_t* step, int64_t n) {  // one row of n elements
//     for (int64_t i = 0; i < n; ++i) o[off[0] + i * step[0]] = f(x[off[1] + i * step[1]]);
//   });
// Dims are coalesced first, so contiguous operands become a single row (step == 1).
#pragma once
#include <omp.h>

#include <array>
#include <cstdint>
#include <vector>

#include "attn/tensor.h"

namespace attn::cpu {

template <int K> struct StridedLoop {
  Shape shape;                       // coalesced
  std::array<Shape, K> strides;      // coalesced, per operand
  int64_t rows = 1, row_len = 1;

  StridedLoop(const Shape& s, std::array<Shape, K> st) {
    // drop size-1 dims, then merge dims that are contiguous with their neighbour for every operand
    for (size_t d = 0; d < s.size(); ++d) {
      if (s[d] == 1) continue;
      bool merge = !shape.empty();
      for (int k = 0; k < K && merge; ++k) merge = strides[k].back() == st[k][d] * s[d];
      if (merge) {
        shape.back() *= s[d];
        for (int k = 0; k < K; ++k) strides[k].back() = st[k][d];
      } else {
        shape.push_back(s[d]);
        for (int k = 0; k < K; ++k) strides[k].push_back(st[k][d]);
      }
    }
    if (shape.empty()) {
      shape.push_back(1);
      for (int k = 0; k < K; ++k) strides[k].push_back(1);
    }
    for (int64_t v : s)
      if (v == 0) { shape = {0}; for (int k = 0; k < K; ++k) strides[k] = {1}; }
    row_len = shape.back();
    rows = 1;
    for (size_t d = 0; d + 1 < shape.size(); ++d) rows *= shape[d];
  }

  // Offsets (in elements) of the first element of row r for each operand.
  void row_offsets(int64_t r, int64_t* off) const {
    for (int k = 0; k < K; ++k) off[k] = 0;
    for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d) {
      int64_t i = r % shape[d];
      r /= shape[d];
      for (int k = 0; k < K; ++k) off[k] += i * strides[k][d];
    }
  }

  template <typename F> void run(F&& f, int64_t grain = 32768) const {
    int64_t total = rows * row_len;
    if (total == 0) return;
    int64_t step[K];
    for (int k = 0; k < K; ++k) step[k] = strides[k].back();
    if (rows == 1) {
      // split the single row into chunks
      int nt = total >= 2 * grain ? omp_get_max_threads() : 1;
      int64_t chunk = (row_len + nt - 1) / nt;
#pragma omp parallel for num_threads(nt) if (nt > 1)
      for (int t = 0; t < nt; ++t) {
        int64_t b = t * chunk, e = std::min<int64_t>(row_len, b + chunk);
        if (b >= e) continue;
        int64_t off[K];
        for (int k = 0; k < K; ++k) off[k] = b * step[k];
        f(off, step, e - b);
      }
      return;
    }
    bool par = total >= 2 * grain;
#pragma omp parallel for if (par) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t off[K];
      row_offsets(r, off);
      f(off, step, row_len);
    }
  }
};

}  // namespace attn::cpu
