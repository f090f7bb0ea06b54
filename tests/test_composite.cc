// tests/test_composite.cc — the Backend's composite defaults of the fused ops (src/backend/composite*.cc)
// against the CPU backend's fused kernels, on the same CPU tensors: dropout and relu_dropout give the same
// keep bits and values (the same Philox draws), the others agree within rounding. (The op table also
// runs every op through the composites on the strict device: StrictCompositeFixtures.)
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "backend/backend.h"
#include "fixture_loader.h"

using namespace attn;
using backend::ref;

namespace {

backend::Backend& cpu() { return backend::backend_for(kCPU); }

void expect_near(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  EXPECT_TRUE(attn_test::tensors_close(got, want, tol, tol, what));
}

class CompositeDtype : public ::testing::TestWithParam<DType> {};

// The fused dropout kernels against the composite default: the same keep (and pass) bits and values,
// forward and backward. bf16: float32 draws and math, the scale rounded to bf16, on blocks of 2048.
void dropout_fused_vs_composite(DType dt, std::initializer_list<int64_t> sizes) {
  for (int64_t n : sizes) {
    SCOPED_TRACE(std::string(dtype_name(dt)) + " n = " + std::to_string(n));
    Tensor x = (randn({n}) * 2.0).to(dt), g = randn({n}).to(dt);
    const int64_t nb = backend::dropout_keep_bytes(n);
    Tensor y1 = empty({n}, {.dtype = dt}), y2 = empty({n}, {.dtype = dt});
    Tensor k1 = empty({nb}, {.dtype = kUInt8}), k2 = empty({nb}, {.dtype = kUInt8});
    cpu().dropout(ref(x), 0.3, 11, 5, ref(y1), ref(k1));
    cpu().backend::Backend::dropout(ref(x), 0.3, 11, 5, ref(y2), ref(k2));
    EXPECT_EQ(k1.to_vector<uint8_t>(), k2.to_vector<uint8_t>());
    EXPECT_EQ(y1.to_vector<double>(), y2.to_vector<double>());
    Tensor gx1 = empty({n}, {.dtype = dt}), gx2 = empty({n}, {.dtype = dt});
    cpu().dropout_backward(ref(g), ref(k1), 0.3, ref(gx1));
    cpu().backend::Backend::dropout_backward(ref(g), ref(k1), 0.3, ref(gx2));
    EXPECT_EQ(gx1.to_vector<double>(), gx2.to_vector<double>());

    Tensor p1 = empty({nb}, {.dtype = kUInt8}), p2 = empty({nb}, {.dtype = kUInt8});
    cpu().relu_dropout(ref(x), 0.25, 3, 9, ref(y1), ref(k1), ref(p1));
    cpu().backend::Backend::relu_dropout(ref(x), 0.25, 3, 9, ref(y2), ref(k2), ref(p2));
    EXPECT_EQ(k1.to_vector<uint8_t>(), k2.to_vector<uint8_t>());
    EXPECT_EQ(p1.to_vector<uint8_t>(), p2.to_vector<uint8_t>());
    EXPECT_EQ(y1.to_vector<double>(), y2.to_vector<double>());
    cpu().relu_dropout_backward(ref(g), ref(k1), ref(p1), 0.25, ref(gx1));
    cpu().backend::Backend::relu_dropout_backward(ref(g), ref(k1), ref(p1), 0.25, ref(gx2));
    EXPECT_EQ(gx1.to_vector<double>(), gx2.to_vector<double>());
  }
}

// binary_mixed: the CPU's blocks against the default's widened copies, every float32 / bf16 mix.
TEST(Composite, BinaryMixedMatchesTheKernel) {
  const int64_t n = 5000;
  const Tensor a = randn({n}) * 3.0, b = randn({n}) + 0.5;
  for (DType da : {kFloat32, kBFloat16})
    for (DType db : {kFloat32, kBFloat16})
      for (DType dout : {kFloat32, kBFloat16})
        for (backend::BinaryOp op : {backend::BinaryOp::Add, backend::BinaryOp::Div, backend::BinaryOp::Minimum}) {
          SCOPED_TRACE(std::string(dtype_name(da)) + " " + dtype_name(db) + " -> " + dtype_name(dout) + " op " +
                       std::to_string(int(op)));
          const Tensor x = a.to(da), y = b.to(db);
          Tensor o1 = empty({n}, {.dtype = dout}), o2 = empty({n}, {.dtype = dout});
          cpu().binary_mixed(op, ref(x), ref(y), ref(o1));
          cpu().backend::Backend::binary_mixed(op, ref(x), ref(y), ref(o2));
          EXPECT_EQ(o1.to_vector<double>(), o2.to_vector<double>());
        }
}

// bf16 logits: the default's widened copy against the CPU's blocks widened in scratch, the same bits
// (float32 loss, bf16 gradient rounded once).
TEST(Composite, CrossEntropyBFloat16MatchesTheKernel) {
  const int64_t R = 9, C = 700;
  const Tensor x = (randn({R, C}) * 2.0).to(kBFloat16), w = rand({C}) + 0.5, gl = randn({R});
  const Tensor t = from_vector<int64_t>({0, 699, -1, 2, 3, -1, 1, 350, 7}, {R});
  for (bool weighted : {false, true})
    for (double eps : {0.0, 0.1}) {
      SCOPED_TRACE(std::string(weighted ? "weighted" : "unweighted") + ", label_smoothing " + std::to_string(eps));
      const backend::TensorRef wr = weighted ? ref(w) : backend::TensorRef{};
      Tensor l1 = empty({R}), l2 = empty({R});
      cpu().cross_entropy(ref(x), ref(t), wr, -1, eps, ref(l1));
      cpu().backend::Backend::cross_entropy(ref(x), ref(t), wr, -1, eps, ref(l2));
      EXPECT_EQ(l1.to_vector<double>(), l2.to_vector<double>());
      Tensor g1 = empty_like(x), g2 = empty_like(x);
      cpu().cross_entropy_backward(ref(x), ref(t), wr, -1, eps, ref(gl), ref(g1));
      cpu().backend::Backend::cross_entropy_backward(ref(x), ref(t), wr, -1, eps, ref(gl), ref(g2));
      EXPECT_EQ(g1.to_vector<double>(), g2.to_vector<double>());
    }
}

TEST_P(CompositeDtype, DropoutSameKeepBitsAndValues) { dropout_fused_vs_composite(GetParam(), {1, 7, 64, 1000}); }
TEST(Composite, DropoutBFloat16SameKeepBitsAndValues) {
  dropout_fused_vs_composite(kBFloat16, {1, 7, 64, 1000, 2049, 70001});
}

TEST_P(CompositeDtype, SoftmaxAndItsBackward) {
  const DType dt = GetParam();
  const double tol = dt == kFloat32 ? 1e-6 : 1e-13;
  Tensor x = randn({6, 9}, {.dtype = dt}), g = randn({6, 9}, {.dtype = dt});
  for (bool log : {false, true}) {
    Tensor y1 = empty_like(x), y2 = empty_like(x), gx1 = empty_like(x), gx2 = empty_like(x);
    cpu().softmax(ref(x), ref(y1), log);
    cpu().backend::Backend::softmax(ref(x), ref(y2), log);
    expect_near(y2, y1, tol, log ? "log_softmax" : "softmax");
    cpu().softmax_backward(ref(y1), ref(g), ref(gx1), log);
    cpu().backend::Backend::softmax_backward(ref(y1), ref(g), ref(gx2), log);
    expect_near(gx2, gx1, tol, log ? "log_softmax backward" : "softmax backward");
  }
}

TEST_P(CompositeDtype, CrossEntropyWithWeightsIgnoreAndSmoothing) {
  const DType dt = GetParam();
  const double tol = dt == kFloat32 ? 2e-6 : 1e-13;
  const int64_t R = 7, C = 5;
  Tensor x = randn({R, C}, {.dtype = dt}), w = rand({C}, {.dtype = dt}), gl = randn({R}, {.dtype = dt});
  Tensor t = from_vector<int64_t>({0, 4, -1, 2, 3, -1, 1}, {R});
  for (bool weighted : {false, true}) {
    for (double eps : {0.0, 0.1}) {
      SCOPED_TRACE(std::string(weighted ? "weighted" : "unweighted") + ", label_smoothing " + std::to_string(eps));
      const backend::TensorRef wr = weighted ? ref(w) : backend::TensorRef{};
      Tensor l1 = empty({R}, {.dtype = dt}), l2 = empty({R}, {.dtype = dt});
      cpu().cross_entropy(ref(x), ref(t), wr, -1, eps, ref(l1));
      cpu().backend::Backend::cross_entropy(ref(x), ref(t), wr, -1, eps, ref(l2));
      expect_near(l2, l1, tol, "loss");
      Tensor g1 = empty_like(x), g2 = empty_like(x);
      cpu().cross_entropy_backward(ref(x), ref(t), wr, -1, eps, ref(gl), ref(g1));
      cpu().backend::Backend::cross_entropy_backward(ref(x), ref(t), wr, -1, eps, ref(gl), ref(g2));
      expect_near(g2, g1, tol, "grad");
    }
  }
}

TEST_P(CompositeDtype, AdamAdamWAmsgrad) {
  const DType dt = GetParam();
  const double tol = dt == kFloat32 ? 1e-6 : 1e-14;
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE("variant " + std::to_string(variant));
    backend::AdamArgs a{.lr = 0.01, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = variant ? 0.1 : 0.0,
                        .decoupled_weight_decay = variant == 2, .amsgrad = variant == 1, .step = 3};
    Tensor p = randn({37}, {.dtype = dt}), g = randn({37}, {.dtype = dt}), m = randn({37}, {.dtype = dt}) * 0.1,
           v = rand({37}, {.dtype = dt}) * 0.1, vm = rand({37}, {.dtype = dt}) * 0.1;
    Tensor p2 = p.clone(), m2 = m.clone(), v2 = v.clone(), vm2 = vm.clone();
    cpu().adam_step(a, ref(p), ref(g), ref(m), ref(v), ref(vm));
    cpu().backend::Backend::adam_step(a, ref(p2), ref(g), ref(m2), ref(v2), ref(vm2));
    expect_near(p2, p, tol, "param");
    expect_near(m2, m, tol, "exp_avg");
    expect_near(v2, v, tol, "exp_avg_sq");
    if (a.amsgrad) expect_near(vm2, vm, tol, "max_exp_avg_sq");
  }
}

