// tests/test_packed_linear.cc — linear() on weights packed once for inference (backend/cpu/packed_linear.h):
// each ISA's kernel against a double-precision product, the kernels bit for bit against each other and
// across thread counts, weight views, and the cache following in-place writes and freed weights.
// Also the raw pieces (transposed packing, the team product) that the recurrent layers use, and the bf16
// kernels (pair-interleaved panels, vdpbf16ps).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>

#include "attn/attn.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/packed_linear.h"

using namespace attn;

namespace {

// y (M, N) = x (M, K) @ w (N, K)^T + b in double.
std::vector<double> reference_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t m = x.size(0), n = w.size(0), k = w.size(1);
  const auto xv = x.contiguous().to_vector<float>(), wv = w.contiguous().to_vector<float>();
  const auto bv = b.defined() ? b.to_vector<float>() : std::vector<float>(size_t(n), 0.0f);
  std::vector<double> y(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = bv[size_t(j)];
      for (int64_t p = 0; p < k; ++p) acc += double(xv[size_t(i * k + p)]) * double(wv[size_t(j * k + p)]);
      y[size_t(i * n + j)] = acc;
    }
  return y;
}

void expect_close(const Tensor& y, const std::vector<double>& want, int64_t k, const std::string& what) {
  const auto got = y.to_vector<float>();
  ASSERT_EQ(got.size(), want.size()) << what;
  const double tol = 1e-5 * std::sqrt(double(k)) * 4;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << what << " at " << i;
}

struct IsaGuard {
  ~IsaGuard() { cpu::reset_isa(); }
};

}  // namespace

TEST(PackedLinear, EachIsaMatchesDoubleProductAndOtherIsasBitForBit) {
  NoGradGuard ng;
  IsaGuard restore;
  manual_seed(3);
  // 1-2 rows: 4-panel groups (100 = 64 + 36, 130 = 2 x 64 + 2); more: 3-panel groups of <= 8-row blocks
  // (m 9 = 4 + 5, 17 = 5 + 6 + 6; n 48, 49 = 48 + 1, 100 = 2 x 48 + 4, 130 = 2 x 48 + 34)
  for (int64_t m : {1, 2, 3, 5, 8, 9, 12, 13, 17, 32, 64})
    for (int64_t n : {1, 16, 17, 33, 48, 49, 100, 130})
      for (int64_t k : {1, 7, 64}) {
        const Tensor x = randn({m, k}), w = randn({n, k}), b = randn({n});
        std::vector<std::vector<float>> by_isa;
        for (cpu::Isa isa : {cpu::Isa::Reference, cpu::Isa::Avx2, cpu::Isa::Avx512}) {
          if (!cpu::set_isa_for_testing(isa)) continue;
          const std::string what = std::string(cpu::isa_name(isa)) + " m " + std::to_string(m) + " n " +
                                   std::to_string(n) + " k " + std::to_string(k);
          ASSERT_TRUE(cpu::packed_linear_applies(x, w)) << what;
          const Tensor y = linear(x, w, b);
          expect_close(y, reference_linear(x, w, b), k, what);
          expect_close(linear(x, w), reference_linear(x, w, Tensor()), k, what + " no bias");
          by_isa.push_back(y.to_vector<float>());
        }
        for (size_t i = 1; i < by_isa.size(); ++i) EXPECT_EQ(by_isa[i], by_isa[0]) << "m " << m << " n " << n << " k " << k;
      }
}

TEST(PackedLinear, SameBitsWithOneOrTwoThreadsAndOnWeightViews) {
  if (!cpu::packed_gemm_available()) GTEST_SKIP() << "no packed-panel kernel (ATTN_PACKED_LINEAR=0)";
  NoGradGuard ng;
  manual_seed(4);
  // rows of a packed q/k/v-like weight, large enough that two threads split the columns
  const Tensor x = randn({3, 32, 256}), w_all = randn({1200, 256}), b_all = randn({1200});
  const Tensor w = w_all.narrow(0, 100, 700), b = b_all.narrow(0, 100, 700);
  ASSERT_TRUE(cpu::packed_linear_applies(x.select(0, 1), w));
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  const Tensor one = linear(x.select(0, 1), w, b);
  omp_set_num_threads(2);
  const Tensor two = linear(x.select(0, 1), w, b);
  omp_set_num_threads(before);
  EXPECT_EQ(one.to_vector<float>(), two.to_vector<float>());
  expect_close(one, reference_linear(x.select(0, 1), w, b), 256, "view");
}

TEST(PackedLinear, CacheFollowsInPlaceWritesAndFreedWeights) {
  NoGradGuard ng;
  manual_seed(5);
  const Tensor x = randn({4, 40});
  Tensor w = randn({20, 40});
  const Tensor first = linear(x, w);
  w.mul_(2.0);  // bumps the storage's version: the panels are packed again
  expect_close(linear(x, w), reference_linear(x, w, Tensor()), 40, "after mul_");
  EXPECT_EQ(linear(x, w).to_vector<float>(), mul(first, 2.0).to_vector<float>());
  const int64_t entries = cpu::packed_linear_cache_entries();
  for (int i = 0; i < 5; ++i) {  // new weights, likely at a freed one's address: never an old packing
    Tensor fresh = randn({20, 40});
    expect_close(linear(x, fresh), reference_linear(x, fresh, Tensor()), 40, "fresh weight " + std::to_string(i));
  }
  w = Tensor();
  EXPECT_LE(cpu::packed_linear_cache_entries(), entries);  // freed weights leave the cache
}

