// bench/onednn_rnn_bench.cc — oneDNN's RNN primitives (vanilla RNN tanh, LSTM, linear-before-reset GRU =
// PyTorch's GRU) against attn's own recurrent path (issue 17), paired and interleaved (A, B, A, B, ...)
// so a loaded host slows both sides alike. Not part of `make bench` (no PyTorch twin); the table is in
// docs/benchmarks_recurrent.md ("oneDNN RNN primitives against attn's path").
//
//   OMP_NUM_THREADS=1 build/bench/onednn_rnn_bench --pairs 5          # every case
//   OMP_NUM_THREADS=2 build/bench/onednn_rnn_bench --only lstm        # cases whose name contains "lstm"
//
// Cases per cell (the char LM's recurrent stack: input 128, hidden 512, 2 layers, T 64 x batch 32):
//   lm_train      forward + backward. attn: the module through autograd (what training runs);
//                 oneDNN: forward_training + backward primitives per layer, weights already in the
//                 primitives' layouts (a lower bound: a real integration also reorders the weights, whose
//                 forward and backward layouts differ, and the weight gradients back, every step).
//   lm_infer      forward with nothing recorded: attn's loop (ATTN_RNN_ONEDNN off) against the layers'
//                 oneDNN inference path (src/nn/rnn_onednn.cc, weights converted once and cached).
//   sample        lstm_sample's shape: batch 1, one step at a time, the state carried (64 steps per sample).
//   bidir_train / bidir_infer   one bidirectional layer, input 128, hidden 512, T 64 x batch 32.
//   *_autocast    the module under attn::Autocast: A its own loop on autocast's ops, B oneDNN's bf16
//                 primitives as rnn_onednn_autocast.cc runs them (weights converted every call, gradients
//                 reordered back): the choice the module makes by default (rnn_onednn.h).
//   *_bf16        oneDNN's bf16 primitives (bf16 data and weights, f32 bias and cell state) against attn's
//                 float32 path; only where the CPU has AMX or AVX512_BF16 (cpu::bf16_path()); GRU's
//                 bf16 inference is skipped (oneDNN 2.6.3 crashed in it here).
// Output: one line per case: median ms of attn (A) and oneDNN (B), the median of the pairs' A / B
// ratios (> 1: oneDNN faster) and how many pairs oneDNN won.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "attn/attn.h"
#include "backend/cpu/gemm_bf16.h"
#include "nn/rnn_onednn.h"

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
constexpr int64_t kT = 64, kB = 32, kI = 128, kH = 512, kLayers = 2, kSampleSteps = 64;

