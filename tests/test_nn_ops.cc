// Tests for the nn ops: softmax family, losses, normalisation, dropout, embedding, indexing, joining and
// splitting. Expected values were computed with PyTorch 2.x (torch.nn.functional) on the same
// deterministic inputs, det(shape, seed, scale)[i] = scale * sin(0.7 i + seed), in float64:
//   def det(shape, seed=0.0, scale=2.0):
//       n = math.prod(shape)
//       return torch.tensor([math.sin(0.7*i + seed)*scale for i in range(n)], dtype=torch.float64).reshape(shape)
// Gradients are checked against central differences in float64 (tests/gradcheck.h).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attn/autograd.h"
#include "attn/nn/transformer.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "backend/cpu/cross_entropy.h"
#include "backend/cpu/dispatch.h"
#include "gradcheck.h"

using namespace attn;
using attn_test::gradcheck;

namespace {

Tensor det(const Shape& shape, double seed = 0.0, double scale = 2.0, DType dt = kFloat64, bool grad = false) {
  std::vector<double> v(size_t(numel_of(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = scale * std::sin(0.7 * double(i) + seed);
  Tensor t = from_vector<double>(v, shape).to(dt);
  if (grad) t.requires_grad_();
  return t;
}
Tensor leaf(const Shape& shape, double seed = 0.0, double scale = 2.0) { return det(shape, seed, scale, kFloat64, true); }
Tensor i64(const std::vector<int64_t>& v, const Shape& shape) { return from_vector<int64_t>(v, shape); }

void expect_values(const Tensor& t, const std::vector<double>& want, double tol, const char* what = "") {
  std::vector<double> got = t.to_vector<double>();
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << what << " at " << i;
}

template <typename F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ---------------------------------------------------------------- softmax / log_softmax
TEST(NnOpsSoftmax, ValuesMatchPyTorch) {
  Tensor x = det({2, 3, 4});
  expect_values(softmax(x, 1),
                {0.308915864652, 0.703320997723, 0.648163328128, 0.433114411668, 0.603680604427, 0.0961405870851,
                 0.0158012920083, 0.0108014238644, 0.0874035309208, 0.200538415192, 0.336035379864, 0.556084164468,
                 0.427688912395, 0.248723780594, 0.142005796273, 0.0386536702999, 0.0109226958944, 0.0381632120656,
                 0.316104301933, 0.856772804066, 0.561388391711, 0.71311300734, 0.541889901794, 0.104573525634},
                1e-10, "softmax dim 1");
  std::vector<double> ls0 = {-1.87556861536, -0.419973487743, -0.0648010668801, -0.0301692286911, -0.0697114996206,
                             -0.461114529138, -1.96190689741, -3.34012041223, -3.28202343064, -1.83227721173,
                             -0.400625618256, -0.0625422226133, -0.166370799187, -1.07021213752, -2.76865878536,
                             -3.51597948193, -2.69804325824, -0.995822298233, -0.151509258138, -0.0360756625866,
                             -0.0382754435039, -0.174411350408, -1.1083621022, -2.80302152474};
  expect_values(log_softmax(x, 0), ls0, 1e-10, "log_softmax dim 0");
  expect_values(log_softmax(x.to(kFloat32), -3), ls0, 2e-6, "log_softmax float32");
  // output is contiguous in the input's layout whichever dim is reduced
  EXPECT_TRUE(softmax(x, 0).is_contiguous());
}

TEST(NnOpsSoftmax, LastDimNonContiguousAndScalar) {
  Tensor x = det({5, 7}, 0.3, 3.0);
  Tensor xt = x.t();  // (7, 5), non-contiguous
  Tensor a = softmax(xt, 1), b = softmax(xt.contiguous(), 1);
  EXPECT_TRUE(allclose(a, b, 1e-12, 1e-14));
  expect_values(sum(a, {1}), std::vector<double>(7, 1.0), 1e-12);
  EXPECT_EQ(softmax(scalar_tensor(3.0), 0).item(), 1.0);
  EXPECT_EQ(log_softmax(scalar_tensor(3.0), -1).item(), 0.0);
  // large rows in float32 (vectorized kernel) against the float64 result
  Tensor big = det({3, 1001}, 0.1, 20.0);
  EXPECT_TRUE(allclose(log_softmax(big.to(kFloat32), 1), log_softmax(big, 1).to(kFloat32), 1e-5, 1e-5));
  EXPECT_THROW(softmax(x, 2), std::exception);
  EXPECT_THROW(softmax(i64({1, 2}, {2}), 0), std::invalid_argument);
}

TEST(NnOpsSoftmax, Gradcheck) {
  for (int64_t dim : {0, 1, 2, -1}) {
    EXPECT_TRUE(gradcheck([dim](const std::vector<Tensor>& v) { return softmax(v[0], dim); }, {leaf({2, 3, 4})}))
        << "softmax dim " << dim;
    EXPECT_TRUE(gradcheck([dim](const std::vector<Tensor>& v) { return log_softmax(v[0], dim); }, {leaf({2, 3, 4})}))
        << "log_softmax dim " << dim;
  }
  Tensor base = leaf({4, 3}, 0.5);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return softmax(v[0].t(), 1); }, {base}));
}

TEST(NnOpsSoftmax, SavedOutputModifiedInPlaceIsDetected) {
  Tensor x = leaf({2, 3});
  Tensor y = softmax(x, 1);
  Tensor z = mul(y, 2.0);
  {
    NoGradGuard ng;
    y.mul_(2.0);  // backward of softmax reads y
  }
  EXPECT_THROW(z.sum().backward(), std::runtime_error);
}

// ---------------------------------------------------------------- cross_entropy
namespace {
Tensor ce_logits() { return det({4, 5}, 0.3, 3.0); }
Tensor ce_target() { return i64({1, 0, 4, 2}, {4}); }
Tensor ce_weight() { return from_vector<double>({0.5, 1, 2, 1.5, 0.7}, {5}); }
}  // namespace

TEST(NnOpsCrossEntropy, ValuesMatchPyTorch) {
  Tensor x = ce_logits(), t = ce_target(), w = ce_weight();
  expect_values(cross_entropy(x, t), {3.41919997467}, 1e-10, "mean");
  expect_values(cross_entropy(x, t, {.reduction = Reduction::None}),
                {1.24187534014, 2.98469239004, 5.58429460853, 3.86593755996}, 1e-10, "none");
  CrossEntropyOptions o{.ignore_index = 2, .label_smoothing = 0.1, .weight = w};
  expect_values(cross_entropy(x, t, o), {3.08381074281}, 1e-10, "weight + ignore + smoothing, mean");
  o.reduction = Reduction::None;
  expect_values(cross_entropy(x, t, o), {1.30615295509, 1.67769737432, 3.80053330476, 0}, 1e-10, "... none");
  expect_values(cross_entropy(x, t, {.ignore_index = 2, .label_smoothing = 0.2, .reduction = Reduction::Sum}),
                {9.30802891532}, 1e-10, "smoothing sum");
  expect_values(cross_entropy(x, t, {.ignore_index = 2, .label_smoothing = 0.2}), {3.10267630511}, 1e-10,
                "smoothing mean over non-ignored");
  // (N, C, d) input with an ignored position
  Tensor x3 = det({2, 3, 4}, 1.1, 2.5);
  Tensor t3 = i64({0, 2, 1, -100, 2, 2, 0, 1}, {2, 4});
  expect_values(cross_entropy(x3, t3, {.label_smoothing = 0.05}), {1.81769518768}, 1e-10, "3-d smoothing");
  Tensor none3 = cross_entropy(x3, t3, {.reduction = Reduction::None});
  EXPECT_EQ(none3.shape(), (Shape{2, 4}));
  expect_values(none3, {0.274406214241, 0.795464015507, 4.84626836087, 0, 0.279820017223, 1.57195068956,
                        4.77928435597, 0.0186573856946}, 1e-10, "3-d none");
  // float32 and int32 targets agree
  expect_values(cross_entropy(x.to(kFloat32), t.to(kInt32)), {3.41919997467}, 2e-6, "float32");
  // unbatched (C) input with a 0-d target
  expect_values(cross_entropy(x.select(0, 2), i64({4}, {}).reshape({})), {5.58429460853}, 1e-10, "unbatched");
  // every target ignored: mean is 0/0 like PyTorch
  EXPECT_TRUE(std::isnan(cross_entropy(x, i64({-100, -100, -100, -100}, {4})).item()));
}

TEST(NnOpsCrossEntropy, Gradcheck) {
  Tensor t = ce_target(), w = ce_weight();
  std::vector<CrossEntropyOptions> opts = {
      {},
      {.reduction = Reduction::Sum},
      {.reduction = Reduction::None},
      {.ignore_index = 2, .label_smoothing = 0.1, .weight = w},
      {.ignore_index = 0, .label_smoothing = 0.3, .reduction = Reduction::None, .weight = w},
      {.ignore_index = 4, .label_smoothing = 0.25, .reduction = Reduction::Sum},
  };
  for (size_t i = 0; i < opts.size(); ++i) {
    CrossEntropyOptions o = opts[i];
    EXPECT_TRUE(gradcheck([t, o](const std::vector<Tensor>& v) { return cross_entropy(v[0], t, o); },
                          {leaf({4, 5}, 0.3, 3.0)}))
        << "options #" << i;
  }
  Tensor t3 = i64({0, 2, 1, -100, 2, 2, 0, 1}, {2, 4});
  EXPECT_TRUE(gradcheck([t3](const std::vector<Tensor>& v) {
    return cross_entropy(v[0], t3, {.label_smoothing = 0.05, .weight = from_vector<double>({1, 2, 0.5}, {3})});
  }, {leaf({2, 3, 4}, 1.1, 2.5)}));
  // non-contiguous logits
  EXPECT_TRUE(gradcheck([t](const std::vector<Tensor>& v) { return cross_entropy(v[0].t(), t); }, {leaf({5, 4})}));
}

// The fused kernel against the composite definition (log_softmax + nll + smoothing term) on a larger
// float32 problem that spans several row blocks and threads.
TEST(NnOpsCrossEntropy, FusedMatchesComposite) {
  const int64_t n = 67, c = 1000;
  manual_seed(7);
  Tensor x0 = mul(randn({n, c}), 3.0);
  Tensor t = randint(0, c, {n});
  {
    NoGradGuard ng;
    t.narrow(0, 5, 3).fill_(-1);  // ignored rows
  }
  Tensor w = add(rand({c}), 0.5);
  const double eps = 0.15;
  for (Reduction red : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    Tensor xa = x0.detach().clone().requires_grad_(), xb = x0.detach().clone().requires_grad_();
    Tensor fused = cross_entropy(xa, t, {.ignore_index = -1, .label_smoothing = eps, .reduction = red, .weight = w});
    // composite
    Tensor lp = log_softmax(xb, 1);
    Tensor nll = nll_loss(lp, t, {.ignore_index = -1, .reduction = Reduction::None, .weight = w});
    Tensor valid = ne(t, -1.0).to(kFloat32);
    Tensor smooth = mul(neg(sum(mul(lp, w), {1})), valid);
    Tensor rows = add(mul(nll, 1.0 - eps), mul(smooth, eps / double(c)));
    Tensor safe = where(ne(t, -1.0), t, 0.0);
    Tensor denom = sum(mul(index_select(w, 0, safe), valid));
    Tensor composite = red == Reduction::None ? rows : red == Reduction::Sum ? sum(rows) : div(sum(rows), denom);
    EXPECT_TRUE(allclose(fused, composite, 1e-5, 1e-5));
    Tensor g = red == Reduction::None ? rand({n}) : scalar_tensor(1.7);
    fused.backward(g);
    composite.backward(g);
    EXPECT_TRUE(allclose(xa.grad(), xb.grad(), 1e-4, 1e-7));
    expect_values(sum(xa.grad().narrow(0, 5, 3)), {0.0}, 0.0, "ignored rows have zero gradient");
  }
}

// The fast kernel (through the op) against the naive oracle, for each instruction set this CPU runs,
// with row lengths that are not multiples of the vector width and enough rows for several blocks.
TEST(NnOpsCrossEntropy, KernelMatchesNaiveOracle) {
  manual_seed(11);
  for (cpu::Isa isa : {cpu::Isa::Avx512, cpu::Isa::Avx2}) {
    if (!cpu::set_isa_for_testing(isa)) continue;
    for (int64_t c : {1, 7, 300, 4099}) {
      const int64_t rows = 41;
      Tensor x = mul(randn({rows, c}), 4.0).requires_grad_();
      Tensor t = randint(0, c, {rows});
      {
        NoGradGuard ng;
        t.narrow(0, 3, 2).fill_(-100);
      }
      Tensor w = add(rand({c}), 0.25), g = randn({rows});
      for (bool weighted : {false, true}) {
        const double eps = weighted ? 0.3 : 0.0;
        CrossEntropyOptions o{.label_smoothing = eps, .reduction = Reduction::None};
        if (weighted) o.weight = w;
        Tensor loss = cross_entropy(x, t, o);
        loss.backward(g);
        std::vector<float> xv = x.detach().to_vector<float>(), wv = w.to_vector<float>(), gv = g.to_vector<float>();
        std::vector<int64_t> tv = t.to_vector<int64_t>();
        std::vector<float> want(static_cast<size_t>(rows)), want_g(static_cast<size_t>(rows * c));
        cpu::ref::cross_entropy<float>(xv.data(), tv.data(), weighted ? wv.data() : nullptr, rows, c, -100, eps,
                                       want.data());
        cpu::ref::cross_entropy_backward<float>(xv.data(), tv.data(), weighted ? wv.data() : nullptr, rows, c, -100,
                                                eps, gv.data(), want_g.data());
        std::string what = std::string(cpu::isa_name(isa)) + " C=" + std::to_string(c) + (weighted ? " weighted" : "");
        EXPECT_TRUE(allclose(loss, from_vector<float>(want, {rows}), 1e-5, 1e-5)) << what;
        EXPECT_TRUE(allclose(x.grad(), from_vector<float>(want_g, {rows, c}), 1e-4, 1e-6)) << what;
        x.set_grad(Tensor());
      }
    }
  }
  cpu::reset_isa();
}

TEST(NnOpsCrossEntropy, Errors) {
  Tensor x = ce_logits();
  std::string e = error_of([&] { cross_entropy(x, i64({1, 0, 5, 2}, {4})); });
  EXPECT_NE(e.find("cross_entropy"), std::string::npos) << e;
  EXPECT_NE(e.find("value 5"), std::string::npos) << e;
  EXPECT_NE(e.find("[0, 5)"), std::string::npos) << e;
  e = error_of([&] { cross_entropy(x, i64({1, 0, -3, 2}, {4})); });
  EXPECT_NE(e.find("value -3"), std::string::npos) << e;
  e = error_of([&] { cross_entropy(x, i64({1, 0, 2}, {3})); });
  EXPECT_NE(e.find("(4, 5)"), std::string::npos) << e;
  EXPECT_NE(e.find("(3,)"), std::string::npos) << e;
  EXPECT_THROW(cross_entropy(x, ce_target().to(kFloat64)), std::invalid_argument);
  EXPECT_THROW(cross_entropy(x, ce_target(), {.weight = ones({4}, {.dtype = kFloat64})}), std::invalid_argument);
  EXPECT_THROW(cross_entropy(x, ce_target(), {.label_smoothing = 1.5}), std::invalid_argument);
}

// ---------------------------------------------------------------- nll_loss, mse_loss, bce
TEST(NnOpsLoss, NllLoss) {
  Tensor lp = log_softmax(ce_logits(), 1);
  expect_values(nll_loss(lp, ce_target(), {.ignore_index = 0, .weight = ce_weight()}), {3.48182613136}, 1e-10);
  Tensor x3 = det({2, 3, 4}, 1.1, 2.5);
  Tensor t3 = i64({0, 2, 1, -100, 2, 2, 0, 1}, {2, 4});
  expect_values(nll_loss(log_softmax(x3, 1), t3, {.reduction = Reduction::None}),
                {0.274406214241, 0.795464015507, 4.84626836087, 0, 0.279820017223, 1.57195068956, 4.77928435597,
                 0.0186573856946}, 1e-10);
  Tensor t = ce_target(), w = ce_weight();
  EXPECT_TRUE(gradcheck([t, w](const std::vector<Tensor>& v) {
    return nll_loss(v[0], t, {.ignore_index = 0, .weight = w});
  }, {leaf({4, 5})}));
  EXPECT_TRUE(gradcheck([t3](const std::vector<Tensor>& v) {
    return nll_loss(v[0], t3, {.reduction = Reduction::None});
  }, {leaf({2, 3, 4})}));
  EXPECT_THROW(nll_loss(lp, i64({1, 0, 7, 2}, {4})), std::invalid_argument);
}

TEST(NnOpsLoss, MseLoss) {
  Tensor a = det({3, 4}, 0.2), b = det({3, 4}, 1.9, 1.0);
  expect_values(mse_loss(a, b), {2.57910891858}, 1e-10);
  expect_values(mse_loss(a, b, Reduction::Sum), {30.949307023}, 1e-9);
  EXPECT_EQ(mse_loss(a, b, Reduction::None).shape(), (Shape{3, 4}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return mse_loss(v[0], v[1]); },
                        {leaf({3, 4}, 0.2), leaf({3, 4}, 1.9, 1.0)}));
  // broadcast target
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return mse_loss(v[0], v[1], Reduction::None); },
                        {leaf({3, 4}, 0.2), leaf({4}, 1.9, 1.0)}));
}

