// The oneDNN inference path of RNN / LSTM / GRU (src/nn/rnn_onednn.cc) against attn's own loop on random
// inputs for every cell and option (layers, bidirectional, batch_first, proj_size, no bias, relu, initial
// states, unbatched), the dispatch (oneDNN only for a dense float32 forward with nothing to record) and
// the converted-weight cache (rebuilt when a parameter changes). Rnn.ParityWithPyTorchInference
// (test_rnn.cc) checks the path against PyTorch's fixtures.
#include <gtest/gtest.h>
#include <omp.h>

#include <functional>
#include <string>

#include "attn/autocast.h"
#include "attn/autograd.h"
#include "attn/nn/rnn.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "fixture_loader.h"
#include "nn/rnn_onednn.h"

using namespace attn;

namespace {

// Restores the switch on scope exit.
struct OnednnSwitch {
  int prev;
  explicit OnednnSwitch(int mode) : prev(nn::detail::set_onednn_rnn(mode)) {}
  ~OnednnSwitch() { nn::detail::set_onednn_rnn(prev); }
};

struct Outputs {
  std::vector<Tensor> all;  // output, h_n (, c_n)
};

// Runs the module's forward on x and (optional) states; LSTM states are {h0, c0}.
Outputs run(nn::RNNBase& m, const Tensor& x, const std::vector<Tensor>& states) {
  if (auto* lstm = dynamic_cast<nn::LSTM*>(&m)) {
    nn::LSTMOutput o = lstm->forward(x, states.empty() ? nn::LSTMState{} : nn::LSTMState{states[0], states[1]});
    return {{o.output, o.state.h, o.state.c}};
  }
  const Tensor h0 = states.empty() ? Tensor() : states[0];
  nn::RNNOutput o = m.mode == nn::RNNMode::GRU ? dynamic_cast<nn::GRU&>(m).forward(x, h0)
                                                : dynamic_cast<nn::RNN&>(m).forward(x, h0);
  return {{o.output, o.h_n}};
}

std::shared_ptr<nn::RNNBase> make(nn::RNNMode mode, const nn::RNNOptions& o) {
  if (mode == nn::RNNMode::LSTM) return std::make_shared<nn::LSTM>(o);
  if (mode == nn::RNNMode::GRU) return std::make_shared<nn::GRU>(o);
  return std::make_shared<nn::RNN>(o);
}

// oneDNN's forward against attn's loop under no_grad; expects the oneDNN path to be taken.
void expect_paths_agree(nn::RNNMode mode, const nn::RNNOptions& o, bool with_states, bool unbatched,
                        const std::string& what) {
  SCOPED_TRACE(what);
  manual_seed(7);
  auto m = make(mode, o);
  const int64_t T = 5, B = 3, D = o.bidirectional ? 2 : 1, Hout = o.proj_size > 0 ? o.proj_size : o.hidden_size;
  Tensor x = unbatched ? randn({T, o.input_size}) : o.batch_first ? randn({B, T, o.input_size}) : randn({T, B, o.input_size});
  std::vector<Tensor> states;
  if (with_states) {
    auto shape = [&](int64_t size) { return unbatched ? Shape{o.num_layers * D, size} : Shape{o.num_layers * D, B, size}; };
    states.push_back(randn(shape(Hout)));
    if (mode == nn::RNNMode::LSTM) states.push_back(randn(shape(o.hidden_size)));
  }
  NoGradGuard no_grad;
  const int64_t before = nn::detail::onednn_rnn_forwards();
  Outputs fast;
  {
    OnednnSwitch on(nn::detail::kOnednnRnnOn);
    fast = run(*m, x, states);
  }
  EXPECT_EQ(nn::detail::onednn_rnn_forwards(), before + 1) << "the oneDNN path was not taken";
  Outputs own;
  {
    OnednnSwitch off(nn::detail::kOnednnRnnOff);
    own = run(*m, x, states);
  }
  ASSERT_EQ(fast.all.size(), own.all.size());
  for (size_t k = 0; k < own.all.size(); ++k) {
    EXPECT_EQ(fast.all[k].shape(), own.all[k].shape()) << "result " << k;
    EXPECT_TRUE(attn_test::tensors_close(fast.all[k], own.all[k], 1e-5, 1e-5, what + " result " + std::to_string(k)));
  }
}

}  // namespace

