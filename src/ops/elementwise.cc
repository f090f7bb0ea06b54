// src/ops/elementwise.cc — broadcasting arithmetic, math functions, comparisons and the pointwise
// activations, each with its backward right after the forward.
#include <cmath>

#include "ops/op_utils.h"

namespace attn {

using autograd::record;
using autograd::sum_to;
using backend::BinaryOp;
using backend::UnaryGradOp;
using backend::UnaryOp;
using ops::binary_kernel;
using ops::unary_kernel;

// ---- arithmetic
Tensor add(const Tensor& a, const Tensor& b, double alpha) {
  Tensor out = binary_kernel(BinaryOp::Add, a, alpha == 1.0 ? b : mul(b.detach(), alpha));
  Shape sa = a.shape(), sb = b.shape();
  record("add", out, {a, b}, [sa, sb, alpha](const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(g, sa), sum_to(alpha == 1.0 ? g : mul(g, alpha), sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b, double alpha) { return add(a, b, -alpha); }

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Mul, a, b);
  bool ga = a.requires_grad(), gb = b.requires_grad();
  record("mul", out, {a, b}, [a, b, ga, gb](const Tensor& g) -> std::vector<Tensor> {
    return {ga ? sum_to(mul(g, b), a.shape()) : Tensor(), gb ? sum_to(mul(g, a), b.shape()) : Tensor()};
  }, {a, b});
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  // true division, as torch.div: integer (and bool) operands give float32, so 1 / 0 = inf, 0 / 0 = NaN
  if (!is_floating(ops::promote_types(a.dtype(), b.dtype()))) return div(a.to(kFloat32), b.to(kFloat32));
  Tensor out = binary_kernel(BinaryOp::Div, a, b);
  bool ga = a.requires_grad(), gb = b.requires_grad();
  record("div", out, {a, b}, [a, b, ga, gb](const Tensor& g) -> std::vector<Tensor> {
    Tensor gr = div(g, b);
    return {ga ? sum_to(gr, a.shape()) : Tensor(), gb ? sum_to(neg(mul(gr, div(a, b))), b.shape()) : Tensor()};
  }, {a, b});
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Pow, a, b);
  bool ga = a.requires_grad(), gb = b.requires_grad();
  Tensor y = out.detach();
  record("pow", out, {a, b}, [a, b, y, ga, gb](const Tensor& g) -> std::vector<Tensor> {
    Tensor gin_a, gin_b;
    if (ga) gin_a = sum_to(mul(g, mul(b, pow(a, sub(b, 1.0)))), a.shape());
    if (gb) {
      // d/db a^b = a^b * log(a), taken as 0 where a == 0 (as PyTorch does)
      Tensor la = where(eq(a, 0.0), zeros_like(a), log(a));
      gin_b = sum_to(mul(g, mul(y, la)), b.shape());
    }
    return {gin_a, gin_b};
  }, {a, b, y});
  return out;
}

// Exponents 2, 0.5 and -0.5 run as square, sqrt and rsqrt, as PyTorch's pow does: so pow(-0, 0.5) = -0,
// pow(-inf, 0.5) = NaN, pow(-0, -0.5) = -inf (C's pow gives +0, +inf, +inf). The backward is
// e * a^(e - 1) (the same special cases) and 0 for e = 0.
Tensor pow(const Tensor& a, double e) {
  if (e == 1.0) return mul(a, 1.0);
  if (!is_floating(a.dtype())) {  // as torch.pow with a Python scalar exponent
    if (e != std::floor(e)) return pow(a.to(kFloat32), e);  // a float exponent: float32 result
    if (e < 0)
      ops::fail(std::string("pow: integers to negative integer powers are not allowed (") + dtype_name(a.dtype()) +
                " tensor " + shape_str(a.shape()) + ", exponent " + std::to_string(e) + ")");
    return pow(a, full({}, e, {.dtype = a.dtype(), .device = a.device()}));  // exact, wrapping like PyTorch
  }
  const UnaryOp op = e == 2.0 ? UnaryOp::Square : e == 0.5 ? UnaryOp::Sqrt : e == -0.5 ? UnaryOp::Rsqrt : UnaryOp::PowScalar;
  Tensor out = unary_kernel(op, a, e);
  record("pow", out, {a}, [a, e](const Tensor& g) -> std::vector<Tensor> {
    if (e == 0.0) return {zeros_like(g)};
    if (e == 2.0) return {mul(g, mul(a, 2.0))};
    return {mul(g, mul(pow(a, e - 1.0), e))};
  }, {a});
  return out;
}

namespace {
// The share of maximum's (is_max) or minimum's gradient that goes to x against y, as PyTorch has it:
// 1 where x wins, 0 where y wins, 1/2 on ties, and 1 where the comparison fails (NaN: both sides get it).
Tensor extreme_weight(const Tensor& x, const Tensor& y, bool is_max) {
  Tensor loses = (is_max ? lt(x, y) : gt(x, y)).to(x.dtype()), tie = eq(x, y).to(x.dtype());
  return add(neg(add(loses, mul(tie, 0.5))), 1.0);
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Maximum, a, b);
  record("maximum", out, {a, b}, [a, b](const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(mul(g, extreme_weight(a, b, true)), a.shape()), sum_to(mul(g, extreme_weight(b, a, true)), b.shape())};
  }, {a, b});
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(BinaryOp::Minimum, a, b);
  record("minimum", out, {a, b}, [a, b](const Tensor& g) -> std::vector<Tensor> {
    return {sum_to(mul(g, extreme_weight(a, b, false)), a.shape()), sum_to(mul(g, extreme_weight(b, a, false)), b.shape())};
  }, {a, b});
  return out;
}