// Masks, causal, dropout (the same keep decisions as the fused kernel), strided q/k/v and outputs.
TEST_P(CompositeDtype, SdpaForwardAndBackward) {
  const DType dt = GetParam();
  const double tol = dt == kFloat32 ? 2e-5 : 1e-12;
  const int64_t N = 2, H = 2, L = 5, S = 6, D = 4, Dv = 3;
  Tensor q = randn({N, L, H, D}, {.dtype = dt}).permute({0, 2, 1, 3});  // strided (N, H, L, D)
  Tensor k = randn({N, H, S, D}, {.dtype = dt}), v = randn({N, H, S, Dv}, {.dtype = dt});
  Tensor go = randn({N, H, L, Dv}, {.dtype = dt});
  Tensor bool_mask = gt(rand({L, S}), 0.2);
  Tensor float_mask = randn({1, H, L, S}, {.dtype = dt});
  Tensor kpm = from_vector<bool>({false, false, false, false, true, true,  // batch 0: the last two keys
                                  false, true, false, false, false, false},  // batch 1: key 1
                                 {N, S});
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE("variant " + std::to_string(variant));
    backend::SdpaArgs a{.n = N, .h = H, .l = L, .s = S, .d = D, .dv = Dv, .scale = 0.4, .is_causal = variant == 1,
                        .dropout_p = variant == 3 ? 0.3 : 0.0, .seed = 5, .offset = 17, .attn_mask = {},
                        .key_padding_mask = {}};
    if (variant == 0) a.attn_mask = backend::TensorRef{bool_mask.raw_data(), kBool, {N, H, L, S}, {0, 0, S, 1}};
    if (variant == 2 || variant == 3) {
      a.attn_mask = backend::TensorRef{float_mask.raw_data(), dt, {N, H, L, S}, {0, L * S, S, 1}};
      a.key_padding_mask = ref(kpm);
    }
    Tensor o1 = empty({N, H, L, Dv}, {.dtype = dt}), o2 = empty({N, H, L, Dv}, {.dtype = dt});
    Tensor lse1 = empty({N, H, L}, {.dtype = dt}), lse2 = empty({N, H, L}, {.dtype = dt});
    cpu().sdpa_forward(a, ref(q), ref(k), ref(v), ref(o1), ref(lse1));
    cpu().backend::Backend::sdpa_forward(a, ref(q), ref(k), ref(v), ref(o2), ref(lse2));
    expect_near(o2, o1, tol, "out");
    expect_near(lse2, lse1, tol, "logsumexp");
    Tensor gq1 = empty({N, H, L, D}, {.dtype = dt}), gk1 = empty_like(k), gv1 = empty_like(v);
    Tensor gq2 = empty({N, H, L, D}, {.dtype = dt}), gk2 = empty_like(k), gv2 = empty_like(v);
    cpu().sdpa_backward(a, ref(q), ref(k), ref(v), ref(o1), ref(lse1), ref(go), ref(gq1), ref(gk1), ref(gv1));
    cpu().backend::Backend::sdpa_backward(a, ref(q), ref(k), ref(v), ref(o1), ref(lse1), ref(go), ref(gq2), ref(gk2),
                                          ref(gv2));
    expect_near(gq2, gq1, tol, "grad_q");
    expect_near(gk2, gk1, tol, "grad_k");
    expect_near(gv2, gv1, tol, "grad_v");
  }
}