TEST(OnednnRnn, MatchesOwnPathForEveryCellAndOption) {
  using M = nn::RNNMode;
  for (M mode : {M::RNN, M::LSTM, M::GRU}) {
    const std::string name = mode == M::LSTM ? "lstm" : mode == M::GRU ? "gru" : "rnn";
    const nn::RNNOptions base{.input_size = 6, .hidden_size = 8};
    expect_paths_agree(mode, base, false, false, name + " 1 layer");
    expect_paths_agree(mode, {.input_size = 6, .hidden_size = 8, .num_layers = 2}, true, false, name + " 2 layers, h0");
    expect_paths_agree(mode, {.input_size = 6, .hidden_size = 8, .bidirectional = true}, true, false,
                       name + " bidirectional, h0");
    expect_paths_agree(mode, {.input_size = 6, .hidden_size = 8, .num_layers = 2, .batch_first = true,
                              .bidirectional = true},
                       false, false, name + " 2 layers, bidirectional, batch_first");
    expect_paths_agree(mode, {.input_size = 6, .hidden_size = 8, .bias = false}, true, false, name + " no bias");
    expect_paths_agree(mode, {.input_size = 6, .hidden_size = 8, .num_layers = 2}, true, true, name + " unbatched");
  }
  expect_paths_agree(M::RNN, {.input_size = 6, .hidden_size = 8, .nonlinearity = nn::RNNNonlinearity::ReLU}, true,
                     false, "rnn relu");
  expect_paths_agree(M::RNN, {.input_size = 6, .hidden_size = 8, .num_layers = 2,
                              .nonlinearity = nn::RNNNonlinearity::ReLU, .bidirectional = true},
                     true, false, "rnn relu 2 layers bidirectional");
  expect_paths_agree(M::LSTM, {.input_size = 6, .hidden_size = 8, .proj_size = 3}, true, false, "lstm proj_size");
  expect_paths_agree(M::LSTM, {.input_size = 6, .hidden_size = 8, .num_layers = 2, .bidirectional = true,
                               .proj_size = 3},
                     true, false, "lstm proj_size, 2 layers, bidirectional");
  // The char LM's sampling step: batch 1, one time step, state carried.
  expect_paths_agree(M::LSTM, {.input_size = 16, .hidden_size = 32, .num_layers = 2, .batch_first = true}, true,
                     false, "lstm 2 layers batch_first");
}

TEST(OnednnRnn, DispatchOnlyWhereNothingIsRecorded) {
  OnednnSwitch on(nn::detail::kOnednnRnnOn);
  manual_seed(3);
  nn::LSTM lstm({.input_size = 4, .hidden_size = 5, .num_layers = 2, .dropout = 0.5});
  Tensor x = randn({3, 2, 4});
  auto taken = [&](const std::function<void()>& f) {
    const int64_t before = nn::detail::onednn_rnn_forwards();
    f();
    return nn::detail::onednn_rnn_forwards() > before;
  };
  lstm.eval();
  EXPECT_FALSE(taken([&] { lstm.forward(x, {}); })) << "parameters require grad: training keeps attn's loop";
  EXPECT_TRUE(taken([&] { NoGradGuard g; lstm.forward(x, {}); }));
  lstm.train();
  EXPECT_FALSE(taken([&] { NoGradGuard g; lstm.forward(x, {}); })) << "dropout between layers while training";
  lstm.eval();
  EXPECT_FALSE(taken([&] {
    NoGradGuard g;
    lstm.forward(nn::utils::pack_padded_sequence(x, {3, 2}), {});
  })) << "packed input";
  EXPECT_FALSE(taken([&] { NoGradGuard g; Autocast a; lstm.forward(x, {}); })) << "autocast";
  {
    OnednnSwitch off(nn::detail::kOnednnRnnOff);
    EXPECT_FALSE(taken([&] { NoGradGuard g; lstm.forward(x, {}); })) << "switched off";
  }
  for (auto& p : lstm.parameters()) p.requires_grad_(false);
  EXPECT_TRUE(taken([&] { lstm.forward(x, {}); })) << "grad mode on, but nothing requires grad";
  EXPECT_FALSE(taken([&] { lstm.forward(x.clone().requires_grad_(true), {}); })) << "the input requires grad";

  nn::GRU cho({.input_size = 4, .hidden_size = 5, .reset_before_product = true});
  EXPECT_FALSE(taken([&] { NoGradGuard g; cho.forward(x, Tensor()); })) << "the Cho-form GRU has no oneDNN cell";
  nn::RNN rnn64({.input_size = 4, .hidden_size = 5});
  rnn64.to(kFloat64);
  EXPECT_FALSE(taken([&] { NoGradGuard g; rnn64.forward(x.to(kFloat64), Tensor()); })) << "float64";
}

