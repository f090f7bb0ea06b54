// Elementwise ops on special values (±0, ±inf, NaN, a clamp's bounds) against what PyTorch 2.15 returns
// for them, in float32 and float64 alike (the values below were printed by torch 2.15.0; random fixture
// inputs never land on these points). GELU at ±inf is left out: PyTorch itself gives NaN in float32 and
// inf in float64 there.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "backend/cpu/dispatch.h"

using namespace attn;

namespace {
const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// same value, same sign of zero, NaN where NaN
void expect_exact(const Tensor& t, const std::vector<double>& want, const std::string& what) {
  const std::vector<double> got = t.to(kFloat64).to_vector<double>();
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << what << " [" << i << "]: " << got[i] << ", want NaN";
    } else {
      EXPECT_TRUE(got[i] == want[i] && std::signbit(got[i]) == std::signbit(want[i]))
          << what << " [" << i << "]: " << got[i] << ", want " << want[i];
    }
  }
}

// y = f(x) and x's gradient for an upstream gradient of ones, in both dtypes, on every kernel set
template <typename F>
void check(const std::string& name, F f, const std::vector<double>& x, const std::vector<double>& want_y,
           const std::vector<double>& want_g) {
  for (cpu::Isa isa : {cpu::Isa::Avx512, cpu::Isa::Avx2, cpu::Isa::Reference}) {
    if (!cpu::set_isa_for_testing(isa)) continue;
    for (DType dt : {kFloat32, kFloat64}) {
      Tensor xt = from_vector<double>(x, {int64_t(x.size())}).to(dt).requires_grad_();
      Tensor y = f(xt);
      y.backward(ones(y.shape(), {.dtype = dt}));
      const std::string what = name + " " + cpu::isa_name(isa) + " " + dtype_name(dt);
      expect_exact(y, want_y, what);
      expect_exact(xt.grad(), want_g, what + " gradient");
    }
  }
  cpu::reset_isa();
}
}  // namespace

// relu(-0) = -0, relu(NaN) = NaN, and the backward (threshold_backward on the output) passes the gradient
// where the output is NaN; a denormal input stays.
TEST(EdgeValues, ReluNegativeZeroNaNAndDenormal) {
  const double tiny = std::ldexp(1.0, -140);  // a float32 denormal, exact in both dtypes
  check("relu", [](const Tensor& x) { return relu(x); }, {-0.0, kNaN, tiny, -1.0}, {-0.0, kNaN, tiny, 0.0},
        {0.0, 1.0, 1.0, 0.0});
}

TEST(EdgeValues, TanhKeepsNegativeZero) {
  check("tanh", [](const Tensor& x) { return tanh(x); }, {-0.0, 0.0}, {-0.0, 0.0}, {1.0, 1.0});
}

// The gradient passes strictly inside the bounds: 0 at the bounds themselves and for NaN.
TEST(EdgeValues, ClampGradientIsZeroAtTheBounds) {
  check("clamp(-1, 1)", [](const Tensor& x) { return clamp(x, -1.0, 1.0); }, {1.0, -1.0, 0.0, 0.5, -2.0, kNaN},
        {1.0, -1.0, 0.0, 0.5, -1.0, kNaN}, {0, 0, 1, 1, 0, 0});
  check("clamp(min=0)", [](const Tensor& x) { return clamp(x, 0.0, std::nullopt); }, {1.0, -1.0, 0.0, 0.5},
        {1.0, 0.0, 0.0, 0.5}, {1, 0, 0, 1});
  check("clamp(max=0.5)", [](const Tensor& x) { return clamp(x, std::nullopt, 0.5); }, {1.0, -1.0, 0.0, 0.5},
        {0.5, -1.0, 0.0, 0.5}, {0, 1, 1, 0});
}

// pow with exponent 0.5 / -0.5 is sqrt / rsqrt (not C's pow), and exponent 0 has a zero gradient.
TEST(EdgeValues, PowSpecialExponents) {
  check("pow 0.5", [](const Tensor& x) { return pow(x, 0.5); }, {-0.0, -kInf, 4.0, -4.0}, {-0.0, kNaN, 2.0, kNaN},
        {-kInf, kNaN, 0.25, kNaN});
  check("pow -0.5", [](const Tensor& x) { return pow(x, -0.5); }, {-0.0, -kInf, 4.0, 0.0}, {-kInf, kNaN, 0.5, kInf},
        {-kInf, -0.0, -0.0625, -kInf});
  check("pow 1.5", [](const Tensor& x) { return pow(x, 1.5); }, {-0.0, -kInf, 4.0, 0.0}, {0.0, kInf, 8.0, 0.0},
        {-0.0, kNaN, 3.0, 0.0});
  check("pow 0", [](const Tensor& x) { return pow(x, 0.0); }, {0.0, -0.0, 2.0, kInf}, {1, 1, 1, 1}, {0, 0, 0, 0});
}

