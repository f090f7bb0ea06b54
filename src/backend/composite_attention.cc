// src/backend/composite_attention.cc — the composite default of fused attention (SdpaArgs in backend.h)
// from primitives: scores by batched gemm, masks by where/add, softmax rows by logsumexp, dropout by the
// same Philox draws as the fused kernels (sdpa_keep: a float32 uniform over (rows, 4·ceil(S/4)) starting
// at the call's offset, so element (row, j) takes lane j % 4 of block offset + row·ceil(S/4) + j / 4).
#include <cmath>
#include <limits>
#include <memory>

#include "backend/backend.h"
#include "backend/composite_util.h"

namespace attn::backend {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

using namespace composite;  // NOLINT: the helpers of composite_util.h

// C (batch, m, n) = alpha · op(A) @ op(B), all contiguous row-major.
void bmm(Backend& be, DType dt, int64_t batch, int64_t m, int64_t n, int64_t k, bool ta, bool tb, double alpha,
         const TensorRef& a, const TensorRef& b, const TensorRef& c) {
  GemmArgs g;
  g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k, g.alpha = alpha, g.beta = 0.0;
  g.a = a.data, g.lda = ta ? m : k;
  g.b = b.data, g.ldb = tb ? k : n;
  g.c = c.data, g.ldc = n;
  g.batch = batch, g.stride_a = m * k, g.stride_b = k * n, g.stride_c = m * n;
  g.dtype = dt;
  be.gemm(g);
}

// The probabilities of one call: P (N, H, L, S) = softmax of the masked, scaled scores, lse (N, H, L, 1)
// (+inf for fully masked rows, whose P row is 0), and the dropout factor (keep / (1 - p), or empty).
struct Probs {
  std::unique_ptr<Tmp> q, k, v, p, lse, drop;
};

void mask_scores(Backend& be, const SdpaArgs& a, DType dt, const TensorRef& s) {
  const Shape full{a.n, a.h, a.l, a.s};
  Scalar neg_inf(be, dt, -kInf);
  auto masked_where = [&](const TensorRef& cond, bool cond_masks) {
    Tmp out(be, dt, full);
    if (cond_masks) be.where(cond, bcast(*neg_inf, full), s, *out);
    else be.where(cond, s, bcast(*neg_inf, full), *out);
    be.copy(*out, s);
  };
  if (a.attn_mask.data) {  // bool: true = take part; float: added
    if (a.attn_mask.dtype == kBool) masked_where(a.attn_mask, false);
    else be.binary(BinaryOp::Add, s, a.attn_mask, s);
  }
  if (a.key_padding_mask.data) {  // (N, S) by strides; bool: true = ignore; float: added
    TensorRef kpm = a.key_padding_mask;
    kpm.shape = full;
    kpm.strides = {a.key_padding_mask.strides[0], 0, 0, a.key_padding_mask.strides[1]};
    if (kpm.dtype == kBool) masked_where(kpm, true);
    else be.binary(BinaryOp::Add, s, kpm, s);
  }
  if (a.is_causal) {  // key j > query i is masked: a constant (L, S) table copied in from the host
    std::unique_ptr<bool[]> host(new bool[size_t(std::max<int64_t>(a.l * a.s, 1))]);
    for (int64_t i = 0; i < a.l; ++i)
      for (int64_t j = 0; j < a.s; ++j) host[size_t(i * a.s + j)] = j > i;
    Tmp causal(be, kBool, {a.l, a.s});
    be.copy_from_host(host.get(), *causal);
    masked_where(bcast(*causal, full), true);
  }
}

Probs probabilities(Backend& be, const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v) {
  const DType dt = q.dtype;
  const int64_t B = a.n * a.h;
  const Shape full{a.n, a.h, a.l, a.s}, rows{a.n, a.h, a.l, 1};
  Probs r;
  r.q = std::make_unique<Tmp>(be, dt, Shape{a.n, a.h, a.l, a.d});
  r.k = std::make_unique<Tmp>(be, dt, Shape{a.n, a.h, a.s, a.d});
  r.v = std::make_unique<Tmp>(be, dt, Shape{a.n, a.h, a.s, a.dv});
  be.copy(q, **r.q);
  be.copy(k, **r.k);
  be.copy(v, **r.v);
  Tmp s(be, dt, full), m(be, dt, rows), msafe(be, dt, rows), e(be, dt, full), sum(be, dt, rows);
  Tmp all_masked(be, kBool, rows);
  bmm(be, dt, B, a.l, a.s, a.d, false, true, a.scale, **r.q, **r.k, *s);
  mask_scores(be, a, dt, *s);
  // lse = m + log(sum(exp(s - m))) with m = 0 for a fully masked row (m = -inf), whose lse is +inf
  Scalar neg_inf(be, dt, -kInf), pos_inf(be, dt, kInf), zero(be, dt, 0.0);
  be.reduce(ReduceOp::Max, *s, *m);
  be.binary(BinaryOp::Eq, *m, bcast(*neg_inf, rows), *all_masked);
  be.where(*all_masked, bcast(*zero, rows), *m, *msafe);
  be.binary(BinaryOp::Sub, *s, bcast(*msafe, full), *e);
  be.unary(UnaryOp::Exp, *e, *e, 0.0);
  be.reduce(ReduceOp::Sum, *e, *sum);
  be.unary(UnaryOp::Log, *sum, *sum, 0.0);
  be.binary(BinaryOp::Add, *msafe, *sum, *sum);
  r.lse = std::make_unique<Tmp>(be, dt, rows);
  be.where(*all_masked, bcast(*pos_inf, rows), *sum, **r.lse);
  r.p = std::make_unique<Tmp>(be, dt, full);
  be.binary(BinaryOp::Sub, *s, bcast(**r.lse, full), **r.p);
  be.unary(UnaryOp::Exp, **r.p, **r.p, 0.0);
  if (a.dropout_p > 0) {
    const int64_t s4 = (a.s + 3) / 4 * 4, nrows = B * a.l;
    Tmp u(be, kFloat32, {nrows, s4}), u64(be, kFloat64, {nrows, a.s}), keep(be, kBool, {nrows, a.s});
    be.uniform(*u, 0.0, 1.0, a.seed, a.offset);
    TensorRef cols = *u;  // the first S of each row's 4·ceil(S/4) draws
    cols.shape = {nrows, a.s};
    be.copy(cols, *u64);
    Scalar keep_below(be, kFloat64, 1.0 - a.dropout_p);  // sdpa_keep compares in double
    be.binary(BinaryOp::Lt, *u64, bcast(*keep_below, {nrows, a.s}), *keep);
    Scalar scale(be, dt, 1.0 / (1.0 - a.dropout_p));
    r.drop = std::make_unique<Tmp>(be, dt, full);
    be.where(dense(keep->data, kBool, full), bcast(*scale, full), bcast(*zero, full), **r.drop);
  }
  return r;
}

}  // namespace

