// tests/test_kernels.cc — the fast CPU kernels (src/backend/cpu/kernels.h) against their naive oracles
// (attn::cpu::ref, reference.cc), for each instruction set this CPU runs (AVX-512, AVX2) and over odd
// sizes that exercise vector tails, plus special values, thread-count invariance of the random fills,
// and torch.optim.Adam values computed with PyTorch.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"

namespace {

using namespace attn::cpu;
using attn::backend::AdamArgs;
using attn::backend::BinaryOp;
using attn::backend::ReduceOp;
using attn::backend::UnaryGradOp;
using attn::backend::UnaryOp;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

const std::vector<int64_t> kDims = {1, 7, 15, 16, 17, 31, 33, 511, 513, 4099};

template <typename T> std::vector<T> random_vec(size_t n, double lo, double hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = T(dist(gen));
  return v;
}

// |a - b| <= atol + rtol |b|, NaN matches NaN, inf matches the same inf.
template <typename T>
::testing::AssertionResult close(const std::vector<T>& got, const std::vector<T>& want, double rtol, double atol,
                                 const std::string& what) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << what << ": size mismatch";
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    if (std::isnan(w) || std::isnan(g)) {
      if (std::isnan(w) != std::isnan(g))
        return ::testing::AssertionFailure() << what << " [" << i << "]: got " << g << ", want " << w;
      continue;
    }
    if (std::isinf(w) || std::isinf(g)) {
      if (g != w) return ::testing::AssertionFailure() << what << " [" << i << "]: got " << g << ", want " << w;
      continue;
    }
    if (std::fabs(g - w) > atol + rtol * std::fabs(w))
      return ::testing::AssertionFailure() << what << " [" << i << "]: got " << g << ", want " << w << " (diff "
                                           << std::fabs(g - w) << ")";
  }
  return ::testing::AssertionSuccess();
}

// Runs each test once per instruction set the CPU supports (Reference: the oracle behind the table).
class KernelIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!set_isa_for_testing(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " not supported by this CPU";
  }
  void TearDown() override { reset_isa(); }
};

std::string isa_param_name(const ::testing::TestParamInfo<Isa>& info) { return isa_name(info.param); }

// ---------------------------------------------------------------- softmax

TEST_P(KernelIsa, SoftmaxMatchesReference) {
  for (bool log : {false, true})
    for (int64_t rows : {1, 3, 70})
      for (int64_t d : kDims) {
        const std::string what = std::string(log ? "log_softmax" : "softmax") + " rows=" + std::to_string(rows) +
                                 " d=" + std::to_string(d);
        const size_t n = size_t(rows * d);
        auto x = random_vec<float>(n, -12.0, 12.0, uint32_t(d * 31 + rows));
        std::vector<float> y(n), yr(n);
        softmax(x.data(), y.data(), rows, d, log);
        ref::softmax(x.data(), yr.data(), rows, d, log);
        ASSERT_TRUE(close(y, yr, 2e-6, log ? 2e-6 : 1e-9, what));
        auto gy = random_vec<float>(n, -1.0, 1.0, uint32_t(d * 7 + rows));
        std::vector<float> gx(n), gxr(n);
        softmax_backward(yr.data(), gy.data(), gx.data(), rows, d, log);
        ref::softmax_backward(yr.data(), gy.data(), gxr.data(), rows, d, log);
        ASSERT_TRUE(close(gx, gxr, 1e-5, 1e-6, what + " backward"));
      }
}

TEST_P(KernelIsa, SoftmaxStableForLargeInputsAndMasks) {
  // 1000 + small: exp would overflow without max subtraction; -inf entries (masks) give exactly 0.
  std::vector<float> x = {1000.f, 1001.f, -kInf, 999.f, 1000.5f, -kInf, 1002.f, 998.f, 1000.f, 1000.f,
                          1000.f, -kInf,  1000.f, 1000.f, 1000.f, 1000.f, 1001.f};
  const int64_t d = int64_t(x.size());
  std::vector<float> y(x.size()), yr(x.size());
  softmax(x.data(), y.data(), 1, d, false);
  ref::softmax(x.data(), yr.data(), 1, d, false);
  EXPECT_TRUE(close(y, yr, 2e-6, 1e-9, "softmax large"));
  EXPECT_EQ(y[2], 0.f);
  softmax(x.data(), y.data(), 1, d, true);
  EXPECT_EQ(y[2], -kInf);
  EXPECT_TRUE(std::isfinite(y[0]));
}

TEST(KernelSoftmax, Float64MatchesReference) {
  for (bool log : {false, true})
    for (int64_t d : kDims) {
      const int64_t rows = 9;
      auto x = random_vec<double>(size_t(rows * d), -30.0, 30.0, uint32_t(d));
      std::vector<double> y(x.size()), yr(x.size()), gx(x.size()), gxr(x.size());
      softmax(x.data(), y.data(), rows, d, log);
      ref::softmax(x.data(), yr.data(), rows, d, log);
      ASSERT_TRUE(close(y, yr, 1e-12, 1e-14, "softmax f64"));
      auto gy = random_vec<double>(x.size(), -1.0, 1.0, uint32_t(d + 5));
      softmax_backward(yr.data(), gy.data(), gx.data(), rows, d, log);
      ref::softmax_backward(yr.data(), gy.data(), gxr.data(), rows, d, log);
      ASSERT_TRUE(close(gx, gxr, 1e-11, 1e-13, "softmax f64 backward"));
    }
}

