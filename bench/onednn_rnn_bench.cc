// bench/onednn_rnn_bench.cc — oneDNN's RNN primitives (vanilla RNN tanh, LSTM, linear-before-reset GRU =
// PyTorch's GRU; fp32, one layer, one direction) against attn's own path (nn::RNN / LSTM / GRU: one GEMM
// for the input projections, fused gate kernels, one node per layer) on the char LM's upper-layer shape:
// T 64, batch 32, input 512, hidden 512. Not part of `make bench` (no PyTorch twin); the table is in
// docs/benchmarks.md.
//
//   OMP_NUM_THREADS=2 build/bench/onednn_rnn_bench            # ms per forward and per forward+backward
//
// oneDNN side: primitives and memories made once, weights in the layouts the primitives ask for
// (format any), so the timed loop is the primitives alone; a real integration would also reorder the
// weights into those layouts (forward's and backward's differ) and the weight gradients back, every step.
// attn side: the modules as the layers run them (autograd, allocation included).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "attn/attn.h"

namespace {

using dnnl::memory;
using tag = memory::format_tag;
constexpr int64_t kT = 64, kB = 32, kI = 512, kH = 512;

double best_ms(const std::function<void()>& f, int reps = 5, int rounds = 5) {
  f();  // warm-up
  double best = 1e30;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps);
  }
  return best;
}

// Memories for every argument a primitive descriptor names, random-filled (values do not matter here).
std::unordered_map<int, memory> make_args(const dnnl::primitive_desc_base& pd, const dnnl::engine& eng,
                                          const std::vector<int>& names, std::mt19937& rng) {
  std::unordered_map<int, memory> args;
  std::normal_distribution<float> d(0.0f, 0.1f);
  for (int a : names) {
    memory::desc md = pd.query_md(dnnl::query::exec_arg_md, a);
    if (md.get_size() == 0) continue;
    memory m(md, eng);
    float* p = static_cast<float*>(m.get_data_handle());
    for (size_t i = 0; i < md.get_size() / sizeof(float); ++i) p[i] = d(rng);
    args.emplace(a, m);
  }
  return args;
}

struct Case {
  const char* name;
  int gates;        // gates of the weights (G)
  int bias_gates;   // G, or G + 1 for the linear-before-reset GRU
  bool cell_state;  // LSTM
};