namespace {
// A scalar operand takes the tensor's dtype, except that a fractional scalar makes an integer tensor float.
DType scalar_dtype(const Tensor& t, double s) {
  if (is_integral(t.dtype()) && std::floor(s) != s) return kFloat32;
  return t.dtype() == kBool ? kInt64 : t.dtype();
}
}  // namespace

Tensor add(const Tensor& a, double b) {
  if (is_integral(a.dtype()) && std::floor(b) != b) return add(a.to(kFloat32), b);
  Tensor out = unary_kernel(UnaryOp::AddScalar, a, b);
  record("add", out, {a}, [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
  return out;
}
Tensor sub(const Tensor& a, double b) { return add(a, -b); }
Tensor mul(const Tensor& a, double b) {
  if (is_integral(a.dtype()) && std::floor(b) != b) return mul(a.to(kFloat32), b);
  Tensor out = unary_kernel(UnaryOp::MulScalar, a, b);
  record("mul", out, {a}, [b](const Tensor& g) -> std::vector<Tensor> { return {mul(g, b)}; });
  return out;
}
Tensor div(const Tensor& a, double b) {
  if (is_integral(a.dtype())) return div(a.to(kFloat32), b);
  return mul(a, 1.0 / b);
}

// ---- math functions
Tensor neg(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::Neg, x);
  record("neg", out, {x}, [](const Tensor& g) -> std::vector<Tensor> { return {neg(g)}; });
  return out;
}
Tensor exp(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::Exp, x);
  Tensor y = out.detach();
  record("exp", out, {x}, [y](const Tensor& g) -> std::vector<Tensor> { return {mul(g, y)}; }, {y});
  return out;
}
Tensor log(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::Log, x);
  record("log", out, {x}, [x](const Tensor& g) -> std::vector<Tensor> { return {div(g, x)}; }, {x});
  return out;
}
Tensor sqrt(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::Sqrt, x);
  Tensor y = out.detach();
  record("sqrt", out, {x}, [y](const Tensor& g) -> std::vector<Tensor> { return {div(g, mul(y, 2.0))}; }, {y});
  return out;
}
Tensor rsqrt(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::Rsqrt, x);
  Tensor y = out.detach();
  record("rsqrt", out, {x}, [y](const Tensor& g) -> std::vector<Tensor> {
    return {mul(g, mul(pow(y, 3.0), -0.5))};
  }, {y});
  return out;
}
Tensor abs(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::Abs, x);
  record("abs", out, {x}, [x](const Tensor& g) -> std::vector<Tensor> {
    return {mul(g, unary_kernel(UnaryOp::Sign, x))};
  }, {x});
  return out;
}
Tensor sin(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::Sin, x);
  record("sin", out, {x}, [x](const Tensor& g) -> std::vector<Tensor> { return {mul(g, cos(x))}; }, {x});
  return out;
}
Tensor cos(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::Cos, x);
  record("cos", out, {x}, [x](const Tensor& g) -> std::vector<Tensor> { return {mul(g, neg(sin(x)))}; }, {x});
  return out;
}
Tensor square(const Tensor& x) { return pow(x, 2.0); }

Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  Tensor out = x;
  if (lo) out = unary_kernel(UnaryOp::ClampMin, out, *lo);
  if (hi) out = unary_kernel(UnaryOp::ClampMax, out, *hi);
  if (out.is_same(x)) out = x.detach().clone();
  record("clamp", out, {x}, [x, lo, hi](const Tensor& g) -> std::vector<Tensor> {
    Tensor keep = ones_like(x).to(kBool);
    // strictly inside (PyTorch 2.x): the gradient is 0 at the bounds themselves, and for NaN
    if (lo) keep = logical_and(keep, gt(x, *lo));
    if (hi) keep = logical_and(keep, lt(x, *hi));
    return {where(keep, g, zeros_like(g))};
  }, {x});
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (cond.dtype() != kBool) throw std::invalid_argument(std::string("where: condition must be bool, got ") + dtype_name(cond.dtype()));
  Shape shape = broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape()));
  DType t = ops::promote_types(a.dtype(), b.dtype());
  Tensor x = a.dtype() == t ? a.detach() : a.detach().to(t);
  Tensor y = b.dtype() == t ? b.detach() : b.detach().to(t);
  Tensor out = ops::empty_out(shape, t, a.device());
  ops::be(a).where(ops::broadcast_ref(cond, shape), ops::broadcast_ref(x, shape), ops::broadcast_ref(y, shape),
                   ops::ref(out));
  Shape sa = a.shape(), sb = b.shape();
  record("where", out, {a, b}, [cond, sa, sb](const Tensor& g) -> std::vector<Tensor> {
    Tensor z = zeros_like(g);
    return {sum_to(where(cond, g, z), sa), sum_to(where(cond, z, g), sb)};
  });
  return out;
}
Tensor where(const Tensor& cond, const Tensor& a, double b) {
  return where(cond, a, full({}, b, {.dtype = a.dtype(), .device = a.device()}));
}