// ---------------------------------------------------------------- layer norm

TEST_P(KernelIsa, LayerNormMatchesReference) {
  for (int affine = 0; affine < 4; ++affine)  // bit 0: weight, bit 1: bias
    for (int64_t rows : {1, 5, 130})
      for (int64_t d : kDims) {
        const std::string what = "layer_norm affine=" + std::to_string(affine) + " rows=" + std::to_string(rows) +
                                 " d=" + std::to_string(d);
        const size_t n = size_t(rows * d);
        auto x = random_vec<float>(n, -3.0, 5.0, uint32_t(d * 13 + rows));  // mean far from 0
        auto w = random_vec<float>(size_t(d), 0.5, 1.5, 1);
        auto b = random_vec<float>(size_t(d), -1.0, 1.0, 2);
        const float* wp = (affine & 1) ? w.data() : nullptr;
        const float* bp = (affine & 2) ? b.data() : nullptr;
        std::vector<float> y(n), yr(n), m(static_cast<size_t>(rows)), mr(static_cast<size_t>(rows)), rs(static_cast<size_t>(rows)), rsr(static_cast<size_t>(rows));
        layer_norm<float, float>(x.data(), wp, bp, 1e-5, y.data(), m.data(), rs.data(), rows, d);
        ref::layer_norm<float, float>(x.data(), wp, bp, 1e-5, yr.data(), mr.data(), rsr.data(), rows, d);
        ASSERT_TRUE(close(y, yr, 1e-5, 1e-5, what));
        ASSERT_TRUE(close(m, mr, 1e-6, 1e-6, what + " mean"));
        ASSERT_TRUE(close(rs, rsr, 1e-5, 0.0, what + " rstd"));

        auto gy = random_vec<float>(n, -1.0, 1.0, uint32_t(d + rows));
        std::vector<float> gx(n), gxr(n), gw(static_cast<size_t>(d)), gwr(static_cast<size_t>(d)), gb(static_cast<size_t>(d)), gbr(static_cast<size_t>(d));
        layer_norm_backward<float, float>(gy.data(), x.data(), wp, mr.data(), rsr.data(), gx.data(), gw.data(),
                                          gb.data(), rows, d);
        ref::layer_norm_backward<float, float>(gy.data(), x.data(), wp, mr.data(), rsr.data(), gxr.data(),
                                               gwr.data(), gbr.data(), rows, d);
        // gx = rstd (g - mean(g) - ...): rounding in g is amplified by rstd (316 for d = 1)
        const float rs_max = *std::max_element(rsr.begin(), rsr.end());
        ASSERT_TRUE(close(gx, gxr, 1e-4, 1e-5 + 1e-7 * double(rs_max), what + " grad_x"));
        const double scale = std::sqrt(double(rows));
        ASSERT_TRUE(close(gw, gwr, 1e-5, 1e-5 * scale, what + " grad_weight"));
        ASSERT_TRUE(close(gb, gbr, 1e-5, 1e-5 * scale, what + " grad_bias"));
        // optional outputs may be absent
        std::vector<float> gx2(n);
        layer_norm_backward<float, float>(gy.data(), x.data(), wp, mr.data(), rsr.data(), gx2.data(), nullptr,
                                          nullptr, rows, d);
        ASSERT_EQ(gx2, gx);
      }
}

TEST(KernelLayerNorm, StableWithLargeMean) {
  // variance 1 around a mean of 1e4: a one-pass E[x^2] - E[x]^2 in float would lose it all
  const int64_t rows = 4, d = 1000;
  std::vector<float> x(size_t(rows * d));
  for (size_t i = 0; i < x.size(); ++i) x[i] = 1e4f + ((i % 2) ? 1.f : -1.f);
  std::vector<float> y(x.size()), m(static_cast<size_t>(rows)), rs(static_cast<size_t>(rows));
  layer_norm<float, float>(x.data(), nullptr, nullptr, 1e-5, y.data(), m.data(), rs.data(), rows, d);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], (i % 2) ? 1.f : -1.f, 1e-4f) << i;
  EXPECT_NEAR(rs[0], 1.0f / std::sqrt(1.0f + 1e-5f), 1e-5f);
}

