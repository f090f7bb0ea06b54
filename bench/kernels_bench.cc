// bench/kernels_bench.cc — Google Benchmark timings of the raw CPU kernels (src/backend/cpu/kernels.h)
// on preallocated (8192, 512) float32 buffers, per instruction set. Built by CMake when Google
// Benchmark (libbenchmark-dev) is installed; not part of `make bench`:
//
//   OMP_NUM_THREADS=2 build/bench/kernels_bench --benchmark_filter=Gelu
// The PyTorch side of the comparison is `torch.set_num_threads(2)` with the same shapes (bench/torch_bench.py).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <iterator>
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

// ---- relu_dropout vs the composite dropout(relu(x)) it replaces in the Transformer's feed-forward block,
// through the ops (autograd included), forward + backward on the training step's (32 * 32, 2048) inner
// activation. Arg: 1 = fused, 0 = composite.
//   OMP_NUM_THREADS=2 ./kernels_bench --benchmark_filter=ReluDropout
void BM_ReluDropoutFwdBwd(benchmark::State& state) {
  using attn::Tensor;
  const bool fused = state.range(0) == 1;
  attn::manual_seed(0);
  Tensor h = attn::randn({1024, 2048}).requires_grad_(), g = attn::randn({1024, 2048});
  for (auto _ : state) {
    Tensor y = fused ? attn::relu_dropout(h, 0.1, true) : attn::dropout(attn::relu(h), 0.1, true);
    y.backward(g);
    h.set_grad(Tensor());  // set to none: each backward writes a fresh gradient
    benchmark::DoNotOptimize(y);
  }
  state.SetLabel(fused ? "fused" : "composite");
}

// ---- fused scaled_dot_product_attention vs the composite matmul + mask + softmax + matmul, through the
// ops (autograd included). Arg 0: the shape (kSdpaShapes: the Transformer training step's encoder self-,
// decoder causal self- and cross-attention, longer sequences, a greedy decoding step). Arg 1: 1 = fused,
// 0 = composite. Arg 2: 1 = forward + backward, 0 = forward only (no grad).
//   OMP_NUM_THREADS=1 ./kernels_bench --benchmark_filter=Sdpa
struct SdpaShape {
  const char* name;
  int64_t n, h, l, s, d;
  bool causal, key_padding;
};
constexpr SdpaShape kSdpaShapes[] = {
    {"enc self N32 L=S=32 kpm", 32, 8, 32, 32, 64, false, true},
    {"dec self N32 L=S=32 causal", 32, 8, 32, 32, 64, true, false},
    {"cross N32 L=32 S=40 kpm", 32, 8, 32, 40, 64, false, true},
    {"N4 L=S=128 kpm", 4, 8, 128, 128, 64, false, true},
    {"N4 L=S=128 causal", 4, 8, 128, 128, 64, true, false},
    {"N4 L=S=512 kpm", 4, 8, 512, 512, 64, false, true},
    {"N4 L=S=512 causal", 4, 8, 512, 512, 64, true, false},
    {"decode N32 L=1 S=32 kpm", 32, 8, 1, 32, 64, false, true},
    {"decode N32 L=1 S=64 kpm", 32, 8, 1, 64, 64, false, true},
};
void BM_Sdpa(benchmark::State& state) {
  using attn::Tensor;
  const SdpaShape& sh = kSdpaShapes[state.range(0)];
  const bool fused = state.range(1) == 1, bwd = state.range(2) == 1;
  const int64_t N = sh.n, H = sh.h, L = sh.l, S = sh.s, D = sh.d;
  attn::manual_seed(0);
  Tensor q = attn::randn({N, H, L, D}).requires_grad_(bwd), k = attn::randn({N, H, S, D}).requires_grad_(bwd),
         v = attn::randn({N, H, S, D}).requires_grad_(bwd), go = attn::randn({N, H, L, D});
  // batch n pads its last n % 8 keys
  std::vector<bool> pad(size_t(N * S));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < S; ++j) pad[size_t(n * S + j)] = j >= S - n % 8;
  Tensor kpm = attn::from_vector<bool>(pad, {N, S});
  Tensor causal = attn::gt(attn::arange(S).view({1, S}), attn::arange(L).view({L, 1}));  // (L, S): true = masked
  for (auto _ : state) {
    Tensor out;
    if (fused) {
      attn::SdpaOptions o;
      if (sh.key_padding) o.key_padding_mask = kpm;
      o.is_causal = sh.causal;
      out = attn::scaled_dot_product_attention(q, k, v, o);
    } else {
      Tensor s = attn::matmul(attn::mul(q, 1.0 / std::sqrt(double(D))), k.transpose(2, 3));  // (N, H, L, S)
      if (sh.key_padding) s = attn::masked_fill(s, kpm.view({N, 1, 1, S}), -INFINITY);
      if (sh.causal) s = attn::masked_fill(s, causal, -INFINITY);
      out = attn::matmul(attn::softmax(s, -1), v);
    }
    if (bwd) attn::sum(attn::mul(out, go)).backward();
    benchmark::DoNotOptimize(out);
  }
  state.SetLabel(std::string(sh.name) + (bwd ? " fwd+bwd" : " fwd") + (fused ? ", fused" : ", composite"));
}
void sdpa_args(benchmark::internal::Benchmark* b) {
  for (int64_t s = 0; s < int64_t(std::size(kSdpaShapes)); ++s)
    for (int64_t bwd : {1, 0}) {
      if (kSdpaShapes[s].l == 1 && bwd) continue;
      for (int64_t fused : {1, 0}) b->Args({s, fused, bwd});
    }
}

BENCHMARK(BM_Sdpa)->Apply(sdpa_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SoftmaxFwdBwd)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LayerNormFwdBwd)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GeluFwdBwd)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Exp)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SumLastDim)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReluDropoutFwdBwd)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AdamStep)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
