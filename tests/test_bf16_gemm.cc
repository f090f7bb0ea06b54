// tests/test_bf16_gemm.cc — the bfloat16 GEMM (src/backend/cpu/gemm_bf16.*) on each dispatch path
// against the double-precision reference on the same inputs. The oneDNN paths are fixed per process:
// tests/CMakeLists.txt runs Bf16Gemm.* again with ATTN_BF16_ISA=avx512_bf16 and =convert, and
// Bf16Gemm.PathFollowsEnvironment checks that the requested path is the one running.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "attn/dtype.h"
#include "backend/cpu/amx_gemm.h"
#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/linalg_kernels.h"

namespace {

using attn::BFloat16;
using attn::backend::GemmArgs;
using attn::cpu::Bf16Path;

std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = BFloat16(d(rng)).bits;
  return v;
}
float f(uint16_t b) {
  BFloat16 x;
  x.bits = b;
  return float(x);
}

struct Case {
  int64_t m, n, k, batch;
  bool ta, tb, c_float32, bias, b_shared;
  double alpha, beta;
};

// Runs one case on the active path and on the reference; C (bf16): within one bf16 rounding step of
// the reference (2^-8 relative, both round the same float32-accurate sum) plus float32 summation
// noise; C (float32): float32 summation noise only (|error| <= 1e-5 * sum |a b|).
void check_case(const Case& c, std::mt19937& rng) {
  const int64_t pad = 3, lda = (c.ta ? c.m : c.k) + pad, ldb = (c.tb ? c.k : c.n) + pad, ldc = c.n + pad;
  const int64_t sa = (c.ta ? c.k : c.m) * lda, sb = c.b_shared ? 0 : (c.tb ? c.n : c.k) * ldb, sc = c.m * ldc;
  const auto a = random_bf16(size_t(sa * c.batch), rng), b = random_bf16(size_t((c.tb ? c.n : c.k) * ldb * c.batch), rng);
  const auto bias = random_bf16(size_t(c.n), rng);
  std::vector<float> bias32(bias.size());
  for (size_t i = 0; i < bias.size(); ++i) bias32[i] = f(bias[i]);
  const auto c0 = random_bf16(size_t(sc * c.batch), rng);
  std::vector<float> c0f(c0.size());
  for (size_t i = 0; i < c0.size(); ++i) c0f[i] = f(c0[i]);
  GemmArgs g{.trans_a = c.ta, .trans_b = c.tb, .m = c.m, .n = c.n, .k = c.k, .alpha = c.alpha, .beta = c.beta,
             .a = a.data(), .lda = lda, .b = b.data(), .ldb = ldb, .ldc = ldc, .batch = c.batch,
             .stride_a = sa, .stride_b = sb, .stride_c = sc, .dtype = attn::kBFloat16, .c_float32 = c.c_float32};
  if (c.bias) g.bias = c.c_float32 ? static_cast<const void*>(bias32.data()) : bias.data();
  std::vector<uint16_t> got16 = c0, want16 = c0;
  std::vector<float> got32 = c0f, want32 = c0f;
  GemmArgs want = g;
  g.c = c.c_float32 ? static_cast<void*>(got32.data()) : got16.data();
  want.c = c.c_float32 ? static_cast<void*>(want32.data()) : want16.data();
  attn::cpu::gemm(g);
  attn::cpu::ref::gemm_bf16(want);
  const std::string what = "m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) +
                           " batch=" + std::to_string(c.batch) + " ta=" + std::to_string(c.ta) + " tb=" +
                           std::to_string(c.tb) + " c_float32=" + std::to_string(c.c_float32) + " path=" +
                           attn::cpu::bf16_path_name(attn::cpu::bf16_path());
  for (int64_t bi = 0; bi < c.batch; ++bi)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        double mag = c.beta != 0.0 ? std::fabs(c.beta) * 4 : 0.0;  // |beta C| bound (C ~ N(0, 1))
        for (int64_t p = 0; p < c.k; ++p) {
          const uint16_t av = a[size_t(bi * sa + (c.ta ? p * lda + i : i * lda + p))];
          const uint16_t bv = b[size_t(bi * sb + (c.tb ? j * ldb + p : p * ldb + j))];
          mag += std::fabs(c.alpha * f(av) * f(bv));
        }
        const size_t at = size_t(bi * sc + i * ldc + j);
        const double w = c.c_float32 ? want32[at] : f(want16[at]), v = c.c_float32 ? got32[at] : f(got16[at]);
        const double tol = 1e-5 * (mag + 4) + (c.c_float32 ? 0.0 : std::fabs(w) * (1.0 / 128));
        ASSERT_NEAR(v, w, tol) << what << " at item " << bi << " (" << i << ", " << j << ")";
      }
  // the padding between rows of C is not written
  for (int64_t bi = 0; bi < c.batch; ++bi)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = c.n; j < ldc; ++j) {
        const size_t at = size_t(bi * sc + i * ldc + j);
        if (c.c_float32)
          ASSERT_EQ(got32[at], c0f[at]) << what;
        else
          ASSERT_EQ(got16[at], c0[at]) << what;
      }
}