TEST(KernelLayerNorm, Float64AndMixedStats) {
  for (int64_t d : kDims) {
    const int64_t rows = 6;
    const size_t n = size_t(rows * d);
    auto x = random_vec<double>(n, -2.0, 3.0, uint32_t(d));
    auto w = random_vec<double>(size_t(d), 0.5, 1.5, 3);
    auto b = random_vec<double>(size_t(d), -1.0, 1.0, 4);
    std::vector<double> y(n), yr(n), m(static_cast<size_t>(rows)), mr(static_cast<size_t>(rows)), rs(static_cast<size_t>(rows)), rsr(static_cast<size_t>(rows));
    layer_norm<double, double>(x.data(), w.data(), b.data(), 1e-5, y.data(), m.data(), rs.data(), rows, d);
    ref::layer_norm<double, double>(x.data(), w.data(), b.data(), 1e-5, yr.data(), mr.data(), rsr.data(), rows, d);
    ASSERT_TRUE(close(y, yr, 1e-12, 1e-12, "layer_norm f64"));
    auto gy = random_vec<double>(n, -1.0, 1.0, uint32_t(d + 1));
    std::vector<double> gx(n), gxr(n), gw(static_cast<size_t>(d)), gwr(static_cast<size_t>(d)), gb(static_cast<size_t>(d)), gbr(static_cast<size_t>(d));
    layer_norm_backward<double, double>(gy.data(), x.data(), w.data(), m.data(), rs.data(), gx.data(), gw.data(),
                                        gb.data(), rows, d);
    ref::layer_norm_backward<double, double>(gy.data(), x.data(), w.data(), mr.data(), rsr.data(), gxr.data(),
                                             gwr.data(), gbr.data(), rows, d);
    ASSERT_TRUE(close(gx, gxr, 1e-10, 1e-12, "layer_norm f64 grad_x"));
    ASSERT_TRUE(close(gw, gwr, 1e-10, 1e-12, "layer_norm f64 grad_weight"));
    ASSERT_TRUE(close(gb, gbr, 1e-10, 1e-12, "layer_norm f64 grad_bias"));
    // float32 data with float64 statistics
    std::vector<float> xf(x.begin(), x.end()), yf(n), yfr(n);
    std::vector<double> md(static_cast<size_t>(rows)), rsd(static_cast<size_t>(rows));
    std::vector<float> mf(static_cast<size_t>(rows)), rsf(static_cast<size_t>(rows));
    layer_norm<float, double>(xf.data(), nullptr, nullptr, 1e-5, yf.data(), md.data(), rsd.data(), rows, d);
    ref::layer_norm<float, float>(xf.data(), nullptr, nullptr, 1e-5, yfr.data(), mf.data(), rsf.data(), rows, d);
    ASSERT_TRUE(close(yf, yfr, 1e-5, 1e-5, "layer_norm f32/f64 stats"));
    for (int64_t r = 0; r < rows; ++r) ASSERT_NEAR(md[size_t(r)], double(mf[size_t(r)]), 1e-6);
  }
}

// ---------------------------------------------------------------- elementwise

std::vector<float> unary_inputs() {
  std::vector<float> x = random_vec<float>(4000, -20.0, 20.0, 7);
  for (float v = -110.f; v <= 110.f; v += 0.173f) x.push_back(v);
  for (float v : {0.f, -0.f, 1e-45f, 1e-40f, 1e-20f, -1e-20f, 0.5f, 0.625f, -0.625f, 1.f, 2.f, 3.9999f, 4.f, 88.7f,
                  88.8f, 100.f, -87.f, -103.9f, -104.f, 3e38f, -3e38f, kInf, -kInf, kNaN})
    x.push_back(v);
  x.push_back(1.5f);  // odd length: a masked tail
  return x;
}

struct UnaryCase {
  UnaryOp op;
  const char* name;
  double rtol, atol;
  bool positive_only;
};

TEST_P(KernelIsa, UnaryMatchesReference) {
  const UnaryCase cases[] = {
      {UnaryOp::Exp, "exp", 2.5e-7, 1e-38, false},        {UnaryOp::Log, "log", 2.5e-7, 1e-7, true},
      {UnaryOp::Sigmoid, "sigmoid", 3e-7, 1e-30, false},  {UnaryOp::Tanh, "tanh", 3e-7, 1e-30, false},
      {UnaryOp::Relu, "relu", 0, 0, false},               {UnaryOp::LeakyRelu, "leaky_relu", 1e-7, 0, false},
      {UnaryOp::GeluErf, "gelu", 4e-7, 4e-7, false},      {UnaryOp::GeluTanh, "gelu_tanh", 4e-7, 5e-7, false},
      {UnaryOp::Neg, "neg", 0, 0, false},                 {UnaryOp::Sqrt, "sqrt", 1e-7, 0, true},
      {UnaryOp::Rsqrt, "rsqrt", 2e-7, 0, true},           {UnaryOp::Abs, "abs", 0, 0, false},
      {UnaryOp::Square, "square", 1e-7, 0, false},        {UnaryOp::ClampMin, "clamp_min", 0, 0, false},
      {UnaryOp::ClampMax, "clamp_max", 0, 0, false},      {UnaryOp::MulScalar, "mul_scalar", 1e-7, 0, false},
      {UnaryOp::AddScalar, "add_scalar", 1e-7, 1e-7, false},
  };
  const std::vector<float> all = unary_inputs();
  for (const auto& c : cases) {
    std::vector<float> x;
    for (float v : all)
      if (!c.positive_only || !(v < 0)) x.push_back(v);
    if (c.op == UnaryOp::Log)
      for (float v : {-1.f, -kInf, 0.7071f, 0.70711f, 1.0001f, 0.9999f}) x.push_back(v);
    const float alpha = c.op == UnaryOp::LeakyRelu ? 0.01f : 0.75f;
    for (size_t len : {x.size(), size_t(1), size_t(5), size_t(33)}) {
      std::vector<float> xs(x.begin(), x.begin() + std::ptrdiff_t(len)), y(len), yr(len);
      ASSERT_TRUE(unary(c.op, xs.data(), y.data(), int64_t(len), alpha)) << c.name;
      ref::unary(c.op, xs.data(), yr.data(), int64_t(len), double(alpha));
      ASSERT_TRUE(close(y, yr, c.rtol, c.atol, c.name));
    }
  }
  // large inputs take the parallel path
  auto big = random_vec<float>(300001, -8.0, 8.0, 9);
  std::vector<float> y(big.size()), yr(big.size());
  ASSERT_TRUE(unary(UnaryOp::GeluErf, big.data(), y.data(), int64_t(big.size()), 0.f));
  ref::unary(UnaryOp::GeluErf, big.data(), yr.data(), int64_t(big.size()), 0.0);
  ASSERT_TRUE(close(y, yr, 4e-7, 4e-7, "gelu (parallel)"));
}

