// Core tensor + autograd tests: views, broadcasting, backward, hooks, in-place detection.
#include <gtest/gtest.h>

#include <bit>
#include <limits>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "attn/random.h"

using namespace attn;

TEST(Tensor, FactoriesAndViews) {
  Tensor a = arange(0.0, 6.0, 1.0, {.dtype = kFloat32}).view({2, 3});
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  Tensor t = a.t();
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(a.slice(1, 1, 3).to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
  EXPECT_EQ(a.select(0, 1).to_vector<float>(), (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(a.unsqueeze(0).shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(a.reshape({3, 2}).shape(), (Shape{3, 2}));
  EXPECT_EQ(t.reshape({6}).to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_THROW(t.view({6}), std::invalid_argument);
  Tensor e = a.slice(0, 0, 1).expand({4, 3});
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.sum().item<float>(), 12.0f);
}

TEST(Tensor, BroadcastArithmetic) {
  Tensor a = from_vector<float>({1, 2, 3}, {3});
  Tensor b = from_vector<float>({10, 20}, {2, 1});
  Tensor c = a + b;
  EXPECT_EQ(c.shape(), (Shape{2, 3}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{11, 12, 13, 21, 22, 23}));
  EXPECT_THROW(a + from_vector<float>({1, 2}, {2}), std::invalid_argument);
}

TEST(Autograd, MulAddBroadcastBackward) {
  Tensor x = from_vector<double>({1, 2, 3}, {3}, {.dtype = kFloat64, .requires_grad = true});
  Tensor w = from_vector<double>({2, 3}, {2, 1}, {.dtype = kFloat64, .requires_grad = true});
  Tensor y = (x * w + x).sum();
  y.backward();
  // dy/dx = sum over rows of (w + 1) = 3 + 4 = 7; dy/dw_i = sum(x) = 6
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{7, 7, 7}));
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{6, 6}));
  // accumulation
  (x * 2.0).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{9, 9, 9}));
}

TEST(Autograd, SecondBackwardNeedsRetainGraph) {
  Tensor x = ones({2}, {.requires_grad = true});
  Tensor y = (x.exp() * x).sum();
  y.backward({}, /*retain_graph=*/true);
  y.backward();
  EXPECT_THROW(y.backward(), std::runtime_error);
}

TEST(Autograd, InplaceModificationOfSavedTensorIsDetected) {
  Tensor x = ones({3}, {.requires_grad = true});
  Tensor y = x.exp();        // saves its output
  Tensor z = (y * 2.0).sum();
  {
    NoGradGuard ng;
    y.mul_(3.0);
  }
  try {
    z.backward();
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("modified by an in-place operation"), std::string::npos) << e.what();
  }
  EXPECT_THROW(x.add_(ones({3})), std::runtime_error);  // leaf requiring grad
}

TEST(Autograd, HooksNoGradDetach) {
  Tensor x = ones({2}, {.requires_grad = true});
  int post = 0;
  x.register_hook([](const Tensor& g) { return mul(g, 10.0); });
  x.register_post_accumulate_grad_hook([&](Tensor& leaf) { post += int(leaf.grad().sum().item<float>()); });
  (x * 3.0).sum().backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{30, 30}));
  EXPECT_EQ(post, 60);
  {
    NoGradGuard ng;
    EXPECT_FALSE((x * 2.0).requires_grad());
  }
  EXPECT_FALSE(x.detach().requires_grad());
}

TEST(Autograd, ViewsBackward) {
  Tensor x = arange(0.0, 12.0, 1.0, {.dtype = kFloat64}).view({3, 4});
  x.requires_grad_();
  Tensor y = (x.t().slice(0, 1, 3) * 2.0).sum() + x.select(0, 2).sum() + x.permute({1, 0}).unsqueeze(0).expand({2, 4, 3}).sum();
  y.backward();
  std::vector<double> g = x.grad().to_vector<double>();
  std::vector<double> expect = {2, 4, 4, 2, 2, 4, 4, 2, 3, 5, 5, 3};
  EXPECT_EQ(g, expect);
}

TEST(Reduce, SumMeanMaxVar) {
  Tensor x = from_vector<float>({1, 5, 3, 4, 2, 6}, {2, 3});
  EXPECT_EQ(sum(x, {1}).to_vector<float>(), (std::vector<float>{9, 12}));
  EXPECT_EQ(mean(x, {0}, true).shape(), (Shape{1, 3}));
  auto [v, i] = max(x, 1);
  EXPECT_EQ(v.to_vector<float>(), (std::vector<float>{5, 6}));
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  EXPECT_NEAR(var(x).item<float>(), 3.5f, 1e-6);
}

// Contiguous float32 rows take the vectorised path (reduce kernel, then the first match); a transposed
// copy takes the strided loop. Same indices and the same value bits: first maximum, first NaN, -0.0 / 0.0.
TEST(Reduce, MaxMinOfContiguousRowsMatchTheStridedLoop) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {1, 3, 3, 2, 0,  -0.0f, 0.0f, -1, 0.0f, -0.0f,  nan, 1, nan, 2, 3,
                          1, nan, 5, 5, 0,  -inf, -inf, -inf, -inf, -inf,  2, 7, 7, -7, -7};
  manual_seed(4);
  const Tensor ties = randint(0, 6, {64, 5}).to(kFloat32);  // many equal values per row
  const std::vector<float> tv = ties.to_vector<float>();
  v.insert(v.end(), tv.begin(), tv.end());
  const int64_t rows = int64_t(v.size()) / 5;
  const Tensor x = from_vector(v, {rows, 5});
  const Tensor strided = x.t().contiguous().t();
  ASSERT_FALSE(strided.is_contiguous());
  auto bits = [](const Tensor& t) {
    std::vector<uint32_t> b;
    for (float f : t.to_vector<float>()) b.push_back(std::bit_cast<uint32_t>(f));
    return b;
  };
  for (bool is_max : {true, false}) {
    auto [fv, fi] = is_max ? max(x, 1) : min(x, 1);
    auto [sv, si] = is_max ? max(strided, 1) : min(strided, 1);
    EXPECT_EQ(fi.to_vector<int64_t>(), si.to_vector<int64_t>()) << (is_max ? "max" : "min");
    EXPECT_EQ(bits(fv), bits(sv)) << (is_max ? "max" : "min");
    EXPECT_EQ((is_max ? argmax(x, 1) : argmin(x, 1)).to_vector<int64_t>(), si.to_vector<int64_t>());
  }
  auto [v0, i0] = max(x, 1);
  const std::vector<int64_t> first = {1, 0, 0, 1, 0, 1};  // the hand-made rows
  for (size_t r = 0; r < first.size(); ++r) EXPECT_EQ(i0.to_vector<int64_t>()[r], first[r]) << "row " << r;
}

TEST(Tensor, EmptyTensorsAreContiguousAndRandomFillable) {
  Tensor e = randn({3, 0});
  EXPECT_TRUE(e.is_contiguous());
  EXPECT_EQ(e.numel(), 0);
  EXPECT_EQ(sum(e).item<float>(), 0.0f);
}
