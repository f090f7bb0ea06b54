// tests/test_attention.cc — the fused scaled-dot-product attention (src/backend/cpu/attention.cc,
// src/ops/attention.cc): the tiled kernel against the naive oracle (cpu::ref::sdpa_*) for every ISA
// over odd shapes and mask kinds, fully-masked rows, dropout (reproducible, same keep-mask in the
// backward as in the forward, unbiased), a long-sequence smoke test, argument errors, and
// MultiheadAttention's fused path against its composite path. (Values vs PyTorch: the sdpa_* fixture
// cases of tests/test_ops_table.cc; finite differences: the sdpa_* rows of tests/test_gradcheck.cc.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/dispatch.h"
#include "ops/op_utils.h"

namespace {

using namespace attn;
using attn::backend::SdpaArgs;
using attn::backend::TensorRef;

constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor rnd(Shape s, DType dt = kFloat32) { return randn(std::move(s), {.dtype = dt}); }

// |got - want| <= atol + rtol |want| everywhere; inf must match inf.
::testing::AssertionResult close(const Tensor& got, const Tensor& want, double rtol, double atol, const std::string& what) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << what << ": shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isinf(w[i]) || std::isinf(g[i])) {
      if (g[i] != w[i]) return ::testing::AssertionFailure() << what << " [" << i << "]: got " << g[i] << ", want " << w[i];
      continue;
    }
    if (!(std::fabs(g[i] - w[i]) <= atol + rtol * std::fabs(w[i])))
      return ::testing::AssertionFailure() << what << " [" << i << "]: got " << g[i] << ", want " << w[i];
  }
  return ::testing::AssertionSuccess();
}

// ---- kernel vs oracle, per ISA
struct Shape6 {
  int64_t n, h, l, s, d, dv;
};
enum class MaskKind { None, Causal, BoolLS, FloatN1LS, KeyPadBool, KeyPadFloatAndBool, Dropout, Noncontig };
const char* kind_name(MaskKind k) {
  static const char* names[] = {"none", "causal", "bool(L,S)", "float(N,1,L,S)", "kpm bool", "kpm float + bool",
                                "dropout", "noncontig"};
  return names[int(k)];
}

class SdpaIsa : public ::testing::TestWithParam<cpu::Isa> {
 protected:
  void SetUp() override {
    if (!cpu::set_isa_for_testing(GetParam())) GTEST_SKIP() << cpu::isa_name(GetParam()) << " not supported";
  }
  void TearDown() override { cpu::reset_isa(); }
};

void kernel_vs_oracle(const Shape6& sh, MaskKind kind, DType dt) {
  const std::string what = std::string(kind_name(kind)) + " " + dtype_name(dt) + " N,H,L,S,D,Dv=" +
                           shape_str({sh.n, sh.h, sh.l, sh.s, sh.d, sh.dv});
  manual_seed(uint64_t(sh.l * 131 + sh.s * 7 + int(kind)));
  Tensor q = rnd({sh.n, sh.h, sh.l, sh.d}, dt), k = rnd({sh.n, sh.h, sh.s, sh.d}, dt),
         v = rnd({sh.n, sh.h, sh.s, sh.dv}, dt);
  if (kind == MaskKind::Noncontig) {  // the layouts MultiheadAttention hands over: (L, N, H, D) permuted
    q = rnd({sh.l, sh.n, sh.h, sh.d}, dt).permute({1, 2, 0, 3});
    k = rnd({sh.n, sh.h, sh.d, sh.s}, dt).transpose(2, 3);
    v = rnd({sh.s, sh.h, sh.n, sh.dv}, dt).permute({2, 1, 0, 3});
  }
  SdpaArgs a{.n = sh.n, .h = sh.h, .l = sh.l, .s = sh.s, .d = sh.d, .dv = sh.dv, .scale = 1.0 / std::sqrt(double(sh.d)),
             .is_causal = kind == MaskKind::Causal, .dropout_p = 0.0, .seed = 0, .offset = 0, .attn_mask = {},
             .key_padding_mask = {}};
  Tensor mask, kpm;
  const Shape full{sh.n, sh.h, sh.l, sh.s};
  if (kind == MaskKind::BoolLS || kind == MaskKind::KeyPadFloatAndBool) mask = lt(rand({sh.l, sh.s}), 0.7);
  if (kind == MaskKind::FloatN1LS) mask = rnd({sh.n, 1, sh.l, sh.s}, dt);
  if (kind == MaskKind::KeyPadBool || kind == MaskKind::Dropout) kpm = lt(rand({sh.n, sh.s}), 0.3);
  if (kind == MaskKind::KeyPadFloatAndBool) kpm = rnd({sh.n, sh.s}, dt);
  if (mask.defined()) a.attn_mask = ops::broadcast_ref(mask, full);
  if (kpm.defined()) a.key_padding_mask = backend::ref(kpm);
  if (kind == MaskKind::Dropout) a.dropout_p = 0.2, a.seed = 1234, a.offset = 77;

  Tensor out = zeros({sh.n, sh.h, sh.l, sh.dv}, {.dtype = dt}), lse = zeros({sh.n, sh.h, sh.l}, {.dtype = dt});
  Tensor out_r = zeros_like(out), lse_r = zeros_like(lse);
  cpu::sdpa_forward(a, backend::ref(q), backend::ref(k), backend::ref(v), backend::ref(out), backend::ref(lse));
  cpu::ref::sdpa_forward(a, backend::ref(q), backend::ref(k), backend::ref(v), backend::ref(out_r), backend::ref(lse_r));
  const double tol = dt == kFloat64 ? 1e-10 : 2e-5;
  EXPECT_TRUE(close(out, out_r, tol, tol, what + " out"));
  EXPECT_TRUE(close(lse, lse_r, tol, tol, what + " logsumexp"));

  Tensor go = rnd({sh.n, sh.h, sh.l, sh.dv}, dt);
  Tensor gq = zeros_like(q.contiguous()), gk = zeros_like(k.contiguous()), gv = zeros_like(v.contiguous());
  Tensor gq_r = zeros_like(gq), gk_r = zeros_like(gk), gv_r = zeros_like(gv);
  cpu::sdpa_backward(a, backend::ref(q), backend::ref(k), backend::ref(v), backend::ref(out), backend::ref(lse),
                     backend::ref(go), backend::ref(gq), backend::ref(gk), backend::ref(gv));
  cpu::ref::sdpa_backward(a, backend::ref(q), backend::ref(k), backend::ref(v), backend::ref(out_r), backend::ref(lse_r),
                          backend::ref(go), backend::ref(gq_r), backend::ref(gk_r), backend::ref(gv_r));
  const double gtol = dt == kFloat64 ? 1e-9 : 1e-4;
  EXPECT_TRUE(close(gq, gq_r, gtol, gtol, what + " grad q"));
  EXPECT_TRUE(close(gk, gk_r, gtol, gtol, what + " grad k"));
  EXPECT_TRUE(close(gv, gv_r, gtol, gtol, what + " grad v"));
}