void Backend::sdpa_forward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                           const TensorRef& out, const TensorRef& logsumexp) {
  if (a.n * a.h * a.l == 0) return;
  if (a.s == 0) {  // no keys: every row is fully masked
    fill(out, 0.0);
    fill(logsumexp, kInf);
    return;
  }
  if (q.dtype == kBFloat16) {  // float32 math on widened copies, the output rounded once
    Tmp q32(*this, kFloat32, q.shape), k32(*this, kFloat32, k.shape), v32(*this, kFloat32, v.shape),
        o32(*this, kFloat32, out.shape);
    copy(q, *q32);
    copy(k, *k32);
    copy(v, *v32);
    sdpa_forward(a, *q32, *k32, *v32, *o32, logsumexp);
    copy(*o32, out);
    return;
  }
  const DType dt = q.dtype;
  const int64_t B = a.n * a.h;
  Probs r = probabilities(*this, a, q, k, v);
  copy(r.lse->as({a.n, a.h, a.l}), logsumexp);
  if (r.drop) binary(BinaryOp::Mul, **r.p, **r.drop, **r.p);
  Tmp o(*this, dt, {a.n, a.h, a.l, a.dv});
  bmm(*this, dt, B, a.l, a.dv, a.s, false, false, 1.0, **r.p, **r.v, *o);
  copy(*o, out);
}