TEST(NnOpsLoss, BinaryCrossEntropyWithLogits) {
  Tensor x = det({3, 4}, 0.5, 4.0);
  Tensor t = div(add(det({3, 4}, 2.2, 1.0), 1.0), 2.0);
  Tensor w = from_vector<double>({1.0, 0.5, 2.0, 1.5}, {4}), pw = from_vector<double>({2.0, 0.3, 1.0, 4.0}, {4});
  expect_values(binary_cross_entropy_with_logits(x, t), {1.53685248598}, 1e-10);
  expect_values(binary_cross_entropy_with_logits(x, t, {.reduction = Reduction::None, .weight = w, .pos_weight = pw}),
                {0.444698170021, 0.715774513346, 5.50512970107, 3.16554698845, 0.461298789158, 0.121949171218,
                 4.50216497252, 16.2726298765, 2.2434924933, 0.12361092508, 2.96211608337, 4.17588327004},
                1e-9);
  // stable at extreme logits (no inf / nan, log1p accuracy for tiny terms)
  Tensor ex = binary_cross_entropy_with_logits(from_vector<double>({100., -100., 30., -30.}, {4}),
                                               from_vector<double>({0., 1., 1., 0.}, {4}), {.reduction = Reduction::None});
  expect_values(ex, {100, 100, 9.35762296884e-14, 9.23705556488e-14}, 1e-20);
  Tensor ex32 = binary_cross_entropy_with_logits(from_vector<float>({100.f, -100.f}, {2}),
                                                 from_vector<float>({0.f, 1.f}, {2}), {.reduction = Reduction::None});
  expect_values(ex32, {100, 100}, 1e-4);
  EXPECT_TRUE(gradcheck([w, pw](const std::vector<Tensor>& v) {
    return binary_cross_entropy_with_logits(v[0], v[1], {.weight = w, .pos_weight = pw});
  }, {leaf({3, 4}, 0.5, 4.0), leaf({3, 4}, 2.2, 0.5)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) {
    return binary_cross_entropy_with_logits(v[0], v[1], {.reduction = Reduction::Sum});
  }, {leaf({3, 4}, 0.5, 4.0), leaf({3, 4}, 2.2, 0.5)}));
  EXPECT_THROW(binary_cross_entropy_with_logits(x, t.narrow(0, 0, 2)), std::invalid_argument);
}