const std::vector<Shape6> kShapes = {
    {1, 1, 1, 1, 1, 1},     {2, 3, 5, 7, 4, 3},   {1, 2, 65, 130, 64, 64}, {2, 1, 33, 17, 17, 33},
    {1, 1, 64, 64, 64, 64}, {2, 2, 1, 31, 64, 64}, {1, 1, 130, 70, 8, 5},   {1, 2, 3, 200, 20, 12},
};
const std::vector<MaskKind> kKinds = {MaskKind::None,       MaskKind::Causal,  MaskKind::BoolLS,
                                      MaskKind::FloatN1LS,  MaskKind::KeyPadBool, MaskKind::KeyPadFloatAndBool,
                                      MaskKind::Dropout,    MaskKind::Noncontig};

TEST_P(SdpaIsa, Float32MatchesOracle) {
  for (const Shape6& sh : kShapes)
    for (MaskKind k : kKinds) kernel_vs_oracle(sh, k, kFloat32);
}

// The float32 SIMD path around its tile and vector boundaries: L, S in {1, 15, 16, 17, 63, 64, 65, 100}
// (one key block written straight to the output, several blocks with the online softmax, causal tiles
// skipped or crossing the diagonal, partial 16-row transposes), with D = Dv = 64 (operands and gradients
// used in place) and D = 20, Dv = 24 (packed), contiguous and strided.
TEST_P(SdpaIsa, Float32TileBoundariesMatchOracle) {
  const int64_t sizes[] = {1, 15, 16, 17, 63, 64, 65, 100};
  for (int64_t l : sizes)
    for (int64_t s : sizes) {
      for (MaskKind k : {MaskKind::KeyPadBool, MaskKind::Causal}) kernel_vs_oracle({1, 2, l, s, 64, 64}, k, kFloat32);
      for (MaskKind k : {MaskKind::None, MaskKind::Dropout, MaskKind::Noncontig})
        kernel_vs_oracle({2, 1, l, s, 20, 24}, k, kFloat32);
    }
  kernel_vs_oracle({2, 2, 100, 65, 64, 64}, MaskKind::Noncontig, kFloat32);
  kernel_vs_oracle({2, 2, 65, 100, 64, 64}, MaskKind::FloatN1LS, kFloat32);
  kernel_vs_oracle({2, 2, 17, 100, 64, 64}, MaskKind::Dropout, kFloat32);
}

