// src/backend/cpu/cpu_backend.cc — CpuBackend: memory, copies and the generic strided kernels.
// LEAD-DONE: the class and its generic kernels are in place; fast kernels are wired in by their owners.
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/side_prefetch.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "attn/random.h"
#include "backend/cpu/allocator.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/linalg_kernels.h"
#include "backend/cpu/scalar_math.h"
#include "backend/cpu/strided.h"
#include "backend/cpu/thread_budget.h"

namespace attn::cpu {

using backend::BinaryOp;
using backend::ReduceOp;
using backend::TensorRef;
using backend::UnaryGradOp;
using backend::UnaryOp;

namespace {

template <typename To, typename From> inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) return v;
  else if constexpr (std::is_same_v<To, BFloat16>) return BFloat16(float(v));
  else if constexpr (std::is_same_v<From, BFloat16>) return To(float(v));
  else if constexpr (std::is_same_v<To, bool>) return v != From(0);
  else return To(v);
}

inline int64_t index_value(const TensorRef& idx, int64_t off) {
  return idx.dtype == kInt64 ? static_cast<const int64_t*>(idx.data)[off]
                             : int64_t(static_cast<const int32_t*>(idx.data)[off]);
}

// ---- fast-path helpers (kernels.h)
// If r (broadcast to `shape`) repeats every p elements in row-major order — leading dims stride 0,
// trailing dims contiguous — returns p (numel: no broadcast, 1: a scalar); else 0.
int64_t broadcast_period(const TensorRef& r, const Shape& shape) {
  int64_t expected = 1;
  int64_t d = int64_t(shape.size()) - 1;
  for (; d >= 0; --d) {
    if (shape[d] == 1) continue;
    if (r.strides[d] != expected) break;
    expected *= shape[d];
  }
  for (; d >= 0; --d)
    if (shape[d] != 1 && r.strides[d] != 0) return 0;
  return expected;
}

}  // namespace

// Every op allocates its output here first: the place where the OpenMP team follows the machine's load
// (thread_budget.h; a clock read per call, /proc/stat every 100 ms).
void* CpuBackend::allocate(size_t nbytes) {
  follow_load();
  return cached_alloc(nbytes);
}
void CpuBackend::deallocate(void* p, size_t nbytes) { cached_free(p, nbytes); }

namespace {
// float32 <-> bfloat16 of contiguous memory (autocast's casts): kernels.h's loops, split over the
// threads when large.
bool convert_bf16_contiguous(const TensorRef& src, const TensorRef& dst) {
  const bool widen = src.dtype == kBFloat16 && dst.dtype == kFloat32;
  const bool narrow = src.dtype == kFloat32 && dst.dtype == kBFloat16;
  if (!(widen || narrow) || !src.contiguous() || !dst.contiguous()) return false;
  const int64_t n = src.numel(), chunk = 1 << 14, chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n > (1 << 17))
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t lo = c * chunk, m = std::min(chunk, n - lo);
    if (widen) cpu::widen_bf16(ptr<const uint16_t>(src) + lo, ptr<float>(dst) + lo, m);
    else cpu::narrow_bf16(ptr<const float>(src) + lo, ptr<uint16_t>(dst) + lo, m);
  }
  return true;
}
}  // namespace

void CpuBackend::copy(const TensorRef& src, const TensorRef& dst) {
  if (convert_bf16_contiguous(src, dst)) return;
  if (src.dtype == dst.dtype && src.contiguous() && dst.contiguous()) {
    size_t n = size_t(src.numel()) * element_size(src.dtype);
    if (n >= (size_t(1) << 20)) {
      // large copies: two threads
      int64_t half = int64_t(n / 2) & ~int64_t(63);
#pragma omp parallel for num_threads(std::min(2, omp_get_max_threads()))
      for (int t = 0; t < 2; ++t) {
        size_t b = t == 0 ? 0 : size_t(half), e = t == 0 ? size_t(half) : n;
        std::memcpy(static_cast<char*>(dst.data) + b, static_cast<const char*>(src.data) + b, e - b);
      }
    } else if (n) {
      std::memcpy(dst.data, src.data, n);
    }
    return;
  }
  StridedLoop<2> loop(dst.shape, {dst.strides, src.strides});
  dispatch_dtype(dst.dtype, [&](auto d0) {
    using D = decltype(d0);
    dispatch_dtype(src.dtype, [&](auto s0) {
      using S = decltype(s0);
      D* o = ptr<D>(dst);
      const S* x = ptr<S>(src);
      loop.run([&](const int64_t* off, const int64_t* st, int64_t n) {
        for (int64_t i = 0; i < n; ++i) o[off[0] + i * st[0]] = convert<D>(x[off[1] + i * st[1]]);
      });
    });
  });
}

