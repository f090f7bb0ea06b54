// Bidirectional layers' two directions run concurrently (rnn_sequence.h, run_directions_concurrently)
// against the sequential direction loop: outputs, final states and every gradient bit for bit, packed
// (unsorted, variable lengths) and dense batch_first, RNN / LSTM (with proj_size) / GRU, one and two
// layers; and the same bits whatever the thread count, for both paths.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "attn/autograd.h"
#include "attn/nn/rnn.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "backend/cpu/packed_linear.h"
#include "nn/rnn_sequence.h"
#include "rnn_packed_run.h"

using namespace attn;

namespace {

struct Case {
  nn::RNNMode mode;
  nn::RNNOptions o;
};

std::shared_ptr<nn::RNNBase> make(const Case& c) {
  manual_seed(29);
  if (c.mode == nn::RNNMode::RNN) return std::make_shared<nn::RNN>(c.o);
  if (c.mode == nn::RNNMode::LSTM) return std::make_shared<nn::LSTM>(c.o);
  return std::make_shared<nn::GRU>(c.o);
}

int64_t hidden_out(const nn::RNNOptions& o) { return o.proj_size ? o.proj_size : o.hidden_size; }

// Dense batch_first x (B, T, I): output, h_n (, c_n), grads of x, h0 (, c0) and every parameter, from the
// loss sum(output * up) + sum(h_n^2) (+ 0.3 sum(c_n)).
std::vector<Tensor> dense_outputs_and_grads(const std::shared_ptr<nn::RNNBase>& m, nn::RNNMode mode, const Tensor& x,
                                            const Tensor& h0, const Tensor& c0, const Tensor& up) {
  m->zero_grad();
  Tensor xl = x.detach(), hl = h0.detach(), cl = c0.detach();
  xl.requires_grad_(true), hl.requires_grad_(true), cl.requires_grad_(true);
  std::vector<Tensor> outs;
  if (mode == nn::RNNMode::LSTM) {
    auto r = std::static_pointer_cast<nn::LSTM>(m)->forward(xl, {hl, cl});
    outs = {r.output, r.state.h, r.state.c};
  } else {
    auto r = mode == nn::RNNMode::RNN ? std::static_pointer_cast<nn::RNN>(m)->forward(xl, hl)
                                      : std::static_pointer_cast<nn::GRU>(m)->forward(xl, hl);
    outs = {r.output, r.h_n};
  }
  return attn_test::backward_and_collect(*m, mode, outs, up, xl, hl, cl);
}

// Runs f with the concurrent-directions switch at `mode` and `threads` OpenMP threads.
std::vector<Tensor> with(int mode, int threads, const std::function<std::vector<Tensor>()>& f) {
  const int prev_mode = nn::detail::set_concurrent_directions(mode);
  const int prev_threads = omp_get_max_threads();
  omp_set_num_threads(threads);
  std::vector<Tensor> r = f();
  omp_set_num_threads(prev_threads);
  nn::detail::set_concurrent_directions(prev_mode);
  return r;
}

void expect_bitwise_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].defined() && b[i].defined()) << what << ": result " << i;
    ASSERT_EQ(a[i].shape(), b[i].shape()) << what << ": result " << i;
    const std::vector<float> x = a[i].contiguous().to_vector<float>(), y = b[i].contiguous().to_vector<float>();
    double worst = 0;
    for (size_t j = 0; j < x.size(); ++j) worst = std::max(worst, double(std::abs(x[j] - y[j])));
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0)
        << what << ": result " << i << " differs (largest difference " << worst << ")";
  }
}

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {nn::RNNMode::LSTM, {.input_size = 3, .hidden_size = 21, .num_layers = 2, .bidirectional = true}},
      {nn::RNNMode::LSTM, {.input_size = 3, .hidden_size = 19, .bias = false, .bidirectional = true, .proj_size = 7}},
      {nn::RNNMode::GRU, {.input_size = 3, .hidden_size = 21, .num_layers = 2, .bidirectional = true}},
      {nn::RNNMode::RNN, {.input_size = 3, .hidden_size = 21, .num_layers = 2, .bidirectional = true}},
      {nn::RNNMode::RNN,
       {.input_size = 3, .hidden_size = 17, .nonlinearity = nn::RNNNonlinearity::ReLU, .bidirectional = true}},
      // wide enough that the sequential path splits each step's product and gates over two threads
      {nn::RNNMode::LSTM, {.input_size = 8, .hidden_size = 128, .bidirectional = true}},
      {nn::RNNMode::GRU, {.input_size = 8, .hidden_size = 128, .bidirectional = true}},
  };
  return c;
}