TEST_P(KernelIsa, UnarySpecialValues) {
  std::vector<float> x = {0.f, kInf, -kInf, kNaN, 88.8f, -200.f, 1e-45f};
  std::vector<float> y(x.size());
  unary(UnaryOp::Exp, x.data(), y.data(), int64_t(x.size()), 0.f);
  EXPECT_EQ(y[0], 1.f);
  EXPECT_EQ(y[1], kInf);
  EXPECT_EQ(y[2], 0.f);
  EXPECT_TRUE(std::isnan(y[3]));
  EXPECT_EQ(y[4], kInf);
  EXPECT_EQ(y[5], 0.f);
  unary(UnaryOp::Log, x.data(), y.data(), int64_t(x.size()), 0.f);
  EXPECT_EQ(y[0], -kInf);
  EXPECT_EQ(y[1], kInf);
  EXPECT_TRUE(std::isnan(y[2]));
  EXPECT_TRUE(std::isnan(y[3]));
  EXPECT_NEAR(y[6], std::log(double(1e-45f)), 1e-4);  // subnormal input
  unary(UnaryOp::Relu, x.data(), y.data(), int64_t(x.size()), 0.f);
  EXPECT_TRUE(std::isnan(y[3]));  // relu(NaN) = NaN, as in PyTorch
  unary(UnaryOp::Tanh, x.data(), y.data(), int64_t(x.size()), 0.f);
  EXPECT_EQ(y[1], 1.f);
  EXPECT_EQ(y[2], -1.f);
  EXPECT_EQ(y[6], 1e-45f);
  EXPECT_FALSE(unary(UnaryOp::Sin, x.data(), y.data(), int64_t(x.size()), 0.f) && GetParam() != Isa::Reference);
}

TEST_P(KernelIsa, UnaryBackwardMatchesReference) {
  struct Case {
    UnaryGradOp op;
    const char* name;
    bool uses_y;
    double rtol, atol;
  };
  const Case cases[] = {{UnaryGradOp::Sigmoid, "sigmoid'", true, 1e-6, 1e-12},
                        {UnaryGradOp::Tanh, "tanh'", true, 1e-6, 1e-7},
                        {UnaryGradOp::Relu, "relu'", true, 0, 0},
                        {UnaryGradOp::LeakyRelu, "leaky_relu'", false, 1e-7, 0},
                        {UnaryGradOp::GeluErf, "gelu'", false, 5e-7, 2e-7},
                        {UnaryGradOp::GeluTanh, "gelu_tanh'", false, 5e-7, 2e-7}};
  // +-inf excluded: PyTorch's gelu grads give NaN there (inf * 0), ours the limits; both are defensible
  std::vector<float> x;
  for (float v : unary_inputs())
    if (!std::isinf(v)) x.push_back(v);
  std::vector<float> gy = random_vec<float>(x.size(), -2.0, 2.0, 11);
  for (const auto& c : cases) {
    std::vector<float> v = x;
    if (c.op == UnaryGradOp::Sigmoid) ref::unary(UnaryOp::Sigmoid, x.data(), v.data(), int64_t(x.size()), 0.0);
    if (c.op == UnaryGradOp::Tanh) ref::unary(UnaryOp::Tanh, x.data(), v.data(), int64_t(x.size()), 0.0);
    if (c.op == UnaryGradOp::Relu) ref::unary(UnaryOp::Relu, x.data(), v.data(), int64_t(x.size()), 0.0);
    std::vector<float> g(x.size()), gr(x.size());
    ASSERT_TRUE(unary_backward(c.op, v.data(), gy.data(), g.data(), int64_t(x.size()), 0.02f)) << c.name;
    ref::unary_backward(c.op, v.data(), gy.data(), gr.data(), int64_t(x.size()), double(0.02f));
    ASSERT_TRUE(close(g, gr, c.rtol, c.atol, c.name));
  }
}

