// src/backend/cpu/dispatch.cc — picks the AVX-512 or AVX2 kernel table once (or as forced by tests),
// and the elementwise / reduction entry points of kernels.h (float32 via the table, float64 here).
#include "backend/cpu/dispatch.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/kernels.h"

namespace attn::cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Reference: return "reference";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Reference: return true;
    case Isa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
  }
  return false;
}

namespace {
Isa best_isa() {
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Reference;
}
std::atomic<Isa>& current() {
  static std::atomic<Isa> isa{best_isa()};
  return isa;
}
}  // namespace

Isa active_isa() { return current().load(std::memory_order_relaxed); }
bool set_isa_for_testing(Isa isa) {
  if (!isa_supported(isa)) return false;
  current().store(isa);
  return true;
}
void reset_isa() { current().store(best_isa()); }

const KernelTable& kernels() {
  switch (active_isa()) {
    case Isa::Avx512: return avx512::table();
    case Isa::Avx2: return avx2::table();
    case Isa::Reference: break;
  }
  return reference_table();
}

// ---- the reference table: ref:: kernels behind the KernelTable signatures
namespace {
void ref_softmax(const float* x, float* y, int64_t rows, int64_t d, bool log) { ref::softmax(x, y, rows, d, log); }
void ref_softmax_backward(const float* y, const float* gy, float* gx, int64_t rows, int64_t d, bool log) {
  ref::softmax_backward(y, gy, gx, rows, d, log);
}
void ref_layer_norm(const float* x, const float* w, const float* b, double eps, float* y, float* mean,
                    float* rstd, int64_t rows, int64_t d) {
  ref::layer_norm(x, w, b, eps, y, mean, rstd, rows, d);
}
void ref_layer_norm_backward(const float* gy, const float* x, const float* w, const float* mean,
                             const float* rstd, float* gx, float* gw, float* gb, int64_t rows, int64_t d) {
  ref::layer_norm_backward(gy, x, w, mean, rstd, gx, gw, gb, rows, d);
}
bool ref_unary(UnaryOp op, const float* x, float* y, int64_t n, float alpha) {
  ref::unary(op, x, y, n, double(alpha));
  return true;
}
bool ref_unary_backward(UnaryGradOp op, const float* xy, const float* gy, float* gx, int64_t n, float alpha) {
  ref::unary_backward(op, xy, gy, gx, n, double(alpha));
  return true;
}
bool ref_binary(BinaryOp op, const float* a, int64_t ap, const float* b, int64_t bp, float* out, int64_t n) {
  const bool ok_op = op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul || op == BinaryOp::Div ||
                     op == BinaryOp::Maximum || op == BinaryOp::Minimum;
  if (!ok_op || ap <= 0 || bp <= 0 || n % ap != 0 || n % bp != 0 || (ap != n && bp != n)) return false;
  ref::binary(op, a, ap, b, bp, out, n);
  return true;
}
void ref_reduce(ReduceOp op, const float* x, float* out, int64_t outer, int64_t r, int64_t inner) {
  ref::reduce(op, x, out, outer, r, inner);
}
// gx = gy * (bit i of keep ? scale : 0), and 0 where bit i of pass is clear when pass is given (dropout's
// backward, then ReLU's): the float32 reference and the float64 kernel
template <typename T>
void keep_scale_loop(const T* gy, const uint8_t* keep, const uint8_t* pass, T scale, T* gx, int64_t n, bool parallel) {
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gy[i] * ((keep[i / 8] >> (i % 8)) & 1 ? scale : T(0));
    gx[i] = !pass || (pass[i / 8] >> (i % 8)) & 1 ? g : T(0);
  }
}
void ref_dropout_backward(const float* gy, const uint8_t* keep, float scale, float* gx, int64_t n) {
  keep_scale_loop(gy, keep, nullptr, scale, gx, n, false);
}
void ref_relu_dropout_backward(const float* gy, const uint8_t* keep, const uint8_t* pass, float scale, float* gx,
                               int64_t n) {
  keep_scale_loop(gy, keep, pass, scale, gx, n, false);
}
}  // namespace

const KernelTable& reference_table() {
  static const KernelTable t{&ref_softmax, &ref_softmax_backward, &ref_layer_norm, &ref_layer_norm_backward,
                             &ref_unary,   &ref_unary_backward,   &ref_binary,     &ref_reduce,
                             &ref_dropout_backward, &ref_relu_dropout_backward, &ref::widen_bf16, &ref::narrow_bf16,
                             &ref::find_first};
  return t;
}