// ---------------------------------------------------------------- layer_norm, batch_norm
TEST(NnOpsNorm, LayerNorm) {
  Tensor x = det({2, 3, 4}), w = det({3, 4}, 0.9, 1.0), b = det({3, 4}, 1.7, 0.5);
  std::vector<double> want = {0.338789900217, 1.07410258177, 0.940310173701, -0.157010624112, -0.640742105463,
                              0.234650839491, 1.17252233575, 0.912928416939, 0.184540425926, 0.354976392984,
                              1.08594555712, 0.92086798368, 1.41569790109, 0.714561677586, -0.459276980663,
                              -0.504613577366, 0.335677369262, 0.527454435495, -0.142445673922, -0.26181989282,
                              0.721397902307, 1.41622752427, 0.684308652894, -0.477449174641};
  expect_values(layer_norm(x, {3, 4}, w, b), want, 1e-9);
  expect_values(layer_norm(x.to(kFloat32), {3, 4}, w.to(kFloat32), b.to(kFloat32)), want, 2e-5);
  // no affine: each row has mean 0 and (biased) variance 1
  Tensor y = layer_norm(det({5, 8}), {8});
  expect_values(mean(y, {1}), std::vector<double>(5, 0.0), 1e-12);
  expect_values(var(y, {1}, 0), std::vector<double>(5, 1.0), 1e-4);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return layer_norm(v[0], {3, 4}, v[1], v[2]); },
                        {leaf({2, 3, 4}), leaf({3, 4}, 0.9, 1.0), leaf({3, 4}, 1.7, 0.5)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return layer_norm(v[0], {4}); }, {leaf({2, 3, 4})}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return layer_norm(v[0].transpose(0, 1), {2}, v[1]); },
                        {leaf({2, 3}), leaf({2}, 0.4, 1.0)}));
  // only the weight requires grad (no grad_x computed)
  Tensor xc = det({2, 3, 4}, 0.3);
  EXPECT_TRUE(gradcheck([xc](const std::vector<Tensor>& v) { return layer_norm(xc, {4}, v[0], v[1]); },
                        {leaf({4}, 0.9, 1.0), leaf({4}, 1.7, 0.5)}));
  std::string e = error_of([&] { layer_norm(x, {3}); });
  EXPECT_NE(e.find("(3,)"), std::string::npos) << e;
  EXPECT_NE(e.find("(2, 3, 4)"), std::string::npos) << e;
  EXPECT_THROW(layer_norm(x, {4}, ones({3})), std::invalid_argument);
}