// One query per head (decoding over a key/value cache, forward_one_query_f32): keys and values as the
// first S slots of a larger cache (head stride capacity * D), a key padding mask with one row fully
// padded (zeros and logsumexp +inf, as the tiled path), D = Dv = 64 and 32.
TEST_P(SdpaIsa, Float32OneQueryOnCacheViewsMatchesOracle) {
  manual_seed(21);
  for (int64_t d : {32, 64})
    for (int64_t s : {1, 5, 16, 33, 100}) {
      const int64_t n = 3, h = 2, cap = s + 7;
      const Tensor q = randn({n, h, 1, d}), kc = randn({n, h, cap, d}), vc = randn({n, h, cap, d});
      const Tensor k = kc.narrow(2, 0, s), v = vc.narrow(2, 0, s);
      Tensor kpm = lt(rand({n, s}), 0.3);
      kpm.select(0, 2).fill_(1.0);  // sentence 2: every key padded
      SdpaArgs a{.n = n, .h = h, .l = 1, .s = s, .d = d, .dv = d, .scale = 1.0 / std::sqrt(double(d)),
                 .is_causal = false, .dropout_p = 0.0, .seed = 0, .offset = 0, .attn_mask = {},
                 .key_padding_mask = backend::ref(kpm)};
      Tensor out = zeros({n, h, 1, d}), lse = zeros({n, h, 1}), out_r = zeros_like(out), lse_r = zeros_like(lse);
      cpu::sdpa_forward(a, backend::ref(q), backend::ref(k), backend::ref(v), backend::ref(out), backend::ref(lse));
      cpu::ref::sdpa_forward(a, backend::ref(q), backend::ref(k), backend::ref(v), backend::ref(out_r),
                             backend::ref(lse_r));
      const std::string what = "one query d " + std::to_string(d) + " s " + std::to_string(s);
      EXPECT_TRUE(close(out, out_r, 2e-5, 2e-5, what + " out"));
      EXPECT_TRUE(close(lse, lse_r, 2e-5, 2e-5, what + " logsumexp"));
      EXPECT_EQ(max(abs(out.select(0, 2))).item<float>(), 0.0f) << what;
    }
}

// bf16 q, k, v, out (float32 logsumexp and float masks): the kernel widens what it reads and rounds each
// output row once, so it must give exactly the float32 kernel's result on the widened inputs, rounded to
// bf16, on both paths (one query per head over cache views; tiles with every mask kind, dropout and
// permuted layouts).
void bf16_vs_widened(const Shape6& sh, MaskKind kind, bool cache_views) {
  const std::string what = std::string(kind_name(kind)) + (cache_views ? " cache views" : "") +
                           " N,H,L,S,D,Dv=" + shape_str({sh.n, sh.h, sh.l, sh.s, sh.d, sh.dv});
  manual_seed(uint64_t(sh.l * 31 + sh.s * 5 + int(kind)));
  auto b16 = [](Shape s) { return randn(std::move(s)).to(kBFloat16); };
  Tensor q = b16({sh.n, sh.h, sh.l, sh.d}), k = b16({sh.n, sh.h, sh.s, sh.d}), v = b16({sh.n, sh.h, sh.s, sh.dv});
  if (kind == MaskKind::Noncontig) {
    q = b16({sh.l, sh.n, sh.h, sh.d}).permute({1, 2, 0, 3});
    k = b16({sh.n, sh.h, sh.d, sh.s}).transpose(2, 3);
    v = b16({sh.s, sh.h, sh.n, sh.dv}).permute({2, 1, 0, 3});
  }
  if (cache_views) {  // the first S slots of caches with room for 7 more
    k = b16({sh.n, sh.h, sh.s + 7, sh.d}).narrow(2, 0, sh.s);
    v = b16({sh.n, sh.h, sh.s + 7, sh.dv}).narrow(2, 0, sh.s);
  }
  SdpaArgs a{.n = sh.n, .h = sh.h, .l = sh.l, .s = sh.s, .d = sh.d, .dv = sh.dv, .scale = 1.0 / std::sqrt(double(sh.d)),
             .is_causal = kind == MaskKind::Causal, .dropout_p = 0.0, .seed = 0, .offset = 0, .attn_mask = {},
             .key_padding_mask = {}};
  Tensor mask, kpm;
  if (kind == MaskKind::BoolLS || kind == MaskKind::KeyPadFloatAndBool) mask = lt(rand({sh.l, sh.s}), 0.7);
  if (kind == MaskKind::FloatN1LS) mask = rnd({sh.n, 1, sh.l, sh.s});
  if (kind == MaskKind::KeyPadBool || kind == MaskKind::Dropout) kpm = lt(rand({sh.n, sh.s}), 0.3);
  if (kind == MaskKind::KeyPadFloatAndBool) kpm = rnd({sh.n, sh.s});
  if (mask.defined()) a.attn_mask = ops::broadcast_ref(mask, {sh.n, sh.h, sh.l, sh.s});
  if (kpm.defined()) a.key_padding_mask = backend::ref(kpm);
  if (kind == MaskKind::Dropout) a.dropout_p = 0.2, a.seed = 99, a.offset = 5;
  Tensor out = zeros({sh.n, sh.h, sh.l, sh.dv}, {.dtype = kBFloat16}), lse = zeros({sh.n, sh.h, sh.l});
  Tensor out32 = zeros({sh.n, sh.h, sh.l, sh.dv}), lse32 = zeros({sh.n, sh.h, sh.l});
  const Tensor q32 = q.to(kFloat32), k32 = k.to(kFloat32), v32 = v.to(kFloat32);  // exact
  cpu::sdpa_forward(a, backend::ref(q), backend::ref(k), backend::ref(v), backend::ref(out), backend::ref(lse));
  cpu::sdpa_forward(a, backend::ref(q32), backend::ref(k32), backend::ref(v32), backend::ref(out32),
                    backend::ref(lse32));
  const std::vector<float> got = out.to(kFloat32).to_vector<float>(), want = out32.to(kBFloat16).to(kFloat32).to_vector<float>();
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0) << what << " out [" << i << "]: " << got[i] << " vs " << want[i];
  const std::vector<float> l1 = lse.to_vector<float>(), l2 = lse32.to_vector<float>();
  for (size_t i = 0; i < l1.size(); ++i)
    ASSERT_EQ(std::memcmp(&l1[i], &l2[i], sizeof(float)), 0) << what << " logsumexp [" << i << "]";

  // the backward reads the bf16 out and dO the same way: the float32 backward on the widened values
  // (out as rounded), each gradient rounded once; bf16 gradients laid out like q, k, v (the permuted
  // strides of Noncontig), float32 ones contiguous
  const Tensor go = b16({sh.n, sh.h, sh.l, sh.dv}), go32 = go.to(kFloat32), outw = out.to(kFloat32);
  const std::vector<Tensor> g = {ops::empty_dense_like(q), ops::empty_dense_like(k), ops::empty_dense_like(v)};
  const std::vector<Tensor> g32 = {zeros(q.shape()), zeros(k.shape()), zeros(v.shape())};
  cpu::sdpa_backward(a, backend::ref(q), backend::ref(k), backend::ref(v), backend::ref(out), backend::ref(lse),
                     backend::ref(go), backend::ref(g[0]), backend::ref(g[1]), backend::ref(g[2]));
  cpu::sdpa_backward(a, backend::ref(q32), backend::ref(k32), backend::ref(v32), backend::ref(outw),
                     backend::ref(lse32), backend::ref(go32), backend::ref(g32[0]), backend::ref(g32[1]),
                     backend::ref(g32[2]));
  const char* names[3] = {" grad q", " grad k", " grad v"};
  for (int t = 0; t < 3; ++t) {
    const std::vector<float> gb = g[size_t(t)].to(kFloat32).to_vector<float>(),
                             gw = g32[size_t(t)].to(kBFloat16).to(kFloat32).to_vector<float>();
    for (size_t i = 0; i < gb.size(); ++i)
      ASSERT_EQ(std::memcmp(&gb[i], &gw[i], sizeof(float)), 0)
          << what << names[t] << " [" << i << "]: " << gb[i] << " vs " << gw[i];
  }
}

