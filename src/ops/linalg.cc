// src/ops/linalg.cc — matmul (torch.matmul semantics), mm, bmm, linear; each backward beside its forward.
//
// Operands go to the backend's GEMM as they lie in memory: a matrix whose last two dims are
// row-major or column-major (any leading dimension) needs no copy, a transposed view just flips the
// trans flag, and expanded batch dims become batch stride 0. Only other layouts are copied.
//
//   Tensor y = attn::matmul(x, w);            // (B, T, C) @ (C, D) -> (B, T, D), folded into one GEMM
//   Tensor s = attn::matmul(q, k.transpose(-2, -1));   // (B, H, T, d) @ (B, H, d, T): no copy of k
#include <algorithm>

#include "backend/cpu/packed_linear.h"
#include "ops/autocast.h"
#include "ops/op_utils.h"

namespace attn {

using autograd::record;
using backend::GemmArgs;
using backend::TensorRef;

namespace {

// A GEMM operand: the last two dims of `r` (optionally transposed) as (trans, ld); `keep` holds a
// contiguous copy when the original layout cannot be expressed that way.
struct MatOperand {
  TensorRef r;
  bool trans = false;
  int64_t ld = 1;
  Tensor keep;
};

void swap_last2(TensorRef& r) {
  const size_t n = r.shape.size();
  std::swap(r.shape[n - 1], r.shape[n - 2]);
  std::swap(r.strides[n - 1], r.strides[n - 2]);
}

bool blas_layout(const TensorRef& r, bool& trans, int64_t& ld) {
  const size_t nd = r.shape.size();
  const int64_t rows = r.shape[nd - 2], cols = r.shape[nd - 1], sr = r.strides[nd - 2], sc = r.strides[nd - 1];
  if ((cols == 1 || sc == 1) && (rows == 1 || sr >= std::max<int64_t>(cols, 1))) {
    trans = false;
    ld = rows == 1 ? std::max<int64_t>(cols, 1) : sr;
    return true;
  }
  if ((rows == 1 || sr == 1) && (cols == 1 || sc >= std::max<int64_t>(rows, 1))) {
    trans = true;
    ld = cols == 1 ? std::max<int64_t>(rows, 1) : sc;
    return true;
  }
  return false;
}

// `t` (..., r, c) as a GEMM operand for (..., r, c), or for its transpose (..., c, r) if `transpose`.
MatOperand operand(const Tensor& t, bool transpose) {
  MatOperand m;
  m.r = ops::ref(t);
  if (transpose) swap_last2(m.r);
  if (!blas_layout(m.r, m.trans, m.ld)) {
    m.keep = t.detach().contiguous();
    m.r = ops::ref(m.keep);
    if (transpose) swap_last2(m.r);
    blas_layout(m.r, m.trans, m.ld);
  }
  return m;
}

// C = beta * C + A @ B with A (batch..., m, k), B (batch..., k, n) of one batch shape (strides may be
// 0), C contiguous (batch..., m, n). Batch dims that are one strided run for all three operands are
// merged; the innermost run becomes the GEMM's strided batch, the rest are looped. bias: an optional (n)
// row added to every row of C (a single product with beta 0: GemmArgs::bias).
void batched_gemm(const Tensor& out, const MatOperand& a, const MatOperand& b, double beta, const void* bias = nullptr) {
  const size_t nb = a.r.shape.size() - 2;
  const int64_t m = a.r.shape[nb], k = a.r.shape[nb + 1], n = b.r.shape[nb + 1];
  // (size, stride_a, stride_b, stride_c) runs, innermost first
  struct Run {
    int64_t size, sa, sb, sc;
  };
  std::vector<Run> runs;
  int64_t sc = m * n;
  for (size_t i = nb; i-- > 0;) {
    const int64_t size = a.r.shape[i];
    if (size != 1) {
      Run r{size, a.r.strides[i], b.r.strides[i], sc};
      if (!runs.empty() && runs.back().sa * runs.back().size == r.sa && runs.back().sb * runs.back().size == r.sb &&
          runs.back().sc * runs.back().size == r.sc)
        runs.back().size *= size;
      else
        runs.push_back(r);
    }
    sc *= size;
  }
  GemmArgs g;
  g.trans_a = a.trans;
  g.trans_b = b.trans;
  g.m = m;
  g.n = n;
  g.k = k;
  g.beta = beta;
  g.lda = a.ld;
  g.ldb = b.ld;
  g.ldc = n;
  g.dtype = out.dtype();
  g.bias = bias;
  if (!runs.empty()) {
    g.batch = runs[0].size;
    g.stride_a = runs[0].sa;
    g.stride_b = runs[0].sb;
    g.stride_c = runs[0].sc;
  }
  const size_t es = element_size(g.dtype);
  std::vector<int64_t> idx(runs.size(), 0);
  backend::Backend& be = ops::be(out);
  for (;;) {
    int64_t oa = 0, ob = 0, oc = 0;
    for (size_t i = 1; i < runs.size(); ++i) {
      oa += idx[i] * runs[i].sa;
      ob += idx[i] * runs[i].sb;
      oc += idx[i] * runs[i].sc;
    }
    g.a = static_cast<const char*>(a.r.data) + oa * int64_t(es);
    g.b = static_cast<const char*>(b.r.data) + ob * int64_t(es);
    g.c = static_cast<char*>(out.raw_data()) + oc * int64_t(es);
    be.gemm(g);
    size_t i = 1;
    for (; i < runs.size(); ++i) {
      if (++idx[i] < runs[i].size) break;
      idx[i] = 0;
    }
    if (i >= runs.size()) break;
  }
}

void check_operands(const Tensor& a, const Tensor& b, const char* op) {
  ops::check_defined(a, op, "input");
  ops::check_defined(b, op, "other");
  ops::check_same_device(a, b, op);
  if (a.dtype() != b.dtype())
    ops::fail(std::string(op) + ": expected both operands to have the same dtype, got " + dtype_name(a.dtype()) +
              " and " + dtype_name(b.dtype()));
  if (a.dtype() != kFloat32 && a.dtype() != kFloat64 && a.dtype() != kBFloat16)
    ops::fail(std::string(op) + ": only float32, float64 and bfloat16 are supported, got " + dtype_name(a.dtype()));
}

[[noreturn]] void shape_fail(const char* op, const Tensor& a, const Tensor& b) {
  ops::fail(std::string(op) + ": shapes " + shape_str(a.shape()) + " and " + shape_str(b.shape()) +
            " cannot be multiplied");
}

// (batch..., m, k) @ (batch..., k, n) -> (batch..., m, n), one batch shape; the differentiable core of
// mm, bmm and matmul. `a` / `b` may be expanded views: their gradients come back at the expanded
// shape and the expand's backward sums them.
Tensor batched_matmul(const Tensor& a, const Tensor& b, const char* name) {
  Shape shape = a.shape();
  shape.back() = b.size(-1);
  Tensor out = ops::empty_out(shape, a.dtype(), a.device());
  batched_gemm(out, operand(a, false), operand(b, false), 0.0);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  record(name, out, {a, b}, [a, b, ga, gb](const Tensor& g) -> std::vector<Tensor> {
    Tensor gin_a, gin_b;
    if (ga) {  // dA = dC @ B^T
      gin_a = ops::empty_out(a.shape(), g.dtype(), g.device());
      batched_gemm(gin_a, operand(g, false), operand(b, true), 0.0);
    }
    if (gb) {  // dB = A^T @ dC
      gin_b = ops::empty_out(b.shape(), g.dtype(), g.device());
      batched_gemm(gin_b, operand(a, true), operand(g, false), 0.0);
    }
    return {gin_a, gin_b};
  }, {a, b});
  return out;
}

// Inference with few rows (a decoding step): nothing to record, float32 (or bf16) on the CPU, the weight's
// panels packed once (backend/cpu/packed_linear.h). Returns false where the general GEMM runs instead.
bool linear_on_packed_weight(const Tensor& x, const Tensor& x2, const Tensor& weight, const Tensor& bias,
                             const Tensor& out2) {
  const bool records = grad_enabled() && (x.requires_grad() || weight.requires_grad() ||
                                          (bias.defined() && bias.requires_grad()));
  if (records || !cpu::packed_linear_applies(x2, weight)) return false;
  if (bias.defined() && (bias.dtype() != x2.dtype() || bias.stride(0) != 1)) return false;
  cpu::packed_linear(x2.detach(), weight.detach(), bias.defined() ? bias.detach() : Tensor(), out2);
  return true;
}

}  // namespace

Tensor mm(const Tensor& a, const Tensor& b) {
  if (ops::autocast::active()) return ops::autocast::redispatch("mm", mm, a, b);
  check_operands(a, b, "mm");
  if (a.dim() != 2 || b.dim() != 2 || a.size(1) != b.size(0)) shape_fail("mm", a, b);
  return batched_matmul(a, b, "mm");
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  if (ops::autocast::active()) return ops::autocast::redispatch("bmm", bmm, a, b);
  check_operands(a, b, "bmm");
  if (a.dim() != 3 || b.dim() != 3 || a.size(0) != b.size(0) || a.size(2) != b.size(1)) shape_fail("bmm", a, b);
  return batched_matmul(a, b, "bmm");
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (ops::autocast::active()) return ops::autocast::redispatch("matmul", matmul, a, b);
  check_operands(a, b, "matmul");
  const int64_t da = a.dim(), db = b.dim();
  if (da == 0 || db == 0)
    ops::fail("matmul: both arguments need at least 1 dimension, got shapes " + shape_str(a.shape()) + " and " +
              shape_str(b.shape()));
  const int64_t k = a.size(-1);
  if (k != (db == 1 ? b.size(0) : b.size(-2))) shape_fail("matmul", a, b);
  if (da == 1 && db == 1) return batched_matmul(a.unsqueeze(0), b.unsqueeze(1), "matmul").reshape({});
  if (da == 2 && db == 1) return batched_matmul(a, b.unsqueeze(1), "matmul").squeeze(1);
  if (da == 1 && db == 2) return batched_matmul(a.unsqueeze(0), b, "matmul").squeeze(0);
  if (da == 2 && db == 2) return batched_matmul(a, b, "matmul");
  if (da >= 3 && db <= 2) {
    // Fold a's batch dims into its rows: one GEMM with a large m (and one for the gradient of b).
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    Tensor b2 = db == 1 ? b.unsqueeze(1) : b;
    if (db == 2) out_shape.push_back(b.size(1));
    const int64_t rows = numel_of(Shape(a.shape().begin(), a.shape().end() - 1));
    Tensor y = batched_matmul(a.reshape({rows, k}), b2, "matmul");
    return y.reshape(out_shape);
  }
  // Batched with broadcasting: a (..., m, k), b (..., k, n); 1-d operands get a unit dim.
  Tensor a3 = da == 1 ? a.unsqueeze(0) : a;
  Tensor b3 = db == 1 ? b.unsqueeze(1) : b;
  const Shape ba(a3.shape().begin(), a3.shape().end() - 2), bb(b3.shape().begin(), b3.shape().end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(ba, bb);
  } catch (const std::exception&) {
    shape_fail("matmul", a, b);
  }
  Shape sa = batch, sb = batch;
  sa.insert(sa.end(), {a3.size(-2), k});
  sb.insert(sb.end(), {k, b3.size(-1)});
  Tensor y = batched_matmul(a3.shape() == sa ? a3 : a3.expand(sa), b3.shape() == sb ? b3 : b3.expand(sb), "matmul");
  if (da == 1) y = y.squeeze(-2);
  if (db == 1) y = y.squeeze(-1);
  return y;
}

// ---- linear: y (..., out) = x (..., in) @ weight^T (in, out) + bias (out)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (ops::autocast::active()) return ops::autocast::redispatch("linear", linear, x, weight, bias);
  check_operands(x, weight, "linear");
  if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1))
    ops::fail("linear: input " + shape_str(x.shape()) + " and weight " + shape_str(weight.shape()) +
              " cannot be multiplied (weight must be (out_features, in_features) with in_features = input's last dim)");
  const int64_t in = weight.size(1), out_f = weight.size(0);
  const int64_t rows = numel_of(Shape(x.shape().begin(), x.shape().end() - 1));
  if (bias.defined()) {
    check_operands(x, bias, "linear");
    if (bias.dim() != 1 || bias.size(0) != out_f)
      ops::fail("linear: bias " + shape_str(bias.shape()) + " does not match weight " + shape_str(weight.shape()));
  }
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_f);
  Tensor out = ops::empty_out(out_shape, x.dtype(), x.device());
  Tensor x2 = x.detach().reshape({rows, in});  // (rows, in), a view when x's layout allows
  Tensor out2 = out.view({rows, out_f});
  if (linear_on_packed_weight(x, x2, weight, bias, out2)) return out;
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();  // (out): added as C is written
  batched_gemm(out2, operand(x2, false), operand(weight, true), 0.0, bc.defined() ? bc.raw_data() : nullptr);
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
  Shape x_shape = x.shape();
  record("linear", out, {x, weight, bias},
         [x2, weight, x_shape, rows, out_f, gx, gw, gb](const Tensor& g) -> std::vector<Tensor> {
           Tensor g2 = g.reshape({rows, out_f});
           Tensor gin_x, gin_w, gin_b;
           if (gx) {  // dx (rows, in) = g (rows, out) @ W (out, in)
             gin_x = ops::empty_out(x_shape, g.dtype(), g.device());
             batched_gemm(gin_x.view({rows, x2.size(1)}), operand(g2, false), operand(weight, false), 0.0);
           }
           if (gw) {  // dW (out, in) = g^T (out, rows) @ x (rows, in)
             gin_w = ops::empty_out(weight.shape(), g.dtype(), g.device());
             batched_gemm(gin_w, operand(g2, true), operand(x2, false), 0.0);
           }
           if (gb) {  // db (out) = column sums of g (rows, out): the backend's vectorised reduction
             // (bf16 gradients are summed in float32, as PyTorch does, then rounded once)
             const Tensor g_sum = g2.dtype() == kBFloat16 ? g2.detach().to(kFloat32) : g2;
             gin_b = ops::empty_out({out_f}, g_sum.dtype(), g.device());
             ops::be(g).reduce(backend::ReduceOp::Sum, ops::ref(g_sum), ops::ref(gin_b.view({1, out_f})));
             gin_b = gin_b.to(g.dtype());
           }
           return {gin_x, gin_w, gin_b};
         },
         {x, weight});
  return out;
}

}  // namespace attn