void CpuBackend::empty_cache() { cpu::empty_cache(); }

void CpuBackend::prefetch_hint(const std::vector<TensorRef>& refs) { announce_side_prefetch(refs); }

void CpuBackend::fill(const TensorRef& dst, double value) {
  StridedLoop<1> loop(dst.shape, {dst.strides});
  dispatch_dtype(dst.dtype, [&](auto d0) {
    using D = decltype(d0);
    D v = convert<D>(value);
    D* o = ptr<D>(dst);
    loop.run([&](const int64_t* off, const int64_t* st, int64_t n) {
      if (st[0] == 1) std::fill(o + off[0], o + off[0] + n, v);
      else
        for (int64_t i = 0; i < n; ++i) o[off[0] + i * st[0]] = v;
    });
  });
}

// Host and CPU memory are the same memory: the host side is a contiguous ref of the same dtype.
void CpuBackend::copy_to_host(const TensorRef& src, void* host_dst) {
  copy(src, TensorRef{host_dst, src.dtype, src.shape, contiguous_strides(src.shape)});
}
void CpuBackend::copy_from_host(const void* host_src, const TensorRef& dst) {
  copy(TensorRef{const_cast<void*>(host_src), dst.dtype, dst.shape, contiguous_strides(dst.shape)}, dst);
}

void CpuBackend::check_index(const TensorRef& index, int64_t n, bool has_allowed, int64_t allowed,
                             const TensorRef& status) {
  if (index.dtype != kInt64 && index.dtype != kInt32) unsupported("check_index", index.dtype);
  int64_t* st = ptr<int64_t>(status);
  st[0] = -1, st[1] = 0;
  int64_t flat = 0;
  bool found = false;
  StridedLoop<1> loop(index.shape, {index.strides});
  loop.run([&](const int64_t* off, const int64_t* stv, int64_t cnt) {
    for (int64_t i = 0; i < cnt && !found; ++i, ++flat) {
      const int64_t v = index_value(index, off[0] + i * stv[0]);
      if ((v < 0 || v >= n) && !(has_allowed && v == allowed)) st[0] = flat, st[1] = v, found = true;
    }
  }, std::numeric_limits<int64_t>::max() / 4);  // serial: rows in row-major order, `flat` counts along
}

void CpuBackend::unary(UnaryOp op, const TensorRef& x, const TensorRef& out, double alpha) {
  if (x.dtype != out.dtype) unsupported("unary (in/out dtypes differ)", out.dtype);
  if (x.dtype == kBFloat16 && x.contiguous() && out.contiguous())
    return cpu::unary_bf16(op, ptr<const uint16_t>(x), ptr<uint16_t>(out), out.numel(), float(alpha));
  if (x.dtype == kFloat32 && x.contiguous() && out.contiguous() &&
      cpu::unary(op, ptr<const float>(x), ptr<float>(out), out.numel(), float(alpha)))
    return;
  StridedLoop<2> loop(out.shape, {out.strides, x.strides});
  auto run = [&](auto t0) {
    using T = decltype(t0);
    T* o = ptr<T>(out);
    const T* in = ptr<T>(x);
    T a = T(alpha);
    loop.run([&](const int64_t* off, const int64_t* st, int64_t n) {
      for (int64_t i = 0; i < n; ++i) o[off[0] + i * st[0]] = unary_scalar<T>(op, in[off[1] + i * st[1]], a);
    }, 4096);
  };
  switch (x.dtype) {
    case kFloat32: return run(float{});
    case kFloat64: return run(double{});
    case kInt32: return run(int32_t{});
    case kInt64: return run(int64_t{});
    case kBool:
    case kUInt8: {
      if (op != UnaryOp::LogicalNot && op != UnaryOp::Abs) unsupported("unary", x.dtype);
      return run(uint8_t{});
    }
    default: unsupported("unary", x.dtype);
  }
}

