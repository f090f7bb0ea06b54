// The fused RNN gate kernels (src/backend/cpu/rnn_gates.h): each ISA's build against the scalar
// reference on random rows (odd widths for the vector tails), and the float32 fast path of the layers
// (rnn_sequence_fast.cc) against the generic per-op loop, outputs, final states and every gradient,
// with each ISA's kernels in turn.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "attn/nn/rnn.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/rnn_gates.h"
#include "fixture_loader.h"
#include "nn/rnn_sequence.h"
#include "rnn_packed_run.h"

using namespace attn;
using attn::cpu::Isa;

namespace {

class RnnKernels : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!cpu::set_isa_for_testing(GetParam())) GTEST_SKIP() << cpu::isa_name(GetParam()) << " not supported";
  }
  void TearDown() override { cpu::reset_isa(); }
};

std::vector<float> random_vec(size_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}
std::vector<float> sigmoid_vec(size_t n, std::mt19937& rng) {  // activations in (0, 1), as saved gates
  std::uniform_real_distribution<float> d(0.01f, 0.99f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 2e-6 + 2e-6 * std::abs(want[i])) << what << " element " << i;
}

// Runs `call` with the active ISA's table and with the reference one on copies of `outs`; compares.
void compare_with_reference(const std::function<void(const cpu::RnnGateTable&, std::vector<std::vector<float>>&)>& call,
                            const std::vector<std::vector<float>>& outs, const std::string& what) {
  std::vector<std::vector<float>> got = outs, want = outs;
  call(cpu::rnn_gates(), got);
  call(cpu::ref::rnn_gate_table(), want);
  for (size_t k = 0; k < got.size(); ++k) expect_close(got[k], want[k], what + " output " + std::to_string(k));
}

}  // namespace

TEST_P(RnnKernels, GatesMatchReference) {
  std::mt19937 rng(5);
  for (int64_t H : {1, 7, 16, 37}) {
    for (int64_t rows : {1, 3, 40}) {  // 40 x 4 x 37 crosses the threading grain
      const auto n = size_t(rows * H);
      SCOPED_TRACE("rows " + std::to_string(rows) + ", H " + std::to_string(H));
      for (int G : {1, 3, 4}) {
        const auto ng = n * size_t(G);
        auto gx = random_vec(ng, 2.0f, rng), gh = random_vec(ng, 2.0f, rng), b = random_vec(size_t(G * H), 1.0f, rng);
        auto h = random_vec(n, 1.0f, rng), dh = random_vec(n, 1.0f, rng), dadd = random_vec(n, 1.0f, rng);
        auto act = sigmoid_vec(ng, rng);
        for (const float* bias : {b.data(), static_cast<float*>(nullptr)}) {
          if (G == 1) {
            for (bool relu : {false, true}) {
              compare_with_reference([&](const cpu::RnnGateTable& t, auto& o) {
                t.rnn_forward(rows, H, relu, gx.data(), gh.data(), bias, o[0].data());
              }, {std::vector<float>(n)}, "rnn_forward");
              compare_with_reference([&](const cpu::RnnGateTable& t, auto& o) {
                t.rnn_backward(rows, H, relu, dh.data(), bias ? dadd.data() : nullptr, h.data(), o[0].data());
              }, {std::vector<float>(n)}, "rnn_backward");
            }
          } else if (G == 4) {
            compare_with_reference([&](const cpu::RnnGateTable& t, auto& o) {
              t.lstm_forward(rows, H, gx.data(), gh.data(), bias, h.data(), o[0].data(), o[1].data(), o[2].data());
            }, {std::vector<float>(ng), std::vector<float>(n), std::vector<float>(n)}, "lstm_forward");
            compare_with_reference([&](const cpu::RnnGateTable& t, auto& o) {
              t.lstm_backward(rows, H, dh.data(), bias ? dadd.data() : nullptr, o[0].data(), act.data(), h.data(),
                              dadd.data(), o[1].data());
            }, {dh, std::vector<float>(ng)}, "lstm_backward");
          } else {
            compare_with_reference([&](const cpu::RnnGateTable& t, auto& o) {
              t.gru_forward(rows, H, gx.data(), gh.data(), bias, h.data(), o[0].data(), o[1].data(), o[2].data());
            }, {std::vector<float>(ng), std::vector<float>(n), std::vector<float>(n)}, "gru_forward");
            compare_with_reference([&](const cpu::RnnGateTable& t, auto& o) {
              t.gru_backward(rows, H, o[0].data(), bias ? dadd.data() : nullptr, act.data(), gx.data(), h.data(),
                             o[1].data(), o[2].data());
            }, {dh, std::vector<float>(ng), std::vector<float>(ng)}, "gru_backward");
          }
        }
      }
    }
  }
}

