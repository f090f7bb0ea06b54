// src/backend/cpu/linalg_kernels.h — CPU GEMM, convolution and pooling kernels (plain functions the
// CpuBackend forwards to), each with a naive reference oracle in namespace attn::cpu::ref.
//
//   backend::GemmArgs g{.m = 64, .n = 32, .k = 16, .a = a, .lda = 16, .b = b, .ldb = 32, .c = c, .ldc = 32};
//   attn::cpu::gemm(g);                     // C(64, 32) = A(64, 16) @ B(16, 32), row-major float32
//   attn::cpu::conv2d(args, x, w, bias, y);  // NCHW / OIHW; oneDNN for float32, direct loops for float64
//
// Choices (measured with bench/gemm_bench.cc on the 2-core AVX-512 machine, thread CPU time):
//  - float32 GEMM: oneDNN dnnl_sgemm (~2x OpenBLAS at 512..2048); tiny problems (<= 16^3) use the
//    blocked loop kernel (no ~0.6 us call overhead); strided batches of small matrices run one
//    single-threaded sgemm per item across the OpenMP threads, large items use all threads each.
//    Single products with 64..512 output columns and k >= 512 (many Linear products of a
//    Transformer, forward and backward) use oneDNN's matmul primitive (brgemm) instead (gemm.cc).
//  - float64 GEMM: a cache-blocked loop kernel (used for gradient checks).
//  - float32 conv2d: oneDNN primitives cached by shape, blocked (nChw16c) layouts with reorders into
//    reused scratch except data-side directions with < 8 input channels; float64: direct loops (the
//    oracle too).
//  - pooling: own OpenMP loops over (n, c) planes, PyTorch semantics (windows clipped to the input,
//    max pooling keeps the first maximum and propagates NaN, flat h * w + w argmax per plane); the
//    2x2 / stride 2 max pool is branch free (SSE2, four windows per step); average pooling is separable
//    (window rows summed into one row, then columns; 2x2 / stride 2 rows vectorised with one divisor):
//    64x32x28x28, k 2, 2 threads: 0.49 ms forward, 0.75 ms backward (2.5 and 2.7 ms window by window).
#pragma once
#include <cstdint>

#include "backend/backend.h"

namespace attn::cpu {

// ---- C = alpha * op(A) @ op(B) + beta * C, row-major, strided batches; float32, float64 or bfloat16
// (bfloat16: gemm_bf16.h).
// beta == 0 means C is not read. Leading dimensions smaller than a matrix's row length throw.
void gemm(const backend::GemmArgs& g);
// Per-thread panels for single large float32 products instead of dnnl_sgemm's threading (default off,
// or ATTN_GEMM_PANELS=1); returns the previous setting.
bool set_gemm_panels(bool on);
// Which path single float32 products take: -1 the measured rule (gemm.cc prefer_matmul_primitive,
// the default unless ATTN_GEMM_MATMUL is set), 0 always dnnl_sgemm, 1 always oneDNN's matmul
// primitive. Returns the previous mode. For benchmarks (bench/gemm_bench.cc shapes) and tests.
int set_gemm_matmul(int mode);
// Whether gemm(g) would run on the matmul primitive under the current mode (a single float32 product,
// not tiny, panels off, not inside a parallel region, and the rule or the mode says so).
bool gemm_uses_matmul(const backend::GemmArgs& g);

// ---- convolution, x: (N, C_in, H, W), weight: (C_out, C_in / groups, kH, kW), y: (N, C_out, oH, oW),
// all contiguous. bias (C_out) may be nullptr. In the backward any of grad_x, grad_weight, grad_bias
// may be nullptr (not needed); the outputs are overwritten, not accumulated.
void conv2d(const backend::Conv2dArgs& a, const void* x, const void* weight, const void* bias, void* y);
void conv2d_backward(const backend::Conv2dArgs& a, const void* x, const void* weight, const void* grad_y,
                     void* grad_x, void* grad_weight, void* grad_bias);
// Number of oneDNN convolution primitive sets created so far (the shape cache's misses); for tests.
int64_t conv2d_cache_misses();

// ---- pooling over (N, C, H, W) contiguous planes -> (N, C, oH, oW). Windows start at o * stride - pad,
// are clipped to the input, and out_h / out_w come from the caller (ceil_mode is in those sizes).
void max_pool2d(const backend::Pool2dArgs& a, const void* x, void* y, int64_t* indices);
void max_pool2d_backward(const backend::Pool2dArgs& a, const void* grad_y, const int64_t* indices, void* grad_x);
void avg_pool2d(const backend::Pool2dArgs& a, const void* x, void* y);
void avg_pool2d_backward(const backend::Pool2dArgs& a, const void* grad_y, void* grad_x);

namespace ref {
// Naive triple loop with double accumulation: the GEMM oracle.
void gemm(const backend::GemmArgs& g);
// Direct loops (float32 or float64): the convolution oracle, also the float64 implementation.
void conv2d(const backend::Conv2dArgs& a, const void* x, const void* weight, const void* bias, void* y);
void conv2d_backward(const backend::Conv2dArgs& a, const void* x, const void* weight, const void* grad_y,
                     void* grad_x, void* grad_weight, void* grad_bias);
}  // namespace ref

}  // namespace attn::cpu
