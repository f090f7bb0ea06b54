// tests/test_conv.cc — conv2d kernels (oneDNN float32 vs the direct-loop oracle, every option), the
// primitive cache, conv1d / conv2d / pooling ops against hand-computed values and finite differences.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/linalg_kernels.h"
#include "backend/cpu/pool_simd.h"
#include "gradcheck.h"

namespace {

using attn::Shape;
using attn::Tensor;
using attn::backend::Conv2dArgs;

struct ConvCase {
  int64_t n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups;
};

Conv2dArgs args_of(const ConvCase& c, attn::DType dt) {
  Conv2dArgs a{};
  a.n = c.n;
  a.c_in = c.c_in;
  a.h = c.h;
  a.w = c.w;
  a.c_out = c.c_out;
  a.kh = c.kh;
  a.kw = c.kw;
  a.stride_h = c.sh;
  a.stride_w = c.sw;
  a.pad_h = c.ph;
  a.pad_w = c.pw;
  a.dil_h = c.dh;
  a.dil_w = c.dw;
  a.groups = c.groups;
  a.out_h = (c.h + 2 * c.ph - c.dh * (c.kh - 1) - 1) / c.sh + 1;
  a.out_w = (c.w + 2 * c.pw - c.dw * (c.kw - 1) - 1) / c.sw + 1;
  a.dtype = dt;
  return a;
}

std::vector<float> random_vec(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

const std::vector<ConvCase> kCases = {
    // n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups
    {2, 3, 5, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1},
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 9, 8, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1},   // stride 2 drops the last column
    {1, 2, 10, 9, 2, 3, 2, 1, 3, 2, 1, 2, 3, 1},  // dilation, rect kernel, mixed stride
    {2, 4, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},   // groups
    {1, 6, 5, 7, 6, 3, 3, 2, 1, 1, 1, 1, 1, 6},   // depthwise
    {3, 5, 4, 4, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1},   // 1x1
    {2, 1, 28, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1}, // the CNN's first layer (fewer channels)
    {2, 8, 14, 14, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {1, 3, 1, 9, 2, 1, 3, 1, 2, 0, 1, 1, 2, 1},   // conv1d as H = 1
    {2, 16, 7, 6, 24, 3, 3, 1, 2, 1, 1, 1, 1, 4},  // groups with blocked layouts (c_in >= 8)
    {2, 16, 6, 6, 16, 3, 3, 2, 2, 1, 1, 2, 2, 16}, // depthwise, blocked, dilated
};

TEST(ConvKernel, OneDnnMatchesDirectLoops) {
  for (size_t ci = 0; ci < kCases.size(); ++ci) {
    const ConvCase& c = kCases[ci];
    const Conv2dArgs a = args_of(c, attn::kFloat32);
    const size_t nx = size_t(a.n * a.c_in * a.h * a.w), nw = size_t(a.c_out * (a.c_in / a.groups) * a.kh * a.kw);
    const size_t ny = size_t(a.n * a.c_out * a.out_h * a.out_w);
    auto x = random_vec(nx, 1), w = random_vec(nw, 2), b = random_vec(size_t(a.c_out), 3), gy = random_vec(ny, 4);
    const double tol = 2e-5 * double(a.c_in / a.groups * a.kh * a.kw + a.n * a.out_h * a.out_w);
    for (bool with_bias : {true, false}) {
      std::vector<float> y(ny), y_ref(ny);
      attn::cpu::conv2d(a, x.data(), w.data(), with_bias ? b.data() : nullptr, y.data());
      attn::cpu::ref::conv2d(a, x.data(), w.data(), with_bias ? b.data() : nullptr, y_ref.data());
      EXPECT_LE(max_diff(y, y_ref), tol) << "forward case " << ci << " bias " << with_bias;
    }
    std::vector<float> gx(nx), gw(nw), gb(size_t(a.c_out)), gx_r(nx), gw_r(nw), gb_r(size_t(a.c_out));
    attn::cpu::conv2d_backward(a, x.data(), w.data(), gy.data(), gx.data(), gw.data(), gb.data());
    attn::cpu::ref::conv2d_backward(a, x.data(), w.data(), gy.data(), gx_r.data(), gw_r.data(), gb_r.data());
    EXPECT_LE(max_diff(gx, gx_r), tol) << "grad_x case " << ci;
    EXPECT_LE(max_diff(gw, gw_r), tol) << "grad_weight case " << ci;
    EXPECT_LE(max_diff(gb, gb_r), tol) << "grad_bias case " << ci;
    // Each gradient alone (the others not requested).
    std::vector<float> only(std::max({nx, nw, size_t(a.c_out)}), 7.f);
    attn::cpu::conv2d_backward(a, x.data(), w.data(), gy.data(), only.data(), nullptr, nullptr);
    EXPECT_LE(max_diff(std::vector<float>(only.begin(), only.begin() + long(nx)), gx_r), tol) << "only grad_x " << ci;
    attn::cpu::conv2d_backward(a, x.data(), w.data(), gy.data(), nullptr, only.data(), nullptr);
    EXPECT_LE(max_diff(std::vector<float>(only.begin(), only.begin() + long(nw)), gw_r), tol) << "only grad_w " << ci;
    attn::cpu::conv2d_backward(a, x.data(), w.data(), gy.data(), nullptr, nullptr, only.data());
    EXPECT_LE(max_diff(std::vector<float>(only.begin(), only.begin() + a.c_out), gb_r), tol) << "only grad_b " << ci;
  }
}

TEST(ConvKernel, DirectLoopsHandComputed) {
  // x = 1..9 as (1, 1, 3, 3), weight (1, 1, 2, 2) = [[1, 0], [0, -1]], bias 0.5, padding 0:
  // y[i][j] = x[i][j] - x[i+1][j+1] + 0.5 = -4 + 0.5 everywhere.
  for (attn::DType dt : {attn::kFloat32, attn::kFloat64}) {
    Conv2dArgs a = args_of({1, 1, 3, 3, 1, 2, 2, 1, 1, 0, 0, 1, 1, 1}, dt);
    Tensor x = attn::arange(1.0, 10.0, 1.0, {.dtype = dt}), w = attn::from_vector<double>({1, 0, 0, -1}, {4}).to(dt);
    Tensor b = attn::full({1}, 0.5, {.dtype = dt}), y = attn::zeros({4}, {.dtype = dt});
    attn::cpu::ref::conv2d(a, x.raw_data(), w.raw_data(), b.raw_data(), y.raw_data());
    EXPECT_EQ(y.to_vector<double>(), std::vector<double>(4, -3.5));
    attn::cpu::conv2d(a, x.raw_data(), w.raw_data(), b.raw_data(), y.raw_data());
    EXPECT_EQ(y.to_vector<double>(), std::vector<double>(4, -3.5));
    // grad_y = ones: grad_b = 4, grad_w[p][q] = sum of the 2x2 window sums, grad_x = taps hit counts.
    Tensor gy = attn::ones({4}, {.dtype = dt}), gx = attn::zeros({9}, {.dtype = dt});
    Tensor gw = attn::zeros({4}, {.dtype = dt}), gb = attn::zeros({1}, {.dtype = dt});
    attn::cpu::ref::conv2d_backward(a, x.raw_data(), w.raw_data(), gy.raw_data(), gx.raw_data(), gw.raw_data(),
                                    gb.raw_data());
    EXPECT_EQ(gb.to_vector<double>(), std::vector<double>({4}));
    EXPECT_EQ(gw.to_vector<double>(), std::vector<double>({12, 16, 24, 28}));
    EXPECT_EQ(gx.to_vector<double>(), std::vector<double>({1, 1, 0, 1, 0, -1, 0, -1, -1}));
  }
}

TEST(ConvKernel, PrimitivesAreCachedByShape) {
  const Conv2dArgs a = args_of({4, 3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1}, attn::kFloat32);
  const size_t nx = size_t(a.n * a.c_in * a.h * a.w), nw = size_t(a.c_out * a.c_in * 9);
  const size_t ny = size_t(a.n * a.c_out * a.out_h * a.out_w);
  auto x = random_vec(nx, 5), w = random_vec(nw, 6), b = random_vec(size_t(a.c_out), 7), gy = random_vec(ny, 8);
  std::vector<float> y(ny), gx(nx), gw(nw), gb(size_t(a.c_out));
  attn::cpu::conv2d(a, x.data(), w.data(), b.data(), y.data());
  attn::cpu::conv2d_backward(a, x.data(), w.data(), gy.data(), gx.data(), gw.data(), gb.data());
  const int64_t misses = attn::cpu::conv2d_cache_misses();
  for (int step = 0; step < 3; ++step) {
    attn::cpu::conv2d(a, x.data(), w.data(), b.data(), y.data());
    attn::cpu::conv2d_backward(a, x.data(), w.data(), gy.data(), gx.data(), gw.data(), gb.data());
  }
  EXPECT_EQ(attn::cpu::conv2d_cache_misses(), misses);
  Conv2dArgs other = a;
  other.n = 2;  // a new shape is a miss
  attn::cpu::conv2d(other, x.data(), w.data(), b.data(), y.data());
  EXPECT_EQ(attn::cpu::conv2d_cache_misses(), misses + 1);
}

TEST(ConvKernel, RejectsInconsistentArgs) {
  Conv2dArgs a = args_of({1, 4, 5, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1}, attn::kFloat32);
  a.out_h = 4;
  std::vector<float> buf(1024);
  EXPECT_THROW(attn::cpu::conv2d(a, buf.data(), buf.data(), nullptr, buf.data()), std::invalid_argument);
  a = args_of({1, 4, 5, 5, 4, 3, 3, 1, 1, 0, 0, 1, 1, 3}, attn::kFloat32);  // 4 channels, 3 groups
  EXPECT_THROW(attn::cpu::conv2d(a, buf.data(), buf.data(), nullptr, buf.data()), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// ops

Tensor leaf(Shape s) { return attn::randn(std::move(s), {.dtype = attn::kFloat64}).requires_grad_(); }

TEST(Conv2d, GradcheckAllOptions) {
  struct Opt {
    Shape x, w;
    attn::Conv2dOptions o;
    bool bias;
  };
  const std::vector<Opt> opts = {
      {{2, 3, 5, 5}, {4, 3, 3, 3}, {}, true},
      {{1, 2, 6, 5}, {3, 2, 3, 3}, {.stride = {2, 1}, .padding = {1, 2}}, true},
      {{1, 2, 7, 7}, {2, 2, 3, 2}, {.padding = {2, 1}, .dilation = {2, 3}}, false},
      {{2, 4, 4, 5}, {6, 2, 3, 3}, {.padding = {1, 1}, .groups = 2}, true},
      {{1, 3, 5, 4}, {3, 1, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}, .groups = 3}, true},
      {{2, 3, 4, 4}, {5, 3, 1, 1}, {}, true},
  };
  for (const Opt& p : opts) {
    std::vector<Tensor> in = {leaf(p.x), leaf(p.w)};
    if (p.bias) in.push_back(leaf({p.w[0]}));
    const attn::Conv2dOptions o = p.o;
    EXPECT_TRUE(attn_test::gradcheck(
        [o](const std::vector<Tensor>& v) { return attn::conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor(), o); }, in))
        << attn::shape_str(p.x) << " * " << attn::shape_str(p.w);
  }
  // Non-contiguous input (channels-last memory viewed as NCHW) and an unbatched input.
  Tensor xp = attn::randn({2, 5, 4, 3}, {.dtype = attn::kFloat64}).permute({0, 3, 1, 2});
  xp.requires_grad_();
  EXPECT_TRUE(attn_test::gradcheck(
      [](const std::vector<Tensor>& v) { return attn::conv2d(v[0], v[1], v[2], {.padding = {1, 1}}); },
      {xp, leaf({2, 3, 3, 3}), leaf({2})}));
  EXPECT_TRUE(attn_test::gradcheck([](const std::vector<Tensor>& v) { return attn::conv2d(v[0], v[1]); },
                                   {leaf({2, 4, 4}), leaf({3, 2, 2, 2})}));
}

TEST(Conv2d, Float32MatchesFloat64AndShapes) {
  Tensor x = attn::randn({3, 4, 9, 8}, {.dtype = attn::kFloat64}), w = attn::randn({6, 2, 3, 3}, {.dtype = attn::kFloat64});
  Tensor b = attn::randn({6}, {.dtype = attn::kFloat64});
  attn::Conv2dOptions o{.stride = {2, 1}, .padding = {1, 0}, .dilation = {1, 2}, .groups = 2};
  Tensor y64 = attn::conv2d(x, w, b, o);
  Tensor y32 = attn::conv2d(x.to(attn::kFloat32), w.to(attn::kFloat32), b.to(attn::kFloat32), o);
  EXPECT_EQ(y64.shape(), Shape({3, 6, 5, 4}));
  EXPECT_TRUE(attn::allclose(y32.to(attn::kFloat64), y64, 1e-4, 1e-4));
}

TEST(Conv2d, ErrorsNameTheShapes) {
  auto msg = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  EXPECT_NE(msg([] { attn::conv2d(attn::randn({1, 3, 5, 5}), attn::randn({4, 2, 3, 3})); }).find("(1, 3, 5, 5)"),
            std::string::npos);
  EXPECT_NE(msg([] { attn::conv2d(attn::randn({1, 3, 2, 2}), attn::randn({4, 3, 3, 3})); }).find("smaller"),
            std::string::npos);
  EXPECT_NE(msg([] { attn::conv2d(attn::randn({1, 3, 5, 5}), attn::randn({4, 3, 3, 3}), attn::randn({3})); })
                .find("bias (3,)"),
            std::string::npos);
  EXPECT_NE(msg([] { attn::conv1d(attn::randn({1, 3, 5, 5}), attn::randn({4, 3, 3})); }).find("(1, 3, 5, 5)"),
            std::string::npos);
  EXPECT_NE(msg([] { attn::max_pool2d(attn::randn({1, 3, 5, 5}), {.kernel_size = {2, 2}, .padding = {2, 0}}); })
                .find("half"),
            std::string::npos);
}

TEST(Conv1d, MatchesConv2dAndGradcheck) {
  Tensor x = attn::randn({2, 4, 11}), w = attn::randn({6, 2, 3}), b = attn::randn({6});
  Tensor y1 = attn::conv1d(x, w, b, {.stride = 2, .padding = 1, .dilation = 2, .groups = 2});
  Tensor y2 = attn::conv2d(x.unsqueeze(2), w.unsqueeze(2), b,
                           {.stride = {1, 2}, .padding = {0, 1}, .dilation = {1, 2}, .groups = 2});
  EXPECT_EQ(y1.shape(), Shape({2, 6, 5}));
  EXPECT_TRUE(attn::allclose(y1, y2.squeeze(2)));
  EXPECT_TRUE(attn_test::gradcheck(
      [](const std::vector<Tensor>& v) { return attn::conv1d(v[0], v[1], v[2], {.stride = 2, .padding = 1, .dilation = 2, .groups = 2}); },
      {leaf({2, 4, 11}), leaf({6, 2, 3}), leaf({6})}));
  EXPECT_TRUE(attn_test::gradcheck([](const std::vector<Tensor>& v) { return attn::conv1d(v[0], v[1]); },
                                   {leaf({3, 7}), leaf({2, 3, 2})}));
}

// ---------------------------------------------------------------------------------------------
// pooling

TEST(Pool, MaxPoolHandComputedWithCeilAndPadding) {
  for (attn::DType dt : {attn::kFloat32, attn::kFloat64}) {
    // x = 0..24 as (1, 1, 5, 5); k 2, s 2, ceil_mode: 3x3 output, the last row/column windows are partial.
    Tensor x = attn::arange(0.0, 25.0, 1.0, {.dtype = dt}).view({1, 1, 5, 5});
    Tensor y = attn::max_pool2d(x, {.kernel_size = {2, 2}, .ceil_mode = true});
    EXPECT_EQ(y.shape(), Shape({1, 1, 3, 3}));
    EXPECT_EQ(y.to_vector<double>(), std::vector<double>({6, 8, 9, 16, 18, 19, 21, 23, 24}));
    // floor mode drops them
    EXPECT_EQ(attn::max_pool2d(x, {.kernel_size = {2, 2}}).to_vector<double>(), std::vector<double>({6, 8, 16, 18}));
    // k 3, s 2, pad 1: windows clipped to the input
    Tensor y2 = attn::max_pool2d(x, {.kernel_size = {3, 3}, .stride = {{2, 2}}, .padding = {1, 1}});
    EXPECT_EQ(y2.to_vector<double>(), std::vector<double>({6, 8, 9, 16, 18, 19, 21, 23, 24}));
    // ceil_mode with padding: 6x6, k 2, s 2, pad 1 -> ceil(6 / 2) + 1 = 4 windows (the last starts at 5).
    Tensor z = attn::arange(0.0, 36.0, 1.0, {.dtype = dt}).view({1, 1, 6, 6});
    EXPECT_EQ(attn::max_pool2d(z, {.kernel_size = {2, 2}, .padding = {1, 1}, .ceil_mode = true}).shape(),
              Shape({1, 1, 4, 4}));
    // 5x5, k 2, s 2, pad 1, ceil: ceil(5 / 2) + 1 = 4, but the 4th window would start at 6 - 1 = 5,
    // in the right padding, so it is dropped -> 3.
    EXPECT_EQ(attn::max_pool2d(x, {.kernel_size = {2, 2}, .padding = {1, 1}, .ceil_mode = true}).shape(),
              Shape({1, 1, 3, 3}));
  }
}

TEST(Pool, MaxPoolGradientGoesToTheFirstMaxAndNaNPropagates) {
  Tensor x = attn::from_vector<float>({1, 5, 5, 2, 0, 3, 3, 1}, {1, 1, 2, 4}).requires_grad_();
  Tensor y = attn::max_pool2d(x, {.kernel_size = {2, 2}});
  EXPECT_EQ(y.to_vector<float>(), std::vector<float>({5, 5}));
  y.sum().backward();
  EXPECT_EQ(x.grad().to_vector<float>(), std::vector<float>({0, 1, 1, 0, 0, 0, 0, 0}));
  Tensor n = attn::from_vector<float>({1, std::numeric_limits<float>::quiet_NaN(), 7, 2}, {1, 1, 2, 2});
  EXPECT_TRUE(std::isnan(attn::max_pool2d(n, {.kernel_size = {2, 2}}).item<float>()));
}

// PyTorch's max pooling rule, written out: scan the clipped window row by row, a later element wins
// if it is greater or NaN.
void max_pool_oracle(const attn::backend::Pool2dArgs& a, const std::vector<float>& x, std::vector<float>& y,
                     std::vector<int64_t>& idx) {
  for (int64_t p = 0; p < a.n * a.c; ++p)
    for (int64_t oh = 0; oh < a.out_h; ++oh)
      for (int64_t ow = 0; ow < a.out_w; ++ow) {
        float best = -std::numeric_limits<float>::infinity();
        int64_t bi = -1;
        for (int64_t ih = oh * a.stride_h - a.pad_h; ih < oh * a.stride_h - a.pad_h + a.kh; ++ih)
          for (int64_t iw = ow * a.stride_w - a.pad_w; iw < ow * a.stride_w - a.pad_w + a.kw; ++iw) {
            if (ih < 0 || iw < 0 || ih >= a.h || iw >= a.w) continue;
            if (bi < 0) bi = ih * a.w + iw;
            const float v = x[size_t(p * a.h * a.w + ih * a.w + iw)];
            if (v > best || std::isnan(v)) {
              best = v;
              bi = ih * a.w + iw;
            }
          }
        y[size_t((p * a.out_h + oh) * a.out_w + ow)] = best;
        idx[size_t((p * a.out_h + oh) * a.out_w + ow)] = bi;
      }
}

// The 2x2 / stride 2 path runs per instruction set (AVX-512 rows, SSE2 rows, scalar tails); each must
// equal the exact oracle, and its backward must equal a zero fill + scatter of the same indices.
struct PoolIsaCase {
  attn::cpu::Isa isa;
  int64_t w;
};
class PoolIsa : public ::testing::TestWithParam<PoolIsaCase> {
 protected:
  void SetUp() override {
    if (!attn::cpu::set_isa_for_testing(GetParam().isa)) GTEST_SKIP() << "CPU lacks " << attn::cpu::isa_name(GetParam().isa);
  }
  void TearDown() override { attn::cpu::reset_isa(); }
};
INSTANTIATE_TEST_SUITE_P(Widths, PoolIsa,
                         ::testing::Values(PoolIsaCase{attn::cpu::Isa::Avx512, 11}, PoolIsaCase{attn::cpu::Isa::Avx512, 28},
                                           PoolIsaCase{attn::cpu::Isa::Avx512, 45}, PoolIsaCase{attn::cpu::Isa::Avx512, 70},
                                           PoolIsaCase{attn::cpu::Isa::Avx2, 11}, PoolIsaCase{attn::cpu::Isa::Avx2, 45}),
                         [](const ::testing::TestParamInfo<PoolIsaCase>& i) {
                           return std::string(attn::cpu::isa_name(i.param.isa)) + "_w" + std::to_string(i.param.w);
                         });

TEST_P(PoolIsa, MaxPool2x2ForwardAndBackwardMatchOracle) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(0, 3), pick(0, 60);
  std::normal_distribution<float> normal;
  attn::backend::Pool2dArgs a{};
  a.n = 2, a.c = 3, a.h = 9, a.w = GetParam().w, a.kh = 2, a.kw = 2, a.stride_h = 2, a.stride_w = 2;
  a.out_h = a.h / 2, a.out_w = a.w / 2;
  const size_t nx = size_t(a.n * a.c * a.h * a.w), ny = size_t(a.n * a.c * a.out_h * a.out_w);
  for (int with_nan = 0; with_nan < 2; ++with_nan) {
    std::vector<float> x(nx);
    for (float& v : x) {
      const int r = pick(rng);
      v = with_nan && r == 0 ? std::numeric_limits<float>::quiet_NaN() : r < 20 ? float(small(rng)) : normal(rng);
    }
    std::vector<float> y(ny), y_want(ny);
    std::vector<int64_t> idx(ny), idx_want(ny);
    attn::cpu::max_pool2d(a, x.data(), y.data(), idx.data());
    max_pool_oracle(a, x, y_want, idx_want);
    for (size_t i = 0; i < ny; ++i) {
      ASSERT_EQ(idx[i], idx_want[i]) << "output " << i;
      ASSERT_TRUE(y[i] == y_want[i] || (std::isnan(y[i]) && std::isnan(y_want[i]))) << "output " << i;
    }
    std::vector<float> gy(ny), gx(nx, 7.0f), gx_want(nx, 0.0f);
    for (float& v : gy) v = normal(rng);
    const int64_t in_plane = a.h * a.w, out_plane = a.out_h * a.out_w;
    for (size_t i = 0; i < ny; ++i) gx_want[size_t(int64_t(i) / out_plane * in_plane + idx[i])] += gy[i];
    attn::cpu::max_pool2d_backward(a, gy.data(), idx.data(), gx.data());
    for (size_t i = 0; i < nx; ++i) ASSERT_EQ(gx[i], gx_want[i]) << "input " << i;
    if (GetParam().isa == attn::cpu::Isa::Avx512) {  // the window-wise rows accept every forward index
      std::vector<float> rows(size_t(2 * a.w));
      for (int64_t r = 0; r < a.n * a.c * a.out_h; ++r) {
        const int64_t base = (r % a.out_h) * 2 * a.w;
        ASSERT_TRUE(attn::cpu::avx512::max_row_2x2_backward(gy.data() + r * a.out_w, idx.data() + r * a.out_w,
                                                            rows.data(), rows.data() + a.w, a.out_w, a.w, base))
            << "row " << r;
      }
    }
    // an index inside the plane but outside its own window: still a correct scatter
    idx[1] = 0;
    std::fill(gx_want.begin(), gx_want.end(), 0.0f);
    for (size_t i = 0; i < ny; ++i) gx_want[size_t(int64_t(i) / out_plane * in_plane + idx[i])] += gy[i];
    attn::cpu::max_pool2d_backward(a, gy.data(), idx.data(), gx.data());
    for (size_t i = 0; i < nx; ++i) ASSERT_EQ(gx[i], gx_want[i]) << "input " << i << " (foreign index)";
  }
}

TEST(Pool, MaxPoolKernelMatchesOracleWithTiesInfAndNaN) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> small(0, 3), pick(0, 40);
  // 2x2 stride 2 (the branch-free path, odd sizes leave a row/column out) and general windows
  for (auto [kh, kw, sh, sw, ph, pw] : std::vector<std::array<int64_t, 6>>{
           {2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {2, 3, 1, 2, 1, 0}}) {
    attn::backend::Pool2dArgs a{};
    a.n = 2, a.c = 3, a.h = 9, a.w = 11, a.kh = kh, a.kw = kw, a.stride_h = sh, a.stride_w = sw, a.pad_h = ph,
    a.pad_w = pw;
    a.out_h = (a.h + 2 * ph - kh) / sh + 1;
    a.out_w = (a.w + 2 * pw - kw) / sw + 1;
    std::vector<float> x(size_t(a.n * a.c * a.h * a.w));
    for (float& v : x) {
      const int r = pick(rng);
      v = r == 0 ? std::numeric_limits<float>::quiet_NaN() : r == 1 ? -std::numeric_limits<float>::infinity()
                                                                    : float(small(rng));  // many ties
    }
    const size_t ny = size_t(a.n * a.c * a.out_h * a.out_w);
    std::vector<float> y(ny), y_want(ny);
    std::vector<int64_t> idx(ny), idx_want(ny);
    attn::cpu::max_pool2d(a, x.data(), y.data(), idx.data());
    max_pool_oracle(a, x, y_want, idx_want);
    for (size_t i = 0; i < ny; ++i) {
      ASSERT_EQ(idx[i], idx_want[i]) << "output " << i << " kernel " << kh << "x" << kw;
      ASSERT_TRUE(y[i] == y_want[i] || (std::isnan(y[i]) && std::isnan(y_want[i]))) << "output " << i;
    }
  }
}

TEST(Pool, AvgPoolDivisors) {
  for (attn::DType dt : {attn::kFloat32, attn::kFloat64}) {
    Tensor x = attn::ones({1, 1, 3, 3}, {.dtype = dt});
    // k 2, s 2, pad 1: every window holds 1, 2 or 4 ones of 4 padded positions.
    attn::Pool2dOptions o{.kernel_size = {2, 2}, .padding = {1, 1}};
    EXPECT_EQ(attn::avg_pool2d(x, o).to_vector<double>(), std::vector<double>({0.25, 0.5, 0.5, 1}));
    o.count_include_pad = false;
    EXPECT_EQ(attn::avg_pool2d(x, o).to_vector<double>(), std::vector<double>({1, 1, 1, 1}));
    // ceil_mode: the partial window past the input (no padding) divides by its clipped size.
    attn::Pool2dOptions c{.kernel_size = {2, 2}, .ceil_mode = true};
    Tensor z = attn::arange(0.0, 9.0, 1.0, {.dtype = dt}).view({1, 1, 3, 3});
    EXPECT_EQ(attn::avg_pool2d(z, c).to_vector<double>(), std::vector<double>({2, 3.5, 6.5, 8}));
    // ceil_mode + padding + count_include_pad: the divisor counts the padding but not the overhang.
    attn::Pool2dOptions cp{.kernel_size = {3, 3}, .stride = {{2, 2}}, .padding = {1, 1}, .ceil_mode = true};
    Tensor y = attn::avg_pool2d(attn::ones({1, 1, 4, 4}, {.dtype = dt}), cp);
    EXPECT_EQ(y.shape(), Shape({1, 1, 3, 3}));
    // window (0, 0) covers rows/cols [-1, 2): 4 ones / 9; the last window covers [3, 6) clipped to
    // [3, 5) for the divisor (the padding row 4 counts, the overhang row 5 does not): 1 one / 4.
    const std::vector<double> v = y.to_vector<double>();
    EXPECT_NEAR(v[0], 4.0 / 9, 1e-6);
    EXPECT_NEAR(v[1], 6.0 / 9, 1e-6);
    EXPECT_NEAR(v[2], 2.0 / 6, 1e-6);  // columns [3, 5): one input column, one padding column
    EXPECT_NEAR(v[8], 1.0 / 4, 1e-6);
  }
}

TEST(Pool, GradcheckFloat64) {
  // distinct values so max pooling has a unique argmax per window
  Tensor xm = attn::randperm(2 * 2 * 7 * 6).to(attn::kFloat64).view({2, 2, 7, 6}).detach();
  xm = attn::mul(xm, 0.1).detach();
  xm.requires_grad_();
  const std::vector<attn::Pool2dOptions> opts = {
      {.kernel_size = {2, 2}},
      {.kernel_size = {3, 3}, .stride = {{2, 2}}, .padding = {1, 1}},
      {.kernel_size = {2, 3}, .stride = {{1, 2}}, .ceil_mode = true},
      {.kernel_size = {3, 2}, .stride = {{2, 2}}, .padding = {1, 1}, .ceil_mode = true, .count_include_pad = false},
  };
  for (const auto& o : opts) {
    EXPECT_TRUE(attn_test::gradcheck([o](const std::vector<Tensor>& v) { return attn::max_pool2d(v[0], o); }, {xm}));
    EXPECT_TRUE(attn_test::gradcheck([o](const std::vector<Tensor>& v) { return attn::avg_pool2d(v[0], o); },
                                     {leaf({1, 2, 7, 6})}));
  }
  EXPECT_TRUE(attn_test::gradcheck(
      [](const std::vector<Tensor>& v) { return attn::avg_pool2d(v[0], {.kernel_size = {2, 2}}); }, {leaf({3, 4, 4})}));
}

}  // namespace