// The layers' float32 path with fused kernels against the generic loop of tensor ops (the one the f64
// gradient checks and the PyTorch fixtures also pin down): packed, unsorted, bidirectional, 2 layers.
TEST_P(RnnKernels, FastLayersMatchGenericLoop) {
  struct Case {
    nn::RNNMode mode;
    nn::RNNOptions o;
  };
  const std::vector<Case> cases = {
      {nn::RNNMode::RNN, {.input_size = 3, .hidden_size = 21, .num_layers = 2, .bidirectional = true}},
      {nn::RNNMode::RNN,
       {.input_size = 3, .hidden_size = 5, .nonlinearity = nn::RNNNonlinearity::ReLU, .bias = false}},
      {nn::RNNMode::LSTM, {.input_size = 3, .hidden_size = 21, .num_layers = 2, .bidirectional = true}},
      {nn::RNNMode::LSTM, {.input_size = 3, .hidden_size = 5, .bias = false, .bidirectional = true, .proj_size = 2}},
      {nn::RNNMode::GRU, {.input_size = 3, .hidden_size = 21, .num_layers = 2, .bidirectional = true}},
      {nn::RNNMode::GRU, {.input_size = 3, .hidden_size = 5, .bias = false}},
  };
  for (const Case& c : cases) {
    manual_seed(13);
    std::shared_ptr<nn::RNNBase> m;
    if (c.mode == nn::RNNMode::RNN) m = std::make_shared<nn::RNN>(c.o);
    if (c.mode == nn::RNNMode::LSTM) m = std::make_shared<nn::LSTM>(c.o);
    if (c.mode == nn::RNNMode::GRU) m = std::make_shared<nn::GRU>(c.o);
    SCOPED_TRACE(m->repr());
    const int64_t LD = c.o.num_layers * (c.o.bidirectional ? 2 : 1), D = c.o.bidirectional ? 2 : 1;
    const int64_t Hout = c.o.proj_size ? c.o.proj_size : c.o.hidden_size;
    Tensor x = randn({6, 4, 3}), h0 = randn({LD, 4, Hout}), c0 = randn({LD, 4, c.o.hidden_size});
    Tensor up = randn({16, D * Hout});
    auto run = [&](bool fast) {
      const bool prev = nn::detail::set_fused_kernels(fast);
      std::vector<Tensor> res = attn_test::packed_outputs_and_grads(m, c.mode, x, h0, c0, up);
      nn::detail::set_fused_kernels(prev);
      return res;
    };
    // The fast path does apply here (float32 on the CPU), and not to float64 (the gradient checks' dtype).
    const nn::detail::SequenceArgs args{.mode = c.mode, .reset_before_product = c.o.reset_before_product};
    ASSERT_TRUE(nn::detail::fast_sequence_applies(args, {x, h0, c0}));
    ASSERT_FALSE(nn::detail::fast_sequence_applies(args, {x.to(kFloat64)}));
    std::vector<Tensor> fast = run(true), generic = run(false);
    ASSERT_EQ(fast.size(), generic.size());
    for (size_t i = 0; i < fast.size(); ++i)
      EXPECT_TRUE(attn_test::tensors_close(fast[i], generic[i], 2e-5, 2e-6, "result " + std::to_string(i)));
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, RnnKernels, ::testing::Values(Isa::Avx512, Isa::Avx2, Isa::Reference),
                         [](const ::testing::TestParamInfo<Isa>& info) { return std::string(cpu::isa_name(info.param)); });
