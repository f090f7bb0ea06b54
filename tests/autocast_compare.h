// tests/autocast_compare.h — what tests/test_autocast.cc and tests/test_rnn_autocast.cc share: a reader of
// their PyTorch fixture files and the comparison of attn under autocast with PyTorch under autocast.
//
//   attn_test::AutocastFixture fx("autocast_rnn.safetensors");
//   attn_test::expect_bf16_close(got, fx.get("case/out"), fx.get("case/fp32/out"), 1.0 / 64, "case out");
//
// Tolerance: the largest error within twice PyTorch's own bf16 effect on the tensor (max |PyTorch bf16 -
// PyTorch fp32|) or `rel` of the tensor's largest magnitude, whichever is larger: both sides round the
// same products to bf16 but sum in different orders.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "attn/io/safetensors.h"
#include "attn/tensor.h"

namespace attn_test {

struct AutocastFixture {
  explicit AutocastFixture(const std::string& name)
      : file(attn::io::SafeTensorsFile::open(std::string(ATTN_FIXTURE_DIR) + "/" + name)) {}
  attn::Tensor get(const std::string& k) const { return file.get(k).clone(); }
  // The keys one level under `prefix`, without it.
  std::map<std::string, attn::Tensor> with_prefix(const std::string& prefix) const {
    std::map<std::string, attn::Tensor> m;
    for (const auto& k : file.keys())
      if (k.rfind(prefix, 0) == 0 && k.find('/', prefix.size()) == std::string::npos) m[k.substr(prefix.size())] = get(k);
    return m;
  }
  attn::io::SafeTensorsFile file;
};

// attn's `got` vs PyTorch's bf16 `want` and fp32 `fp32` (see the tolerance at the top).
inline void expect_bf16_close(const attn::Tensor& got, const attn::Tensor& want, const attn::Tensor& fp32, double rel,
                              const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>(), f = fp32.to_vector<double>();
  double noise = 0, err = 0, big = 0;
  size_t at = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    noise = std::max(noise, std::abs(w[i] - f[i]));
    big = std::max(big, std::abs(w[i]));
    const double e = std::abs(g[i] - w[i]);
    if (!(e <= err)) err = std::isnan(e) ? INFINITY : e, at = i;
  }
  const double tol = std::max(2 * noise, rel * big);
  EXPECT_LE(err, tol) << what << ": worst at " << at << " got " << g[at] << " want " << w[at] << " (bf16 effect "
                      << noise << ")";
}

}  // namespace attn_test
