// src/backend/composite.cc — the composite defaults of the fused Backend entries (backend.h), written
// only from the required primitives: a new backend runs every op once its primitives exist, and fuses
// later where a profile says so. Each follows the contract documented in backend.h; the dropout
// composites draw the same Philox numbers as the fused kernels, so their keep bits are identical.
// tests/test_composite.cc checks them against the CPU backend's fused kernels.
#include <cmath>
#include <limits>
#include <vector>

#include "backend/backend.h"
#include "backend/composite_util.h"

namespace attn::backend {

namespace {

using namespace composite;  // NOLINT: the helpers of composite_util.h

// flags (bool, n elements, contiguous) -> bits (uint8, dropout_keep_bytes(n)): bit i % 8 of byte i / 8,
// 0 past n. Each byte is the sum of its flags times 1, 2, …, 128 (exact in float32).
void pack_bits(Backend& b, const TensorRef& flags, const TensorRef& bits) {
  const int64_t n = flags.numel(), nb = dropout_keep_bytes(n);
  Tmp wide(b, kFloat32, {nb, 8});
  b.fill(*wide, 0.0);
  if (n > 0) b.copy(reshaped(flags, {n}), dense(wide->data, kFloat32, {n}));
  const float weights[8] = {1, 2, 4, 8, 16, 32, 64, 128};
  Tmp w(b, kFloat32, {8});
  b.copy_from_host(weights, *w);
  Tmp prod(b, kFloat32, {nb, 8}), sum(b, kFloat32, {nb, 1});
  b.binary(BinaryOp::Mul, *wide, bcast(*w, {nb, 8}), *prod);
  b.reduce(ReduceOp::Sum, *prod, *sum);
  b.copy(sum.as({nb}), reshaped(bits, {nb}));
}

// bits (uint8, dropout_keep_bytes(n)) -> flags (bool, n, contiguous): peel bits 7 … 0 off each byte.
void unpack_bits(Backend& b, const TensorRef& bits, const TensorRef& flags) {
  const int64_t n = flags.numel(), nb = dropout_keep_bytes(n);
  Tmp rest(b, kFloat32, {nb, 1}), wide(b, kFloat32, {nb, 8}), ge(b, kBool, {nb, 1}), part(b, kFloat32, {nb, 1});
  b.copy(reshaped(bits, {nb, 1}), *rest);
  for (int j = 7; j >= 0; --j) {
    Scalar thr(b, kFloat32, double(1 << j));
    TensorRef column{static_cast<char*>(wide->data) + 4 * j, kFloat32, {nb, 1}, {8, 1}};
    b.binary(BinaryOp::Ge, *rest, bcast(*thr, {nb, 1}), *ge);
    b.copy(*ge, column);
    b.binary(BinaryOp::Mul, column, bcast(*thr, {nb, 1}), *part);
    b.binary(BinaryOp::Sub, *rest, *part, *rest);
  }
  if (n > 0) b.copy(dense(wide->data, kFloat32, {n}), reshaped(flags, {n}));
}

// factor_i = keep_i ? 1 / (1 - p) : 0 in `dtype` (the scale rounded to dtype, as the fused kernels do).
void keep_factor(Backend& b, const TensorRef& keep, double p, DType dtype, const TensorRef& factor) {
  Scalar scale(b, dtype, 1.0 / (1.0 - p)), zero(b, dtype, 0.0);
  b.where(keep, bcast(*scale, keep.shape), bcast(*zero, keep.shape), factor);
}

// The dtype dropout draws and multiplies in: float32 for bf16 (whose binaries backends do not take).
DType compute_dtype(DType t) { return t == kBFloat16 ? kFloat32 : t; }

// out = x * factor (n contiguous elements each, one dtype), the product rounded once to out's dtype: bf16
// through binary_mixed (float32 math), as the ops' binary kernel does.
void mul_rounded(Backend& b, const TensorRef& x, const TensorRef& factor, const TensorRef& out) {
  const int64_t n = x.numel();
  const TensorRef xn = reshaped(x, {n}), fn = reshaped(factor, {n}), on = reshaped(out, {n});
  if (x.dtype == kBFloat16) b.binary_mixed(BinaryOp::Mul, xn, fn, on);
  else b.binary(BinaryOp::Mul, xn, fn, on);
}

// Inverted dropout of contiguous x (n) into out; keep_flags (bool, n) gets the draws. bf16: float32
// draws and comparison, the scale rounded to bf16 (what lt(u, 1 - p).to(bf16) * (1 / (1 - p)) makes).
void dropout_flags(Backend& b, const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
                   const TensorRef& keep_flags) {
  const int64_t n = x.numel();
  const DType ct = compute_dtype(x.dtype);
  Tmp u(b, ct, {n}), factor(b, x.dtype, {n});
  b.uniform(*u, 0.0, 1.0, seed, counter);  // element i: the draw `uniform` makes for i
  Scalar keep_below(b, ct, 1.0 - p);
  b.binary(BinaryOp::Lt, *u, bcast(*keep_below, {n}), keep_flags);
  keep_factor(b, keep_flags, p, x.dtype, *factor);
  mul_rounded(b, x, *factor, out);
}

}  // namespace

// ---- binary_mixed: float32 copies of the bf16 operands, one float32 binary, one rounding
void Backend::binary_mixed(BinaryOp op, const TensorRef& a, const TensorRef& b, const TensorRef& out) {
  const int64_t n = out.numel();
  auto as_f32 = [&](const TensorRef& t, std::unique_ptr<Tmp>& keep) {
    if (t.dtype == kFloat32) return reshaped(t, {n});
    keep = std::make_unique<Tmp>(*this, kFloat32, Shape{n});
    copy(reshaped(t, {n}), **keep);
    return **keep;
  };
  std::unique_ptr<Tmp> a32, b32, o32;
  const TensorRef x = as_f32(a, a32), y = as_f32(b, b32);
  if (out.dtype == kFloat32) return binary(op, x, y, reshaped(out, {n}));
  o32 = std::make_unique<Tmp>(*this, kFloat32, Shape{n});
  binary(op, x, y, **o32);
  copy(**o32, reshaped(out, {n}));
}

// ---- dropout, relu_dropout
void Backend::dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
                      const TensorRef& keep) {
  Tmp flags(*this, kBool, {x.numel()});
  dropout_flags(*this, x, p, seed, counter, out, *flags);
  pack_bits(*this, *flags, keep);
}

