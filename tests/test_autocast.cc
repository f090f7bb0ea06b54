// tests/test_autocast.cc — attn::Autocast against torch.autocast("cpu", dtype=torch.bfloat16)
// (fixtures: tests/make_autocast_fixtures.py): per-op output dtypes, and an MLP and an nn.Transformer
// training step (outputs, losses, float32 parameter gradients). Then the parameter-copy cache, scopes
// and threads.
//
// Tolerance of a compared tensor (attn under autocast vs PyTorch under autocast): tests/autocast_compare.h,
// with 2^-7 (outputs, loss) / 2^-6 (gradients) of the tensor's largest magnitude as the floor.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "attn/autocast.h"
#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/nn/activation.h"
#include "attn/nn/linear.h"
#include "attn/nn/module.h"
#include "attn/nn/transformer.h"
#include "attn/ops.h"
#include "autocast_compare.h"
#include "ops/autocast.h"

using namespace attn;
using nlohmann::json;

namespace {

using attn_test::expect_bf16_close;

struct Fixture : attn_test::AutocastFixture {
  Fixture() : AutocastFixture("autocast.safetensors") {}
};

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

void expect_grads(const Fixture& fx, const std::string& name, nn::Module& m) {
  const auto want = fx.with_prefix(name + "/grad_param/"), fp32 = fx.with_prefix(name + "/fp32/grad_param/");
  ASSERT_FALSE(want.empty());
  for (auto& [k, p] : m.named_parameters()) {
    ASSERT_TRUE(want.count(k)) << name << ": no fixture gradient for " << k;
    ASSERT_TRUE(p.grad().defined()) << name << ": no gradient for " << k;
    EXPECT_EQ(p.grad().dtype(), kFloat32) << k;  // float32 master weights get float32 gradients
    expect_bf16_close(p.grad(), want.at(k), fp32.at(k), 1.0 / 64, name + " grad of " + k);
  }
}

std::map<std::string, Tensor> state_of(const Fixture& fx, const std::string& name) {
  return fx.with_prefix(name + "/param/");
}

}  // namespace

TEST(Autocast, MlpStepMatchesPyTorch) {
  Fixture fx;
  nn::Sequential mlp(nn::Linear(12, 32), nn::ReLU(), nn::Linear(32, 6));
  mlp.load_state_dict(state_of(fx, "mlp"));
  const Tensor x = fx.get("mlp/in/x"), y = fx.get("mlp/in/y");
  Tensor out, loss;
  {
    Autocast ac;
    out = mlp.forward(x);
    loss = cross_entropy(out, y);
  }
  EXPECT_EQ(out.dtype(), kBFloat16);
  EXPECT_EQ(loss.dtype(), kFloat32);
  expect_bf16_close(out, fx.get("mlp/out"), fx.get("mlp/fp32/out"), 1.0 / 128, "mlp out");
  expect_bf16_close(loss.reshape({1}), fx.get("mlp/loss"), fx.get("mlp/fp32/loss"), 1.0 / 128, "mlp loss");
  loss.backward();
  expect_grads(fx, "mlp", mlp);
}

TEST(Autocast, TransformerStepMatchesPyTorch) {
  Fixture fx;
  nn::Transformer model({.d_model = 16, .nhead = 4, .num_encoder_layers = 2, .num_decoder_layers = 2,
                         .dim_feedforward = 32, .dropout = 0.0});
  model.load_state_dict(state_of(fx, "transformer"));
  model.train();
  auto in = fx.with_prefix("transformer/in/");
  Tensor out, loss;
  {
    Autocast ac;
    out = model.forward(in["src"], in["tgt"], {.tgt_mask = in["tgt_mask"], .src_key_padding_mask = in["skpm"],
                                               .tgt_key_padding_mask = in["tkpm"], .memory_key_padding_mask = in["skpm"]});
    loss = mse_loss(out, in["target"]);
  }
  const Tensor want_out = fx.get("transformer/out");
  EXPECT_EQ(out.dtype(), want_out.dtype());  // the final LayerNorm sees the float32 residual stream
  expect_bf16_close(out.to(kFloat32), want_out.to(kFloat32), fx.get("transformer/fp32/out"), 1.0 / 128, "transformer out");
  expect_bf16_close(loss.reshape({1}), fx.get("transformer/loss"), fx.get("transformer/fp32/loss"), 1.0 / 128,
                    "transformer loss");
  loss.backward();
  expect_grads(fx, "transformer", model);
}

