// Recurrent modules beyond the PyTorch fixtures: f64 finite-difference gradient checks of every cell
// and of packed multi-layer layers, the lecture's GRU (reset gate before the product) against a direct
// f64 implementation of its formula, packed batches against one-sequence-at-a-time runs, dropout
// between layers, and clear errors on bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "attn/nn/rnn.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "fixture_loader.h"
#include "gradcheck.h"
#include "nn/rnn_sequence.h"
#include "rnn_packed_run.h"

using namespace attn;

namespace {

constexpr TensorOptions kF64{.dtype = kFloat64};

Tensor leaf(Shape s, double scale = 1.0) {
  Tensor t = mul(randn(s, kF64), scale).detach();
  t.requires_grad_(true);
  return t;
}

std::vector<Tensor> with_params(std::vector<Tensor> v, const nn::Module& m) {
  for (const Tensor& p : m.parameters()) v.push_back(p);
  return v;
}

void expect_throw_with(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning '" << needle << "'";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

// The lecture's GRU step in plain f64: r, z from [x, h]; n = tanh(W_in x + b_in + W_hn (r * h) + b_hn).
std::vector<double> cho_gru_step(const std::vector<double>& x, const std::vector<double>& h, const nn::GRUCell& c,
                                 int64_t B) {
  const int64_t I = c.options.input_size, H = c.options.hidden_size;
  const std::vector<double> wi = c.weight_ih.to_vector<double>(), wh = c.weight_hh.to_vector<double>();
  const std::vector<double> bi = c.bias_ih.to_vector<double>(), bh = c.bias_hh.to_vector<double>();
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  std::vector<double> out(static_cast<size_t>(B * H));
  for (int64_t b = 0; b < B; ++b) {
    auto xw = [&](int64_t row) {
      double s = bi[size_t(row)];
      for (int64_t i = 0; i < I; ++i) s += wi[size_t(row * I + i)] * x[size_t(b * I + i)];
      return s;
    };
    auto hw = [&](int64_t row, const std::vector<double>& v) {
      double s = bh[size_t(row)];
      for (int64_t j = 0; j < H; ++j) s += wh[size_t(row * H + j)] * v[size_t(j)];
      return s;
    };
    const size_t Hs = static_cast<size_t>(H);
    std::vector<double> hb(h.begin() + b * H, h.begin() + (b + 1) * H), r(Hs), z(Hs), rh(Hs);
    for (int64_t k = 0; k < H; ++k) {
      r[size_t(k)] = sig(xw(k) + hw(k, hb));
      z[size_t(k)] = sig(xw(H + k) + hw(H + k, hb));
      rh[size_t(k)] = r[size_t(k)] * hb[size_t(k)];
    }
    for (int64_t k = 0; k < H; ++k) {
      const double n = std::tanh(xw(2 * H + k) + hw(2 * H + k, rh));
      out[size_t(b * H + k)] = (1 - z[size_t(k)]) * n + z[size_t(k)] * hb[size_t(k)];
    }
  }
  return out;
}

}  // namespace

TEST(RnnGradcheck, Cells) {
  manual_seed(3);
  const int64_t B = 2, I = 3, H = 4;
  for (auto nl : {nn::RNNNonlinearity::Tanh, nn::RNNNonlinearity::ReLU}) {
    nn::RNNCell cell({.input_size = I, .hidden_size = H, .nonlinearity = nl});
    cell.to(kFloat64);
    EXPECT_TRUE(attn_test::gradcheck([&](const std::vector<Tensor>& v) { return cell.forward(v[0], v[1]); },
                                     with_params({leaf({B, I}), leaf({B, H})}, cell)));
  }
  nn::LSTMCell lstm({.input_size = I, .hidden_size = H});
  lstm.to(kFloat64);
  EXPECT_TRUE(attn_test::gradcheck(
      attn_test::GradFn([&](const std::vector<Tensor>& v) {
        nn::LSTMState s = lstm.forward(v[0], {v[1], v[2]});
        return std::vector<Tensor>{s.h, s.c};
      }),
      with_params({leaf({B, I}), leaf({B, H}), leaf({B, H})}, lstm)));
  for (bool before : {false, true}) {
    nn::GRUCell gru({.input_size = I, .hidden_size = H, .reset_before_product = before});
    gru.to(kFloat64);
    EXPECT_TRUE(attn_test::gradcheck([&](const std::vector<Tensor>& v) { return gru.forward(v[0], v[1]); },
                                     with_params({leaf({B, I}), leaf({B, H})}, gru)))
        << "reset_before_product " << before;
  }
}

TEST(RnnGradcheck, PackedBidirectionalLayers) {
  manual_seed(4);
  const int64_t T = 4, B = 3, I = 2, H = 3;
  for (nn::RNNMode mode : {nn::RNNMode::RNN, nn::RNNMode::LSTM, nn::RNNMode::GRU}) {
    nn::RNNOptions o{.input_size = I, .hidden_size = H, .num_layers = 2, .bidirectional = true};
    if (mode == nn::RNNMode::LSTM) o.proj_size = 2;
    if (mode == nn::RNNMode::GRU) o.reset_before_product = true;
    const int64_t Hout = mode == nn::RNNMode::LSTM ? 2 : H;
    std::shared_ptr<nn::RNNBase> m;
    if (mode == nn::RNNMode::RNN) m = std::make_shared<nn::RNN>(o);
    if (mode == nn::RNNMode::LSTM) m = std::make_shared<nn::LSTM>(o);
    if (mode == nn::RNNMode::GRU) m = std::make_shared<nn::GRU>(o);
    m->to(kFloat64);
    auto fn = [&](const std::vector<Tensor>& v) {
      nn::PackedSequence p = nn::utils::pack_padded_sequence(v[0], {2, 4, 1}, {.enforce_sorted = false});
      std::vector<Tensor> outs;
      if (mode == nn::RNNMode::LSTM) {
        auto r = std::static_pointer_cast<nn::LSTM>(m)->forward(p, {v[1], v[2]});
        outs = {r.output.data, r.state.h, r.state.c};
      } else {
        auto r = mode == nn::RNNMode::RNN ? std::static_pointer_cast<nn::RNN>(m)->forward(p, v[1])
                                          : std::static_pointer_cast<nn::GRU>(m)->forward(p, v[1]);
        outs = {r.output.data, r.h_n};
      }
      return outs;
    };
    std::vector<Tensor> in;
    in.reserve(3);
    in.push_back(leaf({T, B, I}));
    in.push_back(leaf({4, B, Hout}, 0.5));
    if (mode == nn::RNNMode::LSTM) in.push_back(leaf({4, B, H}, 0.5));
    EXPECT_TRUE(attn_test::gradcheck(fn, with_params(in, *m))) << m->type_name();
  }
}

TEST(RnnLectureGru, CellMatchesChoFormulaInF64) {
  manual_seed(5);
  const int64_t B = 3, I = 4, H = 5;
  nn::GRUCell cell({.input_size = I, .hidden_size = H, .reset_before_product = true});
  cell.to(kFloat64);
  Tensor x = randn({B, I}, kF64), h = randn({B, H}, kF64);
  const std::vector<double> want = cho_gru_step(x.to_vector<double>(), h.to_vector<double>(), cell, B);
  const std::vector<double> got = cell.forward(x, h).to_vector<double>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << i;
  // PyTorch's form (reset after the product) is a different function of the same weights.
  nn::GRUCell torch_form({.input_size = I, .hidden_size = H});
  torch_form.to(kFloat64);
  torch_form.load_state_dict(cell.state_dict());
  EXPECT_GT(amax(abs(sub(torch_form.forward(x, h), cell.forward(x, h)))).item<double>(), 1e-3);
}

TEST(RnnLectureGru, LayerUnrollsTheCellFormula) {
  manual_seed(6);
  const int64_t T = 5, B = 2, I = 3, H = 4;
  nn::GRU gru({.input_size = I, .hidden_size = H, .batch_first = true, .reset_before_product = true});
  gru.to(kFloat64);
  nn::GRUCell cell({.input_size = I, .hidden_size = H, .reset_before_product = true});
  cell.to(kFloat64);
  cell.load_state_dict({{"weight_ih", gru.weights(0, 0).w_ih}, {"weight_hh", gru.weights(0, 0).w_hh},
                        {"bias_ih", gru.weights(0, 0).b_ih}, {"bias_hh", gru.weights(0, 0).b_hh}});
  Tensor x = randn({B, T, I}, kF64), h0 = randn({1, B, H}, kF64);
  nn::RNNOutput out = gru.forward(x, h0);
  std::vector<double> h = h0.to_vector<double>();
  for (int64_t t = 0; t < T; ++t) {
    h = cho_gru_step(x.select(1, t).contiguous().to_vector<double>(), h, cell, B);
    const std::vector<double> got = out.output.select(1, t).contiguous().to_vector<double>();
    for (size_t i = 0; i < h.size(); ++i) ASSERT_NEAR(got[i], h[i], 1e-12) << "t " << t << " i " << i;
  }
  const std::vector<double> hn = out.h_n.to_vector<double>();
  for (size_t i = 0; i < h.size(); ++i) EXPECT_NEAR(hn[i], h[i], 1e-12);
}

TEST(RnnPacked, EachSequenceAsIfAlone) {
  manual_seed(8);
  const int64_t T = 6, B = 4, I = 3, H = 5;
  nn::LSTM lstm({.input_size = I, .hidden_size = H, .num_layers = 2, .bidirectional = true});
  lstm.to(kFloat64);
  const std::vector<int64_t> lengths{3, 6, 1, 4};
  Tensor x = randn({T, B, I}, kF64).detach();
  x.requires_grad_(true);
  Tensor h0 = randn({4, B, H}, kF64), c0 = randn({4, B, H}, kF64);
  auto packed = lstm.forward(nn::utils::pack_padded_sequence(x, lengths, {.enforce_sorted = false}), {h0, c0});
  auto padded = nn::utils::pad_packed_sequence(packed.output, {.padding_value = -7.0});
  ASSERT_EQ(padded.padded.shape(), (Shape{T, B, 2 * H}));
  EXPECT_EQ(padded.lengths, lengths);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = lengths[size_t(b)];
    auto alone = lstm.forward(x.select(1, b).narrow(0, 0, len), {h0.select(1, b), c0.select(1, b)});
    EXPECT_TRUE(allclose(padded.padded.select(1, b).narrow(0, 0, len), alone.output, 1e-12, 1e-12)) << b;
    EXPECT_TRUE(allclose(packed.state.h.select(1, b), alone.state.h, 1e-12, 1e-12)) << b;
    EXPECT_TRUE(allclose(packed.state.c.select(1, b), alone.state.c, 1e-12, 1e-12)) << b;
    if (len < T) {
      EXPECT_EQ(amin(padded.padded.select(1, b).narrow(0, len, T - len)).item<double>(), -7.0);
    }
  }
  // Padded positions get exactly zero gradient.
  sum(padded.padded).backward();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = lengths[size_t(b)];
    if (len < T) {
      EXPECT_EQ(amax(abs(x.grad().select(1, b).narrow(0, len, T - len))).item<double>(), 0.0);
    }
    EXPECT_GT(amax(abs(x.grad().select(1, b).narrow(0, 0, len))).item<double>(), 0.0);
  }
}

