// src/ops/index_check.h — validation of integer index tensors (owner: nnops), shared by the index,
// embedding and loss ops so that a bad index is a clear exception, never an out-of-bounds read.
//
//   ops::check_index_dtype(idx, "embedding", "indices");                  // int64 / int32 only
//   ops::check_index_range(idx, V, "embedding", "indices");               // every value in [0, V)
//   ops::check_index_range(t, C, "cross_entropy", "target", /*allowed=*/ignore_index);
#pragma once
#include <optional>
#include <string>

#include "ops/op_utils.h"

namespace attn::ops {

inline void check_index_dtype(const Tensor& idx, const char* op, const char* what) {
  check_defined(idx, op, what);
  if (idx.dtype() != kInt64 && idx.dtype() != kInt32)
    fail(std::string(op) + ": " + what + " must be int64 or int32, got " + dtype_name(idx.dtype()) + " of shape " +
         shape_str(idx.shape()));
}

// Throws naming the first offending value (and its flat position) unless every value v satisfies
// 0 <= v < n or v == allowed.
inline void check_index_range(const Tensor& idx, int64_t n, const char* op, const char* what,
                              std::optional<int64_t> allowed = std::nullopt) {
  check_index_dtype(idx, op, what);
  if (idx.numel() == 0) return;
  NoGradGuard ng;
  // fast path: two reductions on the device
  const int64_t lo = amin(idx).item<int64_t>(), hi = amax(idx).item<int64_t>();
  if (lo >= 0 && hi < n) return;
  if (!allowed && (lo < 0 || hi >= n)) {
    const int64_t bad = lo < 0 ? lo : hi;
    std::vector<int64_t> v = idx.to_vector<int64_t>();
    size_t pos = 0;
    while (pos < v.size() && v[pos] != bad) ++pos;
    fail(std::string(op) + ": " + what + " value " + std::to_string(bad) + " at flat position " +
         std::to_string(pos) + " is out of range [0, " + std::to_string(n) + ") (" + what + " shape " +
         shape_str(idx.shape()) + ")");
  }
  std::vector<int64_t> v = idx.to_vector<int64_t>();
  for (size_t i = 0; i < v.size(); ++i)
    if ((v[i] < 0 || v[i] >= n) && !(allowed && v[i] == *allowed))
      fail(std::string(op) + ": " + what + " value " + std::to_string(v[i]) + " at flat position " +
           std::to_string(i) + " is out of range [0, " + std::to_string(n) + ")" +
           (allowed ? " and is not ignore_index " + std::to_string(*allowed) : std::string()) + " (" + what +
           " shape " + shape_str(idx.shape()) + ")");
}

}  // namespace attn::ops