std::pair<double, double> onednn_ms(const Case& c, const dnnl::engine& eng, dnnl::stream& s) {
  auto md = [](memory::dims d, tag t) { return memory::desc(d, memory::data_type::f32, t); };
  const auto src = md({kT, kB, kI}, tag::tnc), dst = md({kT, kB, kH}, tag::tnc);
  const auto it = md({1, 1, kB, kH}, tag::ldnc), itc = c.cell_state ? it : memory::desc();
  const auto wl = md({1, 1, kI, c.gates, kH}, tag::any), wi = md({1, 1, kH, c.gates, kH}, tag::any);
  const auto bias = md({1, 1, c.bias_gates, kH}, tag::ldgo);
  const auto dir = dnnl::rnn_direction::unidirectional_left2right;
  const auto fwd_prop = dnnl::prop_kind::forward_training, bwd_prop = dnnl::prop_kind::backward;
  std::mt19937 rng(1);
  dnnl::primitive fwd, bwd;
  std::unordered_map<int, memory> fa, ba;
  const std::vector<int> fwd_names = {DNNL_ARG_SRC_LAYER, DNNL_ARG_SRC_ITER, DNNL_ARG_SRC_ITER_C, DNNL_ARG_WEIGHTS_LAYER,
                                      DNNL_ARG_WEIGHTS_ITER, DNNL_ARG_BIAS, DNNL_ARG_DST_LAYER, DNNL_ARG_DST_ITER,
                                      DNNL_ARG_DST_ITER_C, DNNL_ARG_WORKSPACE};
  std::vector<int> bwd_names = fwd_names;
  for (int a : {DNNL_ARG_DIFF_SRC_LAYER, DNNL_ARG_DIFF_SRC_ITER, DNNL_ARG_DIFF_SRC_ITER_C, DNNL_ARG_DIFF_WEIGHTS_LAYER,
                DNNL_ARG_DIFF_WEIGHTS_ITER, DNNL_ARG_DIFF_BIAS, DNNL_ARG_DIFF_DST_LAYER, DNNL_ARG_DIFF_DST_ITER,
                DNNL_ARG_DIFF_DST_ITER_C})
    bwd_names.push_back(a);
  if (c.gates == 1) {
    dnnl::vanilla_rnn_forward::primitive_desc fpd(
        {fwd_prop, dnnl::algorithm::eltwise_tanh, dir, src, it, wl, wi, bias, dst, it}, eng);
    dnnl::vanilla_rnn_backward::primitive_desc bpd(
        {bwd_prop, dnnl::algorithm::eltwise_tanh, dir, src, it, wl, wi, bias, dst, it, src, it, wl, wi, bias, dst, it},
        eng, fpd);
    fwd = dnnl::vanilla_rnn_forward(fpd), bwd = dnnl::vanilla_rnn_backward(bpd);
    fa = make_args(fpd, eng, fwd_names, rng), ba = make_args(bpd, eng, bwd_names, rng);
  } else if (c.cell_state) {
    dnnl::lstm_forward::primitive_desc fpd({fwd_prop, dir, src, it, itc, wl, wi, bias, dst, it, itc}, eng);
    dnnl::lstm_backward::primitive_desc bpd(
        {bwd_prop, dir, src, it, itc, wl, wi, bias, dst, it, itc, src, it, itc, wl, wi, bias, dst, it, itc}, eng, fpd);
    fwd = dnnl::lstm_forward(fpd), bwd = dnnl::lstm_backward(bpd);
    fa = make_args(fpd, eng, fwd_names, rng), ba = make_args(bpd, eng, bwd_names, rng);
  } else {
    dnnl::lbr_gru_forward::primitive_desc fpd({fwd_prop, dir, src, it, wl, wi, bias, dst, it}, eng);
    dnnl::lbr_gru_backward::primitive_desc bpd(
        {bwd_prop, dir, src, it, wl, wi, bias, dst, it, src, it, wl, wi, bias, dst, it}, eng, fpd);
    fwd = dnnl::lbr_gru_forward(fpd), bwd = dnnl::lbr_gru_backward(bpd);
    fa = make_args(fpd, eng, fwd_names, rng), ba = make_args(bpd, eng, bwd_names, rng);
  }
  auto run_fwd = [&] { fwd.execute(s, fa), s.wait(); };
  auto run_both = [&] { fwd.execute(s, fa), bwd.execute(s, ba), s.wait(); };
  return {best_ms(run_fwd), best_ms(run_both)};
}

std::pair<double, double> attn_ms(const Case& c) {
  using namespace attn;
  nn::RNNOptions o{.input_size = kI, .hidden_size = kH};
  std::shared_ptr<nn::RNNBase> m;
  if (c.gates == 1) m = std::make_shared<nn::RNN>(o);
  else if (c.cell_state) m = std::make_shared<nn::LSTM>(o);
  else m = std::make_shared<nn::GRU>(o);
  Tensor x = randn({kT, kB, kI}, {.requires_grad = true}), g = randn({kT, kB, kH});
  auto forward = [&] {
    if (c.cell_state) return std::static_pointer_cast<nn::LSTM>(m)->forward(x, {}).output;
    return c.gates == 1 ? std::static_pointer_cast<nn::RNN>(m)->forward(x, Tensor()).output
                        : std::static_pointer_cast<nn::GRU>(m)->forward(x, Tensor()).output;
  };
  auto run_fwd = [&] { (void)forward(); };
  auto run_both = [&] {
    x.set_grad(Tensor());
    m->zero_grad();
    forward().backward(g);
  };
  return {best_ms(run_fwd), best_ms(run_both)};
}

}  // namespace

int main() {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  std::printf("T %lld, batch %lld, input %lld, hidden %lld, fp32, %d threads; best ms of 5 rounds\n", (long long)kT,
              (long long)kB, (long long)kI, (long long)kH, omp_get_max_threads());
  std::printf("cell\tonednn_fwd\tattn_fwd\tonednn_fwd_bwd\tattn_fwd_bwd\n");
  for (const Case& c : {Case{"rnn_tanh", 1, 1, false}, Case{"lstm", 4, 4, true}, Case{"gru", 3, 4, false}}) {
    auto [of, ob] = onednn_ms(c, eng, s);
    auto [af, ab] = attn_ms(c);
    std::printf("%s\t%.2f\t%.2f\t%.2f\t%.2f\n", c.name, of, af, ob, ab);
  }
  return 0;
}
