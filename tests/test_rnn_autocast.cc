// tests/test_rnn_autocast.cc — RNN / LSTM / GRU under attn::Autocast against the same layers under
// torch.autocast("cpu", dtype=torch.bfloat16) (fixtures: tests/make_autocast_rnn_fixtures.py): the output,
// the loss, every float32 parameter gradient and the gradients of the inputs and initial states, on each
// path attn has: oneDNN's bf16 primitives (the default on AVX512_BF16 CPUs, opt-in on AMX ones with
// ATTN_RNN_ONEDNN_BF16=1; see src/nn/rnn_onednn.h) and the module's own loop on the autocast ops
// (elsewhere, and with ATTN_RNN_ONEDNN=0 or ATTN_RNN_ONEDNN_BF16=0).
//
// Tolerance: tests/autocast_compare.h, with 2^-6 of the tensor's largest magnitude as the floor (2^-5 for
// gradients: the recurrence carries bf16 rounding through every step).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "attn/autocast.h"
#include "attn/autograd.h"
#include "attn/nn/embedding.h"
#include "attn/nn/linear.h"
#include "attn/nn/rnn.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "autocast_compare.h"
#include "backend/cpu/gemm_bf16.h"
#include "nn/rnn_onednn.h"

using namespace attn;

namespace {

using attn_test::expect_bf16_close;

struct Fixture : attn_test::AutocastFixture {
  Fixture() : AutocastFixture("autocast_rnn.safetensors") {}
};

// The fixture's parameters whose names start with `prefix`, without it.
std::map<std::string, Tensor> params(const Fixture& fx, const std::string& name, const std::string& prefix = "") {
  std::map<std::string, Tensor> m;
  for (auto& [k, v] : fx.with_prefix(name + "/param/"))
    if (k.rfind(prefix, 0) == 0) m[k.substr(prefix.size())] = v;
  return m;
}

// Every parameter gradient of `m` (fixture names prefix + key) against PyTorch's.
void expect_param_grads(const Fixture& fx, const std::string& name, nn::Module& m, const std::string& prefix = "") {
  for (auto& [k, p] : m.named_parameters()) {
    const std::string key = prefix + k;
    ASSERT_TRUE(p.grad().defined()) << name << ": no gradient for " << key;
    EXPECT_EQ(p.grad().dtype(), kFloat32) << key;
    expect_bf16_close(p.grad(), fx.get(name + "/grad_param/" + key), fx.get(name + "/fp32/grad_param/" + key), 1.0 / 32,
                      name + " grad of " + key);
  }
}

void expect_outputs(const Fixture& fx, const std::string& name, const Tensor& out, const Tensor& loss) {
  const Tensor want = fx.get(name + "/out");  // its dtype depends on the implementation (see the script)
  expect_bf16_close(out.to(kFloat32), want.to(kFloat32), fx.get(name + "/fp32/out").to(kFloat32), 1.0 / 64, name + " out");
  expect_bf16_close(loss.to(kFloat32).reshape({1}), fx.get(name + "/loss"), fx.get(name + "/fp32/loss"), 1.0 / 64,
                    name + " loss");
}

void expect_input_grad(const Fixture& fx, const std::string& name, const std::string& in, const Tensor& leaf) {
  ASSERT_TRUE(leaf.grad().defined()) << name << ": no gradient for " << in;
  expect_bf16_close(leaf.grad().to(kFloat32), fx.get(name + "/grad_in/" + in), fx.get(name + "/fp32/grad_in/" + in),
                    1.0 / 32, name + " grad of " + in);
}

Tensor leaf(const Fixture& fx, const std::string& name, const std::string& in) {
  Tensor t = fx.get(name + "/in/" + in);
  t.requires_grad_(true);
  return t;
}

// The path the layers take under autocast in this process, for the messages and the dispatch check.
bool onednn_bf16_path() {
  return nn::detail::onednn_rnn_bf16() && cpu::bf16_path() != cpu::Bf16Path::Convert &&
         nn::detail::rnn_onednn_mode() != nn::detail::kOnednnRnnOff;
}

// Runs `body` on oneDNN's path (where the CPU has it and `onednn_takes` the module), then on its own loop.
void on_each_path(const std::function<void()>& body, bool onednn_takes = true) {
  {
    const bool onednn = onednn_bf16_path() && onednn_takes;
    SCOPED_TRACE(std::string("path: ") + (onednn ? "oneDNN bf16 primitives" : "the module's loop") + ", bf16 ISA " +
                 cpu::bf16_path_name(cpu::bf16_path()));
    const int64_t before = nn::detail::onednn_rnn_autocast_layers();
    body();
    EXPECT_EQ(nn::detail::onednn_rnn_autocast_layers() > before, onednn);
  }
  const int prev = nn::detail::set_onednn_rnn(nn::detail::kOnednnRnnOff);
  {
    SCOPED_TRACE("path: the module's loop (ATTN_RNN_ONEDNN=0)");
    const int64_t before = nn::detail::onednn_rnn_autocast_layers();
    body();
    EXPECT_EQ(nn::detail::onednn_rnn_autocast_layers(), before);
  }
  nn::detail::set_onednn_rnn(prev);
}

}  // namespace