// The default (auto) mode takes oneDNN only where the paired measurement found it faster: the LSTM, the
// unidirectional vanilla RNN with two or more threads or one row; never the GRU or the bidirectional RNN.
TEST(OnednnRnn, AutoModeTakesTheMeasuredFasterPath) {
  OnednnSwitch automatic(nn::detail::kOnednnRnnAuto);
  manual_seed(4);
  Tensor x = randn({3, 2, 4}), x1 = randn({3, 1, 4});
  auto taken = [&](nn::Module& m, const Tensor& in) {
    NoGradGuard g;
    const int64_t before = nn::detail::onednn_rnn_forwards();
    if (auto* l = dynamic_cast<nn::LSTM*>(&m)) l->forward(in, {});
    else if (auto* r = dynamic_cast<nn::RNN*>(&m)) r->forward(in, Tensor());
    else dynamic_cast<nn::GRU&>(m).forward(in, Tensor());
    return nn::detail::onednn_rnn_forwards() > before;
  };
  nn::LSTM lstm({.input_size = 4, .hidden_size = 5}), bilstm({.input_size = 4, .hidden_size = 5, .bidirectional = true});
  nn::GRU gru({.input_size = 4, .hidden_size = 5});
  nn::RNN rnn({.input_size = 4, .hidden_size = 5}), birnn({.input_size = 4, .hidden_size = 5, .bidirectional = true});
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  EXPECT_TRUE(taken(lstm, x));
  EXPECT_TRUE(taken(bilstm, x));
  EXPECT_FALSE(taken(gru, x));
  EXPECT_FALSE(taken(rnn, x)) << "one thread, batch 2: attn's loop";
  EXPECT_TRUE(taken(rnn, x1)) << "one row";
  EXPECT_FALSE(taken(birnn, x1));
  omp_set_num_threads(2);
  EXPECT_TRUE(taken(rnn, x));
  EXPECT_FALSE(taken(gru, x1));
  omp_set_num_threads(threads);
}

TEST(OnednnRnn, ConvertedWeightsFollowParameterChanges) {
  OnednnSwitch on(nn::detail::kOnednnRnnOn);
  manual_seed(5);
  nn::GRU gru({.input_size = 4, .hidden_size = 6, .num_layers = 2, .bidirectional = true});
  Tensor x = randn({4, 2, 4});
  NoGradGuard no_grad;
  const int64_t c0 = nn::detail::onednn_rnn_weight_conversions();
  Tensor first = gru.forward(x, Tensor()).output;
  const int64_t c1 = nn::detail::onednn_rnn_weight_conversions();
  EXPECT_EQ(c1, c0 + 2) << "one conversion per layer";
  Tensor again = gru.forward(x, Tensor()).output;
  EXPECT_EQ(nn::detail::onednn_rnn_weight_conversions(), c1) << "unchanged weights are reused";
  EXPECT_TRUE(attn_test::tensors_close(again, first, 0, 0, "same weights, same output"));

  Tensor w_hh = gru.weights(1, 1).w_hh;  // shares the parameter's storage
  w_hh.mul_(0.5);                        // an in-place change bumps the storage's version
  Tensor changed = gru.forward(x, Tensor()).output;
  EXPECT_EQ(nn::detail::onednn_rnn_weight_conversions(), c1 + 2) << "a changed parameter reconverts";
  OnednnSwitch off(nn::detail::kOnednnRnnOff);
  Tensor own = gru.forward(x, Tensor()).output;
  EXPECT_TRUE(attn_test::tensors_close(changed, own, 1e-5, 1e-5, "after the change"));
  EXPECT_FALSE(attn_test::tensors_close(changed, first, 1e-5, 1e-5, "the change shows"));
}