// Each op attn puts in its policy table, and the ops left out of it, give PyTorch's output dtype.
TEST(Autocast, OutputDtypesMatchPyTorch) {
  Fixture fx;
  const json want = json::parse(fx.file.metadata().at("dtypes"));
  Tensor x32 = randn({4, 8}), w32 = randn({6, 8}), xb = x32.to(kBFloat16);
  Tensor labels = from_vector<int64_t>({1, 7, 0, 3}, {4});
  Tensor x3 = x32.view({1, 1, 4, 8});  // (N, H, L, D)
  std::map<std::string, std::function<Tensor()>> probes = {
      {"linear", [&] { return linear(x32, w32); }},
      {"matmul", [&] { return matmul(x32, w32.t()); }},
      {"mm", [&] { return mm(x32, w32.t()); }},
      {"bmm", [&] { return bmm(x32.unsqueeze(0), w32.t().unsqueeze(0)); }},
      {"conv1d", [&] { return conv1d(randn({1, 2, 9}), randn({3, 2, 3})); }},
      {"conv2d", [&] { return conv2d(randn({1, 2, 5, 5}), randn({3, 2, 3, 3})); }},
      {"scaled_dot_product_attention", [&] { return scaled_dot_product_attention(x3, x3, x3); }},
      {"cross_entropy (bf16 in)", [&] { return cross_entropy(xb, labels); }},
      {"nll_loss (bf16 in)", [&] { return nll_loss(xb, labels); }},
      {"mse_loss (bf16 in)", [&] { return mse_loss(xb, xb); }},
      {"binary_cross_entropy_with_logits (bf16 in)", [&] { return binary_cross_entropy_with_logits(xb, sigmoid(xb)); }},
      {"softmax", [&] { return softmax(x32, -1); }},
      {"softmax (bf16 in)", [&] { return softmax(xb, -1); }},
      {"log_softmax (bf16 in)", [&] { return log_softmax(xb, -1); }},
      {"layer_norm (bf16 in)", [&] { return layer_norm(xb, {8}, ones({8}), zeros({8})); }},
      {"gelu (bf16 in)", [&] { return gelu(xb); }},
      {"relu (bf16 in)", [&] { return relu(xb); }},
      {"sum (bf16 in)", [&] { return sum(xb); }},
      {"mean (bf16 in)", [&] { return mean(xb); }},
      {"add (bf16 in, float32 in)", [&] { return add(xb, x32); }},
      {"embedding", [&] { return embedding(w32, from_vector<int64_t>({1, 5}, {2})); }},
  };
  Autocast ac;
  for (const auto& [key, dt] : want.items()) {
    ASSERT_TRUE(probes.count(key)) << "no attn probe for PyTorch's " << key;
    EXPECT_EQ(dtype_name(probes.at(key)().dtype()), dt.get<std::string>()) << key;
  }
}