TEST(NnOpsNorm, BatchNormTrainingAndEval) {
  Tensor x = det({4, 3, 2}, 0.4, 3.0);
  Tensor w = from_vector<double>({1.5, 0.5, -1.0}, {3}), b = from_vector<double>({0.1, 0.2, 0.3}, {3});
  Tensor rm = from_vector<double>({0.1, -0.2, 0.3}, {3}), rv = from_vector<double>({1.0, 2.0, 0.5}, {3});
  expect_values(batch_norm(x, rm, rv, w, b, false),
                {1.70237452854, 3.96041381826, 1.3036293145, 0.90548448158, 0.971917865548, 3.6421753373,
                 -4.52158640848, -3.79518401414, -0.0256536480655, 0.700117614172, -3.08859757862, -3.39059299906,
                 2.58211495747, -0.388177601196, -0.471616849209, -0.785106446546, 4.21519099254, 1.84104656652,
                 1.84074296203, 4.02677670655, 1.29494268392, 0.876554756628, 1.11418366912, 3.74407908212},
                1e-9, "eval");
  expect_values(rm, {0.1, -0.2, 0.3}, 0.0, "eval leaves running_mean");
  expect_values(batch_norm(x, rm, rv, w, b, true, 0.1),
                {0.598884046699, 1.69636622098, 0.75312326198, 0.487421304324, 0.24252641654, 1.20618127943,
                 -2.42616791447, -2.07311219805, -0.133973734456, 0.350369723604, -1.22285117158, -1.33183667524,
                 1.0264671464, -0.417193798901, -0.431587280552, -0.640794566015, 1.41297381855, 0.55618160074,
                 0.666135706105, 1.72862079124, 0.747326238986, 0.46811505213, 0.293867957527, 1.24295677403},
                1e-9, "train");
  expect_values(rm, {0.138395816553, -0.122276328648, 0.241226438442}, 1e-10, "running_mean");
  expect_values(rv, {1.3837971467, 2.31323445748, 0.888765780227}, 1e-9, "running_var (unbiased)");
  // float32 buffers with float32 input
  Tensor rm32 = zeros({3}), rv32 = ones({3});
  batch_norm(x.to(kFloat32), rm32, rv32, {}, {}, true, 0.1);
  EXPECT_TRUE(allclose(rm32, mul(mean(x, {0, 2}), 0.1).to(kFloat32), 1e-5, 1e-6));
}

TEST(NnOpsNorm, BatchNormGradcheckAndErrors) {
  for (bool training : {true, false}) {
    EXPECT_TRUE(gradcheck([training](const std::vector<Tensor>& v) {
      Tensor rm = from_vector<double>({0.1, -0.2, 0.3}, {3}), rv = from_vector<double>({1.0, 2.0, 0.5}, {3});
      return batch_norm(v[0], rm, rv, v[1], v[2], training);
    }, {leaf({4, 3, 2}, 0.4, 3.0), leaf({3}, 0.2, 1.0), leaf({3}, 1.2, 1.0)}))
        << "training " << training;
  }
  // (N, C) and 4-d, no running stats, no affine
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return batch_norm(v[0], {}, {}, {}, {}, true); },
                        {leaf({5, 3})}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return batch_norm(v[0], {}, {}, v[1], {}, true); },
                        {leaf({2, 2, 2, 3}, 0.1, 1.5), leaf({2}, 0.3, 1.0)}));
  std::string e = error_of([] { batch_norm(ones({1, 3}), {}, {}, {}, {}, true); });
  EXPECT_NE(e.find("more than 1 value per channel"), std::string::npos) << e;
  EXPECT_THROW(batch_norm(ones({4, 3}), {}, {}, {}, {}, false), std::invalid_argument);
  e = error_of([] { batch_norm(ones({4, 3}), zeros({2}), ones({3}), {}, {}, true); });
  EXPECT_NE(e.find("running_mean"), std::string::npos) << e;
}

// ---------------------------------------------------------------- dropout
TEST(NnOpsDropout, IdentityCasesAndZeros) {
  Tensor x = det({10, 10}, 0.0, 1.0, kFloat32, true);
  EXPECT_TRUE(dropout(x, 0.5, false).is_same(x));
  EXPECT_TRUE(dropout(x, 0.0, true).is_same(x));
  Tensor z = dropout(x, 1.0, true);
  expect_values(z, std::vector<double>(100, 0.0), 0.0);
  z.sum().backward();
  expect_values(x.grad(), std::vector<double>(100, 0.0), 0.0);
  EXPECT_THROW(dropout(x, 1.5), std::invalid_argument);
  EXPECT_THROW(dropout(x, -0.1), std::invalid_argument);
}

TEST(NnOpsDropout, MaskScaleReproducibilityAndBackward) {
  const int64_t n = 200000;
  const double p = 0.3;
  Tensor x = add(rand({n}), 1.0).requires_grad_();  // all > 0
  manual_seed(123);
  GeneratorState before = default_generator().state();
  Tensor y = dropout(x, p, true);
  EXPECT_GT(default_generator().state().offset, before.offset);  // the generator advanced
  std::vector<float> xv = x.to_vector<float>(), yv = y.to_vector<float>();
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (yv[size_t(i)] != 0.0f) {
      ++kept;
      ASSERT_NEAR(yv[size_t(i)], xv[size_t(i)] / (1.0 - p), 1e-5);
    }
  }
  const double frac = double(kept) / double(n);
  EXPECT_NEAR(frac, 1.0 - p, 0.005);  // ~5 sigma
  y.sum().backward();
  std::vector<float> gv = x.grad().to_vector<float>();
  for (int64_t i = 0; i < n; ++i)
    ASSERT_FLOAT_EQ(gv[size_t(i)], yv[size_t(i)] == 0.0f ? 0.0f : float(1.0 / (1.0 - p)));
  // same seed, same mask
  manual_seed(123);
  EXPECT_TRUE(allclose(dropout(x.detach(), p, true), y.detach(), 0, 0));
  // float64 gradcheck with a fixed mask (reseeded on every call)
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) {
    manual_seed(5);
    return dropout(v[0], 0.4, true);
  }, {leaf({6, 7})}));
}

