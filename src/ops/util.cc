// src/ops/util.cc — allclose (torch.allclose: |a − b| <= atol + rtol·|b|, NaN never close).
//
//   EXPECT_TRUE(attn::allclose(out, expected, 1e-5, 1e-6));
#include <cmath>

#include "ops/op_utils.h"

namespace attn {

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  ops::check_defined(a, "allclose", "input");
  ops::check_defined(b, "allclose", "other");
  ops::check_same_device(a, b, "allclose");
  broadcast_shapes(a.shape(), b.shape());  // throws naming both shapes
  NoGradGuard ng;
  Tensor x = a.detach().to(kFloat64), y = b.detach().to(kFloat64);
  // equal values (including matching infinities) are close; otherwise finite values within tolerance
  Tensor finite = logical_and(lt(abs(x), INFINITY), lt(abs(y), INFINITY));
  Tensor close = logical_or(eq(x, y), logical_and(finite, le(abs(sub(x, y)), add(mul(abs(y), rtol), atol))));
  return sum(logical_not(close)).item<int64_t>() == 0;
}

}  // namespace attn