TEST(RnnPacked, BatchFirstRoundTripAndTotalLength) {
  Tensor x = randn({3, 4, 2});  // (B, T, F)
  auto p = nn::utils::pack_padded_sequence(x, {4, 2, 3}, {.batch_first = true, .enforce_sorted = false});
  EXPECT_EQ(p.batch_sizes, (std::vector<int64_t>{3, 3, 2, 1}));
  EXPECT_EQ(p.data.shape(), (Shape{9, 2}));
  auto back = nn::utils::pad_packed_sequence(p, {.batch_first = true, .total_length = 6});
  ASSERT_EQ(back.padded.shape(), (Shape{3, 6, 2}));
  EXPECT_TRUE(allclose(back.padded.select(0, 0).narrow(0, 0, 4), x.select(0, 0)));
  EXPECT_TRUE(allclose(back.padded.select(0, 1).narrow(0, 0, 2), x.select(0, 1).narrow(0, 0, 2)));
  EXPECT_EQ(amax(abs(back.padded.select(0, 1).narrow(0, 2, 4))).item<double>(), 0.0);
  EXPECT_EQ(back.lengths, (std::vector<int64_t>{4, 2, 3}));
}

TEST(RnnDropout, BetweenLayersWhileTrainingOnly) {
  manual_seed(9);
  nn::GRU gru({.input_size = 3, .hidden_size = 8, .num_layers = 2, .dropout = 0.5});
  nn::GRU plain({.input_size = 3, .hidden_size = 8, .num_layers = 2});
  plain.load_state_dict(gru.state_dict());
  Tensor x = randn({5, 2, 3});
  gru.eval();
  EXPECT_TRUE(allclose(gru.forward(x), plain.forward(x)));
  gru.train();
  Tensor a = gru.forward(x), b = gru.forward(x);
  EXPECT_FALSE(allclose(a, plain.forward(x), 1e-4, 1e-5));
  EXPECT_FALSE(allclose(a, b, 1e-4, 1e-5));  // fresh masks per call
  // One layer: nothing to drop between layers.
  nn::GRU one({.input_size = 3, .hidden_size = 8, .dropout = 0.5});
  EXPECT_TRUE(allclose(one.forward(x), one.forward(x)));
}