TEST(RnnAutocast, LstmLanguageModelStepMatchesPyTorch) {
  Fixture fx;
  on_each_path([&] {
    nn::Embedding emb(20, 8);
    nn::LSTM lstm({.input_size = 8, .hidden_size = 16, .num_layers = 2, .batch_first = true});
    nn::Linear head(16, 20);
    emb.load_state_dict(params(fx, "lstm_lm", "emb."));
    lstm.load_state_dict(params(fx, "lstm_lm", "lstm."));
    head.load_state_dict(params(fx, "lstm_lm", "head."));
    const Tensor tokens = fx.get("lstm_lm/in/tokens"), targets = fx.get("lstm_lm/in/targets");
    Tensor out, loss;
    {
      Autocast ac;
      out = lstm.forward(emb.forward(tokens), {}).output;
      loss = cross_entropy(head.forward(out).reshape({-1, 20}), targets.reshape({-1}));
    }
    expect_outputs(fx, "lstm_lm", out, loss);
    loss.backward();
    expect_param_grads(fx, "lstm_lm", emb, "emb.");
    expect_param_grads(fx, "lstm_lm", lstm, "lstm.");
    expect_param_grads(fx, "lstm_lm", head, "head.");
  });
}

TEST(RnnAutocast, BidirectionalGruFromH0MatchesPyTorch) {
  Fixture fx;
  on_each_path([&] {
    nn::GRU gru({.input_size = 6, .hidden_size = 10, .num_layers = 2, .bidirectional = true});
    gru.load_state_dict(params(fx, "bigru"));
    const Tensor x = leaf(fx, "bigru", "x"), h0 = leaf(fx, "bigru", "h0");
    Tensor out, loss;
    {
      Autocast ac;
      nn::RNNOutput o = gru.forward(x, h0);
      out = o.output;
      loss = mse_loss(out.to(kFloat32), fx.get("bigru/in/target")) + mean(square(o.h_n.to(kFloat32)));
    }
    expect_outputs(fx, "bigru", out, loss);
    loss.backward();
    expect_param_grads(fx, "bigru", gru);
    expect_input_grad(fx, "bigru", "x", x);
    expect_input_grad(fx, "bigru", "h0", h0);
  });
}

TEST(RnnAutocast, ProjectedLstmFromStateMatchesPyTorch) {
  Fixture fx;
  on_each_path([&] {
    nn::LSTM lstm({.input_size = 6, .hidden_size = 12, .proj_size = 5});
    lstm.load_state_dict(params(fx, "lstm_proj"));
    const Tensor x = leaf(fx, "lstm_proj", "x"), h0 = leaf(fx, "lstm_proj", "h0"), c0 = leaf(fx, "lstm_proj", "c0");
    Tensor out, loss;
    {
      Autocast ac;
      nn::LSTMOutput o = lstm.forward(x, {h0, c0});
      out = o.output;
      loss = mse_loss(out.to(kFloat32), fx.get("lstm_proj/in/target")) + mean(square(o.state.c.to(kFloat32)));
    }
    expect_outputs(fx, "lstm_proj", out, loss);
    loss.backward();
    expect_param_grads(fx, "lstm_proj", lstm);
    for (const auto& [name, t] : {std::pair{"x", x}, {"h0", h0}, {"c0", c0}}) expect_input_grad(fx, "lstm_proj", name, t);
  }, /*onednn_takes=*/false);  // projection: the module's loop (rnn_onednn_autocast.cc says why)
}

TEST(RnnAutocast, BidirectionalReluRnnMatchesPyTorch) {
  Fixture fx;
  on_each_path([&] {
    nn::RNN rnn({.input_size = 6, .hidden_size = 10, .num_layers = 2, .nonlinearity = nn::RNNNonlinearity::ReLU,
                 .bidirectional = true});
    rnn.load_state_dict(params(fx, "rnn_relu"));
    const Tensor x = leaf(fx, "rnn_relu", "x");
    Tensor out, loss;
    {
      Autocast ac;
      out = rnn.forward(x, {}).output;
      loss = mse_loss(out.to(kFloat32), fx.get("rnn_relu/in/target"));
    }
    expect_outputs(fx, "rnn_relu", out, loss);
    loss.backward();
    expect_param_grads(fx, "rnn_relu", rnn);
    expect_input_grad(fx, "rnn_relu", "x", x);
  });
}

// A recurrent weight updated between the forward and the backward is an error on either path (the
// backward reads it again), not a wrong gradient.
TEST(RnnAutocast, InPlaceUpdateBeforeBackwardIsAnError) {
  on_each_path([] {
    nn::LSTM lstm({.input_size = 4, .hidden_size = 6});
    Tensor loss;
    {
      Autocast ac;
      loss = sum(lstm.forward(randn({3, 2, 4}), {}).output.to(kFloat32));
    }
    {
      NoGradGuard ng;
      for (auto& [name, p] : lstm.named_parameters())
        if (name == "weight_hh_l0") p.add_(ones({1}));
    }
    EXPECT_THROW(loss.backward(), std::runtime_error);
  });
}

// A state carried to the next batch (truncated BPTT, `attn train-lm`) mixes precisions under autocast, as
// in PyTorch: oneDNN's path returns h_n in bf16 while the embedding gives float32. The layer takes it and
// gives what it gives for the same state in float32; outside autocast a mismatch stays an error.
TEST(RnnAutocast, CarriedStateMixesPrecisionsUnderAutocastOnly) {
  on_each_path([] {
    manual_seed(3);
    nn::LSTM lstm({.input_size = 4, .hidden_size = 6, .num_layers = 2});
    const Tensor x1 = randn({5, 2, 4}), x2 = randn({5, 2, 4});
    NoGradGuard ng;
    Autocast ac;
    nn::LSTMState carried = lstm.forward(x1, {}).state;
    const Tensor got = lstm.forward(x2, carried).output.to(kFloat32);
    const Tensor want = lstm.forward(x2, {carried.h.to(kFloat32), carried.c.to(kFloat32)}).output.to(kFloat32);
    EXPECT_TRUE(allclose(got, want, 0.0, 0.0));
    {
      Autocast off(kBFloat16, false);
      EXPECT_THROW(lstm.forward(x2, {carried.h.to(kBFloat16), carried.c.to(kFloat32)}), std::invalid_argument);
    }
  });
}