void CpuBackend::unary_backward(UnaryGradOp op, const TensorRef& v, const TensorRef& grad_out,
                                const TensorRef& grad_in, double alpha) {
  if (v.dtype == kBFloat16 && grad_out.dtype == kBFloat16 && grad_in.dtype == kBFloat16 && v.contiguous() &&
      grad_out.contiguous() && grad_in.contiguous())
    return cpu::unary_backward_bf16(op, ptr<const uint16_t>(v), ptr<const uint16_t>(grad_out),
                                    ptr<uint16_t>(grad_in), grad_in.numel(), float(alpha));
  if (v.dtype == kFloat32 && grad_out.dtype == kFloat32 && grad_in.dtype == kFloat32 && v.contiguous() &&
      grad_out.contiguous() && grad_in.contiguous() &&
      cpu::unary_backward(op, ptr<const float>(v), ptr<const float>(grad_out), ptr<float>(grad_in),
                          grad_in.numel(), float(alpha)))
    return;
  StridedLoop<3> loop(grad_in.shape, {grad_in.strides, v.strides, grad_out.strides});
  auto run = [&](auto t0) {
    using T = decltype(t0);
    T* gi = ptr<T>(grad_in);
    const T* vv = ptr<T>(v);
    const T* go = ptr<T>(grad_out);
    T a = T(alpha);
    loop.run([&](const int64_t* off, const int64_t* st, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        gi[off[0] + i * st[0]] = unary_grad_scalar<T>(op, vv[off[1] + i * st[1]], go[off[2] + i * st[2]], a);
    }, 4096);
  };
  if (v.dtype == kFloat32) return run(float{});
  if (v.dtype == kFloat64) return run(double{});
  unsupported("unary_backward", v.dtype);
}

namespace {
// Integer a^b as PyTorch computes it for integer tensors: exact, wrapping around on overflow (squaring
// in the unsigned type); a negative b gives 1 for a = 1, ±1 for a = -1, else 0.
template <typename T> T int_pow(T a, T b) {
  if constexpr (std::is_same_v<T, bool>) {
    return b ? a : true;
  } else {
    if constexpr (std::is_signed_v<T>) {
      if (b < 0) return a == 1 ? T(1) : a == -1 ? T((b & 1) ? -1 : 1) : T(0);
    }
    using U = std::make_unsigned_t<T>;
    U result = 1, base = U(a);
    for (auto e = std::make_unsigned_t<T>(b); e; e >>= 1) {
      if (e & 1) result = U(result * base);
      base = U(base * base);
    }
    return T(result);
  }
}

template <typename T, typename O> inline O binary_scalar(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return O(a + b);
    case BinaryOp::Sub: return O(a - b);
    case BinaryOp::Mul: return O(a * b);
    case BinaryOp::Div:
      if constexpr (std::is_integral_v<T>) return O(0);  // rejected in binary() before any loop
      else return O(a / b);
    case BinaryOp::Pow:
      if constexpr (std::is_integral_v<T>) return O(int_pow(a, b));
      else return O(std::pow(a, b));
    case BinaryOp::Maximum:
      if constexpr (std::is_floating_point_v<T>) if (a != a || b != b) return O(a + b);
      return O(a > b ? a : b);
    case BinaryOp::Minimum:
      if constexpr (std::is_floating_point_v<T>) if (a != a || b != b) return O(a + b);
      return O(a < b ? a : b);
    case BinaryOp::Eq: return O(a == b);
    case BinaryOp::Ne: return O(a != b);
    case BinaryOp::Lt: return O(a < b);
    case BinaryOp::Le: return O(a <= b);
    case BinaryOp::Gt: return O(a > b);
    case BinaryOp::Ge: return O(a >= b);
    case BinaryOp::LogicalAnd: return O(a != T(0) && b != T(0));
    case BinaryOp::LogicalOr: return O(a != T(0) || b != T(0));
  }
  return O(0);
}
bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }
}  // namespace

void CpuBackend::binary_mixed(BinaryOp op, const TensorRef& a, const TensorRef& b, const TensorRef& out) {
  auto float_kind = [](const TensorRef& t) { return t.dtype == kFloat32 || t.dtype == kBFloat16; };
  if (!float_kind(a) || !float_kind(b) || !float_kind(out) || a.shape != out.shape || b.shape != out.shape ||
      !a.contiguous() || !b.contiguous() || !out.contiguous() || !backend::is_mixed_binary_op(op))
    throw std::invalid_argument("binary_mixed: contiguous float32 / bf16 operands of the output's shape, Add .. Minimum");
  cpu::binary_mixed(op, a.data, a.dtype == kBFloat16, b.data, b.dtype == kBFloat16, out.data, out.dtype == kBFloat16,
                    out.numel());
}