// The fused kernel draws the same uniforms uniform_ would (same generator advance) and keeps u < 1 - p,
// so it equals the composite mask lt(u, 1 - p) * 1 / (1 - p), in float32 and float64, odd lengths too.
TEST(NnOpsDropout, FusedKernelEqualsTheUniformComposite) {
  for (DType dt : {kFloat32, kFloat64}) {
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(100003)}) {
      Tensor x = add(rand({n}, {.dtype = dt}), 0.5);
      manual_seed(77);
      Tensor y = dropout(x, 0.25, true);
      const uint64_t offset_after = default_generator().state().offset;
      manual_seed(77);
      Tensor u = empty({n}, {.dtype = dt});
      u.uniform_(0.0, 1.0);
      EXPECT_EQ(default_generator().state().offset, offset_after) << "n " << n;
      Tensor want = mul(x, mul(lt(u, 1.0 - 0.25).to(dt), 1.0 / (1.0 - 0.25)));
      EXPECT_TRUE(allclose(y, want, 0, 0)) << dtype_name(dt) << " n " << n;
    }
  }
  // non-contiguous input
  Tensor x = add(rand({64, 33}), 0.5).transpose(0, 1);
  manual_seed(3);
  Tensor y = dropout(x, 0.5, true);
  manual_seed(3);
  EXPECT_TRUE(allclose(y, dropout(x.contiguous(), 0.5, true), 0, 0));
}

// The keep bits saved for the backward (1 bit per element): on every kernel set, in float32 and float64,
// for lengths around the 64-element groups of the vector path, the gradient is exactly grad * mask of
// the composite, and a NaN gradient stays NaN where dropped (as PyTorch's grad * mask).
TEST(NnOpsDropout, BackwardFromKeepBitsEqualsGradTimesMask) {
  for (cpu::Isa isa : {cpu::Isa::Avx512, cpu::Isa::Avx2, cpu::Isa::Reference}) {
    if (!cpu::set_isa_for_testing(isa)) continue;
    for (DType dt : {kFloat32, kFloat64})
      for (int64_t n : {int64_t(1), int64_t(9), int64_t(63), int64_t(64), int64_t(65), int64_t(200), int64_t(70001)}) {
        Tensor x = add(rand({n}, {.dtype = dt}), 0.5).requires_grad_();
        Tensor g = randn({n}, {.dtype = dt});
        manual_seed(31);
        Tensor y = dropout(x, 0.3, true);
        y.backward(g);
        manual_seed(31);
        Tensor u = empty({n}, {.dtype = dt});
        u.uniform_(0.0, 1.0);
        Tensor mask = mul(lt(u, 1.0 - 0.3).to(dt), 1.0 / (1.0 - 0.3));
        EXPECT_TRUE(allclose(y.detach(), mul(x.detach(), mask), 0, 0)) << cpu::isa_name(isa) << " n " << n;
        EXPECT_TRUE(allclose(x.grad(), mul(g, mask), 0, 0)) << cpu::isa_name(isa) << " " << dtype_name(dt) << " n " << n;
      }
    // NaN gradients: NaN * 0 = NaN where dropped, as in the composite
    Tensor x = ones({100}).requires_grad_();
    manual_seed(4);
    dropout(x, 0.5, true).backward(full({100}, std::nan("")));
    for (float v : x.grad().to_vector<float>()) EXPECT_TRUE(std::isnan(v)) << cpu::isa_name(isa);
    cpu::reset_isa();
  }
}

// relu_dropout against the composite dropout(relu(x)) it fuses: on every kernel set, in float32 and
// float64, around the 64-element groups, the same values, generator advance and gradient, bit for bit,
// with NaN, infinite, zero and negative-zero inputs and NaN / infinite gradients among the values.
namespace {
template <typename T> bool same_bits_or_both_nan(const Tensor& a, const Tensor& b) {
  const std::vector<T> av = a.to_vector<T>(), bv = b.to_vector<T>();
  if (av.size() != bv.size()) return false;
  for (size_t i = 0; i < av.size(); ++i) {
    if (std::isnan(av[i]) && std::isnan(bv[i])) continue;
    if (std::memcmp(&av[i], &bv[i], sizeof(T)) != 0) return false;
  }
  return true;
}
bool same_values(const Tensor& a, const Tensor& b) {
  return a.dtype() == kFloat64 ? same_bits_or_both_nan<double>(a, b) : same_bits_or_both_nan<float>(a, b);
}
}  // namespace

TEST(NnOpsReluDropout, EqualsTheComposite) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  for (cpu::Isa isa : {cpu::Isa::Avx512, cpu::Isa::Avx2, cpu::Isa::Reference}) {
    if (!cpu::set_isa_for_testing(isa)) continue;
    for (DType dt : {kFloat32, kFloat64})
      for (int64_t n : {int64_t(1), int64_t(9), int64_t(63), int64_t(64), int64_t(65), int64_t(200), int64_t(70001)}) {
        manual_seed(uint64_t(n));
        Tensor x0 = randn({n}, {.dtype = dt}), g = randn({n}, {.dtype = dt});
        {
          NoGradGuard ng;  // special values at fixed places (those past n are skipped)
          const std::vector<double> specials = {nan, inf, -inf, 0.0, -0.0, nan, 1e-40, -1e-40};
          for (size_t i = 0; i < specials.size(); ++i)
            if (int64_t(5 * i) < n) x0.narrow(0, int64_t(5 * i), 1).fill_(specials[i]);
          for (int64_t i : {int64_t(2), int64_t(8), int64_t(60)})
            if (i < n) g.narrow(0, i, 1).fill_(i == 8 ? -inf : nan);
        }
        Tensor xa = x0.clone().requires_grad_(), xb = x0.clone().requires_grad_();
        manual_seed(91);
        Tensor fused = relu_dropout(xa, 0.35, true);
        const uint64_t offset = default_generator().state().offset;
        manual_seed(91);
        Tensor composite = dropout(relu(xb), 0.35, true);
        const std::string what = std::string(cpu::isa_name(isa)) + " " + dtype_name(dt) + " n " + std::to_string(n);
        EXPECT_EQ(default_generator().state().offset, offset) << what;
        EXPECT_TRUE(same_values(fused, composite)) << what;
        fused.backward(g);
        composite.backward(g);
        EXPECT_TRUE(same_values(xa.grad(), xb.grad())) << what;
      }
    cpu::reset_isa();
  }
}

TEST(NnOpsReluDropout, IdentityCasesGradcheckAndModule) {
  Tensor x = det({6, 7}, -1.0, 1.0, kFloat64, true);
  EXPECT_TRUE(allclose(relu_dropout(x, 0.5, false), relu(x), 0, 0));  // eval: ReLU only
  EXPECT_TRUE(allclose(relu_dropout(x, 0.0, true), relu(x), 0, 0));
  expect_values(relu_dropout(x, 1.0, true), std::vector<double>(42, 0.0), 0.0);
  EXPECT_THROW(relu_dropout(x, 1.5), std::invalid_argument);
  EXPECT_THROW(relu_dropout(Tensor(), 0.5), std::invalid_argument);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) {
    manual_seed(5);
    return relu_dropout(v[0], 0.4, true);
  }, {det({6, 7}, -1.0, 1.0, kFloat64, true)}));
  // the fused feed-forward of a Transformer layer draws as the composite: the same training output
  for (nn::Activation act : {nn::Activation::ReLU, nn::Activation::GELU}) {
    manual_seed(8);
    nn::TransformerEncoderLayer layer(
        nn::TransformerLayerOptions{.d_model = 16, .nhead = 2, .dim_feedforward = 32, .dropout = 0.3, .activation = act});
    Tensor src = randn({5, 3, 16});
    manual_seed(9);
    Tensor y = layer.forward(src);
    manual_seed(9);
    Tensor a = layer.dropout1->forward(layer.self_attn->forward(src, src, src, {.need_weights = false}).output);
    Tensor h = layer.norm1->forward(add(src, a));
    Tensor inner = act == nn::Activation::GELU ? gelu(layer.linear1->forward(h)) : relu(layer.linear1->forward(h));
    Tensor ff = layer.dropout2->forward(layer.linear2->forward(layer.dropout->forward(inner)));
    EXPECT_TRUE(allclose(y, layer.norm2->forward(add(h, ff)), 0, 0));
  }
}