std::vector<Case> cases() {
  return {
      {64, 48, 80, 1, false, false, false, false, false, 1.0, 0.0},
      {64, 48, 80, 1, false, true, false, true, false, 1.0, 0.0},   // a Linear's forward with its bias
      {33, 70, 129, 1, true, false, true, false, false, 1.0, 0.0},  // a weight gradient, float32 out
      {33, 70, 129, 1, true, true, false, false, false, 0.5, 1.0},  // alpha, accumulate into C
      {16, 24, 40, 5, false, true, false, false, false, 1.0, 0.0},  // attention scores, strided batch
      {16, 24, 40, 4, false, false, true, false, true, 1.0, 0.0},   // one B for every item
      {1, 300, 257, 1, false, true, true, true, false, 1.0, 0.0},   // one row, float32 bias
      {128, 256, 512, 1, false, true, false, false, false, 1.0, 0.0},
      {7, 9, 0, 2, false, false, false, false, false, 1.0, 0.5},    // k = 0: C = beta C
  };
}

TEST(Bf16Gemm, ActivePathMatchesReference) {
  std::mt19937 rng(7);
  for (const Case& c : cases()) check_case(c, rng);
}

TEST(Bf16Gemm, ConvertPathMatchesReference) {
  attn::cpu::set_bf16_convert_for_testing(true);
  EXPECT_EQ(attn::cpu::bf16_path(), Bf16Path::Convert);
  EXPECT_EQ(attn::cpu::bf16_gemm_impl(), "convert+sgemm");
  std::mt19937 rng(7);
  for (const Case& c : cases()) check_case(c, rng);
  attn::cpu::set_bf16_convert_for_testing(false);
}

// attn's own AMX kernel (amx_gemm.cc) forced for every product: odd shapes across its tile (16 x 32),
// K-slice (256) and C-block (256 x 256) edges, all transposes, alpha / beta, biases, float32 C.
TEST(Bf16Gemm, AmxKernelMatchesReference) {
  if (attn::cpu::bf16_path() != Bf16Path::Amx || !attn::cpu::amx::cpu_and_os_ready())
    GTEST_SKIP() << "no AMX path here (CPU without AMX-BF16, the OS refused the tile state, or ATTN_BF16_ISA)";
  const int before = attn::cpu::set_bf16_amx_kernel(1);
  std::mt19937 rng(11);
  std::vector<Case> all = cases();
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      all.push_back({33, 70, 129, 1, ta, tb, false, false, false, 1.0, 0.0});
      all.push_back({17, 15, 31, 1, ta, tb, true, false, false, -2.0, 0.5});
      all.push_back({260, 258, 290, 1, ta, tb, ta, !ta, false, 1.0, 0.0});   // crosses every block edge
      all.push_back({64, 96, 560, 1, ta, tb, !tb, false, false, 0.25, -1.0});
    }
  all.push_back({1, 1, 1, 1, false, false, false, false, false, 1.0, 0.0});
  all.push_back({5, 33, 64, 3, true, false, true, false, true, 1.0, 0.0});  // one B for a strided batch
  for (const Case& c : all) check_case(c, rng);
  attn::cpu::set_bf16_amx_kernel(before);
}

// The AMX kernel sums each element of C in one fixed order: the same bits with 1 and 2 threads.
TEST(Bf16Gemm, AmxKernelSameBitsAnyTeam) {
  if (attn::cpu::bf16_path() != Bf16Path::Amx || !attn::cpu::amx::cpu_and_os_ready())
    GTEST_SKIP() << "no AMX path here (CPU without AMX-BF16, the OS refused the tile state, or ATTN_BF16_ISA)";
  const int before = attn::cpu::set_bf16_amx_kernel(1);
  std::mt19937 rng(5);
  const int64_t m = 520, n = 300, k = 700;
  const auto a = random_bf16(size_t(m * k), rng), b = random_bf16(size_t(n * k), rng);
  std::vector<float> c1(size_t(m * n)), c2(size_t(m * n));
  GemmArgs g{.trans_b = true, .m = m, .n = n, .k = k, .a = a.data(), .lda = k, .b = b.data(), .ldb = k,
             .c = c1.data(), .ldc = n, .dtype = attn::kBFloat16, .c_float32 = true};
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  attn::cpu::gemm(g);
  omp_set_num_threads(2);
  g.c = c2.data();
  attn::cpu::gemm(g);
  omp_set_num_threads(threads);
  attn::cpu::set_bf16_amx_kernel(before);
  EXPECT_EQ(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)), 0);
}

