// src/backend/cpu/kernels.h — fast CPU kernels on contiguous memory (vectorized, OpenMP-parallel),
// with run-time choice of AVX-512 or AVX2 (see dispatch.h) and a naive reference oracle for each
// (namespace attn::cpu::ref, reference.cc) used by tests/test_kernels.cc.
//
//   attn::cpu::softmax(x, y, rows, d, /*log=*/false);          // x, y: (rows, d) float32
//   attn::cpu::layer_norm(x, w, b, 1e-5, y, mean, rstd, rows, d);
//   if (!attn::cpu::unary(UnaryOp::GeluErf, x, y, n, 0.f)) { /* op not vectorized: generic path */ }
//
// Every function takes plain pointers to contiguous buffers; callers check shapes and dtypes.
// Optional pointers (weight, bias, grad outputs) may be nullptr.
#pragma once
#include <cstdint>

#include "backend/backend.h"

namespace attn::cpu {

// ---- softmax / log_softmax over the last dim of (rows, d)
void softmax(const float* x, float* y, int64_t rows, int64_t d, bool log);
void softmax(const double* x, double* y, int64_t rows, int64_t d, bool log);
// softmax:     gx = y * (gy - sum(gy * y))
// log_softmax: gx = gy - exp(y) * sum(gy)
void softmax_backward(const float* y, const float* gy, float* gx, int64_t rows, int64_t d, bool log);
void softmax_backward(const double* y, const double* gy, double* gx, int64_t rows, int64_t d, bool log);

// ---- layer norm over the last dim of (rows, d); weight/bias (d) or nullptr; mean/rstd (rows)
template <typename T, typename S>
void layer_norm(const T* x, const T* w, const T* b, double eps, T* y, S* mean, S* rstd, int64_t rows, int64_t d);
// grad_x (rows, d), grad_w/grad_b (d): each may be nullptr (not needed). w may be nullptr (= ones).
template <typename T, typename S>
void layer_norm_backward(const T* gy, const T* x, const T* w, const S* mean, const S* rstd, T* gx, T* gw,
                         T* gb, int64_t rows, int64_t d);

// ---- elementwise float32 (contiguous). Return false when `op` has no fast kernel (caller falls back).
using backend::BinaryOp;
using backend::ReduceOp;
using backend::UnaryGradOp;
using backend::UnaryOp;
bool unary(UnaryOp op, const float* x, float* y, int64_t n, float alpha);
bool unary_backward(UnaryGradOp op, const float* x_or_y, const float* gy, float* gx, int64_t n, float alpha);
// find_first's predicates: x > t, x < t, x >= t, x <= t (ordered: false where x or t is NaN).
enum class FindCmp : uint8_t { Greater, Less, GreaterEqual, LessEqual };
// The first j in [0, n) with x[j] `cmp` t, or x[j] NaN where or_nan; n where none. Serial, on the active
// ISA's vectors (ref:: the scalar loop).
int64_t find_first(const float* x, int64_t n, float t, FindCmp cmp, bool or_nan);
// bf16 <-> float32 of contiguous memory, serial, on the active ISA's vectors (the scalar loops in ref::):
// widening is exact, narrowing rounds as BFloat16(float) (nearest even, NaN kept quiet).
void widen_bf16(const uint16_t* h, float* f, int64_t n);
void narrow_bf16(const float* f, uint16_t* h, int64_t n);
// out = a op b (Add..Minimum) on n contiguous elements, each of a, b, out float32 or bf16 (the flags):
// float32 math on blocks, bf16 operands widened in cache, a bf16 out rounded once.
void binary_mixed(BinaryOp op, const void* a, bool a_bf16, const void* b, bool b_bf16, void* out, bool out_bf16,
                  int64_t n);
// unary / unary_backward on contiguous bf16: float32 math on blocks widened in cache, every op.
void unary_bf16(UnaryOp op, const uint16_t* x, uint16_t* y, int64_t n, float alpha);
void unary_backward_bf16(UnaryGradOp op, const uint16_t* x_or_y, const uint16_t* gy, uint16_t* gx, int64_t n,
                         float alpha);
// out[i] = a[i] op b[i % b_period] (b_period = n: same shape, 1: scalar, d: row broadcast), or with the
// roles swapped when a_period != n (then b must be full). Add/Sub/Mul/Div/Maximum/Minimum only.
bool binary(BinaryOp op, const float* a, int64_t a_period, const float* b, int64_t b_period, float* out,
            int64_t n);

// ---- reductions of contiguous x viewed as (outer, r, inner) over r -> out (outer, inner).
// float32: Sum/Mean accumulate in float blocks folded into double; Max/Min propagate NaN.
void reduce(ReduceOp op, const float* x, float* out, int64_t outer, int64_t r, int64_t inner);
void reduce(ReduceOp op, const double* x, double* out, int64_t outer, int64_t r, int64_t inner);

// ---- random (Philox 4x32-10, attn/random.h). Element i depends only on (seed, counter, i), so any
// thread count gives the same values. uniform uses ceil(n/4) blocks: element i takes lane i%4 of block
// counter + i/4 (float64 adds 21 low bits from the same lane under key seed ^ kPhiloxLowKey); values are
// in [lo, hi). normal uses ceil(n/2) blocks: Box-Muller on the two 64-bit uniforms of block
// counter + i/2, cos for even i, sin for odd i (float32 and float64 share the values up to rounding).
inline constexpr uint64_t kPhiloxLowKey = 0x9E3779B97F4A7C15ull;
inline int64_t uniform_blocks(int64_t n) { return n > 0 ? (n + 3) / 4 : 0; }
inline int64_t normal_blocks(int64_t n) { return n > 0 ? (n + 1) / 2 : 0; }
void uniform(float* out, int64_t n, double lo, double hi, uint64_t seed, uint64_t counter);
void uniform(double* out, int64_t n, double lo, double hi, uint64_t seed, uint64_t counter);
void normal(float* out, int64_t n, double mean, double std, uint64_t seed, uint64_t counter);
// Inverted dropout from the uniform stream (same draws as uniform(.., 0, 1, seed, counter)), fused:
// keep = u < 1 - p, out = x * (keep ? 1 / (1 - p) : 0). The keep bits are packed: bit i % 8 of byte i / 8
// for element i, backend::dropout_keep_bytes(n) bytes in all (whole 64-element groups; bits past n are 0).
// With pass (same layout), ReLU comes first: out = relu(x) * (...) and pass = !(relu(x) <= 0), the bits
// ReLU's backward needs (so relu_dropout saves 2 bits per element instead of relu's output).
void dropout(const float* x, int64_t n, double p, uint64_t seed, uint64_t counter, float* out, uint8_t* keep,
             uint8_t* pass = nullptr);
void dropout(const double* x, int64_t n, double p, uint64_t seed, uint64_t counter, double* out, uint8_t* keep,
             uint8_t* pass = nullptr);
// the same with the threshold and the scale given (bf16's scale is 1 / (1 - p) rounded to bf16)
void dropout_scaled(const float* x, int64_t n, float keep_below, float scale, uint64_t seed, uint64_t counter,
                    float* out, uint8_t* keep, uint8_t* pass);
// bf16 x, out and gradients: float32 on blocks widened in cache (elementwise_bf16.cc), the same draws, keep
// and pass bits as float32's, values as the composite lt(u, 1 - p).to(bf16) * (1 / (1 - p)) makes them.
void dropout_bf16(const uint16_t* x, int64_t n, double p, uint64_t seed, uint64_t counter, uint16_t* out,
                  uint8_t* keep, uint8_t* pass);
// gx = gy * (keep ? scale : 0) (0 where a pass bit is clear, when pass is given), scale as in the forward
void dropout_backward_bf16(const uint16_t* gy, const uint8_t* keep, const uint8_t* pass, double p, uint16_t* gx,
                           int64_t n);
// The backward: gx = gy * (keep ? 1 / (1 - p) : 0) with the scale rounded to the dtype (what the forward
// multiplied by), so a NaN or infinite gradient stays NaN where dropped, as PyTorch's grad * mask does.
void dropout_backward(const float* gy, const uint8_t* keep, double p, float* gx, int64_t n);
void dropout_backward(const double* gy, const uint8_t* keep, double p, double* gx, int64_t n);
// relu_dropout's backward: gx = pass ? gy * (keep ? 1 / (1 - p) : 0) : 0, exactly the composite's
// dropout_backward then ReLU's backward.
void relu_dropout_backward(const float* gy, const uint8_t* keep, const uint8_t* pass, double p, float* gx, int64_t n);
void relu_dropout_backward(const double* gy, const uint8_t* keep, const uint8_t* pass, double p, double* gx,
                           int64_t n);
void normal(double* out, int64_t n, double mean, double std, uint64_t seed, uint64_t counter);

// ---- optimizers: torch.optim.Adam/AdamW (_single_tensor_adam) in place; max_exp_avg_sq only if amsgrad
template <typename T>
void adam_step(const backend::AdamArgs& a, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
               T* max_exp_avg_sq, int64_t n);

// ---- naive oracles (reference.cc): serial plain loops, double accumulation
namespace ref {
template <typename T> void softmax(const T* x, T* y, int64_t rows, int64_t d, bool log);
template <typename T> void softmax_backward(const T* y, const T* gy, T* gx, int64_t rows, int64_t d, bool log);
template <typename T, typename S>
void layer_norm(const T* x, const T* w, const T* b, double eps, T* y, S* mean, S* rstd, int64_t rows, int64_t d);
template <typename T, typename S>
void layer_norm_backward(const T* gy, const T* x, const T* w, const S* mean, const S* rstd, T* gx, T* gw,
                         T* gb, int64_t rows, int64_t d);
// Every UnaryOp / UnaryGradOp / BinaryOp (Add..Minimum) / ReduceOp, computed in double.
template <typename T> void unary(UnaryOp op, const T* x, T* y, int64_t n, double alpha);
template <typename T>
void unary_backward(UnaryGradOp op, const T* x_or_y, const T* gy, T* gx, int64_t n, double alpha);
template <typename T>
void binary(BinaryOp op, const T* a, int64_t a_period, const T* b, int64_t b_period, T* out, int64_t n);
template <typename T> void reduce(ReduceOp op, const T* x, T* out, int64_t outer, int64_t r, int64_t inner);
template <typename T> void uniform(T* out, int64_t n, double lo, double hi, uint64_t seed, uint64_t counter);
template <typename T> void normal(T* out, int64_t n, double mean, double std, uint64_t seed, uint64_t counter);
template <typename T>
void adam_step(const backend::AdamArgs& a, T* param, const T* grad, T* exp_avg, T* exp_avg_sq,
               T* max_exp_avg_sq, int64_t n);
int64_t find_first(const float* x, int64_t n, float t, FindCmp cmp, bool or_nan);
// the scalar bf16 <-> float32 loops (elementwise_bf16.cc): the Reference ISA's, and the SIMD ones' oracle
void widen_bf16(const uint16_t* h, float* f, int64_t n);
void narrow_bf16(const float* f, uint16_t* h, int64_t n);
}  // namespace ref

}  // namespace attn::cpu