void CpuBackend::binary(BinaryOp op, const TensorRef& a, const TensorRef& b, const TensorRef& out) {
  if (a.dtype != b.dtype) unsupported("binary (operand dtypes differ)", b.dtype);
  bool cmp = is_comparison(op);
  if (cmp && out.dtype != kBool) unsupported("comparison output", out.dtype);
  if (!cmp && out.dtype != a.dtype) unsupported("binary (output dtype differs)", out.dtype);
  // integer division (0 divisors, INT_MIN / -1) is undefined in C++: the ops promote to float first
  if (op == BinaryOp::Div && !is_floating(a.dtype)) unsupported("binary Div (integer operands)", a.dtype);
  if (a.dtype == kFloat32 && !cmp && out.contiguous() && out.numel() > 0) {
    const int64_t pa = broadcast_period(a, out.shape), pb = broadcast_period(b, out.shape);
    if (pa > 0 && pb > 0 &&
        cpu::binary(op, ptr<const float>(a), pa, ptr<const float>(b), pb, ptr<float>(out), out.numel()))
      return;
  }
  StridedLoop<3> loop(out.shape, {out.strides, a.strides, b.strides});
  auto run = [&](auto t0, auto o0) {
    using T = decltype(t0);
    using O = decltype(o0);
    O* o = ptr<O>(out);
    const T* x = ptr<T>(a);
    const T* y = ptr<T>(b);
    loop.run([&](const int64_t* off, const int64_t* st, int64_t n) {
      if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
        O* oo = o + off[0];
        const T* xx = x + off[1];
        const T* yy = y + off[2];
        switch (op) {  // the common contiguous cases, written so the compiler vectorizes them
          case BinaryOp::Add: for (int64_t i = 0; i < n; ++i) oo[i] = O(xx[i] + yy[i]); return;
          case BinaryOp::Sub: for (int64_t i = 0; i < n; ++i) oo[i] = O(xx[i] - yy[i]); return;
          case BinaryOp::Mul: for (int64_t i = 0; i < n; ++i) oo[i] = O(xx[i] * yy[i]); return;
          default: break;
        }
      }
      for (int64_t i = 0; i < n; ++i)
        o[off[0] + i * st[0]] = binary_scalar<T, O>(op, x[off[1] + i * st[1]], y[off[2] + i * st[2]]);
    }, 8192);
  };
  auto with_out = [&](auto t0) {
    if (cmp) run(t0, bool{});
    else run(t0, t0);
  };
  switch (a.dtype) {
    case kFloat32: return with_out(float{});
    case kFloat64: return with_out(double{});
    case kInt32: return with_out(int32_t{});
    case kInt64: return with_out(int64_t{});
    case kUInt8: return with_out(uint8_t{});
    case kBool: return with_out(bool{});
    default: unsupported("binary", a.dtype);
  }
}

void CpuBackend::where(const TensorRef& cond, const TensorRef& a, const TensorRef& b, const TensorRef& out) {
  if (cond.dtype != kBool && cond.dtype != kUInt8) unsupported("where condition", cond.dtype);
  StridedLoop<4> loop(out.shape, {out.strides, cond.strides, a.strides, b.strides});
  dispatch_dtype(out.dtype, [&](auto t0) {
    using T = decltype(t0);
    T* o = ptr<T>(out);
    const uint8_t* c = static_cast<const uint8_t*>(cond.data);
    const T* x = ptr<T>(a);
    const T* y = ptr<T>(b);
    loop.run([&](const int64_t* off, const int64_t* st, int64_t n) {
      for (int64_t i = 0; i < n; ++i)
        o[off[0] + i * st[0]] = c[off[1] + i * st[1]] ? x[off[2] + i * st[2]] : y[off[3] + i * st[3]];
    });
  });
}

// ---- indexing (index int64 or int32; bounds checked before by the check_index kernel, which the ops call)

void CpuBackend::gather(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) {
  // out[i][j][k] = x[i][index[i][j][k]][k] (dim = 1); out, index contiguous of the same shape
  int64_t nd = int64_t(out.shape.size());
  Shape ostr = contiguous_strides(out.shape);
  int64_t total = out.numel();
  dispatch_dtype(x.dtype, [&](auto t0) {
    using T = decltype(t0);
    const T* in = ptr<T>(x);
    T* o = ptr<T>(out);
#pragma omp parallel for if (total > 65536)
    for (int64_t i = 0; i < total; ++i) {
      int64_t rem = i, off = 0;
      for (int64_t d = 0; d < nd; ++d) {
        int64_t c = rem / ostr[d];
        rem %= ostr[d];
        off += (d == dim ? index_value(index, i) : c) * x.strides[d];
      }
      o[i] = in[off];
    }
  });
}

void CpuBackend::scatter_add(const TensorRef& out, int64_t dim, const TensorRef& index, const TensorRef& src) {
  // out[i][index[i][j][k]][k] += src[i][j][k]; serial over elements (indices may repeat)
  int64_t nd = int64_t(src.shape.size());
  Shape sstr = contiguous_strides(src.shape);
  int64_t total = src.numel();
  dispatch_dtype(out.dtype, [&](auto t0) {
    using T = decltype(t0);
    if constexpr (std::is_same_v<T, BFloat16> || std::is_same_v<T, bool>) {
      unsupported("scatter_add", out.dtype);
    } else {
      T* o = ptr<T>(out);
      const T* s = ptr<T>(src);
      for (int64_t i = 0; i < total; ++i) {
        int64_t rem = i, off = 0;
        for (int64_t d = 0; d < nd; ++d) {
          int64_t c = rem / sstr[d];
          rem %= sstr[d];
          off += (d == dim ? index_value(index, i) : c) * out.strides[d];
        }
        o[off] += s[i];
      }
    }
  });
}