TEST(RnnDirections, ConcurrentMatchesSequentialBitForBitPacked) {
  if (!cpu::packed_gemm_available())  // no packed panels (ATTN_PACKED_LINEAR=0): no bit-equality across teams
    GTEST_SKIP() << "no packed-panel kernel: the directions run sequentially";
  for (const Case& c : cases()) {
    auto m = make(c);
    SCOPED_TRACE(m->repr());
    const int64_t D = 2, LD = c.o.num_layers * D, Hout = hidden_out(c.o);
    Tensor x = randn({6, 4, c.o.input_size}), h0 = randn({LD, 4, Hout}), c0 = randn({LD, 4, c.o.hidden_size});
    Tensor up = randn({16, D * Hout});
    auto run = [&] { return attn_test::packed_outputs_and_grads(m, c.mode, x, h0, c0, up); };
    // Against the sequential loop on the same team: the GEMMs outside the time loops (the input projection,
    // the weight gradients) are oneDNN's, whose bits may depend on the team (its AVX2 sgemm's do).
    for (int threads : {1, 2, 3})
      expect_bitwise_equal(with(1, threads, run), with(0, threads, run),
                           "concurrent, " + std::to_string(threads) + " threads");
  }
}

TEST(RnnDirections, ConcurrentMatchesSequentialBitForBitDenseBatchFirst) {
  if (!cpu::packed_gemm_available())  // no packed panels (ATTN_PACKED_LINEAR=0): no bit-equality across teams
    GTEST_SKIP() << "no packed-panel kernel: the directions run sequentially";
  for (Case c : cases()) {
    c.o.batch_first = true;
    auto m = make(c);
    SCOPED_TRACE(m->repr());
    const int64_t D = 2, LD = c.o.num_layers * D, Hout = hidden_out(c.o), B = 16, T = 5;
    Tensor x = randn({B, T, c.o.input_size}), h0 = randn({LD, B, Hout}), c0 = randn({LD, B, c.o.hidden_size});
    Tensor up = randn({B, T, D * Hout});
    auto run = [&] { return dense_outputs_and_grads(m, c.mode, x, h0, c0, up); };
    expect_bitwise_equal(with(1, 2, run), with(0, 2, run), "concurrent, 2 threads");
    expect_bitwise_equal(with(1, 1, run), with(0, 1, run), "concurrent, 1 thread");
  }
}

TEST(RnnDirections, InferenceForwardMatchesAndTheSwitchDecides) {
  if (!cpu::packed_gemm_available())  // no packed panels (ATTN_PACKED_LINEAR=0): no bit-equality across teams
    GTEST_SKIP() << "no packed-panel kernel: the directions run sequentially";
  const Case c{nn::RNNMode::LSTM, {.input_size = 5, .hidden_size = 33, .bidirectional = true}};
  auto m = make(c);
  Tensor x = randn({7, 3, 5});
  auto run = [&] {
    NoGradGuard ng;
    nn::LSTMOutput r = std::static_pointer_cast<nn::LSTM>(m)->forward(x, {});
    return std::vector<Tensor>{r.output, r.state.h, r.state.c};
  };
  expect_bitwise_equal(with(1, 2, run), with(0, 2, run), "inference");

  const std::vector<int64_t> bs(7, 3), off{0, 3, 6, 9, 12, 15, 18};
  const nn::detail::SequenceArgs a{.mode = nn::RNNMode::LSTM, .batch_sizes = &bs, .offsets = &off};
  const int prev = nn::detail::set_concurrent_directions(1);
  EXPECT_TRUE(nn::detail::concurrent_directions_apply(a, {x}));
  EXPECT_FALSE(nn::detail::concurrent_directions_apply(a, {x.to(kFloat64)}));  // the generic loop's dtype
  const std::vector<int64_t> one_step{3}, zero{0};
  const nn::detail::SequenceArgs single{.mode = nn::RNNMode::LSTM, .batch_sizes = &one_step, .offsets = &zero};
  EXPECT_FALSE(nn::detail::concurrent_directions_apply(single, {x}));  // one step: no packed panels
  nn::detail::set_concurrent_directions(0);
  EXPECT_FALSE(nn::detail::concurrent_directions_apply(a, {x}));
  nn::detail::set_concurrent_directions(prev);
}

}  // namespace
