// bench/gemm_bench.cc — the measurements behind the GEMM / conv / pooling choices in
// src/backend/cpu/linalg_kernels.h, run on the kernels directly (no autograd, no allocation).
//
//   OMP_NUM_THREADS=2 gemm_bench gemm          # square sgemm 128..2048 and strided batches, GFLOP/s
//   OMP_NUM_THREADS=2 gemm_bench shapes        # dnnl_sgemm vs matmul primitive on the models' shapes
//   OMP_NUM_THREADS=2 gemm_bench panels        # the rule's path vs one single-threaded sgemm per thread
//   OMP_NUM_THREADS=1 gemm_bench conv          # the training CNN's convolutions, per direction, ms
//   ATTN_CONV_LAYOUT=plain gemm_bench conv     # force oneDNN's plain (im2col + sgemm) layouts
//   gemm_bench pool                            # max / avg pooling on the CNN's first pool
//   OMP_NUM_THREADS=2 gemm_bench bf16          # bf16 2048^3 and Transformer shapes: oneDNN vs attn's AMX kernel
//   OMP_NUM_THREADS=2 gemm_bench ceiling       # sgemm 2048^3 against the FMA ceiling and the
//                                              # L1-resident micro-kernel bound, interleaved
//   OMP_NUM_THREADS=1 gemm_bench decode        # greedy decoding's 32-row products (x @ W^T + bias) with
//                                              # their GB/s of weights, against a stream read and the FMA peak
//   HOT=1 OMP_NUM_THREADS=1 gemm_bench decode  # the same with the weights left in cache (the kernels' own rate)
//   OMP_NUM_THREADS=1 gemm_bench decode 64     # the same products with 64 rows (beam search, batches)
//
// With OMP_NUM_THREADS=1 it reports thread CPU time, which stays meaningful on a busy machine;
// otherwise wall time. Each figure is the best of several rounds.
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "attn/dtype.h"
#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/linalg_kernels.h"
#include "backend/cpu/packed_linear.h"
#include "attn/autograd.h"
#include "attn/models/decoding.h"
#include "attn/ops.h"
#include "bench_translator.h"
#include "ceiling.h"

using namespace attn;