void CpuBackend::index_select(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) {
  if (!x.contiguous() || !out.contiguous()) return index_select_strided(x, dim, index, out);
  // x viewed as (outer, n, inner) contiguous; out (outer, k, inner)
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.shape[d];
  for (size_t d = dim + 1; d < x.shape.size(); ++d) inner *= x.shape[d];
  int64_t n = x.shape[dim], k = index.numel();
  size_t es = element_size(x.dtype);
  const char* in = static_cast<const char*>(x.data);
  char* o = static_cast<char*>(out.data);
#pragma omp parallel for collapse(2) if (outer * k * inner > 65536)
  for (int64_t a = 0; a < outer; ++a)
    for (int64_t j = 0; j < k; ++j)
      std::memcpy(o + ((a * k + j) * inner) * es, in + ((a * n + index_value(index, j)) * inner) * es, inner * es);
}

// Views (a preallocated buffer's filled part): for each selected index one strided copy of x's slice
// at index[j] along dim into out's slice j, the slices split over the threads.
void CpuBackend::index_select_strided(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) {
  const int64_t k = index.numel();
  Shape slice = out.shape;
  slice[size_t(dim)] = 1;
  const StridedLoop<2> loop(slice, {out.strides, x.strides});
  const size_t es = element_size(x.dtype);
#pragma omp parallel for if (out.numel() > 65536)
  for (int64_t j = 0; j < k; ++j) {
    char* o = static_cast<char*>(out.data) + j * out.strides[size_t(dim)] * int64_t(es);
    const char* in = static_cast<const char*>(x.data) + index_value(index, j) * x.strides[size_t(dim)] * int64_t(es);
    loop.run([&](const int64_t* off, const int64_t* st, int64_t n) {
      if (st[0] == 1 && st[1] == 1) {
        std::memcpy(o + off[0] * int64_t(es), in + off[1] * int64_t(es), size_t(n) * es);
        return;
      }
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(o + (off[0] + i * st[0]) * int64_t(es), in + (off[1] + i * st[1]) * int64_t(es), es);
    });
  }
}

void CpuBackend::index_add(const TensorRef& out, int64_t dim, const TensorRef& index, const TensorRef& src) {
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.shape[d];
  for (size_t d = dim + 1; d < out.shape.size(); ++d) inner *= out.shape[d];
  int64_t n = out.shape[dim], k = index.numel();
  auto run = [&](auto t0) {
    using T = decltype(t0);
    T* o = ptr<T>(out);
    const T* s = ptr<T>(src);
    // parallel over the inner dimension (rows of the same index may collide)
#pragma omp parallel for if (outer * k * inner > 65536 && inner >= 64)
    for (int64_t c = 0; c < inner; c += 64) {
      int64_t ce = std::min(inner, c + 64);
      for (int64_t a = 0; a < outer; ++a)
        for (int64_t j = 0; j < k; ++j) {
          T* dst = o + (a * n + index_value(index, j)) * inner;
          const T* sp = s + (a * k + j) * inner;
          for (int64_t e = c; e < ce; ++e) dst[e] += sp[e];
        }
    }
  };
  if (out.dtype == kFloat32) return run(float{});
  if (out.dtype == kFloat64) return run(double{});
  if (out.dtype == kInt64) return run(int64_t{});
  unsupported("index_add", out.dtype);
}

// ---- random (element i depends only on seed, counter and i)
void CpuBackend::uniform(const TensorRef& out, double lo, double hi, uint64_t seed, uint64_t counter) {
  if (!out.contiguous()) throw std::invalid_argument("uniform: output must be contiguous");
  if (out.dtype == kFloat32) return cpu::uniform(ptr<float>(out), out.numel(), lo, hi, seed, counter);
  if (out.dtype == kFloat64) return cpu::uniform(ptr<double>(out), out.numel(), lo, hi, seed, counter);
  unsupported("uniform", out.dtype);
}

namespace {
void check_keep(const TensorRef& keep, int64_t n, const char* op) {
  if (!keep.contiguous() || keep.dtype != kUInt8 || keep.numel() != backend::dropout_keep_bytes(n))
    throw std::invalid_argument(std::string(op) + ": keep must be contiguous uint8 of dropout_keep_bytes(" +
                                std::to_string(n) + ") = " + std::to_string(backend::dropout_keep_bytes(n)) +
                                " bytes, got " + std::to_string(keep.numel()) + " " + dtype_name(keep.dtype));
}
}  // namespace