void Backend::dropout_backward(const TensorRef& grad_out, const TensorRef& keep, double p, const TensorRef& grad_x) {
  const int64_t n = grad_out.numel();
  Tmp flags(*this, kBool, {n}), factor(*this, grad_out.dtype, {n}), g(*this, grad_out.dtype, {n});
  unpack_bits(*this, keep, *flags);
  keep_factor(*this, *flags, p, grad_out.dtype, *factor);
  copy(grad_out, g.as(grad_out.shape));
  mul_rounded(*this, *g, *factor, grad_x);
}

void Backend::relu_dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
                           const TensorRef& keep, const TensorRef& pass) {
  const int64_t n = x.numel();
  Tmp r(*this, x.dtype, {n}), flags(*this, kBool, {n}), le(*this, kBool, {n});
  unary(UnaryOp::Relu, reshaped(x, {n}), *r, 0.0);
  dropout_flags(*this, *r, p, seed, counter, out, *flags);
  pack_bits(*this, *flags, keep);
  const DType ct = compute_dtype(x.dtype);
  Tmp rc(*this, ct, {n});  // relu(x) in the compute dtype, for the comparison
  copy(*r, *rc);
  Scalar zero(*this, ct, 0.0), no(*this, kBool, 0.0), yes(*this, kBool, 1.0);
  binary(BinaryOp::Le, *rc, bcast(*zero, {n}), *le);
  where(*le, bcast(*no, {n}), bcast(*yes, {n}), *flags);  // pass = !(relu(x) <= 0): NaN passes
  pack_bits(*this, *flags, pass);
}

