// src/ops/loss.cc — losses with PyTorch semantics, each one autograd node with a direct backward.
//
//   Tensor loss = attn::cross_entropy(logits, labels);                        // (N, C), (N) -> ()
//   Tensor l2 = attn::cross_entropy(logits, labels, {.ignore_index = 0, .label_smoothing = 0.1,
//                                                    .reduction = attn::Reduction::Sum});
//   Tensor seg = attn::cross_entropy(scores, masks);                         // (N, C, H, W), (N, H, W)
//
// cross_entropy is fused (backend cross_entropy / cross_entropy_backward): log_softmax and the loss in
// one forward that writes only (rows) values, and a backward that writes softmax − smoothed one-hot,
// scaled, straight into the gradient. It saves the logits, not the log-probabilities.
#include <cmath>
#include <string>

#include "ops/index_check.h"
#include "ops/autocast.h"
#include "ops/op_utils.h"

namespace attn {

using autograd::record;
using autograd::sum_to;

namespace {

// Class-index losses: input (N, C, d1, ...) or unbatched (C); target (N, d1, ...) or 0-d.
struct ClassShape {
  int64_t n = 1, c = 1, s = 1;  // batch, classes, spatial (prod of d1, ...)
  Shape target_shape;
};

ClassShape class_shape(const Tensor& input, const Tensor& target, const char* op) {
  ops::check_defined(input, op, "input");
  ops::check_index_dtype(target, op, "target");
  ClassShape cs;
  if (input.dim() == 0) ops::fail(std::string(op) + ": input must have at least 1 dim (C), got a 0-d tensor");
  if (input.dim() == 1) {
    if (target.dim() != 0)
      ops::fail(std::string(op) + ": for unbatched input " + shape_str(input.shape()) +
                " the target must be 0-d, got " + shape_str(target.shape()));
    cs.c = input.size(0);
    return cs;
  }
  Shape expected = input.shape();
  expected.erase(expected.begin() + 1);
  if (target.shape() != expected)
    ops::fail(std::string(op) + ": input " + shape_str(input.shape()) + " expects target of shape " +
              shape_str(expected) + ", got " + shape_str(target.shape()));
  cs.n = input.size(0);
  cs.c = input.size(1);
  cs.s = numel_of(expected) / std::max<int64_t>(cs.n, 1);
  if (cs.n == 0) cs.s = numel_of(Shape(input.shape().begin() + 2, input.shape().end()));
  cs.target_shape = expected;
  return cs;
}

// Per-class weight as a contiguous (C) tensor of `dtype`, or undefined.
Tensor class_weight(const Tensor& weight, int64_t c, DType dtype, const char* op) {
  if (!weight.defined()) return {};
  if (weight.dim() != 1 || weight.size(0) != c)
    ops::fail(std::string(op) + ": weight must have shape " + shape_str(Shape{c}) + ", got " +
              shape_str(weight.shape()));
  ops::check_floating(weight, op);
  return weight.detach().to(dtype).contiguous();
}

backend::TensorRef opt_ref(const Tensor& t) { return t.defined() ? ops::ref(t) : backend::TensorRef{}; }

// Sum of w[target] over non-ignored targets (or their count without weights): the 'mean' denominator.
Tensor mean_denominator(const Tensor& target_flat, const Tensor& w, int64_t ignore_index, DType dtype) {
  Tensor valid = ne(target_flat, double(ignore_index));
  if (!w.defined()) return sum(valid.to(dtype));
  Tensor safe = where(valid, target_flat, 0.0).to(kInt64);
  return sum(mul(index_select(w, 0, safe), valid.to(dtype)));
}

}  // namespace

// ---- cross_entropy: fused log_softmax + nll (+ label smoothing)
Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& o) {
  if (ops::autocast::active()) return ops::autocast::redispatch("cross_entropy", cross_entropy, input, target, o);
  const char* op = "cross_entropy";
  ClassShape cs = class_shape(input, target, op);
  ops::check_floating(input, op);
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0))
    ops::fail("cross_entropy: label_smoothing must be in [0, 1], got " + std::to_string(o.label_smoothing));
  // bf16 logits: float32 math in the kernel on the bf16 rows, a bf16 gradient written once; the loss is
  // float32 under autocast (its Float32Reads policy), else bf16 as PyTorch returns it.
  const bool bf16 = input.dtype() == kBFloat16;
  const int64_t n = cs.n, c = cs.c, s = cs.s, m = n * s;
  const DType dt = bf16 ? kFloat32 : input.dtype();  // the loss's and the weights' dtype in the kernel
  Tensor w = class_weight(o.weight, c, dt, op);
  Tensor t = target.detach().reshape({m}).contiguous();  // (M), M = N * d1 * ...
  ops::check_index_range(t, c, op, "target", o.ignore_index);
  // logits as contiguous rows (M, C): (N, C, S) -> (N, S, C) when there are spatial dims
  Tensor x = input.detach();
  Tensor xr = s > 1 ? x.reshape({n, c, s}).transpose(1, 2).contiguous().view({m, c}) : x.reshape({m, c}).contiguous();
  Tensor rows = ops::empty_out({m}, dt, input.device());
  if (m > 0) ops::be(input).cross_entropy(ops::ref(xr), ops::ref(t), opt_ref(w), o.ignore_index, o.label_smoothing,
                                          ops::ref(rows));
  Tensor out, denom;
  {
    NoGradGuard ng;
    switch (o.reduction) {
      case Reduction::None: out = rows.view(cs.target_shape); break;
      case Reduction::Sum: out = sum(rows); break;
      case Reduction::Mean:
        denom = mean_denominator(t, w, o.ignore_index, dt);
        out = div(sum(rows), denom);
        break;
    }
  }
  Shape in_shape = input.shape();
  Reduction red = o.reduction;
  int64_t ignore = o.ignore_index;
  double eps = o.label_smoothing;
  record(op, out, {input}, [xr, t, w, denom, in_shape, red, ignore, eps, n, c, s, m](const Tensor& g) -> std::vector<Tensor> {
    Tensor gl;  // d(loss)/d(row loss), (M)
    if (red == Reduction::None) gl = g.reshape({m}).contiguous();
    else gl = (red == Reduction::Mean ? div(g, denom) : g).reshape({1}).expand({m});
    Tensor gx = ops::empty_out({m, c}, xr.dtype(), xr.device());
    if (m > 0) ops::be(xr).cross_entropy_backward(ops::ref(xr), ops::ref(t), opt_ref(w), ignore, eps, ops::ref(gl),
                                                  ops::ref(gx));
    if (s > 1) gx = gx.view({n, s, c}).transpose(1, 2).contiguous();
    return {gx.view(in_shape)};
  }, {xr});
  return bf16 && !ops::autocast::float32_reads() ? out.to(kBFloat16) : out;
}

