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
// 0 <= v < n or v == allowed. The backend's check_index kernel finds it on the index's device; the
// op reads the two-element status once (the only sync).
inline void check_index_range(const Tensor& idx, int64_t n, const char* op, const char* what,
                              std::optional<int64_t> allowed = std::nullopt) {
  check_index_dtype(idx, op, what);
  if (idx.numel() == 0) return;
  Tensor status = empty_out({2}, kInt64, idx.device());
  be(idx).check_index(ref(idx), n, allowed.has_value(), allowed.value_or(0), ref(status));
  int64_t bad[2];
  be(status).copy_to_host(ref(status), bad);
  if (bad[0] < 0) return;
  fail(std::string(op) + ": " + what + " value " + std::to_string(bad[1]) + " at flat position " +
       std::to_string(bad[0]) + " is out of range [0, " + std::to_string(n) + ")" +
       (allowed ? " and is not ignore_index " + std::to_string(*allowed) : std::string()) + " (" + what +
       " shape " + shape_str(idx.shape()) + ")");
}

}  // namespace attn::ops