// cross_entropy reads bf16 logits itself (Float32Reads): the float32 loss and the bf16 gradient are the
// bits of Float32's path (a float32 copy of the logits, its float32 gradient rounded back), with weights,
// ignore_index, label smoothing, spatial dims, and row blocks split over the threads; outside autocast
// a bf16 loss, as PyTorch's.
TEST(Autocast, CrossEntropyReadsBf16LogitsWithFloat32sBits) {
  auto bits = [](const Tensor& t) {
    std::vector<uint32_t> b;
    for (float f : t.to(kFloat32).to_vector<float>()) b.push_back(std::bit_cast<uint32_t>(f));
    return b;
  };
  struct Case { Shape x; Shape t; CrossEntropyOptions o; };
  const Tensor w = rand({300}) + 0.5;
  const std::vector<Case> cases = {
      {{67, 300}, {67}, {}},  // 67 x 300: blocks over both threads
      {{67, 300}, {67}, {.ignore_index = 2, .label_smoothing = 0.1, .weight = w}},
      {{5, 300}, {5}, {.reduction = Reduction::Sum}},
      {{3, 300, 4}, {3, 4}, {.reduction = Reduction::None}},  // spatial
  };
  for (const Case& cs : cases) {
    for (bool ac : {true, false}) {
      SCOPED_TRACE(shape_str(cs.x) + (ac ? " under autocast" : " without"));
      const Tensor logits = (randn(cs.x) * 3.0).to(kBFloat16);
      const Tensor target = randint(0, 300, cs.t);
      Tensor a = logits.detach().requires_grad_(true), b = logits.detach().requires_grad_(true);
      Tensor la, lb;
      {
        std::optional<Autocast> scope;
        if (ac) scope.emplace();
        la = cross_entropy(a, target, cs.o);
      }
      lb = cross_entropy(b.to(kFloat32), target, cs.o);  // Float32's path
      if (!ac) lb = lb.to(kBFloat16);
      EXPECT_EQ(la.dtype(), ac ? kFloat32 : kBFloat16);
      EXPECT_EQ(bits(la), bits(lb));
      const Tensor g = randn(la.shape()).to(la.dtype());
      la.backward(g);
      lb.backward(g);
      EXPECT_EQ(a.grad().dtype(), kBFloat16);
      EXPECT_EQ(bits(a.grad()), bits(b.grad()));
    }
  }
}

// The bf16 copy of a parameter is made once per version of it (once per optimizer step), and the
// gradient still reaches the float32 parameter through each use.
TEST(Autocast, ParameterCopyIsMadeOncePerVersion) {
  nn::Linear lin(8, 4);
  Tensor x = randn({3, 8});
  Autocast ac;
  const int64_t before = ops::autocast::parameter_casts();
  Tensor y1 = lin.forward(x), y2 = lin.forward(x);
  EXPECT_EQ(ops::autocast::parameter_casts() - before, 2);  // weight and bias, once each
  EXPECT_EQ(max_abs(sub(y1, y2).to_vector<double>()), 0.0);
  add(y1, y2).to(kFloat32).sum().backward();
  Tensor g = lin.weight.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_EQ(g.dtype(), kFloat32);
  {
    NoGradGuard ng;
    lin.weight.mul_(2.0);  // an optimizer step: the version changes
  }
  Tensor y3 = lin.forward(x);
  EXPECT_EQ(ops::autocast::parameter_casts() - before, 3);  // the weight again, not the bias
  Tensor want = linear(x.to(kBFloat16), lin.weight.detach().to(kBFloat16), lin.bias.detach().to(kBFloat16));
  EXPECT_EQ(max_abs(sub(y3, want).to_vector<double>()), 0.0);
}

TEST(Autocast, ScopesNestAndStayOnTheirThread) {
  Tensor a = randn({4, 4});
  EXPECT_EQ(matmul(a, a).dtype(), kFloat32);
  {
    Autocast ac;
    EXPECT_TRUE(autocast_enabled());
    EXPECT_EQ(matmul(a, a).dtype(), kBFloat16);
    {
      Autocast off(kBFloat16, false);
      EXPECT_EQ(matmul(a, a).dtype(), kFloat32);
    }
    EXPECT_EQ(matmul(a, a).dtype(), kBFloat16);
    DType other = kBFloat16;
    std::thread([&] { other = matmul(a, a).dtype(); }).join();
    EXPECT_EQ(other, kFloat32);
    Tensor d = randn({3, 3}, {.dtype = kFloat64});
    EXPECT_EQ(matmul(d, d).dtype(), kFloat64);  // float64 is never cast (as in PyTorch)
    EXPECT_THROW({ Autocast bad(kFloat64); }, std::invalid_argument);
  }
  EXPECT_FALSE(autocast_enabled());
  EXPECT_EQ(matmul(a, a).dtype(), kFloat32);
}

TEST(Autocast, EveryTableOpIsKnown) {
  EXPECT_EQ(ops::autocast::policy_of("linear"), ops::autocast::CastPolicy::LowerPrecision);
  EXPECT_EQ(ops::autocast::policy_of("cross_entropy"), ops::autocast::CastPolicy::Float32Reads);
  EXPECT_EQ(ops::autocast::policy_of("nll_loss"), ops::autocast::CastPolicy::Float32);
  EXPECT_THROW(ops::autocast::policy_of("softmax"), std::logic_error);  // not cast: runs in its input's dtype
}