TEST(RnnErrors, BadInputIsAClearError) {
  nn::LSTM lstm({.input_size = 3, .hidden_size = 4, .num_layers = 2});
  expect_throw_with([&] { lstm.forward(randn({2, 3, 5})); }, "expected (T, B, 3)");
  expect_throw_with([&] { lstm.forward(randn({5, 2, 3, 1})); }, "input has shape (5, 2, 3, 1)");
  expect_throw_with([&] { lstm.forward(randn({3})); }, "input has shape (3,)");
  expect_throw_with([&] { lstm.forward(zeros({0, 2, 3})); }, "empty sequence");
  expect_throw_with([&] { lstm.forward(zeros({4, 2, 3}, {.dtype = kInt64})); }, "float type");
  expect_throw_with([&] { lstm.forward(randn({5, 2, 3}), {randn({2, 3, 4}), randn({2, 3, 4})}); },
                    "h0 has shape (2, 3, 4), expected (2, 2, 4)");
  expect_throw_with([&] { lstm.forward(randn({5, 2, 3}), {randn({2, 2, 4}), randn({1, 2, 4})}); },
                    "c0 has shape (1, 2, 4)");
  expect_throw_with([&] { lstm.forward(randn({5, 2, 3}), {randn({2, 2, 4}), Tensor()}); }, "both h0 and c0");
  nn::GRU gru({.input_size = 3, .hidden_size = 4, .batch_first = true});
  expect_throw_with([&] { gru.forward(randn({2, 5, 4}), Tensor()); }, "expected (B, T, 3)");
  expect_throw_with([&] { gru.forward(randn({2, 5, 3}), randn({2, 4})); }, "h0 has shape (2, 4)");
  expect_throw_with([&] { gru.forward(randn({2, 5, 3}), randn({1, 2, 4}, {.dtype = kFloat64})); }, "dtype");
  nn::GRUCell cell({.input_size = 3, .hidden_size = 4});
  expect_throw_with([&] { cell.forward(randn({2, 5})); }, "input has shape (2, 5)");
  expect_throw_with([&] { cell.forward(randn({2, 3}), randn({3, 4})); }, "hx has shape (3, 4), expected (2, 4)");
  expect_throw_with([&] { cell.forward(randn({2, 3, 1})); }, "expected (B, 3)");
}