namespace {
// dropout (pass null) or relu_dropout over contiguous x: checked once, then cpu::dropout
void dropout_checked(const char* op, const TensorRef& x, double p, uint64_t seed, uint64_t counter,
                     const TensorRef& out, const TensorRef& keep, const TensorRef* pass) {
  if (!x.contiguous() || !out.contiguous() || x.shape != out.shape || x.dtype != out.dtype)
    throw std::invalid_argument(std::string(op) + ": x and out must be contiguous, of one shape and dtype");
  check_keep(keep, x.numel(), op);
  if (pass) check_keep(*pass, x.numel(), op);
  uint8_t* pass_bits = pass ? ptr<uint8_t>(*pass) : nullptr;
  if (x.dtype == kFloat32)
    return cpu::dropout(ptr<const float>(x), x.numel(), p, seed, counter, ptr<float>(out), ptr<uint8_t>(keep),
                        pass_bits);
  if (x.dtype == kFloat64)
    return cpu::dropout(ptr<const double>(x), x.numel(), p, seed, counter, ptr<double>(out), ptr<uint8_t>(keep),
                        pass_bits);
  if (x.dtype == kBFloat16)
    return cpu::dropout_bf16(ptr<const uint16_t>(x), x.numel(), p, seed, counter, ptr<uint16_t>(out),
                             ptr<uint8_t>(keep), pass_bits);
  unsupported(op, x.dtype);
}
// grad_x = grad_out * (keep ? 1 / (1 - p) : 0), and 0 where a pass bit is clear when pass is given
void dropout_backward_checked(const char* op, const TensorRef& grad_out, const TensorRef& keep,
                              const TensorRef* pass, double p, const TensorRef& grad_x) {
  if (!grad_out.contiguous() || !grad_x.contiguous() || grad_out.shape != grad_x.shape ||
      grad_out.dtype != grad_x.dtype)
    throw std::invalid_argument(std::string(op) + ": grad_out and grad_x must be contiguous, of one shape and dtype");
  const int64_t n = grad_out.numel();
  check_keep(keep, n, op);
  if (pass) check_keep(*pass, n, op);
  if (grad_out.dtype == kFloat32) {
    const float* g = ptr<const float>(grad_out);
    if (pass)
      return cpu::relu_dropout_backward(g, ptr<const uint8_t>(keep), ptr<const uint8_t>(*pass), p, ptr<float>(grad_x), n);
    return cpu::dropout_backward(g, ptr<const uint8_t>(keep), p, ptr<float>(grad_x), n);
  }
  if (grad_out.dtype == kFloat64) {
    const double* g = ptr<const double>(grad_out);
    if (pass)
      return cpu::relu_dropout_backward(g, ptr<const uint8_t>(keep), ptr<const uint8_t>(*pass), p, ptr<double>(grad_x),
                                        n);
    return cpu::dropout_backward(g, ptr<const uint8_t>(keep), p, ptr<double>(grad_x), n);
  }
  if (grad_out.dtype == kBFloat16)
    return cpu::dropout_backward_bf16(ptr<const uint16_t>(grad_out), ptr<const uint8_t>(keep),
                                      pass ? ptr<const uint8_t>(*pass) : nullptr, p, ptr<uint16_t>(grad_x), n);
  unsupported(op, grad_out.dtype);
}
}  // namespace

void CpuBackend::dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
                         const TensorRef& keep) {
  dropout_checked("dropout", x, p, seed, counter, out, keep, nullptr);
}
void CpuBackend::dropout_backward(const TensorRef& grad_out, const TensorRef& keep, double p,
                                  const TensorRef& grad_x) {
  dropout_backward_checked("dropout_backward", grad_out, keep, nullptr, p, grad_x);
}
void CpuBackend::relu_dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
                              const TensorRef& keep, const TensorRef& pass) {
  dropout_checked("relu_dropout", x, p, seed, counter, out, keep, &pass);
}
void CpuBackend::relu_dropout_backward(const TensorRef& grad_out, const TensorRef& keep, const TensorRef& pass,
                                       double p, const TensorRef& grad_x) {
  dropout_backward_checked("relu_dropout_backward", grad_out, keep, &pass, p, grad_x);
}