// ---------------------------------------------------------------- embedding
TEST(NnOpsEmbedding, ValuesPaddingAndErrors) {
  Tensor w = det({5, 3}, 0.0, 1.0, kFloat64, true);
  Tensor idx = i64({4, 0, 4, 2, 2, 2}, {2, 3});
  Tensor y = embedding(w, idx, /*padding_idx=*/2);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 3}));
  EXPECT_TRUE(allclose(y.select(0, 0).select(0, 0), w.detach().select(0, 4)));
  EXPECT_TRUE(allclose(y.select(0, 1).select(0, 2), w.detach().select(0, 2)));  // padding row is looked up as is
  y.sum().backward();
  // row counts: 0 -> 1, 1 -> 0, 2 -> padding (no gradient), 3 -> 0, 4 -> 2
  expect_values(w.grad(), {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2}, 0.0);
  // int32 indices, float32 weight
  Tensor y32 = embedding(w.detach().to(kFloat32), idx.to(kInt32));
  EXPECT_TRUE(allclose(y32, y.detach().to(kFloat32)));
  EXPECT_TRUE(gradcheck([idx](const std::vector<Tensor>& v) { return embedding(v[0], idx); }, {leaf({5, 3})}));
  std::string e = error_of([&] { embedding(w, i64({0, 5}, {2})); });
  EXPECT_NE(e.find("embedding"), std::string::npos) << e;
  EXPECT_NE(e.find("value 5"), std::string::npos) << e;
  EXPECT_NE(e.find("[0, 5)"), std::string::npos) << e;
  EXPECT_THROW(embedding(w, i64({-1}, {1})), std::invalid_argument);
  EXPECT_THROW(embedding(w, from_vector<float>({1.f}, {1})), std::invalid_argument);
  EXPECT_THROW(embedding(w, idx, 5), std::invalid_argument);
}

// ---------------------------------------------------------------- gather, index_select, masked_fill, one_hot
TEST(NnOpsIndex, Gather) {
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  expect_values(gather(x, 1, i64({2, 0, 0, 1, 1, 2}, {2, 3})), {3, 1, 1, 5, 5, 6}, 0.0);
  expect_values(gather(x, 0, i64({1, 0, 1}, {1, 3})), {4, 2, 6}, 0.0);
  Tensor idx = i64({2, 2, 0, 1}, {2, 2});  // smaller than x in dim 0... equal; repeats in dim 1
  EXPECT_TRUE(gradcheck([idx](const std::vector<Tensor>& v) { return gather(v[0], 1, idx); }, {leaf({2, 3})}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return gather(v[0].t(), 0, i64({1, 1, 0}, {1, 3})); },
                        {leaf({3, 2})}));
  std::string e = error_of([&] { gather(x, 1, i64({3}, {1, 1})); });
  EXPECT_NE(e.find("gather"), std::string::npos) << e;
  EXPECT_NE(e.find("value 3"), std::string::npos) << e;
  EXPECT_THROW(gather(x, 1, i64({0, 0, 0}, {3, 1})), std::invalid_argument);  // larger than x in dim 0
  EXPECT_THROW(gather(x, 1, i64({0}, {1})), std::invalid_argument);           // rank mismatch
}

TEST(NnOpsIndex, IndexSelect) {
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = index_select(x, 1, i64({2, 0, 2}, {3}));
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  expect_values(y, {3, 1, 3, 6, 4, 6}, 0.0);
  expect_values(index_select(x, 0, i64({1}, {1})), {4, 5, 6}, 0.0);
  expect_values(index_select(x.t(), 0, i64({1}, {1})), {2, 5}, 0.0);  // non-contiguous input
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return index_select(v[0], 1, i64({2, 0, 2, 2}, {4})); },
                        {leaf({3, 3, 2})}));
  EXPECT_THROW(index_select(x, 0, i64({2}, {1})), std::invalid_argument);
  EXPECT_THROW(index_select(x, 0, i64({0, 1}, {1, 2})), std::invalid_argument);
}

// The out= form on views: the filled part of a preallocated buffer (KVCache::select_rows), a transposed
// input, repeated and reordered rows; the rest of the buffer untouched; clear errors.
TEST(NnOpsIndex, IndexSelectOutWritesIntoViews) {
  NoGradGuard ng;
  manual_seed(11);
  const Tensor cache = randn({3, 2, 8, 4});  // (N, H, capacity, D), 5 slots filled
  const Tensor rows = i64({2, 0, 2, 1}, {4});
  Tensor out = full({4, 2, 8, 4}, -7.0f);
  index_select_out(cache.narrow(2, 0, 5), 0, rows, out.narrow(2, 0, 5));
  EXPECT_TRUE(allclose(out.narrow(2, 0, 5), index_select(cache.narrow(2, 0, 5), 0, rows), 0, 0));
  EXPECT_TRUE(allclose(out.narrow(2, 5, 3), full({4, 2, 3, 4}, -7.0f), 0, 0));  // past the filled part
  const Tensor x = randn({5, 6});
  Tensor o2 = empty({6, 3}).t();  // (3, 6) transposed view
  index_select_out(x.t().t(), 0, i64({4, 4, 1}, {3}), o2);
  EXPECT_TRUE(allclose(o2, index_select(x, 0, i64({4, 4, 1}, {3})), 0, 0));
  Tensor o3 = empty({2, 6}).t();  // (6, 2) transposed view
  index_select_out(x.t(), 1, i64({3, 0}, {2}), o3);  // non-contiguous input and out along dim 1
  EXPECT_TRUE(allclose(o3, index_select(x.t(), 1, i64({3, 0}, {2})), 0, 0));
  EXPECT_THROW(index_select_out(x, 0, i64({5}, {1}), empty({1, 6})), std::invalid_argument);  // out of range
  EXPECT_THROW(index_select_out(x, 0, i64({1}, {1}), empty({2, 6})), std::invalid_argument);  // wrong out shape
  EXPECT_THROW(index_select_out(x, 0, i64({1}, {1}), empty({1, 6}, {.dtype = kFloat64})), std::invalid_argument);
  EnableGradGuard on;
  const Tensor leaf_x = randn({5, 6}).requires_grad_(true);
  std::string e = error_of([&] { index_select_out(leaf_x, 0, i64({1}, {1}), empty({1, 6})); });
  EXPECT_NE(e.find("requires grad"), std::string::npos) << e;
}