TEST(RnnErrors, BadLengthsAndOptions) {
  Tensor x = randn({4, 3, 2});
  using nn::utils::pack_padded_sequence;
  expect_throw_with([&] { pack_padded_sequence(x, {4, 5, 1}); }, "length 5 at index 1 is longer than the input's 4");
  expect_throw_with([&] { pack_padded_sequence(x, {4, 0, 1}); }, "length 0 at index 1");
  expect_throw_with([&] { pack_padded_sequence(x, {2, 4, 1}); }, "non-increasing with enforce_sorted (index 1");
  expect_throw_with([&] { pack_padded_sequence(x, {4, 2}); }, "2 lengths for a batch of 3");
  expect_throw_with([&] { pack_padded_sequence(randn({4}), {4}); }, "at least 2 dims");
  nn::PackedSequence p = pack_padded_sequence(x, {4, 3, 1});
  nn::RNN rnn({.input_size = 5, .hidden_size = 2});
  expect_throw_with([&] { rnn.forward(p, Tensor()); }, "packed data has shape (8, 2), expected (sum of lengths, 5)");
  p.batch_sizes = {3, 3, 3};
  nn::RNN rnn2({.input_size = 2, .hidden_size = 2});
  expect_throw_with([&] { rnn2.forward(p, Tensor()); }, "batch_sizes add up to 9 rows but the packed data has 8");
  expect_throw_with([&] { nn::utils::pad_packed_sequence(pack_padded_sequence(x, {4, 3, 1}), {.total_length = 2}); },
                    "total_length 2");
  expect_throw_with([&] { nn::LSTM({.input_size = 2, .hidden_size = 3, .proj_size = 3}); }, "proj_size");
  expect_throw_with([&] { nn::GRU({.input_size = 2, .hidden_size = 3, .proj_size = 1}); }, "proj_size");
  expect_throw_with([&] { nn::LSTM({.input_size = 2, .hidden_size = 3, .reset_before_product = true}); },
                    "reset_before_product is a GRU option");
  expect_throw_with([&] { nn::GRU({.input_size = 2, .hidden_size = 0}); }, "must be positive");
  expect_throw_with([&] { nn::RNN({.input_size = 2, .hidden_size = 3, .dropout = 1.5}); }, "dropout");
}