double ms_of(const std::function<void()>& f, int reps) {
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A, B, A, B, ... after one warm-up each; reps per sample chosen so a sample takes ~0.2 s.
void paired(const std::string& name, const std::function<void()>& a, const std::function<void()>& b, int pairs) {
  a(), b();
  const double once = std::max(ms_of(a, 1), 1e-3);
  const int reps = std::clamp(int(200.0 / once), 1, 200);
  std::vector<double> ta, tb, ratio;
  int b_wins = 0;
  for (int p = 0; p < pairs; ++p) {
    ta.push_back(ms_of(a, reps)), tb.push_back(ms_of(b, reps));
    ratio.push_back(ta.back() / tb.back());
    b_wins += tb.back() < ta.back();
  }
  std::printf("%-22s %10.3f %10.3f %8.2f %5d/%d\n", name.c_str(), median(ta), median(tb), median(ratio), b_wins, pairs);
  std::fflush(stdout);
}

// Memories for every argument a primitive descriptor names, random-filled (values do not matter for timing).
std::unordered_map<int, memory> make_args(const dnnl::primitive_desc_base& pd, const dnnl::engine& eng,
                                          const std::vector<int>& names, std::mt19937& rng) {
  std::unordered_map<int, memory> args;
  std::normal_distribution<float> d(0.0f, 0.1f);
  for (int a : names) {
    memory::desc md = pd.query_md(dnnl::query::exec_arg_md, a);
    if (md.get_size() == 0) continue;
    memory m(md, eng);
    if (md.data_type() == dt::bf16) {
      auto* p = static_cast<uint16_t*>(m.get_data_handle());
      for (size_t i = 0; i < md.get_size() / 2; ++i) {
        const float f = d(rng);
        uint32_t u;
        std::memcpy(&u, &f, 4);
        p[i] = uint16_t(u >> 16);
      }
    } else {
      auto* p = static_cast<float*>(m.get_data_handle());
      for (size_t i = 0; i < md.get_size() / sizeof(float); ++i) p[i] = d(rng);
    }
    args.emplace(a, m);
  }
  return args;
}

enum class Cell { Rnn, Lstm, Gru };
const char* cell_name(Cell c) { return c == Cell::Lstm ? "lstm" : c == Cell::Gru ? "gru" : "rnn"; }

// One layer's raw oneDNN primitives (forward, and backward when training) with random arguments.
struct RawLayer {
  dnnl::primitive fwd, bwd;
  std::unordered_map<int, memory> fa, ba;
};

const std::vector<int> kFwdNames = {DNNL_ARG_SRC_LAYER,     DNNL_ARG_SRC_ITER,   DNNL_ARG_SRC_ITER_C,
                                    DNNL_ARG_WEIGHTS_LAYER, DNNL_ARG_WEIGHTS_ITER, DNNL_ARG_BIAS,
                                    DNNL_ARG_DST_LAYER,     DNNL_ARG_DST_ITER,   DNNL_ARG_DST_ITER_C,
                                    DNNL_ARG_WORKSPACE};

RawLayer raw_layer(Cell c, int64_t D, int64_t I, bool training, dt data, const dnnl::engine& eng, std::mt19937& rng) {
  const int64_t G = c == Cell::Lstm ? 4 : c == Cell::Gru ? 3 : 1, Gb = c == Cell::Gru ? 4 : G;
  auto md = [](memory::dims d, dt t, tag g) { return memory::desc(d, t, g); };
  const auto src = md({kT, kB, I}, data, tag::tnc), dst = md({kT, kB, D * kH}, data, tag::tnc);
  const auto it = md({1, D, kB, kH}, data, tag::ldnc);
  const auto itc = c == Cell::Lstm ? md({1, D, kB, kH}, dt::f32, tag::ldnc) : memory::desc();
  const auto wl = md({1, D, I, G, kH}, data, tag::any), wi = md({1, D, kH, G, kH}, data, tag::any);
  const auto bias = md({1, D, Gb, kH}, dt::f32, tag::ldgo);
  // backward: every gradient in f32 (oneDNN's bf16 backward takes bf16 data and weights, f32 gradients)
  const auto dwl = md({1, D, I, G, kH}, dt::f32, tag::any), dwi = md({1, D, kH, G, kH}, dt::f32, tag::any);
  const auto dsrc = md({kT, kB, I}, dt::f32, tag::tnc), ddst = md({kT, kB, D * kH}, dt::f32, tag::tnc);
  const auto dit = md({1, D, kB, kH}, dt::f32, tag::ldnc);
  const auto dir = D == 2 ? dnnl::rnn_direction::bidirectional_concat : dnnl::rnn_direction::unidirectional_left2right;
  const auto fprop = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
  std::vector<int> bwd_names = kFwdNames;
  for (int a : {DNNL_ARG_DIFF_SRC_LAYER, DNNL_ARG_DIFF_SRC_ITER, DNNL_ARG_DIFF_SRC_ITER_C, DNNL_ARG_DIFF_WEIGHTS_LAYER,
                DNNL_ARG_DIFF_WEIGHTS_ITER, DNNL_ARG_DIFF_BIAS, DNNL_ARG_DIFF_DST_LAYER, DNNL_ARG_DIFF_DST_ITER,
                DNNL_ARG_DIFF_DST_ITER_C})
    bwd_names.push_back(a);
  const auto bw = dnnl::prop_kind::backward;
  RawLayer r;
  auto finish = [&](const dnnl::primitive_desc_base& fpd, const dnnl::primitive_desc_base* bpd) {
    r.fa = make_args(fpd, eng, kFwdNames, rng);
    if (bpd) r.ba = make_args(*bpd, eng, bwd_names, rng);
  };
  if (c == Cell::Rnn) {
    const auto act = dnnl::algorithm::eltwise_tanh;
    dnnl::vanilla_rnn_forward::primitive_desc fpd({fprop, act, dir, src, it, wl, wi, bias, dst, it}, eng);
    r.fwd = dnnl::vanilla_rnn_forward(fpd);
    if (!training) return finish(fpd, nullptr), r;
    dnnl::vanilla_rnn_backward::primitive_desc bpd(
        {bw, act, dir, src, it, wl, wi, bias, dst, it, dsrc, dit, dwl, dwi, bias, ddst, dit}, eng, fpd);
    r.bwd = dnnl::vanilla_rnn_backward(bpd);
    finish(fpd, &bpd);
  } else if (c == Cell::Lstm) {
    dnnl::lstm_forward::primitive_desc fpd({fprop, dir, src, it, itc, wl, wi, bias, dst, it, itc}, eng);
    r.fwd = dnnl::lstm_forward(fpd);
    if (!training) return finish(fpd, nullptr), r;
    dnnl::lstm_backward::primitive_desc bpd(
        {bw, dir, src, it, itc, wl, wi, bias, dst, it, itc, dsrc, dit, itc, dwl, dwi, bias, ddst, dit, itc}, eng, fpd);
    r.bwd = dnnl::lstm_backward(bpd);
    finish(fpd, &bpd);
  } else {
    dnnl::lbr_gru_forward::primitive_desc fpd({fprop, dir, src, it, wl, wi, bias, dst, it}, eng);
    r.fwd = dnnl::lbr_gru_forward(fpd);
    if (!training) return finish(fpd, nullptr), r;
    dnnl::lbr_gru_backward::primitive_desc bpd(
        {bw, dir, src, it, wl, wi, bias, dst, it, dsrc, dit, dwl, dwi, bias, ddst, dit}, eng, fpd);
    r.bwd = dnnl::lbr_gru_backward(bpd);
    finish(fpd, &bpd);
  }
  return r;
}

// The raw primitives of a stack (layers in order forward, reversed backward) as one callable.
std::function<void()> raw_stack(Cell c, int64_t layers, int64_t D, bool training, dt data) {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  static dnnl::stream s(eng);
  std::mt19937 rng(1);
  auto stack = std::make_shared<std::vector<RawLayer>>();
  for (int64_t l = 0; l < layers; ++l) stack->push_back(raw_layer(c, D, l == 0 ? kI : D * kH, training, data, eng, rng));
  return [stack, training] {
    for (RawLayer& l : *stack) l.fwd.execute(s, l.fa);
    if (training)
      for (auto it = stack->rbegin(); it != stack->rend(); ++it) it->bwd.execute(s, it->ba);
    s.wait();
  };
}

std::shared_ptr<attn::nn::RNNBase> module(Cell c, int64_t layers, bool bidirectional) {
  using namespace attn::nn;
  RNNOptions o{.input_size = kI, .hidden_size = kH, .num_layers = layers, .bidirectional = bidirectional};
  if (c == Cell::Lstm) return std::make_shared<LSTM>(o);
  if (c == Cell::Gru) return std::make_shared<GRU>(o);
  return std::make_shared<RNN>(o);
}

// The module's forward on x from zero states (or `state` carried for the sample case): the output.
attn::Tensor forward(attn::nn::RNNBase& m, const attn::Tensor& x, std::vector<attn::Tensor>* state = nullptr) {
  using namespace attn::nn;
  const bool carry = state && !state->empty();
  if (auto* lstm = dynamic_cast<LSTM*>(&m)) {
    LSTMOutput o = lstm->forward(x, carry ? LSTMState{(*state)[0], (*state)[1]} : LSTMState{});
    if (state) *state = {o.state.h, o.state.c};
    return o.output;
  }
  const attn::Tensor h0 = carry ? (*state)[0] : attn::Tensor();
  RNNOutput o = m.mode == RNNMode::GRU ? dynamic_cast<GRU&>(m).forward(x, h0) : dynamic_cast<RNN&>(m).forward(x, h0);
  if (state) *state = {o.h_n};
  return o.output;
}

// attn's training step of the stack: forward + backward through autograd.
std::function<void()> attn_train(Cell c, int64_t layers, bool bidirectional) {
  auto m = module(c, layers, bidirectional);
  attn::Tensor x = attn::randn({kT, kB, kI}, {.requires_grad = true});
  attn::Tensor g = attn::randn({kT, kB, (bidirectional ? 2 : 1) * kH});
  return [m, x, g]() mutable {
    x.set_grad(attn::Tensor());
    m->zero_grad();
    forward(*m, x).backward(g);
  };
}

// The inference forward with oneDNN on or off (the switch is flipped around each call).
std::function<void()> attn_infer(std::shared_ptr<attn::nn::RNNBase> m, attn::Tensor x, bool onednn, bool sample) {
  return [m, x, onednn, sample] {
    attn::NoGradGuard no_grad;
    const int prev = attn::nn::detail::set_onednn_rnn(onednn ? attn::nn::detail::kOnednnRnnOn : attn::nn::detail::kOnednnRnnOff);
    if (!sample) {
      (void)forward(*m, x);
    } else {
      std::vector<attn::Tensor> state;
      for (int64_t t = 0; t < kSampleSteps; ++t) (void)forward(*m, x, &state);
    }
    attn::nn::detail::set_onednn_rnn(prev);
  };
}

// The module's step under attn::Autocast (bf16), on oneDNN's bf16 primitives (rnn_onednn_autocast.cc) or on
// the module's own loop over autocast's ops (the flag is flipped around each call): both whole integrations,
// weight conversions and gradient reorders included. training: forward + backward; else the forward alone.
std::function<void()> attn_autocast(Cell c, int64_t layers, bool bidirectional, bool onednn, bool training) {
  auto m = module(c, layers, bidirectional);
  attn::Tensor x = attn::randn({kT, kB, kI}, {.requires_grad = training});
  attn::Tensor g = attn::randn({kT, kB, (bidirectional ? 2 : 1) * kH});
  return [m, x, g, onednn, training]() mutable {
    const bool prev = attn::nn::detail::set_onednn_rnn_bf16(onednn);
    if (training) {
      x.set_grad(attn::Tensor());
      m->zero_grad();
      attn::Tensor y;
      {
        attn::Autocast ac;
        y = forward(*m, x);
      }
      (y.to(attn::kFloat32) * g).sum().backward();
    } else {
      attn::NoGradGuard no_grad;
      attn::Autocast ac;
      (void)forward(*m, x);
    }
    attn::nn::detail::set_onednn_rnn_bf16(prev);
  };
}

}  // namespace