// topk beyond the fixtures: ties to the lower index, NaN above every number, the partial-sort path for
// large k against a sort, k = 0 and out of range.
TEST(NnOpsIndex, TopkOrderTiesNanAndLargeK) {
  const Tensor x = from_vector<float>({1, 3, 3, 2, 3}, {5});
  auto [v, i] = topk(x, 3);
  EXPECT_EQ(v.to_vector<float>(), (std::vector<float>{3, 3, 3}));
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 4}));
  const Tensor n = from_vector<float>({1, NAN, 5, -INFINITY}, {4});
  auto [vl, il] = topk(n, 2);
  EXPECT_TRUE(std::isnan(vl.to_vector<float>()[0]));
  EXPECT_EQ(il.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(topk(n, 2, 0, false).second.to_vector<int64_t>(), (std::vector<int64_t>{3, 0}));
  manual_seed(12);
  const Tensor big = randn({3, 300});
  auto [bv, bi] = topk(big, 100, 1);  // k > 64: the partial sort
  const auto all = big.to_vector<float>(), got = bv.to_vector<float>();
  const auto idx = bi.to_vector<int64_t>();
  for (int64_t r = 0; r < 3; ++r) {
    std::vector<float> row(all.begin() + r * 300, all.begin() + (r + 1) * 300);
    std::sort(row.begin(), row.end(), std::greater<float>());
    for (int64_t j = 0; j < 100; ++j) {
      ASSERT_EQ(got[size_t(r * 100 + j)], row[size_t(j)]) << r << " " << j;
      ASSERT_EQ(all[size_t(r * 300 + idx[size_t(r * 100 + j)])], row[size_t(j)]);
    }
  }
  EXPECT_EQ(topk(big, 0, 1).first.shape(), (Shape{3, 0}));
  std::string e = error_of([&] { topk(big, 301, 1); });
  EXPECT_NE(e.find("topk: k 301 out of range"), std::string::npos) << e;
}

// argmax / argmin and topk on long contiguous float32 rows (the vectorised scans) against the same rows
// read through a transpose (the scalar loops), on every ISA: ties, rows with one, two and only NaNs,
// signed zeros only, infinities, the extreme first and last; k from 1 to beam search's 2 x beam.
TEST(NnOpsIndex, ArgmaxAndTopkScansMatchTheStridedLoops) {
  std::mt19937 gen(5);
  const int64_t rows = 9, n = 1000;
  std::vector<float> v(size_t(rows * n));
  for (auto& e : v) e = float(int(gen() % 61) - 30);  // many ties
  auto at = [&](int64_t r, int64_t j) -> float& { return v[size_t(r * n + j)]; };
  at(1, 700) = NAN;
  at(2, 0) = NAN, at(2, 3) = NAN, at(2, 900) = NAN;  // a NaN first: smallest must pass it
  for (int64_t j = 0; j < n; ++j) at(3, j) = NAN, at(5, j) = j % 2 ? 0.0f : -0.0f;
  at(4, 17) = INFINITY, at(4, 18) = -INFINITY;
  at(6, n - 1) = 31, at(7, 0) = -31;
  for (int64_t j = 0; j < n; ++j) at(8, j) = float(gen()) * 0x1p-32f;  // distinct
  const Tensor x = from_vector(v, {rows, n}), strided = x.t().contiguous().t();
  ASSERT_FALSE(strided.is_contiguous());
  auto bits = [](const Tensor& t) {
    std::vector<uint32_t> b;
    for (float f : t.to_vector<float>()) b.push_back(std::bit_cast<uint32_t>(f));
    return b;
  };
  for (cpu::Isa isa : {cpu::Isa::Avx512, cpu::Isa::Avx2, cpu::Isa::Reference}) {
    if (!cpu::set_isa_for_testing(isa)) continue;
    for (bool largest : {true, false}) {
      const std::string what = std::string(cpu::isa_name(isa)) + (largest ? " largest" : " smallest");
      EXPECT_EQ((largest ? argmax(x, 1) : argmin(x, 1)).to_vector<int64_t>(),
                (largest ? argmax(strided, 1) : argmin(strided, 1)).to_vector<int64_t>()) << what;
      for (int64_t k : {1, 2, 4, 8}) {
        auto [gv, gi] = topk(x, k, 1, largest);
        auto [wv, wi] = topk(strided, k, 1, largest);
        EXPECT_EQ(gi.to_vector<int64_t>(), wi.to_vector<int64_t>()) << what << " k " << k;
        EXPECT_EQ(bits(gv), bits(wv)) << what << " k " << k;
      }
    }
  }
  cpu::reset_isa();
}

TEST(NnOpsIndex, MaskedFill) {
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor mask = from_vector<bool>({true, false, true}, {3});
  expect_values(masked_fill(x, mask, -1.5), {-1.5, 2, -1.5, -1.5, 5, -1.5}, 0.0);
  Tensor inf = masked_fill(x, from_vector<bool>({false, true}, {2, 1}), -INFINITY);
  EXPECT_EQ(inf.to_vector<double>()[3], -INFINITY);
  EXPECT_EQ(masked_fill(i64({1, 2, 3}, {3}), mask, 7).to_vector<int64_t>(), (std::vector<int64_t>{7, 2, 7}));
  EXPECT_TRUE(gradcheck([mask](const std::vector<Tensor>& v) { return masked_fill(v[0], mask, 3.0); }, {leaf({2, 3})}));
  // mask larger than x: the output takes the broadcast shape, the gradient sums back
  Tensor m2 = from_vector<bool>({true, false, false, false, true, false}, {2, 3});
  EXPECT_TRUE(gradcheck([m2](const std::vector<Tensor>& v) { return masked_fill(v[0], m2, 0.0); }, {leaf({3})}));
  EXPECT_THROW(masked_fill(x, i64({1, 0, 1}, {3}), 0.0), std::invalid_argument);
  EXPECT_THROW(masked_fill(x, from_vector<bool>({true, false}, {2}), 0.0), std::invalid_argument);
}

TEST(NnOpsIndex, OneHot) {
  Tensor oh = one_hot(i64({2, 0, 1}, {3}), 4);
  EXPECT_EQ(oh.dtype(), kInt64);
  EXPECT_EQ(oh.shape(), (Shape{3, 4}));
  EXPECT_EQ(oh.to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0}));
  EXPECT_EQ(one_hot(i64({1, 3}, {2, 1}), -1).shape(), (Shape{2, 1, 4}));
  EXPECT_THROW(one_hot(i64({4}, {1}), 4), std::invalid_argument);
  EXPECT_THROW(one_hot(from_vector<float>({1.f}, {1}), 4), std::invalid_argument);
}

