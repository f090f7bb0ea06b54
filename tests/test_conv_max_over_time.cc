// tests/test_conv_max_over_time.cc — the fused text-CNN op against its definition (conv1d, ReLU, amax,
// cat through autograd): values and every gradient, ties and NaN maxima, float64 gradcheck, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "attn/attn.h"
#include "gradcheck.h"

using namespace attn;

namespace {

struct Case {
  Tensor x;
  std::vector<Tensor> w, b;
};

Case make_case(int64_t B, int64_t T, int64_t E, std::vector<int64_t> widths, int64_t F, DType dt) {
  Case c{randn({B, T, E}, {.dtype = dt, .requires_grad = true}), {}, {}};
  for (int64_t k : widths) {
    c.w.push_back(randn({F, E, k}, {.dtype = dt}).mul_(0.3).requires_grad_(true));
    c.b.push_back(randn({F}, {.dtype = dt}).mul_(0.1).requires_grad_(true));
  }
  return c;
}

Tensor reference(const Case& c) {
  std::vector<Tensor> pooled;
  for (size_t i = 0; i < c.w.size(); ++i)
    pooled.push_back(amax(relu(conv1d(c.x.transpose(1, 2), c.w[i], c.b[i])), {2}));
  return cat(pooled, 1);
}

std::vector<Tensor> leaves(const Case& c) {
  std::vector<Tensor> v = {c.x};
  v.insert(v.end(), c.w.begin(), c.w.end());
  v.insert(v.end(), c.b.begin(), c.b.end());
  return v;
}

// Runs fn's output against a fixed upstream gradient and returns (output, gradients of every leaf).
std::pair<Tensor, std::vector<Tensor>> run(const Case& c, const std::function<Tensor(const Case&)>& fn, const Tensor& up) {
  for (Tensor t : leaves(c)) t.set_grad(Tensor());
  Tensor y = fn(c);
  sum(mul(y, up)).backward();
  std::vector<Tensor> g;
  for (const Tensor& t : leaves(c)) g.push_back(t.grad().defined() ? t.grad().clone() : zeros_like(t));
  return {y.detach(), g};
}

void expect_same(const Case& c, double tol) {
  int64_t F = 0;
  for (const Tensor& w : c.w) F += w.size(0);
  Tensor up = randn({c.x.size(0), F}, {.dtype = c.x.dtype()});
  auto [y_ref, g_ref] = run(c, reference, up);
  auto [y, g] = run(c, [](const Case& k) { return conv1d_max_over_time(k.x, k.w, k.b); }, up);
  EXPECT_TRUE(allclose(y, y_ref, tol, tol)) << "output";
  for (size_t i = 0; i < g.size(); ++i) EXPECT_TRUE(allclose(g[i], g_ref[i], tol, tol)) << "gradient of leaf " << i;
}

}  // namespace

TEST(Conv1dMaxOverTime, MatchesConvReluAmaxCat) {
  manual_seed(3);
  expect_same(make_case(5, 23, 16, {3, 4, 5}, 7, kFloat32), 1e-4);
  expect_same(make_case(3, 9, 8, {2, 9}, 5, kFloat32), 1e-4);  // a width equal to the length: one step
  expect_same(make_case(70, 12, 6, {1, 3}, 4, kFloat32), 1e-4);  // many chunks across threads
  expect_same(make_case(4, 11, 5, {3, 4}, 6, kFloat64), 1e-10);
}

TEST(Conv1dMaxOverTime, TiesShareTheGradientAndNegativeMaximaGetNone) {
  manual_seed(4);
  Case c = make_case(2, 10, 4, {2, 3}, 5, kFloat32);
  // identical windows: sequence 0 repeats one pair of rows, so every max of width 2 ties 4-5 times
  Tensor x = c.x.detach().clone();
  for (int64_t t = 2; t < 10; ++t) x.select(0, 0).select(0, t).copy_(x.select(0, 0).select(0, t % 2));
  c.x = x.requires_grad_(true);
  c.b[1] = full({5}, -100.0).requires_grad_(true);  // width 3: every max <= 0, no gradient at all
  expect_same(c, 1e-5);
  Tensor y = conv1d_max_over_time(c.x, c.w, c.b);
  y.sum().backward();
  for (float v : c.w[1].grad().to_vector<float>()) EXPECT_EQ(v, 0.0f);
  for (float v : c.b[1].grad().to_vector<float>()) EXPECT_EQ(v, 0.0f);
}

TEST(Conv1dMaxOverTime, NaNMaximumGivesNaNLikeThePyTorchFormulation) {
  manual_seed(5);
  Case c = make_case(2, 6, 3, {2}, 3, kFloat32);
  Tensor x = c.x.detach().clone();
  x.select(0, 1).select(0, 2).fill_(std::numeric_limits<double>::quiet_NaN());
  c.x = x.requires_grad_(true);
  Tensor up = ones({2, 3});
  auto [y_ref, g_ref] = run(c, reference, up);
  auto [y, g] = run(c, [](const Case& k) { return conv1d_max_over_time(k.x, k.w, k.b); }, up);
  for (float v : y.select(0, 1).to_vector<float>()) EXPECT_TRUE(std::isnan(v));
  EXPECT_TRUE(allclose(y.select(0, 0), y_ref.select(0, 0), 1e-5, 1e-5));
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_TRUE(allclose(ne(g[i], g[i]).to(kFloat32), ne(g_ref[i], g_ref[i]).to(kFloat32), 0, 0))
        << "NaN pattern of leaf " << i;
}

TEST(Conv1dMaxOverTime, GradcheckFloat64) {
  manual_seed(6);
  Case c = make_case(2, 7, 3, {2, 3}, 4, kFloat64);
  EXPECT_TRUE(attn_test::gradcheck(
      [](const std::vector<Tensor>& v) { return conv1d_max_over_time(v[0], {v[1], v[2]}, {v[3], v[4]}); },
      leaves(c)));
}

TEST(Conv1dMaxOverTime, BadInputIsAClearError) {
  Tensor x = randn({2, 4, 3});
  EXPECT_THROW(conv1d_max_over_time(randn({4, 3}), {randn({2, 3, 2})}), std::invalid_argument);  // rank
  EXPECT_THROW(conv1d_max_over_time(x, {randn({2, 5, 2})}), std::invalid_argument);              // E mismatch
  EXPECT_THROW(conv1d_max_over_time(x, {randn({2, 3, 5})}), std::invalid_argument);              // too short
  EXPECT_THROW(conv1d_max_over_time(x, {randn({2, 3, 2})}, {randn({3})}), std::invalid_argument);  // bias size
  EXPECT_THROW(conv1d_max_over_time(x, {}), std::invalid_argument);
  EXPECT_THROW(conv1d_max_over_time(x, {randn({2, 3, 2}, {.dtype = kFloat64})}), std::invalid_argument);
}
