// bench/ceiling.h — the machine's float32 compute ceilings at the current OpenMP thread count,
// measured now (shared by attn_bench's gemm_2048 row and gemm_bench's `ceiling` mode).
//
//   double peak = attn::bench::fma_peak_gflops();              // best of 3 rounds, ~0.05 s each
//   double fma  = attn::bench::fma_gflops(4e9);                // one round of ~4 GFLOP per thread
//   double bound = attn::bench::microkernel_gflops(4e9);       // the same work on the GEMM tile
//
// fma_*: every thread runs 12 independent chains of 512-bit (else 256-bit) FMAs on registers only,
// the "measured ceiling". microkernel_gflops: every thread runs a GEMM register tile on
// packed operands that stay in its L1 cache (14 x 32 with AVX-512: 28 accumulators, 2 vector loads and
// 14 broadcasts per k step, as the micro-kernels of BLIS, oneDNN and our own prototype; 6 x 16 with
// AVX2). No GEMM can beat its own micro-kernel, and this one never waits on L2 or memory, so its rate
// is an upper bound for any float32 GEMM on this machine at this moment. GFLOP/s summed over threads.
#pragma once
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>

namespace attn::bench {

namespace ceiling_detail {

__attribute__((target("avx512f"))) inline double fma_chains_avx512(int64_t iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(1e-3f * float(i));
  const __m512 b = _mm512_set1_ps(0.99999f), c = _mm512_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
  __m512 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm512_add_ps(sum, acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, sum);  // keeps the chains alive
  return double(out[0]) * 0.0 + double(iters) * 12 * 32;  // flops
}
__attribute__((target("avx2,fma"))) inline double fma_chains_avx2(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(1e-3f * float(i));
  const __m256 b = _mm256_set1_ps(0.99999f), c = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
  alignas(32) float out[8];
  __m256 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_add_ps(sum, acc[i]);
  _mm256_store_ps(out, sum);
  return double(out[0]) * 0.0 + double(iters) * 12 * 16;
}

constexpr int64_t kTileK = 128;  // A (14, 128) 7 KiB + B (128, 32) 16 KiB: well inside a 32 KiB L1

// c(14, 32) += a(14, K) @ b(K, 32) `reps` times; a packed k-major (a[k * 14 + i]), b row-major.
__attribute__((target("avx512f"), noinline)) inline void tile_avx512(const float* a0, const float* b0, float* c,
                                                                     int64_t reps) {
  for (int64_t r = 0; r < reps; ++r) {
    __m512 acc[14][2];
    for (int i = 0; i < 14; ++i) acc[i][0] = _mm512_loadu_ps(c + i * 32), acc[i][1] = _mm512_loadu_ps(c + i * 32 + 16);
    const float* a = a0;
    const float* b = b0;
    for (int64_t k = 0; k < kTileK; ++k, a += 14, b += 32) {
      const __m512 b_lo = _mm512_load_ps(b), b_hi = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
      for (int i = 0; i < 14; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        acc[i][0] = _mm512_fmadd_ps(ai, b_lo, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(ai, b_hi, acc[i][1]);
      }
    }
    for (int i = 0; i < 14; ++i) _mm512_storeu_ps(c + i * 32, acc[i][0]), _mm512_storeu_ps(c + i * 32 + 16, acc[i][1]);
  }
}
// c(6, 16) += a(6, K) @ b(K, 16), the AVX2 tile (12 accumulators).
__attribute__((target("avx2,fma"), noinline)) inline void tile_avx2(const float* a0, const float* b0, float* c,
                                                                   int64_t reps) {
  for (int64_t r = 0; r < reps; ++r) {
    __m256 acc[6][2];
    for (int i = 0; i < 6; ++i) acc[i][0] = _mm256_loadu_ps(c + i * 16), acc[i][1] = _mm256_loadu_ps(c + i * 16 + 8);
    const float* a = a0;
    const float* b = b0;
    for (int64_t k = 0; k < kTileK; ++k, a += 6, b += 16) {
      const __m256 b_lo = _mm256_load_ps(b), b_hi = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
      for (int i = 0; i < 6; ++i) {
        const __m256 ai = _mm256_set1_ps(a[i]);
        acc[i][0] = _mm256_fmadd_ps(ai, b_lo, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(ai, b_hi, acc[i][1]);
      }
    }
    for (int i = 0; i < 6; ++i) _mm256_storeu_ps(c + i * 16, acc[i][0]), _mm256_storeu_ps(c + i * 16 + 8, acc[i][1]);
  }
}

inline double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace ceiling_detail

// One round of the FMA chains on every thread, about flops_per_thread each: GFLOP/s summed over threads.
inline double fma_gflops(double flops_per_thread) {
  using namespace ceiling_detail;
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const auto iters = std::max<int64_t>(1, int64_t(flops_per_thread / (avx512 ? 12 * 32 : 12 * 16)));
  double flops = 0;
  const double t0 = seconds_now();
#pragma omp parallel reduction(+ : flops)
  flops += avx512 ? fma_chains_avx512(iters) : fma_chains_avx2(iters);
  return flops / (seconds_now() - t0) / 1e9;
}

// The ceiling as make bench reports it: best of 3 rounds of 20M chain steps per thread.
inline double fma_peak_gflops() {
  const double flops_per_thread = 20e6 * (__builtin_cpu_supports("avx512f") ? 12 * 32 : 12 * 16);
  double best = 0;
  for (int round = 0; round < 3; ++round) best = std::max(best, fma_gflops(flops_per_thread));
  return best;
}

// One round of the L1-resident GEMM tile on every thread (own operands each), about flops_per_thread
// each: GFLOP/s summed over threads.
inline double microkernel_gflops(double flops_per_thread) {
  using namespace ceiling_detail;
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const int mr = avx512 ? 14 : 6, nr = avx512 ? 32 : 16;
  const auto reps_per_thread = std::max<int64_t>(1, int64_t(flops_per_thread / (2.0 * mr * nr * double(kTileK))));
  double flops = 0, start = 0;
#pragma omp parallel reduction(+ : flops)
  {
    auto* a = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * size_t(mr * kTileK)));
    auto* b = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * size_t(kTileK * nr)));
    alignas(64) float c[14 * 32] = {};
    std::fill(a, a + mr * kTileK, 1e-3f);
    std::fill(b, b + kTileK * nr, 1e-3f);
    avx512 ? tile_avx512(a, b, c, 2) : tile_avx2(a, b, c, 2);  // operands into L1
#pragma omp barrier
#pragma omp single
    start = seconds_now();  // the implicit barrier after `single` starts every thread together
    avx512 ? tile_avx512(a, b, c, reps_per_thread) : tile_avx2(a, b, c, reps_per_thread);
    flops += 2.0 * mr * nr * double(kTileK) * double(reps_per_thread) + 0.0 * double(c[0]);
    std::free(a);
    std::free(b);
  }
  return flops / (seconds_now() - start) / 1e9;
}

}  // namespace attn::bench
