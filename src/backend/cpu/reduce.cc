// src/backend/cpu/reduce.cc — CpuBackend::reduce and arg_reduce: sums, means and extremes over any dims
// (float32 / float64 runs of adjacent dims on the vectorised kernels, the rest on strided loops), and
// argmax / argmin with PyTorch's first-index ties and NaN propagation.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"

namespace attn::cpu {

using backend::ReduceOp;
using backend::TensorRef;

namespace {

// Contiguous x reduced over one run of adjacent dims: x viewed as (outer, r, inner). False otherwise.
bool reduce_as_3d(const TensorRef& x, const TensorRef& out, int64_t& outer, int64_t& r, int64_t& inner) {
  if (!x.contiguous() || !out.contiguous() || x.shape.size() != out.shape.size()) return false;
  std::vector<std::pair<int64_t, bool>> dims;  // (size, reduced) of x's dims of size > 1
  for (size_t d = 0; d < x.shape.size(); ++d) {
    if (x.shape[d] == 1) continue;
    if (out.shape[d] != 1 && out.shape[d] != x.shape[d]) return false;
    dims.emplace_back(x.shape[d], out.shape[d] == 1);
  }
  size_t i0 = 0;
  while (i0 < dims.size() && !dims[i0].second) ++i0;
  if (i0 == dims.size()) return false;
  size_t i1 = i0;
  while (i1 + 1 < dims.size() && dims[i1 + 1].second) ++i1;
  for (size_t i = i1 + 1; i < dims.size(); ++i)
    if (dims[i].second) return false;  // two separate runs of reduced dims
  outer = r = inner = 1;
  for (size_t i = 0; i < dims.size(); ++i) (i < i0 ? outer : i <= i1 ? r : inner) *= dims[i].first;
  return true;
}

// Runs f(T{}) for the dtypes reductions support (float32/64, int32/64, uint8).
template <typename F> void dispatch_numeric(DType t, const char* what, F&& f) {
  switch (t) {
    case kFloat32: return f(float{});
    case kFloat64: return f(double{});
    case kInt32: return f(int32_t{});
    case kInt64: return f(int64_t{});
    case kUInt8: return f(uint8_t{});
    default: unsupported(what, t);
  }
}

// Splits x's dims into kept (size == out size) and reduced (out size 1, x size > 1).
struct ReducePlan {
  Shape kept_shape, kept_strides_x, red_shape, red_strides_x;
  int64_t outer = 1, inner = 1;
  ReducePlan(const TensorRef& x, const TensorRef& out) {
    for (size_t d = 0; d < x.shape.size(); ++d) {
      if (out.shape[d] == 1 && x.shape[d] != 1) {
        red_shape.push_back(x.shape[d]);
        red_strides_x.push_back(x.strides[d]);
        inner *= x.shape[d];
      } else {
        kept_shape.push_back(x.shape[d]);
        kept_strides_x.push_back(x.strides[d]);
        outer *= x.shape[d];
      }
    }
  }
  static int64_t offset(int64_t i, const Shape& shape, const Shape& strides) {
    int64_t off = 0;
    for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
      off += (i % shape[d]) * strides[d];
      i /= shape[d];
    }
    return off;
  }
};
}  // namespace

void CpuBackend::reduce(ReduceOp op, const TensorRef& x, const TensorRef& out) {
  int64_t outer, r, inner;
  if ((x.dtype == kFloat32 || x.dtype == kFloat64) && out.dtype == x.dtype && x.numel() > 0 &&
      reduce_as_3d(x, out, outer, r, inner)) {
    if (x.dtype == kFloat32) cpu::reduce(op, ptr<const float>(x), ptr<float>(out), outer, r, inner);
    else cpu::reduce(op, ptr<const double>(x), ptr<double>(out), outer, r, inner);
    return;
  }
  ReducePlan p(x, out);
  // checked here: an exception cannot leave the parallel loop below
  if ((op == ReduceOp::Max || op == ReduceOp::Min) && p.inner == 0 && p.outer > 0)
    throw std::invalid_argument("max/min: reduction over an empty dimension");
  auto run = [&](auto t0) {
    using T = decltype(t0);
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
    const T* in = ptr<T>(x);
    T* o = ptr<T>(out);
    // contiguous innermost reduction is the common case: rows of `inner` elements
    bool rows = p.red_shape.size() == 1 && p.red_strides_x[0] == 1;
#pragma omp parallel for if (p.outer * p.inner > 32768) schedule(static)
    for (int64_t i = 0; i < p.outer; ++i) {
      int64_t base = ReducePlan::offset(i, p.kept_shape, p.kept_strides_x);
      Acc acc = 0;
      T best = T(0);
      bool first = true;
      for (int64_t j = 0; j < p.inner; ++j) {
        T v = rows ? in[base + j] : in[base + ReducePlan::offset(j, p.red_shape, p.red_strides_x)];
        if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
          acc += Acc(v);
        } else if (first) {
          best = v;
          first = false;
        } else if constexpr (std::is_floating_point_v<T>) {
          if (best != best) continue;  // NaN propagates
          if (v != v || (op == ReduceOp::Max ? v > best : v < best)) best = v;
        } else {
          if (op == ReduceOp::Max ? v > best : v < best) best = v;
        }
      }
      if (op == ReduceOp::Sum) o[i] = T(acc);
      else if (op == ReduceOp::Mean) o[i] = p.inner ? T(double(acc) / double(p.inner)) : T(NAN);
      else o[i] = best;
    }
  };
  dispatch_numeric(x.dtype, "reduce", run);
}