// With Pd = P ⊙ drop: dV = Pdᵀ dO, dP = (dO Vᵀ) ⊙ drop, dS = P ⊙ (dP - rowsum(P ⊙ dP)),
// dQ = scale · dS K, dK = scale · dSᵀ Q (fully masked rows: P = 0, so their gradients are 0).
void Backend::sdpa_backward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                            const TensorRef& out, const TensorRef& logsumexp, const TensorRef& grad_out,
                            const TensorRef& grad_q, const TensorRef& grad_k, const TensorRef& grad_v) {
  const DType dt = q.dtype;
  const int64_t B = a.n * a.h;
  if (B * a.l == 0 || a.s == 0) {
    fill(grad_q, 0.0), fill(grad_k, 0.0), fill(grad_v, 0.0);
    return;
  }
  if (dt == kBFloat16) {  // float32 math on widened copies, each gradient rounded once
    Tmp q32(*this, kFloat32, q.shape), k32(*this, kFloat32, k.shape), v32(*this, kFloat32, v.shape),
        g32(*this, kFloat32, grad_out.shape), gq32(*this, kFloat32, q.shape), gk32(*this, kFloat32, k.shape),
        gv32(*this, kFloat32, v.shape), o32(*this, kFloat32, out.shape);
    copy(q, *q32);
    copy(k, *k32);
    copy(v, *v32);
    copy(out, *o32);
    copy(grad_out, *g32);
    sdpa_backward(a, *q32, *k32, *v32, *o32, logsumexp, *g32, *gq32, *gk32, *gv32);
    copy(*gq32, grad_q);
    copy(*gk32, grad_k);
    copy(*gv32, grad_v);
    return;
  }
  const Shape full{a.n, a.h, a.l, a.s}, rows{a.n, a.h, a.l, 1};
  Probs r = probabilities(*this, a, q, k, v);
  Tmp go(*this, dt, {a.n, a.h, a.l, a.dv}), pd(*this, dt, full), dp(*this, dt, full), t(*this, dt, full),
      rs(*this, dt, rows);
  copy(grad_out, *go);
  if (r.drop) binary(BinaryOp::Mul, **r.p, **r.drop, *pd);
  else copy(**r.p, *pd);
  Tmp gv(*this, dt, {a.n, a.h, a.s, a.dv}), gq(*this, dt, {a.n, a.h, a.l, a.d}), gk(*this, dt, {a.n, a.h, a.s, a.d});
  bmm(*this, dt, B, a.s, a.dv, a.l, true, false, 1.0, *pd, *go, *gv);
  bmm(*this, dt, B, a.l, a.s, a.dv, false, true, 1.0, *go, **r.v, *dp);
  if (r.drop) binary(BinaryOp::Mul, *dp, **r.drop, *dp);
  binary(BinaryOp::Mul, **r.p, *dp, *t);
  reduce(ReduceOp::Sum, *t, *rs);
  binary(BinaryOp::Sub, *dp, bcast(*rs, full), *t);
  binary(BinaryOp::Mul, **r.p, *t, *t);  // dS
  bmm(*this, dt, B, a.l, a.d, a.s, false, false, a.scale, *t, **r.k, *gq);
  bmm(*this, dt, B, a.s, a.d, a.l, true, false, a.scale, *t, **r.q, *gk);
  copy(*gq, grad_q);
  copy(*gk, grad_k);
  copy(*gv, grad_v);
}

}  // namespace attn::backend