void CpuBackend::normal(const TensorRef& out, double mean, double std, uint64_t seed, uint64_t counter) {
  if (!out.contiguous()) throw std::invalid_argument("normal: output must be contiguous");
  if (out.dtype == kFloat32) return cpu::normal(ptr<float>(out), out.numel(), mean, std, seed, counter);
  if (out.dtype == kFloat64) return cpu::normal(ptr<double>(out), out.numel(), mean, std, seed, counter);
  unsupported("normal", out.dtype);
}

// ---- GEMM, convolution, pooling: linalg_kernels.h (gemm.cc, conv.cc, pool.cc)
void CpuBackend::gemm(const backend::GemmArgs& a) { cpu::gemm(a); }
void CpuBackend::conv2d(const backend::Conv2dArgs& a, const TensorRef& x, const TensorRef& w, const TensorRef& b,
                        const TensorRef& y) {
  cpu::conv2d(a, x.data, w.data, b.data, y.data);
}
void CpuBackend::conv2d_backward(const backend::Conv2dArgs& a, const TensorRef& x, const TensorRef& w,
                                 const TensorRef& gy, const TensorRef& gx, const TensorRef& gw, const TensorRef& gb) {
  cpu::conv2d_backward(a, x.data, w.data, gy.data, gx.data, gw.data, gb.data);
}
void CpuBackend::max_pool2d(const backend::Pool2dArgs& a, const TensorRef& x, const TensorRef& y,
                            const TensorRef& idx) {
  cpu::max_pool2d(a, x.data, y.data, ptr<int64_t>(idx));
}
void CpuBackend::max_pool2d_backward(const backend::Pool2dArgs& a, const TensorRef& gy, const TensorRef& idx,
                                     const TensorRef& gx) {
  cpu::max_pool2d_backward(a, gy.data, ptr<const int64_t>(idx), gx.data);
}
void CpuBackend::avg_pool2d(const backend::Pool2dArgs& a, const TensorRef& x, const TensorRef& y) {
  cpu::avg_pool2d(a, x.data, y.data);
}
void CpuBackend::avg_pool2d_backward(const backend::Pool2dArgs& a, const TensorRef& gy, const TensorRef& gx) {
  cpu::avg_pool2d_backward(a, gy.data, gx.data);
}

// ---- softmax, layer norm, adam: kernels.h (softmax.cc, layer_norm.cc, optim.cc)
namespace {
void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("cpu backend: ") + what);
}
int64_t last_dim(const TensorRef& x) { return x.shape.empty() ? 1 : x.shape.back(); }
}  // namespace

void CpuBackend::softmax(const TensorRef& x, const TensorRef& y, bool log) {
  require(x.contiguous() && y.contiguous() && x.dtype == y.dtype && x.numel() == y.numel(),
          "softmax: x and y must be contiguous, of one dtype and size");
  const int64_t d = last_dim(x), rows = d > 0 ? x.numel() / d : 0;
  if (x.dtype == kFloat32) return cpu::softmax(ptr<const float>(x), ptr<float>(y), rows, d, log);
  if (x.dtype == kFloat64) return cpu::softmax(ptr<const double>(x), ptr<double>(y), rows, d, log);
  unsupported("softmax", x.dtype);
}

void CpuBackend::softmax_backward(const TensorRef& y, const TensorRef& grad_y, const TensorRef& grad_x, bool log) {
  require(y.contiguous() && grad_y.contiguous() && grad_x.contiguous() && y.dtype == grad_y.dtype &&
              y.dtype == grad_x.dtype && y.numel() == grad_y.numel() && y.numel() == grad_x.numel(),
          "softmax_backward: y, grad_y, grad_x must be contiguous, of one dtype and size");
  const int64_t d = last_dim(y), rows = d > 0 ? y.numel() / d : 0;
  if (y.dtype == kFloat32)
    return cpu::softmax_backward(ptr<const float>(y), ptr<const float>(grad_y), ptr<float>(grad_x), rows, d, log);
  if (y.dtype == kFloat64)
    return cpu::softmax_backward(ptr<const double>(y), ptr<const double>(grad_y), ptr<double>(grad_x), rows, d,
                                 log);
  unsupported("softmax_backward", y.dtype);
}

namespace {
// Calls f(T{}, S{}) for x's dtype T (float32/64) and the stats dtype S (float32/64).
template <typename F> void ln_dispatch(const char* what, DType t, DType s, F&& f) {
  if (s != kFloat32 && s != kFloat64) unsupported(what, s);
  auto with_s = [&](auto t0) {
    if (s == kFloat32) f(t0, float{});
    else f(t0, double{});
  };
  if (t == kFloat32) return with_s(float{});
  if (t == kFloat64) return with_s(double{});
  unsupported(what, t);
}
}  // namespace