int main(int argc, char** argv) {
  int pairs = 5;
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--pairs") pairs = std::stoi(argv[i + 1]);
    else if (k == "--only") only = argv[i + 1];
    else return std::fprintf(stderr, "usage: onednn_rnn_bench [--pairs N] [--only SUBSTRING]\n"), 2;
  }
  const bool bf16 = attn::cpu::bf16_path() != attn::cpu::Bf16Path::Convert;
  std::printf("T %lld x batch %lld, input %lld, hidden %lld, %d threads, bf16 rows: %s (%s); %d pairs, ms\n",
              (long long)kT, (long long)kB, (long long)kI, (long long)kH, omp_get_max_threads(),
              bf16 ? "yes" : "no", attn::cpu::bf16_path_name(attn::cpu::bf16_path()), pairs);
  std::printf("%-22s %10s %10s %8s %7s\n", "case", "attn", "onednn", "ratio", "B wins");
  for (Cell c : {Cell::Lstm, Cell::Gru, Cell::Rnn}) {
    const std::string n = cell_name(c);
    auto run = [&](const std::string& name, const std::function<std::function<void()>()>& a,
                   const std::function<std::function<void()>()>& b) {
      if (name.find(only) == std::string::npos) return;
      try {
        paired(name, a(), b(), pairs);
      } catch (const dnnl::error& e) {  // a data type / cell oneDNN has no primitive for
        std::printf("%-22s unsupported by oneDNN: %s\n", name.c_str(), e.what());
      }
    };
    auto lm = module(c, kLayers, false), bi = module(c, 1, true);
    const attn::Tensor x = attn::randn({kT, kB, kI}), x1 = attn::randn({1, 1, kI});
    run(n + " lm_train", [&] { return attn_train(c, kLayers, false); },
        [&] { return raw_stack(c, kLayers, 1, true, dt::f32); });
    run(n + " lm_infer", [&] { return attn_infer(lm, x, false, false); }, [&] { return attn_infer(lm, x, true, false); });
    run(n + " sample", [&] { return attn_infer(lm, x1, false, true); }, [&] { return attn_infer(lm, x1, true, true); });
    run(n + " bidir_train", [&] { return attn_train(c, 1, true); }, [&] { return raw_stack(c, 1, 2, true, dt::f32); });
    run(n + " bidir_infer", [&] { return attn_infer(bi, x, false, false); },
        [&] { return attn_infer(bi, x, true, false); });
    if (!bf16) continue;
    // Under Autocast: A = the module's own loop, B = oneDNN's bf16 primitives as the module runs them.
    run(n + " lm_train_autocast", [&] { return attn_autocast(c, kLayers, false, false, true); },
        [&] { return attn_autocast(c, kLayers, false, true, true); });
    run(n + " lm_infer_autocast", [&] { return attn_autocast(c, kLayers, false, false, false); },
        [&] { return attn_autocast(c, kLayers, false, true, false); });
    run(n + " bidir_train_autocast", [&] { return attn_autocast(c, 1, true, false, true); },
        [&] { return attn_autocast(c, 1, true, true, true); });
    run(n + " lm_train_bf16", [&] { return attn_train(c, kLayers, false); },
        [&] { return raw_stack(c, kLayers, 1, true, dt::bf16); });
    if (c == Cell::Gru) {  // oneDNN 2.6.3 segfaulted here at 1 and 2 threads (docs/benchmarks_recurrent.md)
      std::printf("%-22s skipped: oneDNN 2.6.3's bf16 lbr_gru inference crashed\n", (n + " lm_infer_bf16").c_str());
      continue;
    }
    run(n + " lm_infer_bf16", [&] { return attn_infer(lm, x, false, false); },
        [&] { return raw_stack(c, kLayers, 1, false, dt::bf16); });
  }
  return 0;
}