// GELU' on its own (incoming gradient 1): every 0.5-wide interval of the AVX-512 piecewise polynomial
// (gelu_grad_table.inc), both sides of each interval edge, the clamp at +-8 and beyond, and the limits.
TEST_P(KernelIsa, GeluGradientAcrossItsIntervals) {
  std::vector<float> x;
  for (float v = -9.f; v <= 9.f; v += 1.f / 256) x.push_back(v);
  for (int k = 0; k <= 32; ++k) {
    const float edge = -8.f + 0.5f * float(k);
    for (float v : {edge, std::nextafter(edge, -kInf), std::nextafter(edge, kInf)}) x.push_back(v);
  }
  for (float v : {1e-30f, -1e-30f, 0.f, -0.f, 20.f, -20.f, 3e38f, -3e38f}) x.push_back(v);
  std::vector<float> ones(x.size(), 1.f), g(x.size()), gr(x.size());
  ASSERT_TRUE(unary_backward(UnaryGradOp::GeluErf, x.data(), ones.data(), g.data(), int64_t(x.size()), 0.f));
  ref::unary_backward(UnaryGradOp::GeluErf, x.data(), ones.data(), gr.data(), int64_t(x.size()), 0.0);
  // the table's fit error is 1.2e-7 at most (float rounding near 1), the reference rounds a double once;
  // the erf + exp form of the AVX2 build reaches 2 ulps of 1
  const double tol = GetParam() == Isa::Avx2 ? 2.5e-7 : 1.5e-7;
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_NEAR(g[i], gr[i], tol) << "GELU'(" << x[i] << ") = " << gr[i];
  const float special[] = {kNaN, kInf, -kInf};
  float out[3];
  ASSERT_TRUE(unary_backward(UnaryGradOp::GeluErf, special, ones.data(), out, 3, 0.f));
  EXPECT_TRUE(std::isnan(out[0]));
  // +-inf: the piecewise polynomial gives the limits; the reference and the AVX2 build's cdf + x pdf give
  // NaN (inf * 0), as PyTorch does
  if (GetParam() != Isa::Avx512) return;
  EXPECT_EQ(out[1], 1.f);
  EXPECT_NEAR(out[2], 0.f, 1e-13);  // x clamped to -8, where the first interval's polynomial gives -4e-14
}

TEST_P(KernelIsa, BinaryMatchesReference) {
  const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Maximum,
                          BinaryOp::Minimum};
  for (int64_t d : kDims) {
    const int64_t rows = 37, n = rows * d;
    auto a = random_vec<float>(size_t(n), -4.0, 4.0, uint32_t(d));
    auto b = random_vec<float>(size_t(n), 0.5, 4.0, uint32_t(d + 1));
    a[0] = kNaN;  // Maximum/Minimum propagate NaN from either side
    b[size_t(n - 1)] = kNaN;
    // (a_period, b_period): same shape, scalar b, scalar a, row-broadcast b, row-broadcast a
    const std::pair<int64_t, int64_t> modes[] = {{n, n}, {n, 1}, {1, n}, {n, d}, {d, n}};
    for (auto [ap, bp] : modes)
      for (BinaryOp op : ops) {
        std::vector<float> out(static_cast<size_t>(n)), outr(static_cast<size_t>(n));
        ASSERT_TRUE(binary(op, a.data(), ap, b.data(), bp, out.data(), n));
        ref::binary(op, a.data(), ap, b.data(), bp, outr.data(), n);
        ASSERT_TRUE(close(out, outr, 1e-7, 0.0,
                          "binary op " + std::to_string(int(op)) + " d=" + std::to_string(d) + " ap=" +
                              std::to_string(ap) + " bp=" + std::to_string(bp)));
      }
  }
  std::vector<float> a(10), b(10), o(10);
  EXPECT_FALSE(binary(BinaryOp::Add, a.data(), 3, b.data(), 10, o.data(), 10));  // 10 % 3 != 0
  EXPECT_FALSE(binary(BinaryOp::Pow, a.data(), 10, b.data(), 10, o.data(), 10));
}

// ---------------------------------------------------------------- reductions

TEST_P(KernelIsa, ReduceMatchesReference) {
  struct Shape3 {
    int64_t outer, r, inner;
  };
  const Shape3 shapes[] = {{1, 1, 1},   {1, 7, 1},     {3, 17, 1},    {8192, 33, 1}, {1, 300007, 1}, {2, 100003, 1},
                           {1, 5, 3},   {4, 9, 17},    {1, 4099, 64}, {1, 8191, 5},  {3, 513, 511},  {1, 100000, 3},
                           {7, 1, 129}, {1, 2000, 100}};
  const ReduceOp ops[] = {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min};
  for (const auto& s : shapes) {
    const size_t n = size_t(s.outer * s.r * s.inner);
    auto x = random_vec<float>(n, -1.0, 3.0, uint32_t(n));
    for (ReduceOp op : ops) {
      std::vector<float> out(static_cast<size_t>(s.outer * s.inner)), outr(out.size());
      reduce(op, x.data(), out.data(), s.outer, s.r, s.inner);
      ref::reduce(op, x.data(), outr.data(), s.outer, s.r, s.inner);
      const bool sum = op == ReduceOp::Sum || op == ReduceOp::Mean;
      ASSERT_TRUE(close(out, outr, sum ? 2e-6 : 0.0, sum ? 1e-6 : 0.0,
                        "reduce op " + std::to_string(int(op)) + " (" + std::to_string(s.outer) + ", " +
                            std::to_string(s.r) + ", " + std::to_string(s.inner) + ")"));
      std::vector<double> xd(x.begin(), x.end()), od(out.size()), odr(out.size());
      reduce(op, xd.data(), od.data(), s.outer, s.r, s.inner);
      ref::reduce(op, xd.data(), odr.data(), s.outer, s.r, s.inner);
      ASSERT_TRUE(close(od, odr, 1e-12, 1e-12, "reduce f64"));
    }
  }
}

