// src/backend/cpu/cpu_backend.cc — CpuBackend: memory, copies and the generic strided kernels.
// LEAD-DONE: the class and its generic kernels are in place; fast kernels are wired in by their owners.
#include "backend/cpu/cpu_backend.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "attn/random.h"
#include "backend/cpu/allocator.h"
#include "backend/cpu/scalar_math.h"
#include "backend/cpu/strided.h"

namespace attn::cpu {

using backend::BinaryOp;
using backend::ReduceOp;
using backend::TensorRef;
using backend::UnaryGradOp;
using backend::UnaryOp;

namespace {

template <typename T> T* ptr(const TensorRef& r) { return static_cast<T*>(r.data); }

template <typename To, typename From> inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) return v;
  else if constexpr (std::is_same_v<To, BFloat16>) return BFloat16(float(v));
  else if constexpr (std::is_same_v<From, BFloat16>) return To(float(v));
  else if constexpr (std::is_same_v<To, bool>) return v != From(0);
  else return To(v);
}

[[noreturn]] void unsupported(const char* what, DType t) {
  throw std::invalid_argument(std::string(what) + ": dtype " + dtype_name(t) + " is not supported on cpu");
}

}  // namespace

void* CpuBackend::allocate(size_t nbytes) { return cached_alloc(nbytes); }
void CpuBackend::deallocate(void* p, size_t nbytes) { cached_free(p, nbytes); }

void CpuBackend::copy(const TensorRef& src, const TensorRef& dst) {
  if (src.dtype == dst.dtype && src.contiguous() && dst.contiguous()) {
    size_t n = size_t(src.numel()) * element_size(src.dtype);
    if (n >= (size_t(1) << 20)) {
      // large copies: two threads
      int64_t half = int64_t(n / 2) & ~int64_t(63);
#pragma omp parallel for num_threads(2)
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

void CpuBackend::unary(UnaryOp op, const TensorRef& x, const TensorRef& out, double alpha) {
  if (x.dtype != out.dtype) unsupported("unary (in/out dtypes differ)", out.dtype);
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
template <typename T, typename O> inline O binary_scalar(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return O(a + b);
    case BinaryOp::Sub: return O(a - b);
    case BinaryOp::Mul: return O(a * b);
    case BinaryOp::Div:
      if constexpr (std::is_integral_v<T>) {
        if (b == 0) throw std::domain_error("div: integer division by zero");
        return O(a / b);
      } else {
        return O(a / b);
      }
    case BinaryOp::Pow:
      if constexpr (std::is_integral_v<T>) return O(std::pow(double(a), double(b)));
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

void CpuBackend::binary(BinaryOp op, const TensorRef& a, const TensorRef& b, const TensorRef& out) {
  if (a.dtype != b.dtype) unsupported("binary (operand dtypes differ)", b.dtype);
  bool cmp = is_comparison(op);
  if (cmp && out.dtype != kBool) unsupported("comparison output", out.dtype);
  if (!cmp && out.dtype != a.dtype) unsupported("binary (output dtype differs)", out.dtype);
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

// ---- reductions
namespace {
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
  ReducePlan p(x, out);
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
      else {
        if (p.inner == 0) throw std::invalid_argument("max/min: reduction over an empty dimension");
        o[i] = best;
      }
    }
  };
  switch (x.dtype) {
    case kFloat32: return run(float{});
    case kFloat64: return run(double{});
    case kInt32: return run(int32_t{});
    case kInt64: return run(int64_t{});
    case kUInt8: return run(uint8_t{});
    default: unsupported("reduce", x.dtype);
  }
}

void CpuBackend::arg_reduce(ReduceOp op, const TensorRef& x, int64_t dim, const TensorRef& values,
                            const TensorRef& indices) {
  int64_t n = x.shape[dim], st = x.strides[dim];
  if (n == 0) throw std::invalid_argument("argmax/argmin: reduction over an empty dimension");
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
  switch (x.dtype) {
    case kFloat32: return run(float{});
    case kFloat64: return run(double{});
    case kInt32: return run(int32_t{});
    case kInt64: return run(int64_t{});
    case kUInt8: return run(uint8_t{});
    default: unsupported("arg_reduce", x.dtype);
  }
}

// ---- indexing (index int64 or int32; bounds checked by the ops layer)
namespace {
inline int64_t index_at(const TensorRef& idx, int64_t off) {
  return idx.dtype == kInt64 ? static_cast<const int64_t*>(idx.data)[off]
                             : int64_t(static_cast<const int32_t*>(idx.data)[off]);
}
}  // namespace

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
        off += (d == dim ? index_at(index, i) : c) * x.strides[d];
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
          off += (d == dim ? index_at(index, i) : c) * out.strides[d];
        }
        o[off] += s[i];
      }
    }
  });
}