// The shape rule: large single products on the AMX kernel, small ones and batches on oneDNN;
// ATTN_BF16_AMX_KERNEL=0|1 (tests/CMakeLists.txt) overrides it.
TEST(Bf16Gemm, AmxKernelRule) {
  if (attn::cpu::bf16_path() != Bf16Path::Amx || !attn::cpu::amx::cpu_and_os_ready())
    GTEST_SKIP() << "no AMX path here (CPU without AMX-BF16, the OS refused the tile state, or ATTN_BF16_ISA)";
  GemmArgs big{.m = 2048, .n = 2048, .k = 2048, .lda = 2048, .ldb = 2048, .ldc = 2048, .dtype = attn::kBFloat16};
  GemmArgs small = big, batched = big;
  small.m = small.n = small.k = 64;
  batched.batch = 8;
  const char* env = std::getenv("ATTN_BF16_AMX_KERNEL");
  if (env && std::string(env) != "auto") {
    const bool on = std::string(env) == "1";
    EXPECT_EQ(attn::cpu::bf16_uses_amx_kernel(big), on);
    EXPECT_EQ(attn::cpu::bf16_uses_amx_kernel(small), on);
  }
  const int before = attn::cpu::set_bf16_amx_kernel(-1);
  EXPECT_TRUE(attn::cpu::bf16_uses_amx_kernel(big));
  EXPECT_FALSE(attn::cpu::bf16_uses_amx_kernel(small));
  EXPECT_FALSE(attn::cpu::bf16_uses_amx_kernel(batched));
  EXPECT_NE(attn::cpu::bf16_gemm_impl().find("attn-amx"), std::string::npos);
  attn::cpu::set_bf16_amx_kernel(0);
  EXPECT_FALSE(attn::cpu::bf16_uses_amx_kernel(big));
  EXPECT_EQ(attn::cpu::bf16_gemm_impl().find("attn-amx"), std::string::npos);
  attn::cpu::set_bf16_amx_kernel(before);
}

// The active path and the conversion path on the same inputs agree within bf16 rounding.
TEST(Bf16Gemm, ActiveAndConvertPathsAgree) {
  std::mt19937 rng(3);
  const int64_t m = 96, n = 64, k = 384;
  const auto a = random_bf16(size_t(m * k), rng), b = random_bf16(size_t(n * k), rng);
  std::vector<uint16_t> c1(size_t(m * n)), c2(size_t(m * n));
  GemmArgs g{.trans_b = true, .m = m, .n = n, .k = k, .a = a.data(), .lda = k, .b = b.data(), .ldb = k,
             .c = c1.data(), .ldc = n, .dtype = attn::kBFloat16};
  attn::cpu::gemm(g);
  attn::cpu::set_bf16_convert_for_testing(true);
  g.c = c2.data();
  attn::cpu::gemm(g);
  attn::cpu::set_bf16_convert_for_testing(false);
  int differ = 0;
  for (size_t i = 0; i < c1.size(); ++i) {
    ASSERT_NEAR(f(c1[i]), f(c2[i]), std::fabs(f(c2[i])) / 128 + 1e-3) << i;
    differ += c1[i] != c2[i];
  }
  EXPECT_LT(differ, int(c1.size()) / 10);  // mostly the same bits: only near-ties round apart
}

// ATTN_BF16_ISA=X makes X the active path when the CPU has it (tests/CMakeLists.txt sets it).
TEST(Bf16Gemm, PathFollowsEnvironment) {
  const char* env = std::getenv("ATTN_BF16_ISA");
  const std::string impl = attn::cpu::bf16_gemm_impl();
  const std::string active = attn::cpu::bf16_path_name(attn::cpu::bf16_path());
  if (active == "amx") {
    EXPECT_NE(impl.find("amx"), std::string::npos) << impl;
  }
  if (active == "avx512_bf16") {
    EXPECT_EQ(impl.find("amx"), std::string::npos) << impl;
    EXPECT_NE(impl.find("avx512_core_bf16"), std::string::npos) << impl;
  }
  if (!env) GTEST_SKIP() << "ATTN_BF16_ISA not set; active path " << active << " (" << impl << ")";
  const std::string want = env;
  __builtin_cpu_init();
  if (want == "amx" && active != "amx") {
    GTEST_SKIP() << "this CPU has no AMX";
  }
  if (want == "avx512_bf16" && !__builtin_cpu_supports("avx512bf16")) {
    GTEST_SKIP() << "this CPU has no AVX512_BF16";
  }
  EXPECT_EQ(active, want) << impl;
}

}  // namespace