// maximum / minimum: the winner gets the gradient, ties share it, and where a NaN makes the comparison
// fail both sides get all of it.
TEST(EdgeValues, MaximumMinimumTiesAndNaN) {
  const std::vector<double> x = {kNaN, 1.0, 0.0, -1.0};
  for (bool is_max : {true, false}) {
    const std::string name = is_max ? "maximum" : "minimum";
    for (DType dt : {kFloat32, kFloat64}) {
      Tensor a = from_vector<double>(x, {4}).to(dt).requires_grad_(), b = zeros({4}, {.dtype = dt}).requires_grad_();
      Tensor y = is_max ? maximum(a, b) : minimum(a, b);
      y.backward(ones({4}, {.dtype = dt}));
      expect_exact(y, {kNaN, is_max ? 1.0 : 0.0, 0.0, is_max ? 0.0 : -1.0}, name + " " + dtype_name(dt));
      expect_exact(a.grad(), {1.0, is_max ? 1.0 : 0.0, 0.5, is_max ? 0.0 : 1.0}, name + " gradient of a");
      expect_exact(b.grad(), {1.0, is_max ? 0.0 : 1.0, 0.5, is_max ? 1.0 : 0.0}, name + " gradient of b");
    }
  }
}

// max(x) over all elements shares the gradient among the elements equal to it, and a NaN maximum among the
// NaN elements; amax with a NaN result has NaN gradients (count 0), as in PyTorch.
TEST(EdgeValues, FullMaxWithNaNAndTies) {
  check("max", [](const Tensor& x) { return max(x); }, {1.0, kNaN, 3.0, kNaN}, {kNaN}, {0.0, 0.5, 0.0, 0.5});
  check("min ties", [](const Tensor& x) { return min(x); }, {1.0, 3.0, 1.0}, {1.0}, {0.5, 0.0, 0.5});
  check("amax", [](const Tensor& x) { return amax(x); }, {1.0, kNaN, 3.0}, {kNaN}, {kNaN, kNaN, kNaN});
}

// Integer operands: div is true division (float32, so 1 / 0 = inf and 0 / 0 = NaN, never a crash or
// INT64_MIN / -1 overflow), div_ cannot store that in an integer tensor, and integer powers are exact
// integers (negative exponents and overflow as PyTorch computes them), all as in PyTorch
// (tests/print_edge_values.py).
TEST(EdgeValues, IntegerDivisionAndPowers) {
  Tensor a = from_vector<int64_t>({1, -2, 0, 5, INT64_MIN}, {5}), b = from_vector<int64_t>({0, 0, 0, 2, -1}, {5});
  Tensor q = div(a, b);
  EXPECT_EQ(q.dtype(), kFloat32);
  expect_exact(q, {kInf, -kInf, kNaN, 2.5, 9223372036854775808.0}, "int64 / int64");
  expect_exact(div(from_vector<bool>({true, false}, {2}), from_vector<bool>({false, false}, {2})), {kInf, kNaN},
               "bool / bool");
  Tensor ai = from_vector<int32_t>({3}, {1});
  EXPECT_THROW(ai.div_(from_vector<int32_t>({2}, {1})), std::invalid_argument);
  expect_exact(pow(a.narrow(0, 0, 4), b.narrow(0, 0, 4)), {1, 1, 1, 25}, "int64 ** int64");
  // negative integer exponents: 1 for base 1, ±1 for base -1, else 0; overflow wraps around
  expect_exact(pow(from_vector<int64_t>({2, 3, 1, -1, -1, 0, -2, int64_t(1) << 40, 3}, {9}),
                   from_vector<int64_t>({-1, -1, -5, -3, -2, -1, -2, 2, 3}, {9})),
               {0, 0, 1, -1, 1, 0, 0, 0, 27}, "int64 ** negative int64");
  expect_exact(pow(from_vector<int32_t>({3}, {1}), from_vector<int32_t>({21}, {1})),
               {double(int32_t(uint32_t(10460353203ull % 4294967296ull)))}, "int32 overflow wraps");
  // a scalar exponent: integral values keep the integer dtype, others give float32, negative ones throw
  Tensor i = from_vector<int64_t>({2, 3}, {2});
  expect_exact(pow(i, 2.0), {4, 9}, "int64 ** 2");
  EXPECT_EQ(pow(i, 2.0).dtype(), kInt64);
  EXPECT_EQ(pow(i, 0.5).dtype(), kFloat32);
  expect_exact(pow(i, 0.5), {double(std::sqrt(2.0f)), double(std::sqrt(3.0f))}, "int64 ** 0.5");
  EXPECT_THROW(pow(i, -1.0), std::invalid_argument);
}
