// src/backend/cpu/topk.cc — CpuBackend::topk: the k largest (or smallest) entries along one dimension,
// best first, ties to the lower index, NaN above every number (PyTorch's order). Rows split over the
// threads; a sorted buffer of k per row for small k (beam search's 2 x beam; float32 rows scanned on vectors
// for what beats its last entry), a partial sort otherwise.
#include <algorithm>
#include <limits>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"

namespace attn::cpu {
namespace {

using backend::TensorRef;

template <typename T> bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>) return v != v;
  return false;
}

// Whether entry (a, ia) ranks before (b, ib).
template <typename T> bool before(T a, int64_t ia, T b, int64_t ib, bool largest) {
  const bool na = is_nan(a), nb = is_nan(b);
  if (na != nb) return largest ? na : nb;
  if (!na && a != b) return largest ? a > b : a < b;
  return ia < ib;
}

// The first j' >= j of contiguous float32 `row` that ranks before t, the last of a full buffer (ties to
// the lower index, so an equal value never does); n where none. Scans on the ISA's vectors, so a row
// costs little more than reading it once the buffer holds good entries (greedy and beam decoding).
int64_t next_candidate(const float* row, int64_t j, int64_t n, float t, bool largest) {
  const float inf = std::numeric_limits<float>::infinity();
  if (largest) return t != t ? n : j + find_first(row + j, n - j, t, FindCmp::Greater, true);  // NaN beats numbers
  return j + (t != t ? find_first(row + j, n - j, inf, FindCmp::LessEqual, false)  // any number beats NaN
                     : find_first(row + j, n - j, t, FindCmp::Less, false));
}

// Offset of the i-th element (row-major over shape) with the given strides.
int64_t offset_of(int64_t i, const Shape& shape, const Shape& strides) {
  int64_t off = 0;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    off += (i % shape[size_t(d)]) * strides[size_t(d)];
    i /= shape[size_t(d)];
  }
  return off;
}

template <typename T>
void topk_rows(const TensorRef& x, int64_t dim, int64_t k, bool largest, const TensorRef& values,
               const TensorRef& indices) {
  const int64_t n = x.shape[size_t(dim)], st = x.strides[size_t(dim)];
  const Shape out_strides = contiguous_strides(values.shape);
  Shape kept, x_strides, o_strides;
  for (size_t d = 0; d < x.shape.size(); ++d)
    if (int64_t(d) != dim) kept.push_back(x.shape[d]), x_strides.push_back(x.strides[d]), o_strides.push_back(out_strides[d]);
  const int64_t outer = numel_of(kept), ost = out_strides[size_t(dim)];
  const T* in = static_cast<const T*>(x.data);
  T* vo = static_cast<T*>(values.data);
  int64_t* io = static_cast<int64_t*>(indices.data);
#pragma omp parallel if (outer * n > 32768)
  {
    std::vector<std::pair<T, int64_t>> best;
    std::vector<int64_t> order;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < outer; ++i) {
      const T* row = in + offset_of(i, kept, x_strides);
      const int64_t o = offset_of(i, kept, o_strides);
      best.clear();
      if (k <= 64) {
        for (int64_t j = 0; j < n; ++j) {
          if constexpr (std::is_same_v<T, float>)
            if (st == 1 && int64_t(best.size()) == k &&
                (j = next_candidate(row, j, n, best.back().first, largest)) == n)
              break;
          const T v = row[j * st];
          if (int64_t(best.size()) == k && !before(v, j, best.back().first, best.back().second, largest)) continue;
          auto at = std::find_if(best.begin(), best.end(),
                                 [&](const auto& e) { return before(v, j, e.first, e.second, largest); });
          best.insert(at, {v, j});
          if (int64_t(best.size()) > k) best.pop_back();
        }
      } else {
        order.resize(size_t(n));
        std::iota(order.begin(), order.end(), int64_t(0));
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
          return before(row[a * st], a, row[b * st], b, largest);
        });
        for (int64_t r = 0; r < k; ++r) best.emplace_back(row[order[size_t(r)] * st], order[size_t(r)]);
      }
      for (int64_t r = 0; r < k; ++r) {
        vo[o + r * ost] = best[size_t(r)].first;
        io[o + r * ost] = best[size_t(r)].second;
      }
    }
  }
}

}  // namespace

void CpuBackend::topk(const TensorRef& x, int64_t dim, int64_t k, bool largest, const TensorRef& values,
                      const TensorRef& indices) {
  if (k == 0 || values.numel() == 0) return;
  switch (x.dtype) {
    case kFloat32: return topk_rows<float>(x, dim, k, largest, values, indices);
    case kFloat64: return topk_rows<double>(x, dim, k, largest, values, indices);
    case kInt32: return topk_rows<int32_t>(x, dim, k, largest, values, indices);
    case kInt64: return topk_rows<int64_t>(x, dim, k, largest, values, indices);
    default: throw std::invalid_argument(std::string("topk: dtype ") + dtype_name(x.dtype) + " is not supported");
  }
}

}  // namespace attn::cpu