TEST_P(KernelIsa, ReduceAccurateAndNaNPropagating) {
  // 1e6 copies of 0.1f: naive float accumulation drifts by ~1%; float blocks folded into double do not.
  std::vector<float> x(1000000, 0.1f);
  float s = 0.f;
  reduce(ReduceOp::Sum, x.data(), &s, 1, int64_t(x.size()), 1);
  EXPECT_NEAR(double(s), 1e6 * double(0.1f), 1.0);
  std::vector<float> cols(size_t(100000) * 3, 0.1f);
  std::vector<float> out(3);
  reduce(ReduceOp::Sum, cols.data(), out.data(), 1, 100000, 3);
  EXPECT_NEAR(double(out[1]), 1e5 * double(0.1f), 0.05);
  // a NaN anywhere makes max/min NaN (also across the thread split)
  std::vector<float> y = random_vec<float>(200000, -1.0, 1.0, 3);
  y[123457] = kNaN;
  for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min, ReduceOp::Sum}) {
    float m = 0.f;
    reduce(op, y.data(), &m, 1, int64_t(y.size()), 1);
    EXPECT_TRUE(std::isnan(m)) << int(op);
    std::vector<float> c(2);
    reduce(op, y.data(), c.data(), 1, 100000, 2);
    EXPECT_TRUE(std::isnan(c[1])) << int(op);
    EXPECT_FALSE(std::isnan(c[0])) << int(op);
  }
}

// Outputs of >= 4 MiB take the streaming-store + prefetch paths: check them too, on rows that are not
// a multiple of the vector width and on a base pointer that is not vector aligned.
TEST_P(KernelIsa, LargeOutputsMatchReference) {
  for (int64_t d : {512, 513}) {
    const int64_t rows = 2100, n = rows * d;
    const std::string sd = " d=" + std::to_string(d);
    auto buf = random_vec<float>(static_cast<size_t>(n + 1), -4.0, 4.0, uint32_t(d));
    const float* x = buf.data() + (d == 513 ? 1 : 0);  // misaligned base for the odd case
    auto gy = random_vec<float>(static_cast<size_t>(n), -1.0, 1.0, 5);
    std::vector<float> y(static_cast<size_t>(n + 1)), yr(static_cast<size_t>(n));
    float* yo = y.data() + (d == 513 ? 1 : 0);
    auto got = [&] { return std::vector<float>(yo, yo + n); };

    softmax(x, yo, rows, d, false);
    ref::softmax(x, yr.data(), rows, d, false);
    ASSERT_TRUE(close(got(), yr, 2e-6, 1e-9, "softmax large" + sd));
    softmax_backward(yr.data(), gy.data(), yo, rows, d, false);
    std::vector<float> gr(static_cast<size_t>(n));
    ref::softmax_backward(yr.data(), gy.data(), gr.data(), rows, d, false);
    ASSERT_TRUE(close(got(), gr, 1e-5, 1e-6, "softmax backward large" + sd));

    std::vector<float> m(static_cast<size_t>(rows)), rs(static_cast<size_t>(rows)), mr(m), rsr(rs);
    layer_norm<float, float>(x, nullptr, nullptr, 1e-5, yo, m.data(), rs.data(), rows, d);
    ref::layer_norm<float, float>(x, nullptr, nullptr, 1e-5, yr.data(), mr.data(), rsr.data(), rows, d);
    ASSERT_TRUE(close(got(), yr, 1e-5, 1e-5, "layer_norm large" + sd));
    std::vector<float> gw(static_cast<size_t>(d)), gb(gw), gwr(gw), gbr(gw);
    layer_norm_backward<float, float>(gy.data(), x, nullptr, mr.data(), rsr.data(), yo, gw.data(), gb.data(), rows, d);
    ref::layer_norm_backward<float, float>(gy.data(), x, nullptr, mr.data(), rsr.data(), gr.data(), gwr.data(),
                                           gbr.data(), rows, d);
    ASSERT_TRUE(close(got(), gr, 1e-4, 1e-5, "layer_norm backward large" + sd));
    ASSERT_TRUE(close(gw, gwr, 1e-5, 1e-3, "layer_norm grad_weight large" + sd));

    ASSERT_TRUE(unary(UnaryOp::GeluErf, x, yo, n, 0.f));
    ref::unary(UnaryOp::GeluErf, x, yr.data(), n, 0.0);
    ASSERT_TRUE(close(got(), yr, 4e-7, 4e-7, "gelu large" + sd));
    ASSERT_TRUE(unary_backward(UnaryGradOp::GeluErf, x, gy.data(), yo, n, 0.f));
    ref::unary_backward(UnaryGradOp::GeluErf, x, gy.data(), yr.data(), n, 0.0);
    ASSERT_TRUE(close(got(), yr, 5e-7, 2e-7, "gelu backward large" + sd));
    ASSERT_TRUE(binary(BinaryOp::Mul, x, n, gy.data(), d, yo, n));  // row broadcast
    ref::binary(BinaryOp::Mul, x, n, gy.data(), d, yr.data(), n);
    ASSERT_TRUE(close(got(), yr, 0.0, 0.0, "mul row-broadcast large" + sd));
  }
}