namespace {
// argmax / argmin over the rows of contiguous float32 x (outer, n): the extreme from the vectorised reduce
// kernel (NaN propagates), then each row's first element at least (at most) it, or its first NaN, found
// by the vectorised scan. The same index and value as the scalar loop below: nothing exceeds the maximum,
// so its first match is where `v > best` last moved (-0.0 and 0.0 alike); the value is copied from that
// element. Greedy decoding's argmax over the vocabulary: ~1 % of a step with a scalar scan.
void arg_reduce_rows_f32(ReduceOp op, const float* x, int64_t outer, int64_t n, float* values, int64_t* indices) {
  cpu::reduce(op, x, values, outer, n, 1);
  const FindCmp at_extreme = op == ReduceOp::Max ? FindCmp::GreaterEqual : FindCmp::LessEqual;
#pragma omp parallel for if (outer * n > 32768) schedule(static)
  for (int64_t i = 0; i < outer; ++i) {
    const float* row = x + i * n;
    const float best = values[i];
    const float inf = std::numeric_limits<float>::infinity();  // nothing is > inf: the first NaN
    const int64_t j = std::min(n - 1, best != best ? cpu::find_first(row, n, inf, FindCmp::Greater, true)
                                                   : cpu::find_first(row, n, best, at_extreme, false));
    values[i] = row[j];
    indices[i] = j;
  }
}
}  // namespace

void CpuBackend::arg_reduce(ReduceOp op, const TensorRef& x, int64_t dim, const TensorRef& values,
                            const TensorRef& indices) {
  int64_t n = x.shape[dim], st = x.strides[dim];
  if (n == 0) throw std::invalid_argument("argmax/argmin: reduction over an empty dimension");
  if (x.dtype == kFloat32 && x.contiguous() && dim + 1 == int64_t(x.shape.size()) && values.contiguous() &&
      indices.contiguous() && (op == ReduceOp::Max || op == ReduceOp::Min))
    return arg_reduce_rows_f32(op, ptr<const float>(x), x.numel() / n, n, ptr<float>(values),
                               ptr<int64_t>(indices));
  Shape kept_shape, kept_strides;
  for (size_t d = 0; d < x.shape.size(); ++d)
    if (int64_t(d) != dim) kept_shape.push_back(x.shape[d]), kept_strides.push_back(x.strides[d]);
  int64_t outer = numel_of(kept_shape);
  auto run = [&](auto t0) {
    using T = decltype(t0);
    const T* in = ptr<T>(x);
    T* vo = ptr<T>(values);
    int64_t* io = ptr<int64_t>(indices);
#pragma omp parallel for if (outer * n > 32768) schedule(static)
    for (int64_t i = 0; i < outer; ++i) {
      const T* row = in + ReducePlan::offset(i, kept_shape, kept_strides);
      T best = row[0];
      int64_t bi = 0;
      for (int64_t j = 1; j < n; ++j) {
        T v = row[j * st];
        if constexpr (std::is_floating_point_v<T>) {
          if (best != best) break;
          if (v != v) { best = v; bi = j; break; }
        }
        if (op == ReduceOp::Max ? v > best : v < best) best = v, bi = j;
      }
      vo[i] = best;
      io[i] = bi;
    }
  };
  dispatch_numeric(x.dtype, "arg_reduce", run);
}

}  // namespace attn::cpu
