// tests/test_linalg.cc — GEMM kernel vs the naive oracle; matmul / mm / bmm / linear vs a
// broadcast-multiply-and-sum oracle (no GEMM involved) and finite differences in float64.
#include <gtest/gtest.h>
#include <cstdlib>
#include <omp.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "backend/cpu/linalg_kernels.h"
#include "gradcheck.h"

namespace {

using attn::Shape;
using attn::Tensor;
using attn::backend::GemmArgs;

// ---------------------------------------------------------------------------------------------
// GEMM kernel

struct GemmCase {
  int64_t m, n, k;
  bool ta, tb;
  int64_t pad;  // extra leading-dimension padding
  double alpha, beta;
  int64_t batch;
  bool bcast_b;  // batch stride 0 for B
  bool bias = false;  // a (n) bias row (batch 1, beta 0)
};

template <typename T> void run_gemm_case(const GemmCase& c, attn::DType dt) {
  std::mt19937 rng(unsigned(c.m * 131 + c.n * 17 + c.k + c.batch));
  std::uniform_real_distribution<double> u(-1, 1);
  const int64_t ar = c.ta ? c.k : c.m, ac = c.ta ? c.m : c.k;
  const int64_t br = c.tb ? c.n : c.k, bc = c.tb ? c.k : c.n;
  const int64_t lda = ac + c.pad, ldb = bc + c.pad, ldc = c.n + c.pad;
  const int64_t sa = ar * lda + 3, sb = c.bcast_b ? 0 : br * ldb + 1, sc = c.m * ldc + 2;
  std::vector<T> a(size_t(sa * c.batch + 8)), b(size_t((c.bcast_b ? 1 : c.batch) * (br * ldb + 1) + 8));
  std::vector<T> cfast(size_t(sc * c.batch + 8)), cref;
  for (auto& v : a) v = T(u(rng));
  for (auto& v : b) v = T(u(rng));
  for (auto& v : cfast) v = T(u(rng));
  cref = cfast;
  std::vector<T> bias(size_t(c.n));
  for (auto& v : bias) v = T(u(rng));
  GemmArgs g;
  g.trans_a = c.ta;
  g.trans_b = c.tb;
  g.m = c.m;
  g.n = c.n;
  g.k = c.k;
  g.alpha = c.alpha;
  g.beta = c.beta;
  g.a = a.data();
  g.lda = lda;
  g.b = b.data();
  g.ldb = ldb;
  g.ldc = ldc;
  g.batch = c.batch;
  g.stride_a = sa;
  g.stride_b = sb;
  g.stride_c = sc;
  g.dtype = dt;
  if (c.bias) g.bias = bias.data();
  g.c = cfast.data();
  attn::cpu::gemm(g);
  g.c = cref.data();
  attn::cpu::ref::gemm(g);
  const double tol = (dt == attn::kFloat32 ? 2e-6 : 1e-13) * double(c.k + 4);
  double worst = 0;
  for (size_t i = 0; i < cref.size(); ++i) worst = std::max(worst, std::fabs(double(cfast[i]) - double(cref[i])));
  EXPECT_LE(worst, tol) << attn::dtype_name(dt) << " m=" << c.m << " n=" << c.n << " k=" << c.k << " ta=" << c.ta
                        << " tb=" << c.tb << " pad=" << c.pad << " alpha=" << c.alpha << " beta=" << c.beta
                        << " batch=" << c.batch << " bcast_b=" << c.bcast_b;
}

TEST(Gemm, MatchesNaiveOracle) {
  const std::vector<std::array<int64_t, 3>> sizes = {
      {1, 1, 1}, {2, 3, 4}, {5, 7, 3}, {16, 16, 16}, {17, 33, 65}, {1, 300, 7}, {300, 1, 9},
      {64, 64, 64}, {128, 96, 200}, {3, 5, 1}, {257, 129, 31}};
  for (auto [m, n, k] : sizes)
    for (int t = 0; t < 4; ++t)
      for (int64_t pad : {0, 3}) {
        GemmCase c{m, n, k, bool(t & 1), bool(t & 2), pad, 1.0, 0.0, 1, false};
        run_gemm_case<float>(c, attn::kFloat32);
        run_gemm_case<double>(c, attn::kFloat64);
      }
}

// Single large products are split into one panel of C per thread (columns when n >= m, else rows);
// every layout, uneven panel counts and alpha/beta must still equal the oracle.
TEST(Gemm, LargeProductsSplitIntoPanels) {
  const bool panels_before = attn::cpu::set_gemm_panels(true);
  const int saved = omp_get_max_threads();
  for (int threads : {2, 3}) {
    omp_set_num_threads(threads);
    for (auto [m, n, k] : std::vector<std::array<int64_t, 3>>{{129, 301, 140}, {333, 130, 150}, {200, 200, 64}})
      for (int t = 0; t < 4; ++t) {
        run_gemm_case<float>({m, n, k, bool(t & 1), bool(t & 2), 3, 1.0, 0.0, 1, false}, attn::kFloat32);
        run_gemm_case<float>({m, n, k, bool(t & 1), bool(t & 2), 0, -0.5, 1.5, 1, false}, attn::kFloat32);
      }
  }
  omp_set_num_threads(saved);
  attn::cpu::set_gemm_panels(panels_before);
}

// Single float32 products run on oneDNN's matmul primitive or on dnnl_sgemm (gemm.cc's
// prefer_matmul_primitive picks by shape). Both paths, forced in turn, must equal the oracle for every
// layout, leading-dimension padding, alpha (an output scale there) and beta (a sum post-op there).
TEST(Gemm, MatmulPrimitiveAndSgemmPathsAgree) {
  const std::vector<std::array<int64_t, 3>> sizes = {{300, 260, 620}, {64, 700, 520}, {70, 80, 600}};
  for (int mode : {1, 0}) {
    const int before = attn::cpu::set_gemm_matmul(mode);
    for (auto [m, n, k] : sizes)
      for (int t = 0; t < 4; ++t) {
        attn::backend::GemmArgs g{.trans_a = bool(t & 1), .trans_b = bool(t & 2), .m = m, .n = n, .k = k};
        EXPECT_EQ(attn::cpu::gemm_uses_matmul(g), mode == 1);
        run_gemm_case<float>({m, n, k, bool(t & 1), bool(t & 2), 0, 1.0, 0.0, 1, false}, attn::kFloat32);
        run_gemm_case<float>({m, n, k, bool(t & 1), bool(t & 2), 3, -0.5, 1.5, 1, false}, attn::kFloat32);
        run_gemm_case<float>({m, n, k, bool(t & 1), bool(t & 2), 1, 2.0, 1.0, 1, false}, attn::kFloat32);
        // a Linear's bias: added by the primitive as it writes C, or written into C before dnnl_sgemm
        run_gemm_case<float>({m, n, k, bool(t & 1), bool(t & 2), 2, 1.0, 0.0, 1, false, true}, attn::kFloat32);
        run_gemm_case<float>({m, n, k, bool(t & 1), bool(t & 2), 0, 0.5, 0.0, 1, false, true}, attn::kFloat32);
      }
    attn::cpu::set_gemm_matmul(before);
  }
  // The measured rule: a Linear with 512 outputs over 1024 rows takes the primitive, a wide one and a
  // shallow one take dnnl_sgemm; batches never take it.
  const int before = attn::cpu::set_gemm_matmul(-1);
  EXPECT_TRUE(attn::cpu::gemm_uses_matmul({.trans_b = true, .m = 1024, .n = 512, .k = 512}));
  EXPECT_TRUE(attn::cpu::gemm_uses_matmul({.trans_a = true, .m = 2048, .n = 512, .k = 1024}));
  EXPECT_FALSE(attn::cpu::gemm_uses_matmul({.trans_b = true, .m = 1024, .n = 2048, .k = 512}));
  EXPECT_FALSE(attn::cpu::gemm_uses_matmul({.trans_a = true, .m = 512, .n = 784, .k = 128}));
  EXPECT_FALSE(attn::cpu::gemm_uses_matmul({.m = 1024, .n = 512, .k = 512, .batch = 4}));
  attn::cpu::set_gemm_matmul(before);
}

TEST(Gemm, BiasRows) {
  // float64, tiny (loop kernel), an empty sum (C = bias), and the misuse that throws
  run_gemm_case<double>({30, 20, 10, false, true, 1, 1.0, 0.0, 1, false, true}, attn::kFloat64);
  run_gemm_case<float>({3, 4, 5, false, true, 0, 1.0, 0.0, 1, false, true}, attn::kFloat32);
  run_gemm_case<float>({7, 9, 0, false, true, 0, 1.0, 0.0, 1, false, true}, attn::kFloat32);
  std::vector<float> a(64, 1.f), b(64, 1.f), c(64), bias(8, 1.f);
  GemmArgs g{.m = 8, .n = 8, .k = 8, .a = a.data(), .lda = 8, .b = b.data(), .ldb = 8, .c = c.data(), .ldc = 8,
             .batch = 1, .bias = bias.data()};
  g.beta = 1.0;
  EXPECT_THROW(attn::cpu::gemm(g), std::invalid_argument);
  g.beta = 0.0;
  g.batch = 2;
  EXPECT_THROW(attn::cpu::gemm(g), std::invalid_argument);
}

TEST(Gemm, AlphaBetaAndBatches) {
  const std::vector<GemmCase> cases = {
      {7, 9, 11, false, false, 0, 0.5, 2.0, 1, false},
      {40, 50, 30, true, false, 2, 1.0, 1.0, 37, false},   // parallel over the batch
      {40, 50, 30, false, true, 0, 1.0, 0.0, 5, true},     // B shared by every item (stride 0)
      {300, 260, 270, true, true, 1, -1.0, 0.5, 2, false},  // large items: threads inside each
      {4, 4, 4, false, false, 0, 2.0, -1.0, 9, false},     // tiny: loop kernel
      {4, 5, 6, true, true, 1, 1.0, 0.0, 3, true},
  };
  for (const GemmCase& c : cases) {
    run_gemm_case<float>(c, attn::kFloat32);
    run_gemm_case<double>(c, attn::kFloat64);
  }
}

TEST(Gemm, BetaZeroIgnoresGarbageAndKZeroScales) {
  for (int64_t k : {0, 3, 40}) {
    std::vector<float> a(size_t(std::max<int64_t>(k, 1) * 4), 1.f), b(size_t(std::max<int64_t>(k, 1) * 4), 1.f);
    std::vector<float> c(16, std::numeric_limits<float>::quiet_NaN());
    GemmArgs g{.m = 4, .n = 4, .k = k, .a = a.data(), .lda = k, .b = b.data(), .ldb = 4, .c = c.data(), .ldc = 4};
    attn::cpu::gemm(g);
    for (float v : c) EXPECT_EQ(v, float(k));
    g.beta = 2.0;  // C = 2 * C + A @ B
    attn::cpu::gemm(g);
    for (float v : c) EXPECT_EQ(v, float(3 * k));
  }
}

TEST(Gemm, RejectsBadLeadingDimension) {
  std::vector<float> a(64), b(64), c(64);
  GemmArgs g{.m = 4, .n = 4, .k = 4, .a = a.data(), .lda = 2, .b = b.data(), .ldb = 4, .c = c.data(), .ldc = 4};
  EXPECT_THROW(attn::cpu::gemm(g), std::invalid_argument);
  g.lda = 4;
  g.ldc = 3;
  EXPECT_THROW(attn::cpu::gemm(g), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// matmul / mm / bmm / linear

Tensor rnd(Shape s, attn::DType dt = attn::kFloat32) { return attn::randn(std::move(s), {.dtype = dt}); }

// torch.matmul without GEMM: unit dims for 1-d operands, then (..., n, k, 1) * (..., 1, k, m) summed over k.
Tensor matmul_oracle(const Tensor& a, const Tensor& b) {
  attn::NoGradGuard ng;
  Tensor a2 = a.dim() == 1 ? a.unsqueeze(0) : a, b2 = b.dim() == 1 ? b.unsqueeze(1) : b;
  Tensor y = attn::sum(attn::mul(a2.unsqueeze(-1), b2.unsqueeze(-3)), {-2});
  if (b.dim() == 1) y = y.squeeze(-1);
  if (a.dim() == 1) y = y.squeeze(b.dim() == 1 ? -1 : -2);
  return y;
}

void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  EXPECT_TRUE(attn::allclose(got, want, tol, tol)) << what << "\n got " << got.to_string() << "\n want "
                                                    << want.to_string();
}

TEST(Matmul, ShapesAndLayoutsMatchOracle) {
  for (attn::DType dt : {attn::kFloat32, attn::kFloat64}) {
    const double tol = dt == attn::kFloat32 ? 1e-4 : 1e-10;
    auto check = [&](const Tensor& a, const Tensor& b, const std::string& what) {
      expect_close(attn::matmul(a, b), matmul_oracle(a, b), tol, what + " " + attn::dtype_name(dt));
    };
    check(rnd({5}, dt), rnd({5}, dt), "1d@1d");
    check(rnd({3, 5}, dt), rnd({5}, dt), "2d@1d");
    check(rnd({5}, dt), rnd({5, 4}, dt), "1d@2d");
    check(rnd({3, 5}, dt), rnd({5, 4}, dt), "2d@2d");
    check(rnd({2, 3, 5}, dt), rnd({2, 5, 4}, dt), "batched");
    check(rnd({2, 1, 3, 5}, dt), rnd({4, 5, 6}, dt), "broadcast batch");
    check(rnd({2, 3, 5}, dt), rnd({5, 4}, dt), "3d@2d folded");
    check(rnd({2, 3, 5}, dt), rnd({5}, dt), "3d@1d");
    check(rnd({5}, dt), rnd({2, 5, 4}, dt), "1d@3d");
    check(rnd({3, 5}, dt), rnd({2, 2, 5, 4}, dt), "2d@4d");
    check(rnd({5, 3}, dt).t(), rnd({4, 5}, dt).t(), "transposed views");
    check(rnd({2, 5, 3}, dt).transpose(1, 2), rnd({5, 2, 4}, dt).transpose(0, 1), "batched transposed views");
    check(rnd({3, 10}, dt).slice(1, 0, 10, 2), rnd({5, 8}, dt).slice(1, 0, 8, 2), "strided columns (copied)");
    check(rnd({4, 6, 7}, dt).narrow(2, 1, 5), rnd({5, 3}, dt), "narrowed rows, folded");
    check(rnd({2, 3, 4, 5}, dt).permute({2, 0, 1, 3}), rnd({5, 6}, dt), "permuted, folded");
    check(rnd({3, 5}, dt).expand({4, 3, 5}), rnd({4, 5, 2}, dt), "expanded a (stride 0)");
    check(rnd({1, 5}, dt).expand({3, 5}), rnd({5, 1}, dt).expand({5, 4}), "stride-0 matrix dims");
    check(rnd({6, 2, 33, 17}, dt), rnd({6, 2, 17, 29}, dt), "odd sizes");
    check(rnd({0, 3, 4}, dt), rnd({4, 2}, dt), "empty batch");
    check(attn::zeros({3, 0}, {.dtype = dt}), attn::zeros({0, 2}, {.dtype = dt}), "k = 0");
    check(attn::zeros({2, 3, 0}, {.dtype = dt}), attn::zeros({0, 2}, {.dtype = dt}), "k = 0, folded");
  }
}

TEST(Matmul, LargeMatchesOracleAndMethod) {
  Tensor a = rnd({96, 130}), b = rnd({130, 70});
  expect_close(a.matmul(b), matmul_oracle(a, b), 1e-3, "96x130x70");
  Tensor q = rnd({2, 4, 33, 16}), k = rnd({2, 4, 33, 16});
  expect_close(attn::matmul(q, k.transpose(-2, -1)), matmul_oracle(q, k.transpose(-2, -1)), 1e-4, "q @ k^T");
}

TEST(Matmul, ErrorsNameTheShapes) {
  auto msg = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  EXPECT_EQ(msg([] { attn::matmul(rnd({2, 3}), rnd({4, 5})); }), "matmul: shapes (2, 3) and (4, 5) cannot be multiplied");
  EXPECT_NE(msg([] { attn::mm(rnd({2, 3}), rnd({2, 3, 4})); }).find("(2, 3) and (2, 3, 4)"), std::string::npos);
  EXPECT_NE(msg([] { attn::bmm(rnd({2, 3, 4}), rnd({3, 4, 5})); }).find("(2, 3, 4) and (3, 4, 5)"), std::string::npos);
  EXPECT_NE(msg([] { attn::matmul(rnd({2, 3, 4}), rnd({3, 4, 5})); }).find("cannot be multiplied"), std::string::npos);
  EXPECT_NE(msg([] { attn::matmul(rnd({3}), rnd({3}, attn::kFloat64)); }).find("same dtype"), std::string::npos);
  EXPECT_NE(msg([] { attn::linear(rnd({2, 3}), rnd({4, 5})); }).find("(2, 3)"), std::string::npos);
  EXPECT_NE(msg([] { attn::linear(rnd({2, 5}), rnd({4, 5}), rnd({3})); }).find("bias (3,)"), std::string::npos);
}

Tensor leaf(Shape s) { return attn::randn(std::move(s), {.dtype = attn::kFloat64}).requires_grad_(); }
Tensor leaf_t(Shape s) {  // a transposed (non-contiguous) leaf of shape s
  Shape st = s;
  std::swap(st[st.size() - 1], st[st.size() - 2]);
  Tensor t = attn::randn(st, {.dtype = attn::kFloat64}).transpose(-2, -1);
  t.requires_grad_();
  return t;
}

TEST(Matmul, GradcheckFloat64) {
  auto mmf = [](const std::vector<Tensor>& v) { return attn::matmul(v[0], v[1]); };
  const std::vector<std::pair<Tensor, Tensor>> cases = {
      {leaf({4}), leaf({4})},          {leaf({3, 4}), leaf({4})},        {leaf({4}), leaf({4, 5})},
      {leaf({3, 4}), leaf({4, 5})},    {leaf({2, 3, 4}), leaf({2, 4, 5})}, {leaf({2, 1, 3, 4}), leaf({3, 4, 2})},
      {leaf({2, 3, 4}), leaf({4, 5})}, {leaf({2, 3, 4}), leaf({4})},     {leaf({4}), leaf({2, 4, 3})},
      {leaf({3, 4}), leaf({2, 4, 5})}, {leaf_t({3, 4}), leaf_t({4, 5})}, {leaf_t({2, 3, 4}), leaf({4, 2})},
  };
  for (const auto& [a, b] : cases)
    EXPECT_TRUE(attn_test::gradcheck(mmf, {a, b})) << attn::shape_str(a.shape()) << " @ " << attn::shape_str(b.shape());
  EXPECT_TRUE(attn_test::gradcheck([](const std::vector<Tensor>& v) { return attn::mm(v[0], v[1]); },
                                   {leaf_t({3, 5}), leaf({5, 2})}));
  EXPECT_TRUE(attn_test::gradcheck([](const std::vector<Tensor>& v) { return attn::bmm(v[0], v[1]); },
                                   {leaf({2, 3, 5}), leaf_t({2, 5, 4})}));
  // The same operand on both sides, and a gradient through an expanded operand.
  Tensor s = leaf({4, 4});
  EXPECT_TRUE(attn_test::gradcheck([](const std::vector<Tensor>& v) { return attn::matmul(v[0], v[0]); }, {s}));
  EXPECT_TRUE(attn_test::gradcheck(
      [](const std::vector<Tensor>& v) { return attn::matmul(v[0].expand({3, 2, 4}), v[1]); }, {leaf({2, 4}), leaf({3, 4, 2})}));
}

TEST(Linear, MatchesOracle) {
  for (attn::DType dt : {attn::kFloat32, attn::kFloat64}) {
    const double tol = dt == attn::kFloat32 ? 1e-4 : 1e-10;
    Tensor w = rnd({7, 5}, dt), b = rnd({7}, dt);
    for (const Tensor& x : {rnd({5}, dt), rnd({4, 5}, dt), rnd({2, 3, 5}, dt), rnd({5, 4}, dt).t(),
                            rnd({2, 5, 3}, dt).transpose(1, 2), rnd({0, 5}, dt)}) {
      Tensor want = attn::add(matmul_oracle(x, w.t()), b);
      expect_close(attn::linear(x, w, b), want, tol, "linear " + attn::shape_str(x.shape()));
      expect_close(attn::linear(x, w), matmul_oracle(x, w.t()), tol, "linear no bias " + attn::shape_str(x.shape()));
    }
    Tensor x0 = attn::zeros({3, 0}, {.dtype = dt}), w0 = attn::zeros({7, 0}, {.dtype = dt});
    expect_close(attn::linear(x0, w0, b), b.expand({3, 7}).contiguous(), tol, "in_features = 0");
    Tensor wt = rnd({5, 7}, dt).t();  // transposed weight view
    Tensor x = rnd({3, 5}, dt);
    expect_close(attn::linear(x, wt, b), attn::add(matmul_oracle(x, wt.t()), b), tol, "transposed weight");
  }
}

TEST(Linear, GradcheckFloat64) {
  auto lin = [](const std::vector<Tensor>& v) { return attn::linear(v[0], v[1], v.size() > 2 ? v[2] : Tensor()); };
  EXPECT_TRUE(attn_test::gradcheck(lin, {leaf({4, 5}), leaf({3, 5}), leaf({3})}));
  EXPECT_TRUE(attn_test::gradcheck(lin, {leaf({2, 4, 5}), leaf({3, 5}), leaf({3})}));
  EXPECT_TRUE(attn_test::gradcheck(lin, {leaf({5}), leaf({3, 5}), leaf({3})}));
  EXPECT_TRUE(attn_test::gradcheck(lin, {leaf({4, 5}), leaf({3, 5})}));
  EXPECT_TRUE(attn_test::gradcheck(lin, {leaf_t({4, 5}), leaf_t({3, 5}), leaf({3})}));
  // only some inputs require grad
  Tensor w = attn::randn({3, 5}, {.dtype = attn::kFloat64});
  EXPECT_TRUE(attn_test::gradcheck(lin, {leaf({4, 5}), w, leaf({3})}));
}

TEST(Linear, BiasGradSumsRows) {
  Tensor x = attn::ones({6, 2}), w = attn::ones({3, 2}, {.requires_grad = true});
  Tensor b = attn::zeros({3}, {.requires_grad = true});
  attn::linear(x, w, b).sum().backward();
  EXPECT_EQ(b.grad().to_vector<float>(), std::vector<float>({6, 6, 6}));
  EXPECT_EQ(w.grad().to_vector<float>(), std::vector<float>(6, 6.f));
}

}  // namespace