void Backend::relu_dropout_backward(const TensorRef& grad_out, const TensorRef& keep, const TensorRef& pass,
                                    double p, const TensorRef& grad_x) {
  const int64_t n = grad_out.numel();
  const DType dt = grad_out.dtype;
  Tmp flags(*this, kBool, {n}), factor(*this, dt, {n}), g(*this, dt, {n}), prod(*this, dt, {n});
  unpack_bits(*this, keep, *flags);
  keep_factor(*this, *flags, p, dt, *factor);
  copy(grad_out, g.as(grad_out.shape));
  mul_rounded(*this, *g, *factor, *prod);
  unpack_bits(*this, pass, *flags);
  Scalar zero(*this, dt, 0.0);
  where(*flags, *prod, bcast(*zero, {n}), reshaped(grad_x, {n}));
}

// ---- softmax over the last dim (rows = the other dims; x, y contiguous)
void Backend::softmax(const TensorRef& x, const TensorRef& y, bool log) {
  const int64_t c = x.shape.empty() ? 1 : x.shape.back(), rows = c ? x.numel() / c : 0;
  if (rows * c == 0) return;
  const Shape rc{rows, c}, r1{rows, 1};
  const TensorRef xr = reshaped(x, rc), yr = reshaped(y, rc);
  Tmp m(*this, x.dtype, r1), d(*this, x.dtype, rc), e(*this, x.dtype, rc), s(*this, x.dtype, r1);
  reduce(ReduceOp::Max, xr, *m);
  binary(BinaryOp::Sub, xr, bcast(*m, rc), *d);
  unary(UnaryOp::Exp, *d, *e, 0.0);
  reduce(ReduceOp::Sum, *e, *s);
  if (!log) return binary(BinaryOp::Div, *e, bcast(*s, rc), yr);
  unary(UnaryOp::Log, *s, *s, 0.0);
  binary(BinaryOp::Sub, *d, bcast(*s, rc), yr);
}

void Backend::softmax_backward(const TensorRef& y, const TensorRef& grad_y, const TensorRef& grad_x, bool log) {
  const int64_t c = y.shape.empty() ? 1 : y.shape.back(), rows = c ? y.numel() / c : 0;
  if (rows * c == 0) return;
  const Shape rc{rows, c}, r1{rows, 1};
  const TensorRef yr = reshaped(y, rc), gy = reshaped(grad_y, rc), gx = reshaped(grad_x, rc);
  Tmp t(*this, y.dtype, rc), s(*this, y.dtype, r1);
  if (log) {  // gx = gy - exp(y) * sum(gy)
    reduce(ReduceOp::Sum, gy, *s);
    unary(UnaryOp::Exp, yr, *t, 0.0);
    binary(BinaryOp::Mul, *t, bcast(*s, rc), *t);
    return binary(BinaryOp::Sub, gy, *t, gx);
  }
  binary(BinaryOp::Mul, gy, yr, *t);  // gx = y * (gy - sum(gy * y))
  reduce(ReduceOp::Sum, *t, *s);
  binary(BinaryOp::Sub, gy, bcast(*s, rc), *t);
  binary(BinaryOp::Mul, yr, *t, gx);
}

// ---- cross-entropy (formulas in backend.h)
namespace {
// ign (bool, R) = target == ignore_index; safe (target's dtype, (R, 1)) = target with ignored rows at 0.
void safe_targets(Backend& b, const TensorRef& target, int64_t ignore_index, const TensorRef& ign,
                  const TensorRef& safe) {
  const int64_t rows = target.numel();
  Scalar ii(b, target.dtype, double(ignore_index)), zero(b, target.dtype, 0.0);
  b.binary(BinaryOp::Eq, target, bcast(*ii, target.shape), ign);
  b.where(ign, bcast(*zero, {rows}), target, reshaped(safe, {rows}));
}
// wt (R, 1) = weight[safe] (1 without weight)
void target_weights(Backend& b, const TensorRef& weight, const TensorRef& safe, const TensorRef& wt) {
  if (!weight.data) return b.fill(wt, 1.0);
  b.index_select(weight, 0, reshaped(safe, {safe.numel()}), reshaped(wt, {wt.numel()}));
}
}  // namespace