void CpuBackend::layer_norm(const TensorRef& x, const TensorRef& weight, const TensorRef& bias, double eps,
                            const TensorRef& y, const TensorRef& mean, const TensorRef& rstd) {
  const int64_t rows = mean.numel(), d = rows > 0 ? x.numel() / rows : 0;
  require(x.contiguous() && y.contiguous() && mean.contiguous() && rstd.contiguous() && y.dtype == x.dtype &&
              y.numel() == x.numel() && rstd.numel() == rows && rstd.dtype == mean.dtype && rows * d == x.numel(),
          "layer_norm: x (rows, d), y contiguous; mean/rstd (rows)");
  require((!weight.data || (weight.dtype == x.dtype && weight.numel() == d && weight.contiguous())) &&
              (!bias.data || (bias.dtype == x.dtype && bias.numel() == d && bias.contiguous())),
          "layer_norm: weight/bias must be contiguous (d) of x's dtype");
  if (rows == 0) return;
  ln_dispatch("layer_norm", x.dtype, mean.dtype, [&](auto t0, auto s0) {
    using T = decltype(t0);
    using S = decltype(s0);
    cpu::layer_norm<T, S>(ptr<const T>(x), ptr<const T>(weight), ptr<const T>(bias), eps, ptr<T>(y), ptr<S>(mean),
                          ptr<S>(rstd), rows, d);
  });
}

void CpuBackend::layer_norm_backward(const TensorRef& grad_y, const TensorRef& x, const TensorRef& weight,
                                     const TensorRef& mean, const TensorRef& rstd, const TensorRef& grad_x,
                                     const TensorRef& grad_weight, const TensorRef& grad_bias) {
  const int64_t rows = mean.numel(), d = rows > 0 ? x.numel() / rows : 0;
  require(x.contiguous() && grad_y.contiguous() && mean.contiguous() && rstd.contiguous() &&
              grad_y.dtype == x.dtype && grad_y.numel() == x.numel() && rstd.numel() == rows &&
              rstd.dtype == mean.dtype && rows * d == x.numel(),
          "layer_norm_backward: x, grad_y (rows, d) contiguous; mean/rstd (rows)");
  require((!grad_x.data || (grad_x.contiguous() && grad_x.dtype == x.dtype && grad_x.numel() == x.numel())) &&
              (!weight.data || (weight.contiguous() && weight.dtype == x.dtype && weight.numel() == d)) &&
              (!grad_weight.data ||
               (grad_weight.contiguous() && grad_weight.dtype == x.dtype && grad_weight.numel() == d)) &&
              (!grad_bias.data || (grad_bias.contiguous() && grad_bias.dtype == x.dtype && grad_bias.numel() == d)),
          "layer_norm_backward: grad_x like x; weight, grad_weight, grad_bias contiguous (d) of x's dtype");
  if (rows == 0) {
    if (grad_weight.data) fill(grad_weight, 0.0);
    if (grad_bias.data) fill(grad_bias, 0.0);
    return;
  }
  ln_dispatch("layer_norm_backward", x.dtype, mean.dtype, [&](auto t0, auto s0) {
    using T = decltype(t0);
    using S = decltype(s0);
    cpu::layer_norm_backward<T, S>(ptr<const T>(grad_y), ptr<const T>(x), ptr<const T>(weight), ptr<const S>(mean),
                                   ptr<const S>(rstd), ptr<T>(grad_x), ptr<T>(grad_weight), ptr<T>(grad_bias), rows,
                                   d);
  });
}

void CpuBackend::adam_step(const backend::AdamArgs& a, const TensorRef& param, const TensorRef& grad,
                           const TensorRef& exp_avg, const TensorRef& exp_avg_sq, const TensorRef& max_exp_avg_sq) {
  const int64_t n = param.numel();
  auto same = [&](const TensorRef& t) {
    return t.data && t.dtype == param.dtype && t.numel() == n && t.contiguous();
  };
  require(param.contiguous() && same(grad) && same(exp_avg) && same(exp_avg_sq) && (!a.amsgrad || same(max_exp_avg_sq)),
          "adam_step: param, grad, exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad) must be contiguous, "
          "of one dtype and size");
  if (param.dtype == kFloat32)
    return cpu::adam_step<float>(a, ptr<float>(param), ptr<const float>(grad), ptr<float>(exp_avg),
                                 ptr<float>(exp_avg_sq), ptr<float>(max_exp_avg_sq), n);
  if (param.dtype == kFloat64)
    return cpu::adam_step<double>(a, ptr<double>(param), ptr<const double>(grad), ptr<double>(exp_avg),
                                  ptr<double>(exp_avg_sq), ptr<double>(max_exp_avg_sq), n);
  unsupported("adam_step", param.dtype);
}

}  // namespace attn::cpu
