// tests/test_elementwise_bf16.cc — bf16 elementwise ops (src/backend/cpu/elementwise_bf16.cc: float32 math
// on blocks widened in cache) give exactly the bits of the composite they replace: widen the whole tensor
// to float32, run the op there, round back to bf16. Forward and backward, on every instruction set, at
// sizes around the block (2048) and past the parallel grain, on non-contiguous inputs too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "attn/ops.h"
#include "attn/random.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/scalar_math.h"

using namespace attn;
using attn::cpu::Isa;

namespace {

class Bf16Elementwise : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!cpu::set_isa_for_testing(GetParam())) GTEST_SKIP() << cpu::isa_name(GetParam()) << " not supported";
  }
  void TearDown() override { cpu::reset_isa(); }
};

struct Case {
  std::string name;
  std::function<Tensor(const Tensor&)> f;
  bool positive = false;  // log, sqrt
  // The activations whose backward is one fused kernel (unary_backward) on the saved input or output;
  // the others' backward is a composite of ops (exp: g * y, ...) that this file does not change.
  std::optional<backend::UnaryGradOp> grad_op = std::nullopt;
  bool grad_from_output = false;
  double alpha = 0.0;
};

using backend::UnaryGradOp;
std::vector<Case> cases() {
  return {{"gelu", [](const Tensor& x) { return gelu(x); }, false, UnaryGradOp::GeluErf},
          {"gelu_tanh", [](const Tensor& x) { return gelu(x, GeluApproximate::Tanh); }, false, UnaryGradOp::GeluTanh},
          {"relu", [](const Tensor& x) { return relu(x); }, false, UnaryGradOp::Relu, true},
          {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.2); }, false, UnaryGradOp::LeakyRelu, false, 0.2},
          {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, false, UnaryGradOp::Sigmoid, true},
          {"tanh", [](const Tensor& x) { return tanh(x); }, false, UnaryGradOp::Tanh, true},
          {"exp", [](const Tensor& x) { return exp(x); }},
          {"neg", [](const Tensor& x) { return neg(x); }},
          {"abs", [](const Tensor& x) { return abs(x); }},
          {"square", [](const Tensor& x) { return square(x); }},
          {"log", [](const Tensor& x) { return log(x); }, true},
          {"sqrt", [](const Tensor& x) { return sqrt(x); }, true}};
}

// The composite the bf16 backward replaces: the float32 kernel over the whole widened tensors, one rounding.
Tensor composite_backward(const Case& c, const Tensor& saved, const Tensor& g) {
  const std::vector<float> v = saved.to(kFloat32).to_vector<float>(), gy = g.to(kFloat32).to_vector<float>();
  std::vector<float> gx(v.size());
  const int64_t n = int64_t(v.size());
  if (!cpu::unary_backward(*c.grad_op, v.data(), gy.data(), gx.data(), n, float(c.alpha)))
    for (int64_t i = 0; i < n; ++i) gx[size_t(i)] = cpu::unary_grad_scalar<float>(*c.grad_op, v[size_t(i)], gy[size_t(i)], float(c.alpha));
  return from_vector(gx, saved.shape()).to(kBFloat16);
}