TEST_P(SdpaIsa, BFloat16ForwardAndBackwardEqualFloat32OnWidenedInputs) {
  for (const Shape6& sh : kShapes)
    for (MaskKind k : kKinds) bf16_vs_widened(sh, k, false);
  for (int64_t s : {1, 16, 33, 100})
    for (MaskKind k : {MaskKind::None, MaskKind::KeyPadBool, MaskKind::KeyPadFloatAndBool}) {
      bf16_vs_widened({3, 2, 1, s, 64, 64}, k, true);  // one query per head over cache views
      bf16_vs_widened({3, 2, 1, s, 32, 32}, k, false);
    }
  bf16_vs_widened({2, 2, 70, 65, 64, 64}, MaskKind::Causal, false);
  bf16_vs_widened({2, 2, 17, 64, 64, 64}, MaskKind::None, false);  // one key block: straight to the rows
}

INSTANTIATE_TEST_SUITE_P(Isa, SdpaIsa, ::testing::Values(cpu::Isa::Reference, cpu::Isa::Avx2, cpu::Isa::Avx512),
                         [](const ::testing::TestParamInfo<cpu::Isa>& p) { return std::string(cpu::isa_name(p.param)); });

TEST(Sdpa, Float64MatchesOracle) {
  for (const Shape6& sh : {Shape6{2, 3, 5, 7, 4, 3}, Shape6{1, 1, 130, 70, 8, 5}})
    for (MaskKind k : kKinds) kernel_vs_oracle(sh, k, kFloat64);
}