namespace {

double now(bool cpu_time) {
  timespec ts;
  clock_gettime(cpu_time ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Best milliseconds per call over `rounds` rounds of `reps` calls.
double best_ms(const std::function<void()>& f, int reps, int rounds = 7) {
  const bool cpu_time = omp_get_max_threads() == 1;
  f();
  f();
  double best = 1e30;
  for (int r = 0; r < rounds; ++r) {
    const double t0 = now(cpu_time);
    for (int i = 0; i < reps; ++i) f();
    best = std::min(best, (now(cpu_time) - t0) / reps);
  }
  return best * 1e3;
}

std::vector<float> random_vec(size_t n) {
  static std::mt19937 rng(0);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void bench_gemm() {
  for (int64_t n : {128, 256, 512, 1024, 2048}) {
    auto a = random_vec(size_t(n * n)), b = random_vec(size_t(n * n));
    std::vector<float> c(size_t(n * n));
    backend::GemmArgs g{.m = n, .n = n, .k = n, .a = a.data(), .lda = n, .b = b.data(), .ldb = n, .c = c.data(), .ldc = n};
    const int reps = n >= 2048 ? 2 : n >= 1024 ? 5 : n >= 512 ? 20 : 100;
    const double ms = best_ms([&] { cpu::gemm(g); }, reps, 9);
    std::printf("sgemm %4ld^3: %8.3f ms %7.1f GFLOP/s\n", long(n), ms, 2.0 * double(n * n * n) / ms / 1e6);
  }
  struct Batch {
    int64_t b, m, n, k;
  };
  for (Batch s : {Batch{64, 128, 128, 64}, Batch{64, 128, 64, 128}, Batch{256, 32, 32, 32}, Batch{16, 256, 256, 64}}) {
    auto a = random_vec(size_t(s.b * s.m * s.k)), b = random_vec(size_t(s.b * s.k * s.n));
    std::vector<float> c(size_t(s.b * s.m * s.n));
    backend::GemmArgs g{.m = s.m, .n = s.n, .k = s.k, .a = a.data(), .lda = s.k, .b = b.data(), .ldb = s.n,
                        .c = c.data(), .ldc = s.n, .batch = s.b, .stride_a = s.m * s.k, .stride_b = s.k * s.n,
                        .stride_c = s.m * s.n};
    const double ms = best_ms([&] { cpu::gemm(g); }, 10, 9);
    std::printf("batched %ld x (%ld x %ld x %ld): %8.3f ms %7.1f GFLOP/s\n", long(s.b), long(s.m), long(s.n),
                long(s.k), ms, 2.0 * double(s.b * s.m * s.n * s.k) / ms / 1e6);
  }
}

// The models' GEMM shapes (m, n, k, op(A) transposed, op(B) transposed, where).
struct GemmShape {
  int64_t m, n, k;
  bool ta, tb;
  const char* where;
};
const GemmShape kShapes[] = {
    {1024, 1536, 512, false, true, "transformer: self-attention in_proj, forward"},
    {1024, 512, 512, false, true, "transformer: q / out_proj, forward"},
    {1024, 1024, 512, false, true, "transformer: cross-attention k, v, forward"},
    {1024, 2048, 512, false, true, "transformer: linear1, forward"},
    {1024, 512, 2048, false, true, "transformer: linear2, forward"},
    {1024, 8000, 512, false, true, "transformer: generator, forward"},
    {1024, 512, 1536, false, false, "transformer: in_proj, input gradient"},
    {1024, 512, 512, false, false, "transformer: q / out_proj, input gradient"},
    {1024, 512, 1024, false, false, "transformer: cross k, v, input gradient"},
    {1024, 512, 2048, false, false, "transformer: linear1, input gradient"},
    {1024, 2048, 512, false, false, "transformer: linear2, input gradient"},
    {1024, 512, 8000, false, false, "transformer: generator, input gradient"},
    {1536, 512, 1024, true, false, "transformer: in_proj, weight gradient"},
    {512, 512, 1024, true, false, "transformer: q / out_proj, weight gradient"},
    {1024, 512, 1024, true, false, "transformer: cross k, v, weight gradient"},
    {2048, 512, 1024, true, false, "transformer: linear1, weight gradient"},
    {512, 2048, 1024, true, false, "transformer: linear2, weight gradient"},
    {8000, 512, 1024, true, false, "transformer: generator, weight gradient"},
    {128, 512, 784, false, true, "mlp: fc1, forward"},
    {128, 256, 512, false, true, "mlp: fc2, forward"},
    {128, 512, 256, false, false, "mlp: fc2, input gradient"},
    {512, 784, 128, true, false, "mlp: fc1, weight gradient"},
    {256, 512, 128, true, false, "mlp: fc2, weight gradient"},
    {64, 128, 3136, false, true, "cnn: fc1, forward"},
    {64, 3136, 128, false, false, "cnn: fc1, input gradient"},
    {128, 3136, 64, true, false, "cnn: fc1, weight gradient"},
};

// Random operands and C of one shape, and the GemmArgs over them (row-major, tight leading dims).
struct ShapeOperands {
  std::vector<float> a, b, c;
  backend::GemmArgs g;
  explicit ShapeOperands(const GemmShape& s)
      : a(random_vec(size_t(s.m * s.k))), b(random_vec(size_t(s.k * s.n))), c(size_t(s.m * s.n)),
        g{.trans_a = s.ta, .trans_b = s.tb, .m = s.m, .n = s.n, .k = s.k, .a = a.data(), .lda = s.ta ? s.m : s.k,
          .b = b.data(), .ldb = s.tb ? s.k : s.n, .c = c.data(), .ldc = s.n} {}
  ShapeOperands(const ShapeOperands&) = delete;  // g points into this object's vectors
  ShapeOperands& operator=(const ShapeOperands&) = delete;
};

// Two variants of one call timed in 21 pairs after 3 warm-up pairs, which goes first flipping every
// pair; run(second) times one call of the first (false) or second (true) variant in seconds. Returns
// the median milliseconds of each and the median of the pairs' time ratios first / second.
struct PairedMs {
  double first_ms, second_ms, ratio;
};
PairedMs paired_ms(const std::function<double(bool)>& run) {
  for (int w = 0; w < 3; ++w) run(false), run(true);
  std::vector<double> t1, t2, ratio;
  for (int i = 0; i < 21; ++i) {
    const double x = run(i % 2 == 1), y = run(i % 2 == 0);
    const double first = i % 2 ? y : x, second = i % 2 ? x : y;
    t1.push_back(first);
    t2.push_back(second);
    ratio.push_back(first / second);
  }
  for (auto* v : {&t1, &t2, &ratio}) std::sort(v->begin(), v->end());
  return {t1[10] * 1e3, t2[10] * 1e3, ratio[10]};
}

// The single products of the benchmark models (Transformer train step: 1024 tokens, d 512, ff 2048,
// vocabulary 8000; MLP and CNN train steps), each timed on both float32 paths of cpu::gemm: calls of
// the two alternate (the order flips every pair) and the ratio of each pair's times is taken, so a
// slow second of this shared machine slows both sides of a pair. Prints the median ratio and which
// path the rule in gemm.cc picks. This is the measurement behind prefer_matmul_primitive.
void bench_shapes() {
  std::printf("%5s %5s %5s %-7s  sgemm_ms matmul_ms  sgemm/matmul  +bias  rule    where\n", "m", "n", "k", "op");
  for (const GemmShape& s : kShapes) {
    ShapeOperands op(s);
    const auto bias = random_vec(size_t(s.n));
    const bool rule = cpu::gemm_uses_matmul(op.g);
    // median over 21 pairs of (time on dnnl_sgemm) / (time on the primitive)
    auto compare = [&](bool with_bias) {
      backend::GemmArgs gb = op.g;
      if (with_bias) gb.bias = bias.data();  // forward of a Linear: sgemm after writing the bias rows into C
      return paired_ms([&](bool matmul) {
        const int before = cpu::set_gemm_matmul(matmul ? 1 : 0);
        const double t0 = now(false);
        cpu::gemm(gb);
        const double t = now(false) - t0;
        cpu::set_gemm_matmul(before);
        return t;
      });
    };
    const PairedMs plain = compare(false);
    const bool forward = s.tb && !s.ta;  // x @ W^T: a Linear's forward, which adds a bias
    const double with_bias = forward ? compare(true).ratio : 0.0;
    char bias_col[16] = "     -";
    if (forward) std::snprintf(bias_col, sizeof bias_col, "%6.2f", with_bias);
    std::printf("%5ld %5ld %5ld %-7s  %8.3f %9.3f  %12.2f  %s  %-6s  %s\n", long(s.m), long(s.n), long(s.k),
                s.ta ? "A^T @ B" : s.tb ? "A @ B^T" : "A @ B", plain.first_ms, plain.second_ms, plain.ratio,
                bias_col, rule ? "matmul" : "sgemm", s.where);
  }
}

// Each shape on the path the rule picks (dnnl_sgemm's or the primitive's own threading) against the
// panel split (one single-threaded dnnl_sgemm per thread on its own panel of C; gemm.cc's
// sgemm_panels), paired the same way. Prints the median of (time of the rule's path) / (time of
// panels): > 1 means the panels are faster.
void bench_panels() {
  std::printf("%5s %5s %5s %-7s  rule_ms panels_ms  rule/panels  where\n", "m", "n", "k", "op");
  for (const GemmShape& s : kShapes) {
    ShapeOperands op(s);
    const PairedMs t = paired_ms([&](bool panels) {
      const bool before = cpu::set_gemm_panels(panels);
      const double t0 = now(false);
      cpu::gemm(op.g);
      const double seconds = now(false) - t0;
      cpu::set_gemm_panels(before);
      return seconds;
    });
    std::printf("%5ld %5ld %5ld %-7s  %7.3f %9.3f  %11.2f  %s\n", long(s.m), long(s.n), long(s.k),
                s.ta ? "A^T @ B" : s.tb ? "A @ B^T" : "A @ B", t.first_ms, t.second_ms, t.ratio, s.where);
  }
}

void bench_conv() {
  struct Shape {
    int64_t n, c, o, hw;
  };
  for (Shape s : {Shape{64, 1, 32, 28}, Shape{64, 32, 64, 14}}) {
    backend::Conv2dArgs a{s.n, s.c, s.hw, s.hw, s.o, 3, 3, s.hw, s.hw, 1, 1, 1, 1, 1, 1, 1, kFloat32};
    auto x = random_vec(size_t(s.n * s.c * s.hw * s.hw)), w = random_vec(size_t(s.o * s.c * 9));
    auto b = random_vec(size_t(s.o)), gy = random_vec(size_t(s.n * s.o * s.hw * s.hw));
    std::vector<float> y(gy.size()), gx(x.size()), gw(w.size()), gb(b.size());
    const double fwd = best_ms([&] { cpu::conv2d(a, x.data(), w.data(), b.data(), y.data()); }, 10);
    const double bwd_data =
        best_ms([&] { cpu::conv2d_backward(a, x.data(), w.data(), gy.data(), gx.data(), nullptr, nullptr); }, 10);
    const double bwd_w =
        best_ms([&] { cpu::conv2d_backward(a, x.data(), w.data(), gy.data(), nullptr, gw.data(), gb.data()); }, 10);
    const double bwd_all =
        best_ms([&] { cpu::conv2d_backward(a, x.data(), w.data(), gy.data(), gx.data(), gw.data(), gb.data()); }, 10);
    const double gflop = 2.0 * double(s.n * s.o * s.hw * s.hw * s.c * 9) / 1e9;
    std::printf("conv %ldx%ldx%ldx%ld -> %ld, 3x3 pad 1: fwd %.3f ms (%.0f GFLOP/s), bwd_data %.3f ms, "
                "bwd_weight+bias %.3f ms, all three grads in one call %.3f ms\n",
                long(s.n), long(s.c), long(s.hw), long(s.hw), long(s.o), fwd, gflop / fwd * 1e3, bwd_data, bwd_w,
                bwd_all);
  }
}

void bench_pool() {
  backend::Pool2dArgs a{64, 32, 28, 28, 14, 14, 2, 2, 2, 2, 0, 0, true, kFloat32};
  auto x = random_vec(size_t(64 * 32 * 28 * 28));
  std::vector<float> y(size_t(64 * 32 * 14 * 14)), gx(x.size());
  std::vector<int64_t> idx(y.size());
  std::printf("max_pool2d 64x32x28x28 k2: fwd %.3f ms, bwd %.3f ms\n",
              best_ms([&] { cpu::max_pool2d(a, x.data(), y.data(), idx.data()); }, 10),
              best_ms([&] { cpu::max_pool2d_backward(a, y.data(), idx.data(), gx.data()); }, 10));
  std::printf("avg_pool2d 64x32x28x28 k2: fwd %.3f ms, bwd %.3f ms\n",
              best_ms([&] { cpu::avg_pool2d(a, x.data(), y.data()); }, 10),
              best_ms([&] { cpu::avg_pool2d_backward(a, y.data(), gx.data()); }, 10));
}

// sgemm 2048^3 through cpu::gemm against the two ceilings of bench/ceiling.h, measured in turn, 40
// rounds (the order rotates by round; each ceiling run lasts about as long as one product). Per round
// it takes the shares sgemm / FMA, bound / FMA and sgemm / bound; prints medians and quartiles. The
// bound is what a GEMM whose operands never left L1 would reach: if it sits below 90 % of the FMA
// ceiling, no GEMM can reach the 90 % on this machine at this moment.
void bench_ceiling() {
  const int64_t n = 2048;
  auto a = random_vec(size_t(n * n)), b = random_vec(size_t(n * n));
  std::vector<float> c(size_t(n * n));
  backend::GemmArgs g{.m = n, .n = n, .k = n, .a = a.data(), .lda = n, .b = b.data(), .ldb = n, .c = c.data(), .ldc = n};
  const double gflop = 2.0 * double(n * n * n) / 1e9;
  auto sgemm_gflops = [&] {
    const double t0 = now(false);
    cpu::gemm(g);
    return gflop / (now(false) - t0);
  };
  const int threads = omp_get_max_threads();
  const double per_thread = gflop * 1e9 / threads;  // each ceiling run: one product's share of flops
  sgemm_gflops();
  bench::microkernel_gflops(per_thread / 4);
  std::vector<double> fma, bound, sgemm, s_fma, b_fma, s_b;
  for (int round = 0; round < 40; ++round) {
    double f = 0, m = 0, s = 0;
    for (int j = 0; j < 3; ++j) {
      const int which = (j + round) % 3;
      if (which == 0) f = bench::fma_gflops(per_thread);
      if (which == 1) m = bench::microkernel_gflops(per_thread);
      if (which == 2) s = sgemm_gflops();
    }
    fma.push_back(f), bound.push_back(m), sgemm.push_back(s);
    s_fma.push_back(s / f), b_fma.push_back(m / f), s_b.push_back(s / m);
  }
  auto quartiles = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t k = v.size();
    return std::array<double, 3>{v[k / 4], (v[(k - 1) / 2] + v[k / 2]) / 2, v[(3 * k) / 4]};
  };
  auto row = [&](const char* what, const std::vector<double>& v, double scale, const char* unit) {
    const auto q = quartiles(v);
    std::printf("%-34s median %7.1f%s  quartiles %7.1f - %7.1f\n", what, q[1] * scale, unit, q[0] * scale, q[2] * scale);
  };
  std::printf("sgemm %ld^3, %d threads, %s, 40 rounds\n", long(n), threads,
              __builtin_cpu_supports("avx512f") ? "AVX-512" : "AVX2");
  row("FMA ceiling", fma, 1, " GFLOP/s");
  row("micro-kernel bound (L1 operands)", bound, 1, " GFLOP/s");
  row("sgemm (cpu::gemm)", sgemm, 1, " GFLOP/s");
  row("bound / FMA ceiling", b_fma, 100, " %     ");
  row("sgemm / FMA ceiling", s_fma, 100, " %     ");
  row("sgemm / bound", s_b, 100, " %     ");
}

// One greedy-decoding step of the benchmark translator (bench/bench_translator.h: 32 rows, d 512,
// ff 2048, vocabulary 8000, 3 decoder layers) is these x @ W^T + bias products, each weight read once
// per step: GFLOP/s against the FMA peak, GB/s of weights against a plain read of as many bytes.
struct DecodeShape {
  int64_t n, k, per_step;
  const char* where;
};
const DecodeShape kDecodeShapes[] = {
    {1536, 512, 3, "self-attention in_proj (q, k, v)"}, {512, 512, 9, "self out_proj, cross q, cross out_proj"},
    {2048, 512, 3, "linear1"}, {512, 2048, 3, "linear2"}, {8000, 512, 1, "output projection (tied embedding)"}};

// GB/s of summing `floats` floats (a stream read of weights that do not stay in L2), split over the team.
double stream_read_gbs(size_t floats) {
  const auto v = random_vec(floats);
  float sink = 0;
  const double ms = best_ms([&] {
    float total = 0;
    const size_t blocks = floats / 16;
#pragma omp parallel reduction(+ : total)
    {
      float lanes[16] = {};  // 16 independent sums: the compiler keeps them in one vector register
#pragma omp for schedule(static)
      for (size_t b = 0; b < blocks; ++b)
        for (int j = 0; j < 16; ++j) lanes[j] += v[b * 16 + size_t(j)];
      for (float l : lanes) total += l;
    }
    sink += total;
  }, 5);
  std::printf("(checksum %g)\n", double(sink) * 0.0);
  return double(floats) * 4 / ms / 1e6;
}

// The benchmark's whole decoding (bench/attn_bench.cc greedy_decode) in its two phases: the encoder with
// the cross-attention keys / values (start_decoding), then the 32 steps.
void decode_phases() {
  auto model = std::make_shared<models::Translator>(bench::bench_translator_options());
  model->eval();
  NoGradGuard ng;
  model->output_bias.narrow(0, model->options.eos_id, 1).fill_(-1e9);
  const Tensor src = randint(4, model->options.vocab_size, {bench::kSentences, bench::kSrcLen});
  const bool cpu_time = omp_get_max_threads() == 1;
  double start = 1e30, steps = 1e30;
  for (int r = 0; r < 5; ++r) {
    const double t0 = now(cpu_time);
    auto dec = model->start_decoding(src);
    const double t1 = now(cpu_time);
    models::greedy_decode(*dec, {.max_len = bench::kTgtLen});
    start = std::min(start, t1 - t0), steps = std::min(steps, now(cpu_time) - t1);
  }
  std::printf("greedy_decode: start_decoding (encoder, cross k / v) %.1f ms, %ld steps %.1f ms (%.2f ms a step)\n",
              start * 1e3, long(bench::kTgtLen), steps * 1e3, steps * 1e3 / double(bench::kTgtLen));
}

void bench_decode(int64_t m) {
  std::printf("%5s %5s %5s  %9s %8s %7s  %9s %8s %7s  %s\n", "m", "n", "k", "onednn_ms", "GFLOP/s", "GB/s",
              "packed_ms", "GFLOP/s", "GB/s", "where");
  double step_ms[2] = {0, 0}, step_bytes = 0, step_flop = 0;
  NoGradGuard ng;
  for (const DecodeShape& s : kDecodeShapes) {
    const Tensor x = randn({m, s.k}), w = randn({s.n, s.k}), bias = randn({s.n});
    // a weight as in a step: 64 MB touched between calls push W out of L2 (a step reads ~58 MB)
    static std::vector<float> evict(size_t(16) << 20, 1.0f);
    const bool cpu_time = omp_get_max_threads() == 1;
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < 30; ++r) {  // alternating: oneDNN's GEMM (general path), packed panels
      const bool packed = r % 2 == 1, before = cpu::set_packed_linear(packed);
      if (!std::getenv("HOT")) for (size_t i = 0; i < evict.size(); i += 16) evict[i] += 1.0f;
      const double t0 = now(cpu_time);
      attn::linear(x, w, bias);
      best[packed] = std::min(best[packed], now(cpu_time) - t0);
      cpu::set_packed_linear(before);
    }
    const double flop = 2.0 * double(m * s.n * s.k), bytes = 4.0 * double(s.n * s.k);
    std::printf("%5ld %5ld %5ld  %9.3f %8.1f %7.1f  %9.3f %8.1f %7.1f  x%ld %s\n", long(m), long(s.n), long(s.k),
                best[0] * 1e3, flop / best[0] / 1e9, bytes / best[0] / 1e9, best[1] * 1e3, flop / best[1] / 1e9,
                bytes / best[1] / 1e9, long(s.per_step), s.where);
    for (int i = 0; i < 2; ++i) step_ms[i] += best[i] * 1e3 * double(s.per_step);
    step_bytes += bytes * double(s.per_step), step_flop += flop * double(s.per_step);
  }
  for (int i = 0; i < 2; ++i)
    std::printf("step's products, %s: %.2f ms, %.1f MB of weights, %.2f GFLOP: %.1f GB/s, %.1f GFLOP/s\n",
                i ? "packed" : "oneDNN", step_ms[i], step_bytes / 1e6, step_flop / 1e9, step_bytes / step_ms[i] / 1e6,
                step_flop / step_ms[i] / 1e6);
  const double read = stream_read_gbs(size_t(step_bytes / 4));
  const double peak = bench::fma_peak_gflops();
  if (m == 32) decode_phases();
  std::printf("stream read of as many bytes: %.1f GB/s (%.2f ms a step); FMA peak %.1f GFLOP/s (%.2f ms a step)\n",
              read, step_bytes / read / 1e6, peak, step_flop / peak / 1e6);
}

}  // namespace

// bf16 products (bf16 A, B and C, float32 accumulation) on oneDNN's matmul primitive and on attn's own
// AMX kernel (src/backend/cpu/amx_gemm.*), paired as bench_shapes: 2048^3 (attn_bench's gemm_2048_bf16,
// the kernel packs B at every call) and the Transformer step's products. The measurement behind
// amx_kernel_wins in gemm_bf16.cc. TFLOP/s from the median times (wall time).
void bench_bf16() {
  if (cpu::bf16_path() != cpu::Bf16Path::Amx) {
    std::printf("bf16: no AMX path on this CPU (%s)\n", cpu::bf16_gemm_impl().c_str());
    return;
  }
  std::printf("%5s %5s %5s %-5s  onednn_ms  amx_ms  onednn_TF  amx_TF  onednn/amx  rule  where\n", "m", "n", "k", "op");
  std::vector<GemmShape> shapes{{2048, 2048, 2048, false, false, "gemm_2048_bf16"}};
  for (const GemmShape& s : kShapes)
    if (std::strncmp(s.where, "transformer", 11) == 0) shapes.push_back(s);
  for (const GemmShape& s : shapes) {
    auto to_bf16 = [](const std::vector<float>& v) {
      std::vector<uint16_t> out(v.size());
      for (size_t i = 0; i < v.size(); ++i) out[i] = BFloat16(v[i]).bits;
      return out;
    };
    const auto a = to_bf16(random_vec(size_t(s.m * s.k))), b = to_bf16(random_vec(size_t(s.k * s.n)));
    std::vector<uint16_t> c(size_t(s.m * s.n));
    const backend::GemmArgs g{.trans_a = s.ta, .trans_b = s.tb, .m = s.m, .n = s.n, .k = s.k, .a = a.data(),
                              .lda = s.ta ? s.m : s.k, .b = b.data(), .ldb = s.tb ? s.k : s.n, .c = c.data(),
                              .ldc = s.n, .dtype = kBFloat16};
    const bool rule = cpu::bf16_uses_amx_kernel(g);
    const PairedMs p = paired_ms([&](bool own) {
      const int before = cpu::set_bf16_amx_kernel(own ? 1 : 0);
      const double t0 = now(false);
      cpu::gemm(g);
      const double t = now(false) - t0;
      cpu::set_bf16_amx_kernel(before);
      return t;
    });
    const double gflop = 2.0 * double(s.m) * double(s.n) * double(s.k) / 1e9;
    std::printf("%5ld %5ld %5ld %-5s  %9.3f %7.3f  %9.2f %7.2f  %10.2f  %-4s  %s\n", long(s.m), long(s.n), long(s.k),
                s.ta ? (s.tb ? "AtBt" : "AtB") : (s.tb ? "ABt" : "AB"), p.first_ms, p.second_ms,
                gflop / p.first_ms, gflop / p.second_ms, p.ratio, rule ? "amx" : "dnnl", s.where);
  }
}

int main(int argc, char** argv) {
  const char* what = argc > 1 ? argv[1] : "all";
  std::printf("threads: %d (%s)\n", omp_get_max_threads(), omp_get_max_threads() == 1 ? "thread CPU time" : "wall time");
  if (!std::strcmp(what, "gemm") || !std::strcmp(what, "all")) bench_gemm();
  if (!std::strcmp(what, "shapes") || !std::strcmp(what, "all")) bench_shapes();
  if (!std::strcmp(what, "panels") || !std::strcmp(what, "all")) bench_panels();
  if (!std::strcmp(what, "conv") || !std::strcmp(what, "all")) bench_conv();
  if (!std::strcmp(what, "pool") || !std::strcmp(what, "all")) bench_pool();
  if (!std::strcmp(what, "ceiling") || !std::strcmp(what, "all")) bench_ceiling();
  if (!std::strcmp(what, "decode") || !std::strcmp(what, "all")) bench_decode(argc > 2 ? std::atoll(argv[2]) : 32);
  if (!std::strcmp(what, "bf16") || !std::strcmp(what, "all")) bench_bf16();
  return 0;
}