// ---- nll_loss: picks -w[t]·log_probs[t]; backward scatters into zeros
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& o) {
  if (ops::autocast::active()) return ops::autocast::redispatch("nll_loss", nll_loss, log_probs, target, o);
  const char* op = "nll_loss";
  ClassShape cs = class_shape(log_probs, target, op);
  ops::check_floating(log_probs, op);
  if (log_probs.dtype() == kBFloat16) return nll_loss(log_probs.to(kFloat32), target, o).to(kBFloat16);
  const int64_t n = cs.n, c = cs.c, s = cs.s;
  const DType dt = log_probs.dtype();
  Tensor w = class_weight(o.weight, c, dt, op);
  Tensor t = target.detach().reshape({n * s}).contiguous();
  ops::check_index_range(t, c, op, "target", o.ignore_index);
  Tensor out, denom, wrow, idx;
  {
    NoGradGuard ng;
    Tensor valid = ne(t, double(o.ignore_index));
    idx = where(valid, t, 0.0).to(kInt64).view({n, 1, s});  // ignored rows read class 0, weighted by 0
    wrow = valid.to(dt);
    if (w.defined()) wrow = mul(wrow, index_select(w, 0, idx.view({n * s})));
    wrow = wrow.view({n, 1, s});
    Tensor lp = log_probs.detach().reshape({n, c, s});
    Tensor picked = ops::empty_out({n, 1, s}, dt, log_probs.device());
    if (n * s > 0) ops::be(lp).gather(ops::ref(lp), 1, ops::ref(idx), ops::ref(picked));
    Tensor rows = neg(mul(picked, wrow));  // (N, 1, S)
    switch (o.reduction) {
      case Reduction::None: out = rows.view(cs.target_shape); break;
      case Reduction::Sum: out = sum(rows); break;
      case Reduction::Mean:
        denom = sum(wrow);
        out = div(sum(rows), denom);
        break;
    }
  }
  Shape in_shape = log_probs.shape();
  Reduction red = o.reduction;
  record(op, out, {log_probs}, [idx, wrow, denom, in_shape, red, n, c, s, dt](const Tensor& g) -> std::vector<Tensor> {
    Tensor scale = red == Reduction::None ? g.reshape({n, 1, s}) : red == Reduction::Mean ? div(g, denom) : g;
    Tensor src = neg(mul(wrow, scale)).contiguous();  // (N, 1, S)
    Tensor gx = zeros({n, c, s}, {.dtype = dt, .device = g.device()});
    if (n * s > 0) ops::be(gx).scatter_add(ops::ref(gx), 1, ops::ref(idx), ops::ref(src));
    return {gx.view(in_shape)};
  });
  return out;
}

