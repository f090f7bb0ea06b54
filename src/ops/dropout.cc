// src/ops/dropout.cc — inverted dropout with a mask from the global generator.
//
//   attn::manual_seed(0);
//   Tensor h = attn::dropout(x, 0.1, /*training=*/true);  // kept values scaled by 1 / 0.9
//   Tensor e = attn::dropout(x, 0.1, false);              // identity: returns x itself
//   Tensor f = attn::relu_dropout(h, 0.1);                // dropout(relu(h), 0.1): same values, one pass
#include <string>

#include "attn/random.h"
#include "ops/op_utils.h"

namespace attn {

using autograd::record;

namespace {
// Dropout of x (of relu(x) when relu) for float32 / float64 and 0 <= p < 1 in one fused pass each way.
// Keep with probability 1 - p (PyTorch: bernoulli_(1 - p)): the pass draws the uniforms (advancing the
// generator as uniform_ would), multiplies and packs the keep bits, 1 bit per element, saved for the
// backward instead of a mask of x's dtype; with relu also ReLU's pass bits, instead of relu's output.
Tensor fused_dropout(const Tensor& x, double p, bool relu) {
  Tensor keep, pass, out;  // keep, pass: uint8 (dropout_keep_bytes(n)) bits; out: x's shape and dtype
  {
    NoGradGuard ng;
    const Tensor xc = x.detach().contiguous();
    const int64_t bytes = backend::dropout_keep_bytes(x.numel());
    keep = empty({bytes}, {.dtype = kUInt8, .device = x.device()});
    if (relu) pass = empty({bytes}, {.dtype = kUInt8, .device = x.device()});
    out = empty(x.shape(), {.dtype = x.dtype(), .device = x.device()});
    Generator& gen = default_generator();
    const uint64_t counter = gen.reserve(uint64_t((x.numel() + 3) / 4));
    if (relu)
      ops::be(x).relu_dropout(backend::ref(xc), p, gen.seed(), counter, backend::ref(out), backend::ref(keep),
                              backend::ref(pass));
    else
      ops::be(x).dropout(backend::ref(xc), p, gen.seed(), counter, backend::ref(out), backend::ref(keep));
  }
  record(relu ? "relu_dropout" : "dropout", out, {x}, [keep, pass, p](const Tensor& g) -> std::vector<Tensor> {
    const Tensor gc = g.contiguous();
    Tensor gx = empty(g.shape(), {.dtype = g.dtype(), .device = g.device()});
    if (pass.defined())
      ops::be(g).relu_dropout_backward(backend::ref(gc), backend::ref(keep), backend::ref(pass), p, backend::ref(gx));
    else
      ops::be(g).dropout_backward(backend::ref(gc), backend::ref(keep), p, backend::ref(gx));
    return {gx};
  });
  return out;
}
}  // namespace

Tensor dropout(const Tensor& x, double p, bool training) {
  ops::check_defined(x, "dropout", "input");
  if (!(p >= 0.0 && p <= 1.0))
    ops::fail("dropout: probability has to be between 0 and 1, but got " + std::to_string(p));
  if (!training || p == 0.0 || x.numel() == 0) return x;
  ops::check_floating(x, "dropout");
  const DType dt = x.dtype();
  if (p < 1.0 && (dt == kFloat32 || dt == kFloat64 || dt == kBFloat16)) return fused_dropout(x, p, /*relu=*/false);
  Tensor mask, out;  // mask: 0 or 1 / (1 - p), x's dtype and shape
  {
    NoGradGuard ng;
    if (p == 1.0) {
      mask = zeros(x.shape(), {.dtype = dt, .device = x.device()});
    } else {  // reduced-precision storage: float32 draws, mask rounded to x's dtype
      Tensor u = empty(x.shape(), {.dtype = kFloat32, .device = x.device()});
      u.uniform_(0.0, 1.0);
      mask = mul(lt(u, 1.0 - p).to(dt), 1.0 / (1.0 - p));
    }
    out = mul(x.detach(), mask);
  }
  record("dropout", out, {x}, [mask](const Tensor& g) -> std::vector<Tensor> { return {mul(g, mask)}; });
  return out;
}

// dropout(relu(x)) fused: the same draws, values and gradient as the composite, in one pass forward and
// one backward, saving 2 bits per element (keep, and ReLU's pass) instead of relu's output.
Tensor relu_dropout(const Tensor& x, double p, bool training) {
  ops::check_defined(x, "relu_dropout", "input");
  if (!(p >= 0.0 && p <= 1.0))
    ops::fail("relu_dropout: probability has to be between 0 and 1, but got " + std::to_string(p));
  const DType dt = x.dtype();
  if (!training || p == 0.0 || p == 1.0 || x.numel() == 0 || (dt != kFloat32 && dt != kFloat64 && dt != kBFloat16))
    return dropout(relu(x), p, training);
  return fused_dropout(x, p, /*relu=*/true);
}

}  // namespace attn