void Backend::cross_entropy(const TensorRef& x, const TensorRef& target, const TensorRef& weight,
                            int64_t ignore_index, double label_smoothing, const TensorRef& loss) {
  const int64_t rows = x.shape[0], c = x.shape[1];
  if (rows == 0) return;
  if (x.dtype == kBFloat16) {  // float32 math on a widened copy
    Tmp xf(*this, kFloat32, {rows, c});
    copy(x, *xf);
    return cross_entropy(*xf, target, weight, ignore_index, label_smoothing, loss);
  }
  const DType dt = x.dtype;
  const Shape rc{rows, c}, r1{rows, 1};
  Tmp logp(*this, dt, rc), ign(*this, kBool, {rows}), safe(*this, target.dtype, r1), lt(*this, dt, r1),
      wt(*this, dt, r1), l(*this, dt, r1), wl(*this, dt, rc), s(*this, dt, r1);
  softmax(x, *logp, true);
  safe_targets(*this, target, ignore_index, *ign, *safe);
  gather(*logp, 1, *safe, *lt);
  target_weights(*this, weight, *safe, *wt);
  Scalar a(*this, dt, -(1.0 - label_smoothing)), b(*this, dt, -label_smoothing / double(c)), zero(*this, dt, 0.0);
  binary(BinaryOp::Mul, *wt, *lt, *l);
  binary(BinaryOp::Mul, *l, bcast(*a, r1), *l);  // (1-ε)·(-w[t]·logp[t])
  if (label_smoothing != 0.0) {                   // + ε/C·(-Σ_c w[c]·logp[c])
    if (weight.data) binary(BinaryOp::Mul, *logp, bcast(weight, rc), *wl);
    reduce(ReduceOp::Sum, weight.data ? *wl : *logp, *s);
    binary(BinaryOp::Mul, *s, bcast(*b, r1), *s);
    binary(BinaryOp::Add, *l, *s, *l);
  }
  Tmp out(*this, dt, {rows});
  where(*ign, bcast(*zero, {rows}), l.as({rows}), *out);
  copy(*out, loss);
}

void Backend::cross_entropy_backward(const TensorRef& x, const TensorRef& target, const TensorRef& weight,
                                     int64_t ignore_index, double label_smoothing, const TensorRef& grad_loss,
                                     const TensorRef& grad_x) {
  const int64_t rows = x.shape[0], c = x.shape[1];
  if (rows == 0) return;
  if (x.dtype == kBFloat16) {  // float32 math on a widened copy, the gradient rounded once
    Tmp xf(*this, kFloat32, {rows, c}), gf(*this, kFloat32, {rows, c});
    copy(x, *xf);
    cross_entropy_backward(*xf, target, weight, ignore_index, label_smoothing, grad_loss, *gf);
    return copy(*gf, grad_x);
  }
  const DType dt = x.dtype;
  const Shape rc{rows, c}, r1{rows, 1};
  Tmp p(*this, dt, rc), ign(*this, kBool, {rows}), safe(*this, target.dtype, r1), wt(*this, dt, r1),
      onehot(*this, dt, rc), ones(*this, dt, r1), t1(*this, dt, rc), t2(*this, dt, rc), g(*this, dt, rc);
  softmax(x, *p, false);
  safe_targets(*this, target, ignore_index, *ign, *safe);
  target_weights(*this, weight, *safe, *wt);
  fill(*onehot, 0.0);
  fill(*ones, 1.0);
  scatter_add(*onehot, 1, *safe, *ones);
  binary(BinaryOp::Sub, *p, *onehot, *t1);  // (1-ε)·w[t]·(p - δ)
  binary(BinaryOp::Mul, *t1, bcast(*wt, rc), *t1);
  Scalar a(*this, dt, 1.0 - label_smoothing), zero(*this, dt, 0.0);
  binary(BinaryOp::Mul, *t1, bcast(*a, rc), *t1);
  if (label_smoothing != 0.0) {  // + ε/C·(W·p - w)
    Tmp wsum(*this, dt, {1, 1});
    if (weight.data) reduce(ReduceOp::Sum, reshaped(weight, {1, c}), *wsum);
    else fill(*wsum, double(c));
    binary(BinaryOp::Mul, *p, bcast(*wsum, rc), *t2);
    if (weight.data) binary(BinaryOp::Sub, *t2, bcast(weight, rc), *t2);
    else {
      Scalar one(*this, dt, 1.0);
      binary(BinaryOp::Sub, *t2, bcast(*one, rc), *t2);
    }
    Scalar e(*this, dt, label_smoothing / double(c));
    binary(BinaryOp::Mul, *t2, bcast(*e, rc), *t2);
    binary(BinaryOp::Add, *t1, *t2, *t1);
  }
  TensorRef gl = grad_loss;  // (rows), any stride
  gl.shape = r1;
  gl.strides = {grad_loss.strides.empty() ? 0 : grad_loss.strides[0], 0};
  binary(BinaryOp::Mul, *t1, bcast(gl, rc), *t1);
  TensorRef ign_rc{ign->data, kBool, rc, {1, 0}};
  where(ign_rc, bcast(*zero, rc), *t1, *g);
  copy(*g, grad_x);
}