// find_first against the scalar loop: each predicate with and without NaN, thresholds among the values
// (ties), NaN and the infinities, on lengths with every tail and from every start offset of a vector.
TEST_P(KernelIsa, FindFirstMatchesTheScalarLoop) {
  std::mt19937 gen(21);
  std::vector<float> x(1100);
  for (auto& v : x) v = float(int(gen() % 41) - 20);  // few distinct values: many ties
  for (size_t i = 0; i < x.size(); i += 97) x[i] = kNaN;
  x[5] = -0.0f, x[6] = 0.0f, x[300] = kInf, x[301] = -kInf;
  const FindCmp cmps[] = {FindCmp::Greater, FindCmp::Less, FindCmp::GreaterEqual, FindCmp::LessEqual};
  for (int64_t off = 0; off <= 16; ++off)
    for (int64_t n : {0, 1, 7, 15, 16, 17, 33, 100, 1000}) {
      for (float t : {19.0f, 20.0f, -20.0f, 0.0f, -0.0f, 3.0f, kNaN, kInf, -kInf})
        for (FindCmp c : cmps)
          for (bool or_nan : {false, true}) {
            const int64_t got = find_first(x.data() + off, n, t, c, or_nan);
            ASSERT_EQ(got, ref::find_first(x.data() + off, n, t, c, or_nan))
                << "offset " << off << " n " << n << " t " << t << " cmp " << int(c) << " or_nan " << or_nan;
          }
    }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, KernelIsa, ::testing::Values(Isa::Avx512, Isa::Avx2, Isa::Reference),
                         isa_param_name);

TEST(KernelDispatch, PicksTheBestSupportedIsa) {
  reset_isa();
  const Isa best = isa_supported(Isa::Avx512) ? Isa::Avx512 : isa_supported(Isa::Avx2) ? Isa::Avx2 : Isa::Reference;
  EXPECT_EQ(active_isa(), best);
  EXPECT_TRUE(set_isa_for_testing(Isa::Reference));
  EXPECT_EQ(active_isa(), Isa::Reference);
  reset_isa();
  EXPECT_NE(active_isa(), Isa::Reference);
}

// ---------------------------------------------------------------- random

TEST(KernelRandom, MatchesReferenceForAnyThreadCount) {
  const int saved = omp_get_max_threads();
  for (int64_t n : {1, 3, 4, 5, 1001, 100003}) {
    std::vector<float> f1(static_cast<size_t>(n)), f2(static_cast<size_t>(n)), fr(static_cast<size_t>(n));
    std::vector<double> d1(static_cast<size_t>(n)), d2(static_cast<size_t>(n)), dr(static_cast<size_t>(n));
    for (int normal_dist = 0; normal_dist < 2; ++normal_dist) {
      omp_set_num_threads(1);
      if (normal_dist) {
        normal(f1.data(), n, 0.5, 2.0, 42, 1000);
        normal(d1.data(), n, 0.5, 2.0, 42, 1000);
      } else {
        uniform(f1.data(), n, -1.0, 3.0, 42, 1000);
        uniform(d1.data(), n, -1.0, 3.0, 42, 1000);
      }
      omp_set_num_threads(2);
      if (normal_dist) {
        normal(f2.data(), n, 0.5, 2.0, 42, 1000);
        normal(d2.data(), n, 0.5, 2.0, 42, 1000);
        ref::normal(fr.data(), n, 0.5, 2.0, 42, 1000);
        ref::normal(dr.data(), n, 0.5, 2.0, 42, 1000);
      } else {
        uniform(f2.data(), n, -1.0, 3.0, 42, 1000);
        uniform(d2.data(), n, -1.0, 3.0, 42, 1000);
        ref::uniform(fr.data(), n, -1.0, 3.0, 42, 1000);
        ref::uniform(dr.data(), n, -1.0, 3.0, 42, 1000);
      }
      ASSERT_EQ(f1, f2);
      ASSERT_EQ(f1, fr);
      ASSERT_EQ(d1, d2);
      ASSERT_EQ(d1, dr);
    }
  }
  omp_set_num_threads(saved);
  // element i depends on (seed, counter, i) only: a draw at counter + 1 is the tail of one at counter
  std::vector<float> a(40), b(36);
  uniform(a.data(), 40, 0.0, 1.0, 7, 10);
  uniform(b.data(), 36, 0.0, 1.0, 7, 11);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin() + 4));
  EXPECT_EQ(uniform_blocks(5), 2);
  EXPECT_EQ(normal_blocks(5), 3);
}

TEST(KernelRandom, Moments) {
  const int64_t n = 400000;
  std::vector<float> u(static_cast<size_t>(n)), z(static_cast<size_t>(n));
  std::vector<double> zd(static_cast<size_t>(n));
  uniform(u.data(), n, 2.0, 5.0, 123, 0);
  normal(z.data(), n, 1.0, 3.0, 123, 0);
  normal(zd.data(), n, 0.0, 1.0, 99, 5);
  auto moments = [](const auto& v) {
    double s = 0, s2 = 0;
    for (auto x : v) s += double(x);
    const double m = s / double(v.size());
    for (auto x : v) s2 += (double(x) - m) * (double(x) - m);
    return std::pair<double, double>(m, std::sqrt(s2 / double(v.size())));
  };
  for (float x : u) ASSERT_TRUE(x >= 2.f && x < 5.f) << x;
  auto [um, us] = moments(u);
  EXPECT_NEAR(um, 3.5, 0.01);
  EXPECT_NEAR(us, 3.0 / std::sqrt(12.0), 0.01);
  auto [zm, zs] = moments(z);
  EXPECT_NEAR(zm, 1.0, 0.03);
  EXPECT_NEAR(zs, 3.0, 0.03);
  auto [dm, ds] = moments(zd);
  EXPECT_NEAR(dm, 0.0, 0.01);
  EXPECT_NEAR(ds, 1.0, 0.01);
  int64_t tail = 0;  // P(|z| > 3) = 0.0027
  for (double x : zd) tail += std::fabs(x) > 3.0;
  EXPECT_NEAR(double(tail) / double(n), 0.0027, 0.0006);
  // uniform in [lo, hi) even when lo + (hi - lo) u rounds up to hi
  std::vector<float> narrow(10000);
  uniform(narrow.data(), 10000, 1.0, 1.0000001, 5, 0);
  for (float x : narrow) ASSERT_LT(x, 1.0000001f);
}

