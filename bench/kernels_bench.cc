// bench/kernels_bench.cc — Google Benchmark timings of the raw CPU kernels (src/backend/cpu/kernels.h)
// on preallocated (8192, 512) float32 buffers, per instruction set. Build (not part of `make bench`):
//
//   find_package(benchmark REQUIRED)
//   add_executable(kernels_bench kernels_bench.cc)
//   target_include_directories(kernels_bench PRIVATE ${PROJECT_SOURCE_DIR}/src)
//   target_link_libraries(kernels_bench PRIVATE attn benchmark::benchmark)
//
//   OMP_NUM_THREADS=2 ./kernels_bench --benchmark_filter=Gelu
// The PyTorch side of the comparison is `torch.set_num_threads(2)` with the same shapes (bench/torch_bench.py).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"

namespace {

using namespace attn::cpu;
using attn::backend::ReduceOp;
using attn::backend::UnaryGradOp;
using attn::backend::UnaryOp;

constexpr int64_t kRows = 8192, kDim = 512, kN = kRows * kDim;

struct Buffers {
  std::vector<float> x, y, gy, gx, w, b, mean, rstd, gw, gb;
  Buffers()
      : x(kN), y(kN), gy(kN), gx(kN), w(kDim, 1.1f), b(kDim, 0.1f), mean(kRows), rstd(kRows), gw(kDim), gb(kDim) {
    std::mt19937 gen(0);
    std::normal_distribution<float> dist;
    for (int64_t i = 0; i < kN; ++i) {
      x[size_t(i)] = dist(gen);
      gy[size_t(i)] = dist(gen);
    }
  }
};
Buffers& buffers() {
  static Buffers b;
  return b;
}

// Arg 0: 1 = AVX-512, 0 = AVX2.
bool use_isa(benchmark::State& state) {
  const Isa isa = state.range(0) ? Isa::Avx512 : Isa::Avx2;
  if (!set_isa_for_testing(isa)) {
    state.SkipWithError("instruction set not supported");
    return false;
  }
  state.SetLabel(isa_name(isa));
  return true;
}

void finish(benchmark::State& state, int64_t bytes_per_iter) {
  state.SetBytesProcessed(state.iterations() * bytes_per_iter);
  reset_isa();
}

void BM_SoftmaxFwdBwd(benchmark::State& state) {
  if (!use_isa(state)) return;
  Buffers& B = buffers();
  for (auto _ : state) {
    softmax(B.x.data(), B.y.data(), kRows, kDim, false);
    softmax_backward(B.y.data(), B.gy.data(), B.gx.data(), kRows, kDim, false);
    benchmark::ClobberMemory();
  }
  finish(state, 5 * kN * 4);
}

void BM_LayerNormFwdBwd(benchmark::State& state) {
  if (!use_isa(state)) return;
  Buffers& B = buffers();
  for (auto _ : state) {
    layer_norm<float, float>(B.x.data(), B.w.data(), B.b.data(), 1e-5, B.y.data(), B.mean.data(), B.rstd.data(),
                             kRows, kDim);
    layer_norm_backward<float, float>(B.gy.data(), B.x.data(), B.w.data(), B.mean.data(), B.rstd.data(),
                                      B.gx.data(), B.gw.data(), B.gb.data(), kRows, kDim);
    benchmark::ClobberMemory();
  }
  finish(state, 5 * kN * 4);
}

void BM_GeluFwdBwd(benchmark::State& state) {
  if (!use_isa(state)) return;
  Buffers& B = buffers();
  for (auto _ : state) {
    unary(UnaryOp::GeluErf, B.x.data(), B.y.data(), kN, 0.f);
    unary_backward(UnaryGradOp::GeluErf, B.x.data(), B.gy.data(), B.gx.data(), kN, 0.f);
    benchmark::ClobberMemory();
  }
  finish(state, 5 * kN * 4);
}

void BM_Exp(benchmark::State& state) {
  if (!use_isa(state)) return;
  Buffers& B = buffers();
  for (auto _ : state) {
    unary(UnaryOp::Exp, B.x.data(), B.y.data(), kN, 0.f);
    benchmark::ClobberMemory();
  }
  finish(state, 2 * kN * 4);
}

void BM_SumLastDim(benchmark::State& state) {
  if (!use_isa(state)) return;
  Buffers& B = buffers();
  for (auto _ : state) {
    reduce(ReduceOp::Sum, B.x.data(), B.mean.data(), kRows, kDim, 1);
    benchmark::ClobberMemory();
  }
  finish(state, kN * 4);
}

void BM_AdamStep(benchmark::State& state) {
  Buffers& B = buffers();
  std::vector<float> m(kN, 0.f), v(kN, 0.f);
  int64_t step = 0;
  for (auto _ : state) {
    attn::backend::AdamArgs a{1e-3, 0.9, 0.999, 1e-8, 0.01, true, false, ++step};
    adam_step<float>(a, B.y.data(), B.gy.data(), m.data(), v.data(), nullptr, kN);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * 7 * kN * 4);
}

// ---- fused scaled_dot_product_attention vs the composite matmul + mask + softmax + matmul, through the
// ops (autograd included). Arg 0: 0 = training step (N=32, H=8, L=S=32, D=64, key padding; forward +
// backward), 1 = greedy decoding step (L=1, S=32; forward, no grad). Arg 1: 1 = fused, 0 = composite.
//   OMP_NUM_THREADS=1 ./kernels_bench --benchmark_filter=Sdpa
void BM_Sdpa(benchmark::State& state) {
  using attn::Tensor;
  const bool decode = state.range(0) == 1, fused = state.range(1) == 1;
  const int64_t N = 32, H = 8, L = decode ? 1 : 32, S = 32, D = 64;
  attn::manual_seed(0);
  Tensor q = attn::randn({N, H, L, D}).requires_grad_(!decode), k = attn::randn({N, H, S, D}).requires_grad_(!decode),
         v = attn::randn({N, H, S, D}).requires_grad_(!decode), go = attn::randn({N, H, L, D});
  Tensor kpm = attn::gt(attn::arange(S).view({1, S}), attn::add(attn::arange(N).view({N, 1}), double(S - 8)));  // (N, S)
  for (auto _ : state) {
    Tensor out;
    if (fused) {
      out = attn::scaled_dot_product_attention(q, k, v, {.key_padding_mask = kpm});
    } else {
      Tensor s = attn::matmul(attn::mul(q, 0.125), k.transpose(2, 3));  // (N, H, L, S)
      s = attn::masked_fill(s, kpm.view({N, 1, 1, S}), -INFINITY);
      out = attn::matmul(attn::softmax(s, -1), v);
    }
    if (!decode) attn::sum(attn::mul(out, go)).backward();
    benchmark::DoNotOptimize(out);
  }
  state.SetLabel(std::string(decode ? "decode L=1 fwd" : "train L=S=32 fwd+bwd") + (fused ? ", fused" : ", composite"));
}

BENCHMARK(BM_Sdpa)->Args({0, 1})->Args({0, 0})->Args({1, 1})->Args({1, 0})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SoftmaxFwdBwd)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LayerNormFwdBwd)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GeluFwdBwd)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Exp)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SumLastDim)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AdamStep)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