// ---- mse_loss: (input - target)^2, broadcasting like PyTorch
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  if (ops::autocast::active()) return ops::autocast::redispatch("mse_loss", mse_loss, input, target, reduction);
  ops::check_defined(input, "mse_loss", "input");
  ops::check_defined(target, "mse_loss", "target");
  ops::check_floating(input, "mse_loss");
  Shape shape = broadcast_shapes(input.shape(), target.shape());
  Tensor d, out;
  {
    NoGradGuard ng;
    d = sub(input.detach(), target.detach());
    Tensor sq = mul(d, d);
    out = reduction == Reduction::None ? sq : reduction == Reduction::Sum ? sum(sq) : mean(sq);
    DType dt = ops::promote_types(input.dtype(), target.dtype());
    if (out.dtype() != dt) out = out.to(dt);  // bfloat16 reductions accumulate in float32
  }
  const double scale = reduction == Reduction::Mean ? 2.0 / double(std::max<int64_t>(numel_of(shape), 1)) : 2.0;
  Shape sa = input.shape(), sb = target.shape();
  bool ga = input.requires_grad(), gb = target.requires_grad();
  record("mse_loss", out, {input, target}, [d, scale, sa, sb, ga, gb](const Tensor& g) -> std::vector<Tensor> {
    Tensor gd = mul(mul(d, scale), g);
    return {ga ? sum_to(gd, sa) : Tensor(), gb ? sum_to(neg(gd), sb) : Tensor()};
  });
  return out;
}

// ---- binary_cross_entropy_with_logits
namespace {
// log(1 + y) for y in [0, 1], accurate for tiny y (Goldberg: log(u)·y/(u − 1), u = 1 + y).
Tensor log1p_small(const Tensor& y) {
  Tensor u = add(y, 1.0);
  Tensor um1 = sub(u, 1.0);
  Tensor safe = where(eq(um1, 0.0), ones_like(um1), um1);
  return where(eq(um1, 0.0), y, div(mul(log(u), y), safe));
}
}  // namespace

Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target, const BCEWithLogitsOptions& o) {
  if (ops::autocast::active())
    return ops::autocast::redispatch("binary_cross_entropy_with_logits", binary_cross_entropy_with_logits, input, target, o);
  const char* op = "binary_cross_entropy_with_logits";
  ops::check_defined(input, op, "input");
  ops::check_defined(target, op, "target");
  ops::check_floating(input, op);
  if (input.shape() != target.shape())
    ops::fail(std::string(op) + ": target size " + shape_str(target.shape()) + " must be the same as input size " +
              shape_str(input.shape()));
  const DType dt = input.dtype() == kBFloat16 ? kFloat32 : input.dtype();
  Tensor x, t, w, pw, sp, lw, out;
  Shape shape = input.shape();
  {
    NoGradGuard ng;
    x = input.detach().to(dt);
    t = target.detach().to(dt);
    if (o.weight.defined()) w = o.weight.detach().to(dt), shape = broadcast_shapes(shape, w.shape());
    if (o.pos_weight.defined()) pw = o.pos_weight.detach().to(dt), shape = broadcast_shapes(shape, pw.shape());
    // softplus(-x) = max(-x, 0) + log1p(exp(-|x|)), never overflows
    sp = add(clamp(neg(x), 0.0, std::nullopt), log1p_small(exp(neg(abs(x)))));
    Tensor loss;
    if (pw.defined()) {
      lw = add(mul(sub(pw, 1.0), t), 1.0);  // 1 + (pos_weight - 1)·t
      loss = add(mul((1.0 - t), x), mul(lw, sp));
    } else {
      loss = add(mul((1.0 - t), x), sp);
    }
    if (w.defined()) loss = mul(loss, w);
    if (loss.shape() != shape) loss = loss.expand(shape).contiguous();
    out = o.reduction == Reduction::None ? loss : o.reduction == Reduction::Sum ? sum(loss) : mean(loss);
    if (input.dtype() == kBFloat16) out = out.to(kBFloat16);
  }
  const double scale = o.reduction == Reduction::Mean ? 1.0 / double(std::max<int64_t>(numel_of(shape), 1)) : 1.0;
  Shape sa = input.shape(), sb = target.shape();
  bool ga = input.requires_grad(), gb = target.requires_grad();
  DType da = input.dtype(), db = target.dtype();
  record(op, out, {input, target}, [x, t, w, pw, sp, lw, scale, sa, sb, ga, gb, da, db](const Tensor& g) -> std::vector<Tensor> {
    Tensor gs = mul(g.to(x.dtype()), scale);
    if (w.defined()) gs = mul(gs, w);
    Tensor gx, gt;
    if (ga) {
      // d/dx = (1 - t) - lw·sigmoid(-x)
      Tensor sg = sigmoid(neg(x));
      Tensor d = sub((1.0 - t), lw.defined() ? mul(lw, sg) : sg);
      gx = sum_to(mul(d, gs), sa).to(da);
    }
    if (gb && is_floating(db)) {
      // d/dt = -x + (pos_weight - 1)·softplus(-x)
      Tensor d = pw.defined() ? add(neg(x), mul(sub(pw, 1.0), sp)) : neg(x);
      gt = sum_to(mul(d, gs), sb).to(db);
    }
    return {gx, gt};
  });
  return out;
}

}  // namespace attn