// bf16 operands: the composite widens them, runs the float32 attention and rounds each result once; the
// CPU kernel widens its tiles: the same float32 math up to summation order.
TEST(Composite, SdpaBFloat16MatchesTheKernel) {
  const int64_t N = 2, H = 2, L = 5, S = 6, D = 16, Dv = 16;
  Tensor q = randn({N, L, H, D}).to(kBFloat16).permute({0, 2, 1, 3});
  Tensor k = randn({N, H, S, D}).to(kBFloat16), v = randn({N, H, S, Dv}).to(kBFloat16);
  Tensor kpm = from_vector<bool>({false, false, false, false, true, true, false, true, false, false, false, false},
                                 {N, S});
  backend::SdpaArgs a{.n = N, .h = H, .l = L, .s = S, .d = D, .dv = Dv, .scale = 0.25, .is_causal = false,
                      .dropout_p = 0.0, .seed = 0, .offset = 0, .attn_mask = {}, .key_padding_mask = ref(kpm)};
  Tensor o1 = empty({N, H, L, Dv}, {.dtype = kBFloat16}), o2 = empty({N, H, L, Dv}, {.dtype = kBFloat16});
  Tensor lse1 = empty({N, H, L}), lse2 = empty({N, H, L});
  cpu().sdpa_forward(a, ref(q), ref(k), ref(v), ref(o1), ref(lse1));
  cpu().backend::Backend::sdpa_forward(a, ref(q), ref(k), ref(v), ref(o2), ref(lse2));
  expect_near(o2.to(kFloat32), o1.to(kFloat32), 1e-2, "out");  // one bf16 rounding apart at most
  expect_near(lse2, lse1, 2e-5, "logsumexp");
  // the backward: bf16 gradients (the composite: float32 copies in, each gradient rounded once)
  Tensor go = randn({N, H, L, Dv}).to(kBFloat16);
  Tensor gq1 = empty({N, H, L, D}, {.dtype = kBFloat16}), gk1 = empty_like(k), gv1 = empty_like(v);
  Tensor gq2 = empty({N, H, L, D}, {.dtype = kBFloat16}), gk2 = empty_like(k), gv2 = empty_like(v);
  cpu().sdpa_backward(a, ref(q), ref(k), ref(v), ref(o1), ref(lse1), ref(go), ref(gq1), ref(gk1), ref(gv1));
  cpu().backend::Backend::sdpa_backward(a, ref(q), ref(k), ref(v), ref(o1), ref(lse1), ref(go), ref(gq2), ref(gk2),
                                        ref(gv2));
  expect_near(gq2.to(kFloat32), gq1.to(kFloat32), 1e-2, "grad_q");
  expect_near(gk2.to(kFloat32), gk1.to(kFloat32), 1e-2, "grad_k");
  expect_near(gv2.to(kFloat32), gv1.to(kFloat32), 1e-2, "grad_v");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CompositeDtype, ::testing::Values(kFloat32, kFloat64),
                         [](const ::testing::TestParamInfo<DType>& p) { return std::string(dtype_name(p.param)); });

}  // namespace