// Bit for bit (NaN payloads too): widening bf16 to float32 is exact.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const std::vector<float> u = a.contiguous().view({-1}).to(kFloat32).to_vector<float>();
  const std::vector<float> v = b.contiguous().view({-1}).to(kFloat32).to_vector<float>();
  return std::memcmp(u.data(), v.data(), u.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_P(Bf16Elementwise, ForwardAndBackwardKeepTheFloat32CompositesBits) {
  for (const int64_t n : {1, 17, 2048, 2049, 70001}) {
    manual_seed(uint64_t(n));
    for (const Case& c : cases()) {
      Tensor x = randn({n}) * 3.0;
      if (c.positive) x = abs(x) + 0.01;
      const Tensor xb = x.to(kBFloat16), g = randn({n}).to(kBFloat16);
      const std::string what = c.name + " n=" + std::to_string(n);
      Tensor leaf = xb.detach().requires_grad_(true);
      const Tensor yb = c.f(leaf);
      ASSERT_EQ(yb.dtype(), kBFloat16) << what;
      EXPECT_TRUE(same_bits(yb, c.f(xb.to(kFloat32)).to(kBFloat16))) << what << " forward";
      if (!c.grad_op) continue;
      yb.backward(g);
      ASSERT_TRUE(leaf.grad().defined()) << what;
      const Tensor want = composite_backward(c, c.grad_from_output ? yb.detach() : xb, g);
      EXPECT_TRUE(same_bits(leaf.grad(), want)) << what << " backward";
    }
  }
}

TEST_P(Bf16Elementwise, NonContiguousInputAndSpecialValues) {
  const Tensor m = (randn({64, 96}) * 4.0).to(kBFloat16).transpose(0, 1);  // (96, 64), not contiguous
  EXPECT_TRUE(same_bits(gelu(m), gelu(m.to(kFloat32)).to(kBFloat16)));
  const Tensor special = from_vector(std::vector<float>{0.0f, -0.0f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN}, {7});
  const Tensor sb = special.to(kBFloat16);
  for (const Case& c : cases()) EXPECT_TRUE(same_bits(c.f(sb), c.f(sb.to(kFloat32)).to(kBFloat16))) << c.name;
}

// Every bf16 input (NaN payloads, infinities, subnormals, both zeros): 65536 values, enough for the
// transcendental ops' table path, against the float32 kernel on the widened values, rounded once.
TEST_P(Bf16Elementwise, EveryBf16InputKeepsTheFloat32CompositesBits) {
  std::vector<float> all(65536);
  for (size_t i = 0; i < all.size(); ++i) {
    const uint32_t u = uint32_t(i) << 16;
    std::memcpy(&all[i], &u, sizeof u);
  }
  const Tensor x = from_vector(all, {65536}).to(kBFloat16);
  for (const Case& c : cases()) EXPECT_TRUE(same_bits(c.f(x), c.f(x.to(kFloat32)).to(kBFloat16))) << c.name;
}

// bf16 dropout and relu_dropout (fused, keep bits saved) against what the ops composed before: float32
// draws u from the same generator state, mask = lt(u, 1 - p).to(bf16) * (1 / (1 - p)), out = x * mask,
// grad = g * mask (and ReLU first / ReLU's backward after), bit for bit.
TEST_P(Bf16Elementwise, DropoutKeepsTheCompositesBits) {
  for (const int64_t n : {5, 2048, 2049, 70001}) {
    manual_seed(uint64_t(n) + 1);
    const Tensor xb = (randn({n}) * 3.0).to(kBFloat16), g = randn({n}).to(kBFloat16);
    for (bool relu : {false, true}) {
      const std::string what = std::string(relu ? "relu_dropout" : "dropout") + " n=" + std::to_string(n);
      const double p = relu ? 0.25 : 0.1;
      Tensor leaf = xb.detach().requires_grad_(true);
      manual_seed(77);
      const Tensor y = relu ? relu_dropout(leaf, p, true) : dropout(leaf, p, true);
      y.backward(g);
      manual_seed(77);
      Tensor u = empty({n});
      u.uniform_(0.0, 1.0);
      const Tensor mask = mul(lt(u, 1.0 - p).to(kBFloat16), 1.0 / (1.0 - p));
      const Tensor r = relu ? attn::relu(xb) : xb;
      EXPECT_TRUE(same_bits(y, mul(r, mask))) << what << " forward";
      Tensor want = mul(g, mask);
      if (relu) want = where(gt(r, 0.0), want, zeros_like(want));
      EXPECT_TRUE(same_bits(leaf.grad(), want)) << what << " backward";
    }
  }
}

// Binary ops with bf16 in the mix and nothing broadcast (Backend::binary_mixed: bf16 operands widened in
// cache) against the float32 op on the widened operands, rounded to the result dtype: bit for bit, for
// every mix, around the block size and past the parallel grain, with NaN, infinities and signed zeros.
TEST_P(Bf16Elementwise, MixedBinaryOpsKeepTheFloat32Bits) {
  using Op = std::function<Tensor(const Tensor&, const Tensor&)>;
  const std::vector<std::pair<std::string, Op>> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }}};
  for (const int64_t n : {1, 17, 2049, 70001}) {
    manual_seed(uint64_t(n) + 3);
    Tensor a = randn({n}) * 5.0, b = randn({n});
    if (n >= 17) {
      const std::vector<float> special = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, 3e38f};
      a.narrow(0, 0, 7).copy_(from_vector(special, {7}));
      b.narrow(0, 3, 7).copy_(from_vector(special, {7}));
    }
    for (const auto& [da, db] : {std::pair{kFloat32, kBFloat16}, {kBFloat16, kFloat32}, {kBFloat16, kBFloat16}}) {
      const Tensor x = a.to(da), y = b.to(db);
      const DType t = da == kBFloat16 && db == kBFloat16 ? kBFloat16 : kFloat32;
      for (const auto& [name, f] : ops) {
        const Tensor got = f(x, y), want = f(x.to(kFloat32), y.to(kFloat32)).to(t);
        ASSERT_EQ(got.dtype(), t) << name;
        EXPECT_TRUE(same_bits(got, want)) << name << " " << dtype_name(da) << " " << dtype_name(db) << " n=" << n;
      }
    }
  }
}

// The conversions themselves against the scalar loops: every bf16 pattern widened, and every bf16 pattern
// with low halves that round down, to the tie (even and odd), up and carry (NaN payloads, infinities,
// subnormals among them) narrowed; from every start offset 0..16 so each length has its tail.
TEST_P(Bf16Elementwise, WidenAndNarrowMatchTheScalarLoopsBitForBit) {
  std::vector<uint16_t> h(65536 + 16), got_h(h.size()), want_h(h.size());
  for (size_t i = 0; i < h.size(); ++i) h[i] = uint16_t(i * 40503u);
  std::vector<float> f(h.size()), got_f(h.size()), want_f(h.size());
  for (int64_t off = 0; off <= 16; ++off) {
    const int64_t n = int64_t(h.size()) - off;
    cpu::widen_bf16(h.data() + off, got_f.data(), n);
    cpu::ref::widen_bf16(h.data() + off, want_f.data(), n);
    ASSERT_EQ(std::memcmp(got_f.data(), want_f.data(), size_t(n) * sizeof(float)), 0) << "widen, offset " << off;
  }
  for (uint32_t low : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu, 0x4321u}) {
    for (size_t i = 0; i < f.size(); ++i) {
      const uint32_t u = (uint32_t(i * 40503u) & 0xffffu) << 16 | low;
      std::memcpy(&f[i], &u, sizeof u);
    }
    for (int64_t off = 0; off <= 16; ++off) {
      const int64_t n = int64_t(f.size()) - off;
      cpu::narrow_bf16(f.data() + off, got_h.data(), n);
      cpu::ref::narrow_bf16(f.data() + off, want_h.data(), n);
      ASSERT_EQ(std::memcmp(got_h.data(), want_h.data(), size_t(n) * sizeof(uint16_t)), 0)
          << "narrow, low half " << low << ", offset " << off;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, Bf16Elementwise, ::testing::Values(Isa::Avx512, Isa::Avx2, Isa::Reference),
                         [](const ::testing::TestParamInfo<Isa>& info) { return std::string(cpu::isa_name(info.param)); });
