// src/ops/activation.cc — softmax and log_softmax over any dim (backend kernels over the last dim).
//
//   Tensor p = attn::softmax(logits, -1);       // (B, T, V) -> (B, T, V), rows sum to 1
//   Tensor lp = attn::log_softmax(x, 1);        // (N, C, H, W): moved last, computed, moved back
#include "ops/op_utils.h"

namespace attn {

using autograd::record;

namespace {

// y = softmax(x) over the last dim of contiguous x (no autograd).
Tensor softmax_last(const Tensor& x, bool log) {
  Tensor y = ops::empty_like_out(x);
  if (x.numel() > 0) ops::be(x).softmax(ops::ref(x), ops::ref(y), log);
  return y;
}

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  ops::check_defined(x, name, "input");
  ops::check_floating(x, name);
  if (x.dtype() == kBFloat16) return softmax_impl(x.to(kFloat32), dim, log).to(kBFloat16);
  if (x.dim() == 0) {
    wrap_dim(dim, 1);
    return softmax_impl(x.reshape({1}), 0, log).reshape({});
  }
  dim = wrap_dim(dim, x.dim());
  const int64_t last = x.dim() - 1;
  const bool moved = dim != last;
  // the kernel's layout: dim last, contiguous
  Tensor xl = moved ? x.detach().transpose(dim, last).contiguous() : x.detach().contiguous();
  Tensor yl = softmax_last(xl, log);  // saved for the backward (the output, not the input)
  Tensor out = moved ? yl.transpose(dim, last).contiguous() : yl;
  if (!autograd::needs_grad({&x})) return out;
  if (out.is_same(yl)) out = yl.view(yl.shape());  // a distinct handle for the graph; yl stays a plain tensor
  record(name, out, {x}, [yl, dim, last, moved, log](const Tensor& g) -> std::vector<Tensor> {
    Tensor gl = moved ? g.transpose(dim, last).contiguous() : g.contiguous();
    Tensor gx = ops::empty_like_out(yl);
    if (yl.numel() > 0) ops::be(yl).softmax_backward(ops::ref(yl), ops::ref(gl), ops::ref(gx), log);
    return {moved ? gx.transpose(dim, last).contiguous() : gx};
  }, {yl});
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

}  // namespace attn