TEST(PackedLinear, NotTakenWhenAutogradRecordsOrRowsAreMany) {
  manual_seed(6);
  const Tensor x = randn({8, 32}), w = randn({24, 32}).requires_grad_(true);
  const int64_t before = cpu::packed_linear_cache_entries();
  Tensor y = linear(x, w);  // records: the general GEMM, nothing packed
  EXPECT_EQ(cpu::packed_linear_cache_entries(), before);
  y.sum().backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_FALSE(cpu::packed_linear_applies(randn({cpu::kPackedLinearMaxRows + 1, 32}), w));
  const bool was = cpu::set_packed_linear(false);
  EXPECT_FALSE(cpu::packed_linear_applies(x, w));
  cpu::set_packed_linear(was);
}

// The raw form rnn_sequence_fast.cc uses: panels packed from W^T (K, N) equal those packed from W
// (N, K), including the zero padding past N, and packed_gemm_team on them matches the double product.
TEST(PackedLinear, TransposedPackingMatchesAndTeamProductIsRight) {
  manual_seed(7);
  const int64_t n = 37, k = 19, m = 5;  // n not a multiple of the panel width
  const Tensor w = randn({n, k}), wt = w.t().contiguous(), x = randn({m, k});
  // tensors: the SIMD kernel loads panels aligned, as empty() allocates them
  const Tensor from_w = full({cpu::packed_panels_floats(n, k)}, -1.0f), from_wt = full(from_w.sizes(), -2.0f);
  cpu::pack_weight_panels(w.data_ptr<float>(), n, k, k, from_w.data_ptr<float>());
  cpu::pack_transposed_weight_panels(wt.data_ptr<float>(), n, k, n, from_wt.data_ptr<float>());
  EXPECT_EQ(from_w.to_vector<float>(), from_wt.to_vector<float>());
  if (!cpu::packed_gemm_available()) GTEST_SKIP() << "no packed kernel for this ISA";
  Tensor y = empty({m, n});
  cpu::packed_gemm_team(x.data_ptr<float>(), k, from_wt.data_ptr<float>(), nullptr, y.data_ptr<float>(), n, m, n, k);
  expect_close(y, reference_linear(x, w, Tensor()), k, "team product");
}

// bf16 operands (autocast's decoding steps) where the CPU has AVX512_BF16: the AVX-512 kernel bit for bit
// against the reference (which sums as vdpbf16ps does), both within one bf16 rounding plus float32
// summation of the double product, odd k (the last pair half zero) and partial panels included. Runs in
// the bf16_gemm_path_* processes too: on an AMX CPU the avx512_bf16 one is where this path is on.
TEST(PackedLinearBf16, ReferenceAndAvx512BitForBitAndNearTheDoubleProduct) {
  NoGradGuard ng;
  IsaGuard restore;
  manual_seed(8);
  if (!cpu::packed_bf16_available()) GTEST_SKIP() << "no bf16 packed path (no AVX512_BF16, or AMX without opt-in)";
  for (int64_t m : {1, 5, 12, 13, 32, 130})
    for (int64_t n : {1, 16, 17, 33, 100})
      for (int64_t k : {1, 7, 64, 255}) {
        const Tensor x = randn({m, k}).to(kBFloat16), w = randn({n, k}).to(kBFloat16), b = randn({n}).to(kBFloat16);
        const std::string shape = "m " + std::to_string(m) + " n " + std::to_string(n) + " k " + std::to_string(k);
        const std::vector<double> want = reference_linear(x.to(kFloat32), w.to(kFloat32), b.to(kFloat32));
        const std::vector<double> abs = reference_linear(x.to(kFloat32).abs(), w.to(kFloat32).abs(), b.to(kFloat32).abs());
        std::vector<std::vector<float>> by_isa;
        for (cpu::Isa isa : {cpu::Isa::Reference, cpu::Isa::Avx512}) {
          ASSERT_TRUE(cpu::set_isa_for_testing(isa));  // AVX512_BF16 implies AVX-512
          ASSERT_TRUE(cpu::packed_linear_applies(x, w)) << cpu::isa_name(isa) << " " << shape;
          const Tensor y = linear(x, w, b);
          ASSERT_EQ(y.dtype(), kBFloat16);
          const auto got = y.to(kFloat32).to_vector<float>();
          for (size_t i = 0; i < got.size(); ++i)
            ASSERT_NEAR(got[i], want[i], std::ldexp(std::fabs(want[i]), -8) + 1e-6 * double(k) * abs[i])
                << cpu::isa_name(isa) << " " << shape << " at " << i;
          by_isa.push_back(got);
          EXPECT_EQ(linear(x, w).to(kFloat32).to_vector<float>().size(), got.size());
        }
        EXPECT_EQ(by_isa[0], by_isa[1]) << shape;
      }
}

TEST(PackedLinearBf16, OffOnTheConvertPathAndForMixedOperands) {
  NoGradGuard ng;
  const Tensor x = randn({4, 32}).to(kBFloat16), w = randn({24, 32}).to(kBFloat16);
  EXPECT_FALSE(cpu::packed_linear_applies(x.to(kFloat32), w));
  cpu::set_bf16_convert_for_testing(true);
  EXPECT_FALSE(cpu::packed_linear_applies(x, w));  // CPUs without AVX512_BF16 keep the widening GEMM
  cpu::set_bf16_convert_for_testing(false);
}