// ---- op level
// out, and grads of q, k, v for sum(out * go)
struct Grads {
  Tensor out, gq, gk, gv;
};
Grads run_fn(const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& go,
        const std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>& f) {
  Tensor q = q0.detach().requires_grad_(true), k = k0.detach().requires_grad_(true), v = v0.detach().requires_grad_(true);
  Tensor out = f(q, k, v);
  sum(mul(out, go)).backward();
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

TEST(Sdpa, FullyMaskedRowsGiveZeroOutputAndGradient) {
  manual_seed(3);
  const int64_t N = 2, H = 2, L = 4, S = 5, D = 8;
  Tensor q = rnd({N, H, L, D}), k = rnd({N, H, S, D}), v = rnd({N, H, S, D}), go = rnd({N, H, L, D});
  // batch 0: every key padded; batch 1: row 2 of the (L, S) mask allows nothing
  Tensor kpm = from_vector<bool>({true, true, true, true, true, false, false, true, false, false}, {N, S});
  std::vector<bool> m(size_t(L * S), true);
  for (int64_t j = 0; j < S; ++j) m[size_t(2 * S + j)] = false;
  Tensor mask = from_vector<bool>(m, {L, S});
  Grads r = run_fn(q, k, v, go, [&](const Tensor& a, const Tensor& b, const Tensor& c) {
    return scaled_dot_product_attention(a, b, c, {.attn_mask = mask, .key_padding_mask = kpm});
  });
  auto all_finite = [](const Tensor& t) {
    for (double x : t.to_vector<double>())
      if (!std::isfinite(x)) return false;
    return true;
  };
  for (const Tensor* t : {&r.out, &r.gq, &r.gk, &r.gv}) EXPECT_TRUE(all_finite(*t));
  EXPECT_EQ(max(abs(r.out.select(0, 0))).item(), 0.0);
  EXPECT_EQ(max(abs(r.gq.select(0, 0))).item(), 0.0);
  EXPECT_EQ(max(abs(r.gk.select(0, 0))).item(), 0.0);
  EXPECT_EQ(max(abs(r.gv.select(0, 0))).item(), 0.0);
  EXPECT_EQ(max(abs(r.out.select(0, 1).select(1, 2))).item(), 0.0);  // (H, L, D) -> row 2
  EXPECT_EQ(max(abs(r.gq.select(0, 1).select(1, 2))).item(), 0.0);
  EXPECT_GT(max(abs(r.out.select(0, 1).select(1, 1))).item(), 0.0);  // the other rows attend
}

TEST(Sdpa, DropoutIsReproducibleAndAdvancesTheGenerator) {
  manual_seed(1);
  Tensor q = rnd({2, 2, 7, 8}), k = rnd({2, 2, 9, 8}), v = rnd({2, 2, 9, 8});
  manual_seed(42);
  Tensor a = scaled_dot_product_attention(q, k, v, {.dropout_p = 0.5});
  const uint64_t used = default_generator().state().offset;
  EXPECT_EQ(used, uint64_t(2 * 2 * 7 * ((9 + 3) / 4)));
  manual_seed(42);
  Tensor b = scaled_dot_product_attention(q, k, v, {.dropout_p = 0.5});
  EXPECT_TRUE(allclose(a, b, 0, 0));
  Tensor c = scaled_dot_product_attention(q, k, v, {.dropout_p = 0.5});  // the next draw differs
  EXPECT_FALSE(allclose(a, c, 0, 0));
}

// The backward must use the forward's keep-mask: compare with the composite
// softmax(q kᵀ scale) ∘ keep / (1 - p) @ v built from the same Philox draws.
TEST(Sdpa, DropoutMatchesCompositeWithTheSameKeepMask) {
  const int64_t N = 2, H = 2, L = 6, S = 11, D = 5;
  const double p = 0.3;
  manual_seed(8);
  Tensor q = rnd({N, H, L, D}, kFloat64), k = rnd({N, H, S, D}, kFloat64), v = rnd({N, H, S, D}, kFloat64),
         go = rnd({N, H, L, D}, kFloat64);
  manual_seed(99);
  const GeneratorState st = default_generator().state();
  Grads fused = run_fn(q, k, v, go, [&](const Tensor& a, const Tensor& b, const Tensor& c) {
    return scaled_dot_product_attention(a, b, c, {.dropout_p = p});
  });
  SdpaArgs args{.n = N, .h = H, .l = L, .s = S, .d = D, .dv = D, .scale = 1.0, .is_causal = false, .dropout_p = p,
                .seed = st.seed, .offset = st.offset, .attn_mask = {}, .key_padding_mask = {}};
  std::vector<double> keep(size_t(N * H * L * S));
  for (int64_t r = 0; r < N * H * L; ++r)
    for (int64_t j = 0; j < S; ++j) keep[size_t(r * S + j)] = cpu::sdpa_keep(args, r, j) ? 1.0 / (1.0 - p) : 0.0;
  Tensor km = from_vector<double>(keep, {N, H, L, S});
  Grads comp = run_fn(q, k, v, go, [&](const Tensor& a, const Tensor& b, const Tensor& c) {
    return matmul(mul(softmax(mul(matmul(a, b.transpose(2, 3)), 1.0 / std::sqrt(double(D))), -1), km), c);
  });
  EXPECT_TRUE(close(fused.out, comp.out, 1e-10, 1e-10, "out"));
  EXPECT_TRUE(close(fused.gq, comp.gq, 1e-9, 1e-10, "grad q"));
  EXPECT_TRUE(close(fused.gk, comp.gk, 1e-9, 1e-10, "grad k"));
  EXPECT_TRUE(close(fused.gv, comp.gv, 1e-9, 1e-10, "grad v"));
}

// The float32 kernels draw their keep-mask 64 keys at a time (AVX-512 Philox) or per key (scalar):
// both must equal sdpa_keep for every row, tile start and length, and p whose 1 - p is and is not a
// multiple of 2^-24.
TEST(Sdpa, KeepScalesMatchTheScalarKeepMask) {
  for (cpu::Isa isa : {cpu::Isa::Avx512, cpu::Isa::Avx2}) {
    if (!cpu::set_isa_for_testing(isa)) continue;
    for (double p : {0.1, 0.5, 1.0 / 3.0, 0.25, 1e-7, 0.999})
      for (int64_t row : {0, 1, 7, 1000, 123457}) {
        SdpaArgs args{.n = 1, .h = 1, .l = 1, .s = 200, .d = 4, .dv = 4, .scale = 1.0, .is_causal = false,
                      .dropout_p = p, .seed = 0x1234567890ull + uint64_t(row), .offset = 77, .attn_mask = {},
                      .key_padding_mask = {}};
        for (int64_t j0 : {0, 64, 128, 3, 6})
          for (int64_t count : {1, 17, 32, 64}) {
            std::vector<float> mult(128, -1.f);
            const float ks = float(1.0 / (1.0 - p));
            cpu::sdpa_keep_scales(args, row, j0, count, ks, mult.data());
            for (int64_t c = 0; c < count; ++c)
              ASSERT_EQ(mult[size_t(c)], cpu::sdpa_keep(args, row, j0 + c) ? ks : 0.f)
                  << cpu::isa_name(isa) << " p=" << p << " row=" << row << " j0=" << j0 << " c=" << c;
          }
      }
    cpu::reset_isa();
  }
}

// float32 fused dropout (forward and backward, several key tiles) against the composite with the same
// keep-mask, on each instruction set.
TEST(Sdpa, Float32DropoutMatchesCompositeWithTheSameKeepMask) {
  const int64_t N = 2, H = 2, L = 9, S = 150, D = 16;
  const double p = 0.2;
  for (cpu::Isa isa : {cpu::Isa::Avx512, cpu::Isa::Avx2}) {
    if (!cpu::set_isa_for_testing(isa)) continue;
    manual_seed(8);
    Tensor q = rnd({N, H, L, D}), k = rnd({N, H, S, D}), v = rnd({N, H, S, D}), go = rnd({N, H, L, D});
    manual_seed(99);
    const GeneratorState st = default_generator().state();
    Grads fused = run_fn(q, k, v, go, [&](const Tensor& a, const Tensor& b, const Tensor& c) {
      return scaled_dot_product_attention(a, b, c, {.dropout_p = p});
    });
    SdpaArgs args{.n = N, .h = H, .l = L, .s = S, .d = D, .dv = D, .scale = 1.0, .is_causal = false,
                  .dropout_p = p, .seed = st.seed, .offset = st.offset, .attn_mask = {}, .key_padding_mask = {}};
    std::vector<float> keep(size_t(N * H * L * S));
    for (int64_t r = 0; r < N * H * L; ++r)
      for (int64_t j = 0; j < S; ++j) keep[size_t(r * S + j)] = cpu::sdpa_keep(args, r, j) ? float(1.0 / (1.0 - p)) : 0.f;
    Tensor km = from_vector<float>(keep, {N, H, L, S});
    Grads comp = run_fn(q, k, v, go, [&](const Tensor& a, const Tensor& b, const Tensor& c) {
      return matmul(mul(softmax(mul(matmul(a, b.transpose(2, 3)), 1.0 / std::sqrt(double(D))), -1), km), c);
    });
    EXPECT_TRUE(close(fused.out, comp.out, 1e-5, 1e-5, "out")) << cpu::isa_name(isa);
    EXPECT_TRUE(close(fused.gq, comp.gq, 1e-4, 1e-5, "grad q")) << cpu::isa_name(isa);
    EXPECT_TRUE(close(fused.gk, comp.gk, 1e-4, 1e-5, "grad k")) << cpu::isa_name(isa);
    EXPECT_TRUE(close(fused.gv, comp.gv, 1e-4, 1e-5, "grad v")) << cpu::isa_name(isa);
    cpu::reset_isa();
  }
}

TEST(Sdpa, DropoutKeepsTheMean) {
  // q = 0: uniform probabilities 1/S, v = 1: each output is (#kept / S) / (1 - p), expectation 1
  const int64_t L = 512, S = 64;
  const double p = 0.3;
  manual_seed(5);
  Tensor out = scaled_dot_product_attention(zeros({1, 2, L, 16}), rnd({1, 2, S, 16}), ones({1, 2, S, 1}),
                                            {.dropout_p = p});
  EXPECT_NEAR(mean(out).item(), 1.0, 0.02);
  EXPECT_NEAR(attn::std(out).item(), std::sqrt(p * (1 - p) / double(S)) / (1 - p), 0.01);
}

TEST(Sdpa, LongSequencesMatchTheCompositeOnASlice) {
  // L = S = 2048: the composite would hold 4M scores per head; the fused op holds 64 x 64 tiles.
  const int64_t L = 2048, S = 2048, D = 64, R = 40;
  manual_seed(11);
  Tensor q = rnd({1, 1, L, D}), k = rnd({1, 1, S, D}), v = rnd({1, 1, S, D}), go = rnd({1, 1, L, D});
  Grads fused = run_fn(q, k, v, go, [](const Tensor& a, const Tensor& b, const Tensor& c) {
    return scaled_dot_product_attention(a, b, c, {.is_causal = true});
  });
  // rows [L - R, L) of the composite (query rows are independent): (R, S) scores only
  Tensor qs = q.narrow(2, L - R, R).contiguous(), gos = go.narrow(2, L - R, R).contiguous();
  Grads comp = run_fn(qs, k, v, gos, [&](const Tensor& a, const Tensor& b, const Tensor& c) {
    Tensor s = mul(matmul(a, b.transpose(2, 3)), 1.0 / std::sqrt(double(D)));  // (1, 1, R, S)
    Tensor causal = gt(arange(S).view({1, S}), add(arange(R).view({R, 1}), double(L - R)));
    return matmul(softmax(masked_fill(s, causal, -kInf), -1), c);
  });
  EXPECT_TRUE(close(fused.out.narrow(2, L - R, R), comp.out, 1e-4, 1e-5, "out rows"));
  EXPECT_TRUE(close(fused.gq.narrow(2, L - R, R), comp.gq, 1e-3, 1e-4, "grad q rows"));
}

// bf16 through the op: the kernel reads the bf16 operands (and the packed op its bf16 (N, T, 3E) block)
// and equals the float32 op on the widened values, rounded, with and without gradients; the gradients are
// bf16 and within bf16 rounding of the float32 op's (which saves an unrounded output).
TEST(Sdpa, BFloat16OpsMatchFloat32AndKeepGradients) {
  manual_seed(8);
  const Tensor q = randn({2, 4, 3, 16}).to(kBFloat16), k = randn({2, 4, 5, 16}).to(kBFloat16),
               v = randn({2, 4, 5, 16}).to(kBFloat16);
  const Tensor kpm = lt(rand({2, 5}), 0.3);
  const SdpaOptions o{.key_padding_mask = kpm};
  Tensor y;
  {
    NoGradGuard ng;
    y = scaled_dot_product_attention(q, k, v, o);
  }
  const Tensor want = scaled_dot_product_attention(q.to(kFloat32), k.to(kFloat32), v.to(kFloat32), o).to(kBFloat16);
  EXPECT_EQ(y.dtype(), kBFloat16);
  EXPECT_TRUE(allclose(y.to(kFloat32), want.to(kFloat32), 0.0, 0.0));
  const Tensor qg = q.detach().requires_grad_();
  const Tensor yg = scaled_dot_product_attention(qg, k, v, o);
  EXPECT_TRUE(allclose(yg.to(kFloat32), want.to(kFloat32), 0.0, 0.0));
  yg.to(kFloat32).sum().backward();
  ASSERT_TRUE(qg.grad().defined());
  EXPECT_EQ(qg.grad().dtype(), kBFloat16);
  const Tensor q32 = q.to(kFloat32).requires_grad_();
  scaled_dot_product_attention(q32, k.to(kFloat32), v.to(kFloat32), o).sum().backward();
  EXPECT_TRUE(close(qg.grad().to(kFloat32), q32.grad(), 2e-2, 2e-2, "bf16 op grad q"));

  const Tensor src = randn({2, 6, 3 * 32}).to(kBFloat16);  // (N, T, 3E): q | k | v columns, E = 32, 4 heads
  Tensor py;
  {
    NoGradGuard ng;
    py = packed_scaled_dot_product_attention({src, 0}, {src, 32}, {src, 64}, 4, 32, {.is_causal = true});
  }
  const Tensor s32 = src.to(kFloat32);
  const Tensor pwant = packed_scaled_dot_product_attention({s32, 0}, {s32, 32}, {s32, 64}, 4, 32, {.is_causal = true});
  EXPECT_EQ(py.dtype(), kBFloat16);
  EXPECT_TRUE(allclose(py.to(kFloat32), pwant.to(kBFloat16).to(kFloat32), 0.0, 0.0));
  const Tensor sg = src.detach().requires_grad_(), sg32 = s32.detach().requires_grad_();
  const Tensor pyg = packed_scaled_dot_product_attention({sg, 0}, {sg, 32}, {sg, 64}, 4, 32, {.is_causal = true});
  EXPECT_TRUE(allclose(pyg.to(kFloat32), py.to(kFloat32), 0.0, 0.0));
  const Tensor p32 = pyg.to(kFloat32);
  (p32 * p32).sum().backward();
  const Tensor w32 = packed_scaled_dot_product_attention({sg32, 0}, {sg32, 32}, {sg32, 64}, 4, 32, {.is_causal = true});
  (w32 * w32).sum().backward();
  ASSERT_TRUE(sg.grad().defined());
  EXPECT_EQ(sg.grad().dtype(), kBFloat16);
  EXPECT_TRUE(close(sg.grad().to(kFloat32), sg32.grad(), 2e-2, 2e-2, "bf16 packed op grad"));
}

TEST(Sdpa, ErrorsNameTheShapes) {
  Tensor q = rnd({2, 3, 4, 8}), k = rnd({2, 3, 5, 8}), v = rnd({2, 3, 5, 6});
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { scaled_dot_product_attention(q, rnd({2, 3, 5, 7}), v); }).find("(2, 3, 5, 7)"),
            std::string::npos);
  EXPECT_NE(message([&] { scaled_dot_product_attention(q.select(0, 0), k, v); }).find("4-d"), std::string::npos);
  EXPECT_NE(message([&] { scaled_dot_product_attention(q, k, v, {.attn_mask = ones({4, 4})}); }).find("(4, 4)"),
            std::string::npos);
  EXPECT_NE(message([&] {
              scaled_dot_product_attention(q, k, v, {.key_padding_mask = zeros({2, 4}, {.dtype = kBool})});
            }).find("(N, S)"),
            std::string::npos);
  EXPECT_NE(message([&] { scaled_dot_product_attention(q, k, v, {.attn_mask = ones({4, 5}), .is_causal = true}); })
                .find("not both"),
            std::string::npos);
  EXPECT_NE(message([&] { scaled_dot_product_attention(q, k, v, {.dropout_p = 1.0}); }).find("dropout_p"),
            std::string::npos);
  EXPECT_NE(message([&] { scaled_dot_product_attention(q, k.to(kFloat64), v); }).find("dtype"), std::string::npos);
  // the packed form names itself, the bad block and the source's shape
  Tensor qkv = rnd({2, 4, 12});  // (N, L, 3E) with E = 4
  const std::string over = message([&] { packed_scaled_dot_product_attention({qkv, 0}, {qkv, 4}, {qkv, 10}, 2, 4); });
  EXPECT_NE(over.find("packed_scaled_dot_product_attention: value columns [10, 14)"), std::string::npos) << over;
  EXPECT_NE(over.find("(2, 4, 12)"), std::string::npos) << over;
  const std::string mask = message([&] {
    packed_scaled_dot_product_attention({qkv, 0}, {qkv, 4}, {qkv, 8}, 2, 4, {.attn_mask = ones({3, 3})});
  });
  EXPECT_NE(mask.find("packed_scaled_dot_product_attention: attn_mask (3, 3)"), std::string::npos) << mask;
  EXPECT_NE(message([&] { packed_scaled_dot_product_attention({qkv, 0}, {qkv, 4}, {qkv, 8}, 3, 4); }).find("multiple"),
            std::string::npos);
}