// ---- Adam / AdamW: the fused kernel's per-element formulas (cpu/optim.cc), one primitive at a time
void Backend::adam_step(const AdamArgs& a, const TensorRef& param, const TensorRef& grad, const TensorRef& exp_avg,
                        const TensorRef& exp_avg_sq, const TensorRef& max_exp_avg_sq) {
  const int64_t n = param.numel();
  if (n == 0) return;
  const DType dt = param.dtype;
  const Shape sh{n};
  const TensorRef p = reshaped(param, sh), m = reshaped(exp_avg, sh), v = reshaped(exp_avg_sq, sh);
  Tmp g(*this, dt, sh), t(*this, dt, sh);
  copy(reshaped(grad, sh), *g);
  auto scalar_op = [&](BinaryOp op, const TensorRef& in, double value, const TensorRef& out) {
    Scalar s(*this, dt, value);
    binary(op, in, bcast(*s, sh), out);
  };
  if (a.weight_decay != 0.0) {
    if (a.decoupled_weight_decay) scalar_op(BinaryOp::Mul, p, 1.0 - a.lr * a.weight_decay, p);
    else {
      scalar_op(BinaryOp::Mul, p, a.weight_decay, *t);
      binary(BinaryOp::Add, *g, *t, *g);
    }
  }
  binary(BinaryOp::Sub, *g, m, *t);  // exp_avg.lerp_(grad, 1 - beta1)
  scalar_op(BinaryOp::Mul, *t, 1.0 - a.beta1, *t);
  binary(BinaryOp::Add, m, *t, m);
  scalar_op(BinaryOp::Mul, v, a.beta2, v);  // exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * grad * grad
  scalar_op(BinaryOp::Mul, *g, 1.0 - a.beta2, *t);
  binary(BinaryOp::Mul, *t, *g, *t);
  binary(BinaryOp::Add, v, *t, v);
  TensorRef vv = v;
  if (a.amsgrad) {
    vv = reshaped(max_exp_avg_sq, sh);
    binary(BinaryOp::Maximum, vv, v, vv);
  }
  const double step = double(a.step);
  const double bc1 = 1.0 - std::pow(a.beta1, step), bc2 = 1.0 - std::pow(a.beta2, step);
  unary(UnaryOp::Sqrt, vv, *t, 0.0);  // denom = sqrt(v) / sqrt(bc2) + eps
  scalar_op(BinaryOp::Div, *t, std::pow(bc2, 0.5), *t);
  scalar_op(BinaryOp::Add, *t, a.eps, *t);
  scalar_op(BinaryOp::Mul, m, -(a.lr / bc1), *g);  // param += -(lr / bc1) * exp_avg / denom
  binary(BinaryOp::Div, *g, *t, *g);
  binary(BinaryOp::Add, p, *g, p);
}

}  // namespace attn::backend