void CpuBackend::index_select(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) {
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
      std::memcpy(o + ((a * k + j) * inner) * es, in + ((a * n + index_at(index, j)) * inner) * es, inner * es);
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
          T* dst = o + (a * n + index_at(index, j)) * inner;
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
  int64_t n = out.numel();
  auto run = [&](auto t0) {
    using T = decltype(t0);
    T* o = ptr<T>(out);
#pragma omp parallel for if (n > 65536)
    for (int64_t b = 0; b < (n + 3) / 4; ++b) {
      Philox4 r = philox4x32(seed, counter + uint64_t(b));
      for (int j = 0; j < 4 && b * 4 + j < n; ++j) {
        double u = std::is_same_v<T, double> ? uint64_to_unit_double((uint64_t(r.v[j]) << 32) | r.v[(j + 1) & 3])
                                             : double(uint32_to_unit_float(r.v[j]));
        T v = T(lo + (hi - lo) * u);
        if (v >= T(hi) && hi > lo) v = std::nextafter(T(hi), T(lo));
        o[b * 4 + j] = v;
      }
    }
  };
  if (out.dtype == kFloat32) return run(float{});
  if (out.dtype == kFloat64) return run(double{});
  unsupported("uniform", out.dtype);
}

void CpuBackend::normal(const TensorRef& out, double mean, double std, uint64_t seed, uint64_t counter) {
  int64_t n = out.numel();
  auto run = [&](auto t0) {
    using T = decltype(t0);
    T* o = ptr<T>(out);
#pragma omp parallel for if (n > 65536)
    for (int64_t b = 0; b < (n + 1) / 2; ++b) {  // Box-Muller: one Philox block -> two normals
      Philox4 r = philox4x32(seed, counter + uint64_t(b));
      double u1 = uint64_to_unit_double((uint64_t(r.v[0]) << 32) | r.v[1]);
      double u2 = uint64_to_unit_double((uint64_t(r.v[2]) << 32) | r.v[3]);
      double rad = std::sqrt(-2.0 * std::log(1.0 - u1)), th = 2.0 * M_PI * u2;
      o[2 * b] = T(mean + std * rad * std::cos(th));
      if (2 * b + 1 < n) o[2 * b + 1] = T(mean + std * rad * std::sin(th));
    }
  };
  if (out.dtype == kFloat32) return run(float{});
  if (out.dtype == kFloat64) return run(double{});
  unsupported("normal", out.dtype);
}

// ---- implemented in their own files (wired by their owners)
#define ATTN_NOT_WIRED(name) throw std::logic_error("cpu backend: " name " is not wired yet")
void CpuBackend::gemm(const backend::GemmArgs&) { ATTN_NOT_WIRED("gemm"); }
void CpuBackend::softmax(const TensorRef&, const TensorRef&, bool) { ATTN_NOT_WIRED("softmax"); }
void CpuBackend::softmax_backward(const TensorRef&, const TensorRef&, const TensorRef&, bool) {
  ATTN_NOT_WIRED("softmax_backward");
}
void CpuBackend::layer_norm(const TensorRef&, const TensorRef&, const TensorRef&, double, const TensorRef&,
                            const TensorRef&, const TensorRef&) {
  ATTN_NOT_WIRED("layer_norm");
}
void CpuBackend::layer_norm_backward(const TensorRef&, const TensorRef&, const TensorRef&, const TensorRef&,
                                     const TensorRef&, const TensorRef&, const TensorRef&, const TensorRef&) {
  ATTN_NOT_WIRED("layer_norm_backward");
}
void CpuBackend::conv2d(const backend::Conv2dArgs&, const void*, const void*, const void*, void*) {
  ATTN_NOT_WIRED("conv2d");
}
void CpuBackend::conv2d_backward(const backend::Conv2dArgs&, const void*, const void*, const void*, void*, void*,
                                 void*) {
  ATTN_NOT_WIRED("conv2d_backward");
}
void CpuBackend::max_pool2d(const backend::Pool2dArgs&, const void*, void*, int64_t*) { ATTN_NOT_WIRED("max_pool2d"); }
void CpuBackend::max_pool2d_backward(const backend::Pool2dArgs&, const void*, const int64_t*, void*) {
  ATTN_NOT_WIRED("max_pool2d_backward");
}
void CpuBackend::avg_pool2d(const backend::Pool2dArgs&, const void*, void*) { ATTN_NOT_WIRED("avg_pool2d"); }
void CpuBackend::avg_pool2d_backward(const backend::Pool2dArgs&, const void*, void*) {
  ATTN_NOT_WIRED("avg_pool2d_backward");
}
void CpuBackend::adam_step(const backend::AdamArgs&, const TensorRef&, const TensorRef&, const TensorRef&,
                           const TensorRef&, const TensorRef&) {
  ATTN_NOT_WIRED("adam_step");
}

}  // namespace attn::cpu