// ---- comparisons and logic (not differentiable)
namespace {
Tensor scalar_like(const Tensor& t, double v) { return full({}, v, {.dtype = scalar_dtype(t, v), .device = t.device()}); }
}  // namespace
Tensor eq(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::Ge, a, b); }
Tensor eq(const Tensor& a, double b) { return eq(a, scalar_like(a, b)); }
Tensor ne(const Tensor& a, double b) { return ne(a, scalar_like(a, b)); }
Tensor lt(const Tensor& a, double b) { return lt(a, scalar_like(a, b)); }
Tensor le(const Tensor& a, double b) { return le(a, scalar_like(a, b)); }
Tensor gt(const Tensor& a, double b) { return gt(a, scalar_like(a, b)); }
Tensor ge(const Tensor& a, double b) { return ge(a, scalar_like(a, b)); }
Tensor logical_not(const Tensor& x) { return eq(x.to(kBool), scalar_tensor(0.0, {.dtype = kBool, .device = x.device()})); }
Tensor logical_and(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::LogicalAnd, a.to(kBool), b.to(kBool)); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return binary_kernel(BinaryOp::LogicalOr, a.to(kBool), b.to(kBool)); }

// ---- pointwise activations: fused backward kernels
namespace {
Tensor unary_grad(UnaryGradOp op, const Tensor& v, const Tensor& g, double alpha = 0.0) {
  // Mixed bf16 / float32: float32 kernels, one rounding back; all bf16: the backend does the same in cache
  if ((v.dtype() == kBFloat16 || g.dtype() == kBFloat16) && v.dtype() != g.dtype())
    return unary_grad(op, v.to(kFloat32), g.to(kFloat32), alpha).to(g.dtype());
  Tensor gc = g.contiguous(), vc = v.contiguous();
  Tensor out = ops::empty_like_out(gc);
  ops::be(g).unary_backward(op, ops::ref(vc), ops::ref(gc), ops::ref(out), alpha);
  return out;
}
}  // namespace

Tensor sigmoid(const Tensor& x) {
  ops::check_floating(x, "sigmoid");
  Tensor out = unary_kernel(UnaryOp::Sigmoid, x);
  Tensor y = out.detach();
  record("sigmoid", out, {x}, [y](const Tensor& g) -> std::vector<Tensor> {
    return {unary_grad(UnaryGradOp::Sigmoid, y, g)};
  }, {y});
  return out;
}
Tensor tanh(const Tensor& x) {
  ops::check_floating(x, "tanh");
  Tensor out = unary_kernel(UnaryOp::Tanh, x);
  Tensor y = out.detach();
  record("tanh", out, {x}, [y](const Tensor& g) -> std::vector<Tensor> {
    return {unary_grad(UnaryGradOp::Tanh, y, g)};
  }, {y});
  return out;
}
Tensor relu(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::Relu, x);
  Tensor y = out.detach();
  record("relu", out, {x}, [y](const Tensor& g) -> std::vector<Tensor> {
    return {unary_grad(UnaryGradOp::Relu, y, g)};
  }, {y});
  return out;
}
Tensor leaky_relu(const Tensor& x, double slope) {
  Tensor out = unary_kernel(UnaryOp::LeakyRelu, x, slope);
  record("leaky_relu", out, {x}, [x, slope](const Tensor& g) -> std::vector<Tensor> {
    return {unary_grad(UnaryGradOp::LeakyRelu, x, g, slope)};
  }, {x});
  return out;
}
Tensor gelu(const Tensor& x, GeluApproximate approximate) {
  ops::check_floating(x, "gelu");
  bool t = approximate == GeluApproximate::Tanh;
  Tensor out = unary_kernel(t ? UnaryOp::GeluTanh : UnaryOp::GeluErf, x);
  record("gelu", out, {x}, [x, t](const Tensor& g) -> std::vector<Tensor> {
    return {unary_grad(t ? UnaryGradOp::GeluTanh : UnaryGradOp::GeluErf, x, g)};
  }, {x});
  return out;
}

}  // namespace attn