// ---------------------------------------------------------------- cat, stack, split, chunk
TEST(NnOpsShape, CatAndStack) {
  Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 2}), b = from_vector<double>({5, 6}, {2, 1});
  Tensor c = cat({a, b}, 1);
  EXPECT_EQ(c.shape(), (Shape{2, 3}));
  expect_values(c, {1, 2, 5, 3, 4, 6}, 0.0);
  expect_values(cat({a, a.t()}, 0), {1, 2, 3, 4, 1, 3, 2, 4}, 0.0);
  // dtype promotion and legacy (0,) tensors skipped
  Tensor mixed = cat({from_vector<float>({1.f}, {1}), i64({2}, {1}), zeros({0}, {.dtype = kFloat64})}, 0);
  EXPECT_EQ(mixed.dtype(), kFloat64);
  expect_values(mixed, {1, 2}, 0.0);
  std::string e = error_of([&] { cat({a, from_vector<double>({1, 2, 3}, {3, 1})}, 1); });
  EXPECT_NE(e.find("(2, 2)"), std::string::npos) << e;
  EXPECT_NE(e.find("(3, 1)"), std::string::npos) << e;
  EXPECT_THROW(cat({}, 0), std::invalid_argument);
  EXPECT_THROW(cat({a, scalar_tensor(1.0)}, 0), std::invalid_argument);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return cat({v[0], v[1].t(), v[2]}, -1); },
                        {leaf({3, 2}), leaf({1, 3}, 0.4), leaf({3, 4}, 0.8)}));
  Tensor s = stack({a, a.t()}, 1);
  EXPECT_EQ(s.shape(), (Shape{2, 2, 2}));
  expect_values(s, {1, 2, 1, 3, 3, 4, 2, 4}, 0.0);
  EXPECT_EQ(stack({a, a}, -1).shape(), (Shape{2, 2, 2}));
  EXPECT_THROW(stack({a, b}, 0), std::invalid_argument);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return stack({v[0], v[1]}, 2); },
                        {leaf({2, 3}), leaf({2, 3}, 0.5)}));
}

TEST(NnOpsShape, SplitAndChunk) {
  Tensor x = arange(0.0, 10.0, 1.0, {.dtype = kFloat64}).view({5, 2});
  auto parts = split(x, 2, 0);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].shape(), (Shape{1, 2}));
  expect_values(parts[1], {4, 5, 6, 7}, 0.0);
  EXPECT_EQ(parts[1].raw_data(), static_cast<double*>(x.raw_data()) + 4);  // a view
  auto by = split(x, std::vector<int64_t>{1, 0, 4}, 0);
  ASSERT_EQ(by.size(), 3u);
  EXPECT_EQ(by[1].shape(), (Shape{0, 2}));
  expect_values(by[0], {0, 1}, 0.0);
  std::string e = error_of([&] { split(x, std::vector<int64_t>{1, 2}, 0); });
  EXPECT_NE(e.find("(5, 2)"), std::string::npos) << e;
  auto sizes = [](const std::vector<Tensor>& v, int64_t dim) {
    std::vector<int64_t> s;
    for (const Tensor& t : v) s.push_back(t.size(dim));
    return s;
  };
  // PyTorch's chunk: ceil(n / chunks) each, so fewer chunks than asked are possible
  EXPECT_EQ(sizes(chunk(x, 3, 0), 0), (std::vector<int64_t>{2, 2, 1}));
  EXPECT_EQ(sizes(chunk(zeros({6}), 4, 0), 0), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(sizes(chunk(zeros({3}), 5, 0), 0), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(sizes(chunk(zeros({0}), 3, 0), 0), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(sizes(split(zeros({0}), 2, 0), 0), (std::vector<int64_t>{0}));
  EXPECT_EQ(sizes(split(x, 2, -1), 1), (std::vector<int64_t>{2}));
  EXPECT_THROW(chunk(x, 0, 0), std::invalid_argument);
  EXPECT_THROW(split(x, 0, 0), std::invalid_argument);
  // differentiable through the view machinery
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) {
    auto p = split(v[0], 2, 0);
    return add(mul(p[0], 3.0), p[1]);
  }, {leaf({5, 2})}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) {
    auto p = chunk(v[0], 3, 1);
    return mul(p[0], p[2]);
  }, {leaf({2, 6})}));
}

// ---------------------------------------------------------------- allclose
TEST(NnOpsUtil, Allclose) {
  Tensor a = from_vector<double>({1.0, 2.0, INFINITY}, {3});
  EXPECT_TRUE(allclose(a, from_vector<double>({1.0 + 1e-9, 2.0, INFINITY}, {3})));
  EXPECT_FALSE(allclose(a, from_vector<double>({1.001, 2.0, INFINITY}, {3})));
  EXPECT_TRUE(allclose(a, from_vector<double>({1.001, 2.0, INFINITY}, {3}), 1e-2));
  EXPECT_FALSE(allclose(a, from_vector<double>({1.0, 2.0, -INFINITY}, {3})));
  EXPECT_FALSE(allclose(from_vector<double>({NAN}, {1}), from_vector<double>({NAN}, {1})));
  EXPECT_TRUE(allclose(ones({2, 3}), ones({3})));  // broadcasts
  EXPECT_TRUE(allclose(ones({2}), ones({2}, {.dtype = kFloat64})));
  EXPECT_THROW(allclose(ones({2}), ones({3})), std::invalid_argument);
}

// ---------------------------------------------------------------- bfloat16 inputs
TEST(NnOpsBFloat16, OutputsAndGradientsKeepDtypeAndMatchFloat32) {
  Tensor x32 = det({4, 6}, 0.2, 2.0, kFloat32);
  Tensor x = x32.to(kBFloat16).requires_grad_();
  Tensor xr = x.detach().to(kFloat32).requires_grad_();  // the same (rounded) values in float32
  Tensor t = i64({1, 2, 3, 5}, {4});
  // y = op(x) is reduced with fixed, uneven weights (a plain sum would give softmax a zero gradient),
  // and both the output and the gradient of the bfloat16 run must match the float32 run on the same
  // values to bfloat16 precision (8 bits of mantissa: ~0.4 % per rounding, a few roundings deep).
  auto check = [&](const char* name, const std::function<Tensor(const Tensor&)>& op) {
    Tensor y = op(x), ref = op(xr);
    EXPECT_EQ(y.dtype(), kBFloat16) << name;
    EXPECT_TRUE(allclose(y.to(kFloat32), ref, 2e-2, 2e-2)) << name;
    Tensor w = det(y.shape(), 1.3, 1.0, kFloat32);
    (y.to(kFloat32) * w).sum().backward();
    (ref * w).sum().backward();
    ASSERT_TRUE(x.grad().defined()) << name;
    EXPECT_EQ(x.grad().dtype(), kBFloat16) << name;
    Tensor g = x.grad().to(kFloat32), gr = xr.grad();
    EXPECT_GT(max(gr.abs()).item(), 1e-2) << name << ": the reference gradient is too small to test";
    EXPECT_TRUE(allclose(g, gr, 3e-2, 1e-2 * max(gr.abs()).item()))
        << name << " gradient\n bf16 " << g.to_string() << "\n f32 " << gr.to_string();
    x.set_grad(Tensor());
    xr.set_grad(Tensor());
  };
  check("softmax", [](const Tensor& v) { return softmax(v, 0); });
  check("cross_entropy", [&](const Tensor& v) { return cross_entropy(v, t); });
  check("layer_norm", [](const Tensor& v) { return layer_norm(v, {6}); });
  check("batch_norm", [](const Tensor& v) { return batch_norm(v, {}, {}, {}, {}, true); });
  check("mse_loss", [](const Tensor& v) { return mse_loss(v, zeros({4, 6}).to(v.dtype())); });
  check("embedding", [](const Tensor& v) { return embedding(v, i64({3, 0, 3}, {3})); });
  check("gather", [](const Tensor& v) { return gather(v, 1, i64({5, 4, 0, 1}, {4, 1})); });
}