// The layers' one-node time loop (nn/rnn_sequence.cc) against the per-step autograd composite of the
// cells' math: outputs, final states and every gradient, for each mode on a packed bidirectional batch.
TEST(RnnSequence, OneNodeLoopMatchesPerStepComposite) {
  struct Case {
    nn::RNNMode mode;
    nn::RNNOptions o;
  };
  const std::vector<Case> cases = {
      {nn::RNNMode::RNN, {.input_size = 3, .hidden_size = 5, .num_layers = 2, .bidirectional = true}},
      {nn::RNNMode::RNN,
       {.input_size = 3, .hidden_size = 5, .nonlinearity = nn::RNNNonlinearity::ReLU, .bias = false}},
      {nn::RNNMode::LSTM, {.input_size = 3, .hidden_size = 5, .num_layers = 2, .bidirectional = true}},
      {nn::RNNMode::LSTM, {.input_size = 3, .hidden_size = 5, .bidirectional = true, .proj_size = 2}},
      {nn::RNNMode::GRU, {.input_size = 3, .hidden_size = 5, .num_layers = 2, .bidirectional = true}},
      {nn::RNNMode::GRU, {.input_size = 3, .hidden_size = 5, .bidirectional = true, .reset_before_product = true}},
      {nn::RNNMode::GRU, {.input_size = 3, .hidden_size = 5, .bias = false, .reset_before_product = true}},
  };
  for (const Case& c : cases) {
    manual_seed(11);
    std::shared_ptr<nn::RNNBase> m;
    if (c.mode == nn::RNNMode::RNN) m = std::make_shared<nn::RNN>(c.o);
    if (c.mode == nn::RNNMode::LSTM) m = std::make_shared<nn::LSTM>(c.o);
    if (c.mode == nn::RNNMode::GRU) m = std::make_shared<nn::GRU>(c.o);
    m->to(kFloat64);
    SCOPED_TRACE(m->repr());
    const int64_t LD = c.o.num_layers * (c.o.bidirectional ? 2 : 1);
    const int64_t Hout = c.o.proj_size ? c.o.proj_size : c.o.hidden_size;
    Tensor x = randn({6, 4, 3}, kF64), h0 = randn({LD, 4, Hout}, kF64), c0 = randn({LD, 4, 5}, kF64);
    Tensor up = randn({16, (c.o.bidirectional ? 2 : 1) * Hout}, kF64);
    auto run = [&](bool fused) {
      const bool prev = nn::detail::set_fused_sequence(fused);
      std::vector<Tensor> res = attn_test::packed_outputs_and_grads(m, c.mode, x, h0, c0, up);
      nn::detail::set_fused_sequence(prev);
      return res;
    };
    std::vector<Tensor> fused = run(true), composite = run(false);
    ASSERT_EQ(fused.size(), composite.size());
    for (size_t i = 0; i < fused.size(); ++i)
      EXPECT_TRUE(attn_test::tensors_close(fused[i], composite[i], 1e-10, 1e-12, "result " + std::to_string(i)));
  }
}

// Sampling runs one step at a time with the state carried and no autograd: the same numbers as one
// run over the whole sequence with autograd.
TEST(RnnSequence, StepwiseInferenceMatchesWholeSequence) {
  manual_seed(12);
  nn::LSTM lstm({.input_size = 3, .hidden_size = 6, .num_layers = 2, .batch_first = true});
  nn::GRU gru({.input_size = 3, .hidden_size = 6, .num_layers = 2, .batch_first = true});
  Tensor x = randn({1, 7, 3}, {.requires_grad = true});
  nn::LSTMOutput whole = lstm.forward(x, {});
  nn::RNNOutput whole_gru = gru.forward(x, Tensor());
  NoGradGuard ng;
  nn::LSTMState s;
  Tensor h;
  for (int64_t t = 0; t < 7; ++t) {
    nn::LSTMOutput o = lstm.forward(x.narrow(1, t, 1), s);
    s = o.state;
    EXPECT_TRUE(allclose(o.output.select(1, 0), whole.output.select(1, t), 1e-5, 1e-6)) << t;
    nn::RNNOutput g = gru.forward(x.narrow(1, t, 1), h);
    h = g.h_n;
    EXPECT_TRUE(allclose(g.output.select(1, 0), whole_gru.output.select(1, t), 1e-5, 1e-6)) << t;
  }
  EXPECT_TRUE(allclose(s.h, whole.state.h, 1e-5, 1e-6));
  EXPECT_TRUE(allclose(s.c, whole.state.c, 1e-5, 1e-6));
  EXPECT_TRUE(allclose(h, whole_gru.h_n, 1e-5, 1e-6));
  EXPECT_FALSE(s.h.requires_grad());
}