// Average pooling written out the way PyTorch defines it (window clipped to the input; the divisor
// counts the window clipped to size + padding, or only the input cells without count_include_pad),
// against the separable kernel (row sums, then column sums; the 2 x 2 / stride 2 rows use one divisor),
// forward and backward, over kernels, strides, padding, ceil-mode windows and odd widths.
TEST(Pool, AvgPoolKernelMatchesOracle) {
  std::mt19937 rng(9);
  std::normal_distribution<double> normal;
  struct Cfg {
    int64_t h, w, kh, kw, sh, sw, ph, pw;
    bool ceil, count_pad;
  };
  const Cfg cfgs[] = {{6, 8, 2, 2, 2, 2, 0, 0, false, true},  {7, 9, 2, 2, 2, 2, 0, 0, false, true},
                      {7, 9, 2, 2, 2, 2, 0, 0, true, true},   {5, 7, 3, 3, 2, 2, 1, 1, false, true},
                      {5, 7, 3, 3, 2, 2, 1, 1, true, false},  {6, 6, 2, 2, 2, 2, 1, 1, false, false},
                      {6, 7, 2, 3, 1, 2, 0, 1, false, true},  {4, 30, 2, 2, 2, 2, 0, 0, false, false}};
  for (const Cfg& c : cfgs) {
    auto out = [&](int64_t size, int64_t k, int64_t s, int64_t p) {
      int64_t o = (size + 2 * p - k + (c.ceil ? s - 1 : 0)) / s + 1;
      if (c.ceil && (o - 1) * s >= size + p) --o;  // PyTorch: the last window must start inside
      return o;
    };
    attn::backend::Pool2dArgs a{};
    a.n = 2, a.c = 3, a.h = c.h, a.w = c.w, a.kh = c.kh, a.kw = c.kw, a.stride_h = c.sh, a.stride_w = c.sw;
    a.pad_h = c.ph, a.pad_w = c.pw, a.count_include_pad = c.count_pad, a.dtype = attn::kFloat64;
    a.out_h = out(c.h, c.kh, c.sh, c.ph), a.out_w = out(c.w, c.kw, c.sw, c.pw);
    const int64_t planes = a.n * a.c;
    std::vector<double> x(size_t(planes * a.h * a.w)), gy(size_t(planes * a.out_h * a.out_w));
    for (double& v : x) v = normal(rng);
    for (double& v : gy) v = normal(rng);
    std::vector<double> y_want(gy.size()), gx_want(x.size(), 0.0);
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t oh = 0; oh < a.out_h; ++oh)
        for (int64_t ow = 0; ow < a.out_w; ++ow) {
          const int64_t h0 = oh * a.stride_h - a.pad_h, w0 = ow * a.stride_w - a.pad_w;
          const int64_t h1 = std::min(h0 + a.kh, a.h + a.pad_h), w1 = std::min(w0 + a.kw, a.w + a.pad_w);
          const int64_t lo_h = std::max<int64_t>(h0, 0), hi_h = std::min(h1, a.h);
          const int64_t lo_w = std::max<int64_t>(w0, 0), hi_w = std::min(w1, a.w);
          const double div = double(c.count_pad ? (h1 - h0) * (w1 - w0) : (hi_h - lo_h) * (hi_w - lo_w));
          const size_t o = size_t((p * a.out_h + oh) * a.out_w + ow);
          double s = 0;
          for (int64_t ih = lo_h; ih < hi_h; ++ih)
            for (int64_t iw = lo_w; iw < hi_w; ++iw) {
              s += x[size_t((p * a.h + ih) * a.w + iw)];
              gx_want[size_t((p * a.h + ih) * a.w + iw)] += gy[o] / div;
            }
          y_want[o] = s / div;
        }
    std::vector<double> y(gy.size(), 7.0), gx(x.size(), 7.0);
    attn::cpu::avg_pool2d(a, x.data(), y.data());
    attn::cpu::avg_pool2d_backward(a, gy.data(), gx.data());
    const std::string what = "h=" + std::to_string(c.h) + " w=" + std::to_string(c.w) + " k=" + std::to_string(c.kh) +
                             "x" + std::to_string(c.kw) + " ceil=" + std::to_string(c.ceil);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], y_want[i], 1e-12) << what << " output " << i;
    for (size_t i = 0; i < gx.size(); ++i) ASSERT_NEAR(gx[i], gx_want[i], 1e-12) << what << " input " << i;
  }
}