// ---- kernels.h entry points: elementwise and reductions
bool unary(UnaryOp op, const float* x, float* y, int64_t n, float alpha) {
  return kernels().unary(op, x, y, n, alpha);
}
bool unary_backward(UnaryGradOp op, const float* x_or_y, const float* gy, float* gx, int64_t n, float alpha) {
  return kernels().unary_backward(op, x_or_y, gy, gx, n, alpha);
}
bool binary(BinaryOp op, const float* a, int64_t a_period, const float* b, int64_t b_period, float* out,
            int64_t n) {
  if (n <= 0) return n == 0;
  return kernels().binary(op, a, a_period, b, b_period, out, n);
}
int64_t find_first(const float* x, int64_t n, float t, FindCmp cmp, bool or_nan) {
  return kernels().find_first(x, n, t, cmp, or_nan);
}
void reduce(ReduceOp op, const float* x, float* out, int64_t outer, int64_t r, int64_t inner) {
  kernels().reduce(op, x, out, outer, r, inner);
}
void dropout_backward(const float* gy, const uint8_t* keep, double p, float* gx, int64_t n) {
  kernels().dropout_backward(gy, keep, float(1.0 / (1.0 - p)), gx, n);
}
void dropout_backward(const double* gy, const uint8_t* keep, double p, double* gx, int64_t n) {
  keep_scale_loop(gy, keep, nullptr, 1.0 / (1.0 - p), gx, n, n >= kParallelGrain);
}
void relu_dropout_backward(const float* gy, const uint8_t* keep, const uint8_t* pass, double p, float* gx, int64_t n) {
  kernels().relu_dropout_backward(gy, keep, pass, float(1.0 / (1.0 - p)), gx, n);
}
void relu_dropout_backward(const double* gy, const uint8_t* keep, const uint8_t* pass, double p, double* gx,
                           int64_t n) {
  keep_scale_loop(gy, keep, pass, 1.0 / (1.0 - p), gx, n, n >= kParallelGrain);
}

// float64: plain loops, parallel over output rows / columns.
void reduce(ReduceOp op, const double* x, double* out, int64_t outer, int64_t r, int64_t inner) {
  const bool is_sum = op == ReduceOp::Sum || op == ReduceOp::Mean;
  const bool is_max = op == ReduceOp::Max;
  const double init = is_sum ? 0.0 : (is_max ? -std::numeric_limits<double>::infinity()
                                             : std::numeric_limits<double>::infinity());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const bool par = outer * r * inner >= kParallelGrain;
  auto combine = [&](double acc, double v) {
    if (is_sum) return acc + v;
    if (std::isnan(acc) || std::isnan(v)) return nan;
    return is_max ? std::max(acc, v) : std::min(acc, v);
  };
  auto finish = [&](double v) { return op == ReduceOp::Mean ? v / double(r) : v; };
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (par && outer > 1)
    for (int64_t o = 0; o < outer; ++o) {
      const double* p = x + o * r;
      double a[4] = {init, init, init, init};
      int64_t k = 0;
      for (; k + 4 <= r; k += 4)
        for (int u = 0; u < 4; ++u) a[u] = combine(a[u], p[k + u]);
      for (; k < r; ++k) a[0] = combine(a[0], p[k]);
      out[o] = finish(combine(combine(a[0], a[1]), combine(a[2], a[3])));
    }
    return;
  }
  const int64_t blk = 64, nblk = (inner + blk - 1) / blk;
#pragma omp parallel for schedule(static) if (par && outer * nblk > 1)
  for (int64_t t = 0; t < outer * nblk; ++t) {
    const int64_t o = t / nblk, j0 = (t % nblk) * blk, j1 = std::min(inner, j0 + blk);
    double acc[blk];
    for (int64_t j = j0; j < j1; ++j) acc[j - j0] = init;
    for (int64_t k = 0; k < r; ++k) {
      const double* row = x + (o * r + k) * inner;
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] = combine(acc[j - j0], row[j]);
    }
    for (int64_t j = j0; j < j1; ++j) out[o * inner + j] = finish(acc[j - j0]);
  }
}

}  // namespace attn::cpu