TEST(Sdpa, InPlaceChangeOfASavedInputIsDetected) {
  Tensor q = rnd({1, 1, 3, 4}).requires_grad_(true), k = rnd({1, 1, 3, 4}), v = rnd({1, 1, 3, 4});
  Tensor kk = k.clone();
  Tensor out = scaled_dot_product_attention(q, kk, v);
  {
    NoGradGuard ng;
    kk.mul_(2.0);
  }
  EXPECT_ANY_THROW(sum(out).backward());
}

// ---- MultiheadAttention: the fused path (need_weights = false) equals the composite one
TEST(Sdpa, MultiheadAttentionFusedMatchesComposite) {
  const int64_t E = 16, H = 4, L = 5, S = 7, N = 3;
  manual_seed(21);
  auto mha = std::make_shared<nn::MultiheadAttention>(nn::MultiheadAttentionOptions{.embed_dim = E, .num_heads = H});
  Tensor x = rnd({L, N, E}), mem = rnd({S, N, E});
  Tensor causal = nn::causal_mask(L);
  Tensor kpm = from_vector<bool>({false, false, false, false, false, true, true,  //
                                  false, false, false, false, false, false, false,  //
                                  false, true, false, false, false, false, true},
                                 {N, S});
  Tensor fmask = rnd({N * H, L, S});
  struct Case {
    std::string name;
    bool self;
    nn::AttentionForwardOptions o;
  };
  std::vector<Case> cases = {
      {"self, no mask", true, {}},
      {"self, is_causal", true, {.is_causal = true}},
      {"self, bool (L, L) mask", true, {.attn_mask = causal}},
      {"cross, key padding", false, {.key_padding_mask = kpm}},
      {"cross, float (N*H, L, S) mask + key padding", false, {.key_padding_mask = kpm, .attn_mask = fmask}},
      {"cross, float key padding", false, {.key_padding_mask = mul(kpm.to(kFloat32), -3.0)}},
  };
  for (Case& c : cases) {
    std::vector<Tensor> got[2];
    for (int fused = 0; fused < 2; ++fused) {
      mha->zero_grad();
      Tensor xi = x.detach().requires_grad_(true);
      nn::AttentionForwardOptions o = c.o;
      o.need_weights = fused == 0;
      Tensor out = c.self ? mha->forward(xi, xi, xi, o).output : mha->forward(xi, mem, mem, o).output;
      sum(mul(out, out)).backward();
      got[fused] = {out.detach(), xi.grad(), mha->in_proj_weight.grad(), mha->out_proj->weight.grad()};
    }
    const char* names[] = {"out", "grad x", "grad in_proj_weight", "grad out_proj.weight"};
    for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(close(got[1][i], got[0][i], 1e-4, 1e-5, c.name + ": " + names[i]));
  }
}

}  // namespace