// ---------------------------------------------------------------- adam

template <typename T> void adam_matches_reference() {
  struct Config {
    double lr, beta1, beta2, eps, wd;
    bool decoupled, amsgrad;
  };
  const Config configs[] = {{1e-3, 0.9, 0.999, 1e-8, 0.0, false, false}, {1e-2, 0.9, 0.999, 1e-8, 0.1, false, false},
                            {1e-2, 0.9, 0.99, 1e-6, 0.05, true, false},  {3e-3, 0.8, 0.999, 1e-8, 0.0, false, true},
                            {1e-2, 0.3, 0.9, 1e-8, 0.01, true, true}};  // beta1 < 0.5: lerp's other branch
  for (const auto& c : configs)
    for (int64_t n : {1, 17, 70001}) {
      auto p = random_vec<T>(size_t(n), -1.0, 1.0, 1);
      std::vector<T> m(size_t(n), T(0)), v(size_t(n), T(0)), vm(size_t(n), T(0));
      std::vector<T> pr = p, mr = m, vr = v, vmr = vm;
      for (int64_t step = 1; step <= 4; ++step) {
        auto g = random_vec<T>(size_t(n), -2.0, 2.0, uint32_t(step));
        AdamArgs a{c.lr, c.beta1, c.beta2, c.eps, c.wd, c.decoupled, c.amsgrad, step};
        adam_step<T>(a, p.data(), g.data(), m.data(), v.data(), vm.data(), n);
        ref::adam_step<T>(a, pr.data(), g.data(), mr.data(), vr.data(), vmr.data(), n);
      }
      // same operations in the same order: bitwise equal
      ASSERT_EQ(p, pr);
      ASSERT_EQ(m, mr);
      ASSERT_EQ(v, vr);
      ASSERT_EQ(vm, vmr);
    }
}
// Each instruction set's build of the loop (optim_loop.inc), bit for bit.
TEST_P(KernelIsa, AdamMatchesReferenceFloat32) { adam_matches_reference<float>(); }
TEST_P(KernelIsa, AdamMatchesReferenceFloat64) { adam_matches_reference<double>(); }

// Values from PyTorch 2.15 (torch.optim.Adam / AdamW, foreach=False, float32), made by:
//   for lr, wd, dec, ams in cases:
//     p = torch.tensor([0.5, -1.2, 3.0, 1e-3, -0.7], requires_grad=True)
//     opt = (torch.optim.AdamW if dec else torch.optim.Adam)([p], lr=lr, betas=(0.9, 0.999), eps=1e-8,
//                                                            weight_decay=wd, amsgrad=ams, foreach=False)
//     for t in range(1, 4):
//       p.grad = torch.tensor([math.sin(i + t) * (i + 1) * [10.0, 1.0, 0.1][t - 1] for i in range(5)])
//       opt.step()
TEST(KernelAdam, MatchesPyTorch) {
  struct Case {
    double lr, wd;
    bool decoupled, amsgrad;
    float expect[5];
  };
  const Case cases[] = {
      {0.1, 0.0, false, false, {0.2675986886024475f, -1.4203016757965088f, 2.861548900604248f, 0.2356848418712616f, -0.47784340381622314f}},
      {0.1, 0.5, false, false, {0.264121413230896f, -1.4129301309585571f, 2.7896101474761963f, 0.2353096306324005f, -0.47672006487846375f}},
      {0.1, 0.5, true, false, {0.20976702868938446f, -1.2359938621520996f, 2.4446167945861816f, 0.2220005989074707f, -0.39121314883232117f}},
      {0.1, 0.0, false, true, {0.2676275074481964f, -1.4202316999435425f, 2.861548900604248f, 0.23565581440925598f, -0.4778779149055481f}},
      {0.1, 0.5, true, true, {0.20979584753513336f, -1.2359251976013184f, 2.4446167945861816f, 0.2219715565443039f, -0.39124739170074463f}},
  };
  const double scale[3] = {10.0, 1.0, 0.1};
  for (const auto& c : cases) {
    std::vector<float> p = {0.5f, -1.2f, 3.0f, 1e-3f, -0.7f}, m(5, 0.f), v(5, 0.f), vm(5, 0.f);
    for (int64_t t = 1; t <= 3; ++t) {
      std::vector<float> g(5);
      for (int i = 0; i < 5; ++i) g[size_t(i)] = float(std::sin(double(i + t)) * double(i + 1) * scale[t - 1]);
      AdamArgs a{c.lr, 0.9, 0.999, 1e-8, c.wd, c.decoupled, c.amsgrad, t};
      adam_step<float>(a, p.data(), g.data(), m.data(), v.data(), vm.data(), 5);
    }
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(p[size_t(i)], c.expect[i], 1e-6 * std::max(1.f, std::fabs(c.expect[i])))
          << "wd=" << c.wd << " decoupled=" << c.decoupled << " amsgrad=" << c.amsgrad << " i=" << i;
  }
}

}  // namespace
