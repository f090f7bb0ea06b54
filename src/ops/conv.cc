// src/ops/conv.cc — conv1d, conv2d, max_pool2d, avg_pool2d (PyTorch semantics), backward beside forward.
//
//   Tensor y = attn::conv2d(x, w, b, {.padding = {1, 1}});              // (N, 1, 28, 28) -> (N, 32, 28, 28)
//   Tensor p = attn::max_pool2d(y, {.kernel_size = {2, 2}});              // -> (N, 32, 14, 14)
//   Tensor z = attn::conv1d(s, w1, {}, {.stride = 2, .dilation = 2});     // (N, C, L) -> (N, C_out, L_out)
//
// Inputs may also be unbatched ((C, H, W), (C, L)). Kernels take contiguous NCHW buffers; the ops make
// non-contiguous inputs contiguous once and keep those buffers for the backward.
#include <sstream>
#include <string>

#include "ops/autocast.h"
#include "ops/op_utils.h"

namespace attn {

using autograd::record;

namespace {

std::string pair_str(std::pair<int64_t, int64_t> p) {
  std::ostringstream os;
  os << "(" << p.first << ", " << p.second << ")";
  return os.str();
}

void check_float(const Tensor& t, const char* op, const char* arg) {
  ops::check_defined(t, op, arg);
  if (t.dtype() != kFloat32 && t.dtype() != kFloat64 && t.dtype() != kBFloat16)
    ops::fail(std::string(op) + ": " + arg + " must be float32, float64 or bfloat16, got " + dtype_name(t.dtype()));
}

}  // namespace

// ---- conv2d: x (N, C_in, H, W), weight (C_out, C_in / groups, kH, kW), bias (C_out) -> (N, C_out, oH, oW)
Tensor conv2d(const Tensor& x_in, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o) {
  if (ops::autocast::active()) return ops::autocast::redispatch("conv2d", conv2d, x_in, weight, bias, o);
  if (x_in.defined() && weight.defined() && x_in.dtype() == kBFloat16 && weight.dtype() == kBFloat16)
    // bf16 convolution: float32 kernels on the exactly widened operands, the output rounded once
    return conv2d(x_in.to(kFloat32), weight.to(kFloat32), bias.defined() ? bias.to(kFloat32) : bias, o).to(kBFloat16);
  check_float(x_in, "conv2d", "input");
  check_float(weight, "conv2d", "weight");
  ops::check_same_device(x_in, weight, "conv2d");
  if (x_in.dim() == 3) return conv2d(x_in.unsqueeze(0), weight, bias, o).squeeze(0);  // unbatched (C, H, W)
  const Tensor& x = x_in;
  if (x.dim() != 4 || weight.dim() != 4)
    ops::fail("conv2d: expected input (N, C_in, H, W) and weight (C_out, C_in/groups, kH, kW), got " +
              shape_str(x.shape()) + " and " + shape_str(weight.shape()));
  if (x.dtype() != weight.dtype())
    ops::fail(std::string("conv2d: input is ") + dtype_name(x.dtype()) + " but weight is " + dtype_name(weight.dtype()));
  const int64_t groups = o.groups;
  if (groups < 1 || o.stride.first < 1 || o.stride.second < 1 || o.dilation.first < 1 || o.dilation.second < 1 ||
      o.padding.first < 0 || o.padding.second < 0)
    ops::fail("conv2d: invalid options stride " + pair_str(o.stride) + ", padding " + pair_str(o.padding) +
              ", dilation " + pair_str(o.dilation) + ", groups " + std::to_string(groups));
  const int64_t c_out = weight.size(0);
  if (x.size(1) != weight.size(1) * groups || c_out % groups != 0)
    ops::fail("conv2d: input " + shape_str(x.shape()) + " and weight " + shape_str(weight.shape()) +
              " do not match for groups = " + std::to_string(groups) +
              " (need input channels = weight.size(1) * groups and C_out divisible by groups)");
  if (bias.defined()) {
    check_float(bias, "conv2d", "bias");
    if (bias.dim() != 1 || bias.size(0) != c_out || bias.dtype() != x.dtype())
      ops::fail("conv2d: bias " + shape_str(bias.shape()) + " (" + dtype_name(bias.dtype()) +
                ") does not match weight " + shape_str(weight.shape()) + " (" + dtype_name(weight.dtype()) + ")");
  }
  backend::Conv2dArgs a{};
  a.n = x.size(0);
  a.c_in = x.size(1);
  a.h = x.size(2);
  a.w = x.size(3);
  a.c_out = c_out;
  a.kh = weight.size(2);
  a.kw = weight.size(3);
  a.stride_h = o.stride.first;
  a.stride_w = o.stride.second;
  a.pad_h = o.padding.first;
  a.pad_w = o.padding.second;
  a.dil_h = o.dilation.first;
  a.dil_w = o.dilation.second;
  a.groups = groups;
  a.dtype = x.dtype();
  const int64_t eff_h = a.dil_h * (a.kh - 1) + 1, eff_w = a.dil_w * (a.kw - 1) + 1;
  if (a.h + 2 * a.pad_h < eff_h || a.w + 2 * a.pad_w < eff_w || a.kh < 1 || a.kw < 1 || a.c_in < 1)
    ops::fail("conv2d: input " + shape_str(x.shape()) + " with padding " + pair_str(o.padding) +
              " is smaller than the (dilated) kernel " + pair_str({eff_h, eff_w}));
  a.out_h = (a.h + 2 * a.pad_h - eff_h) / a.stride_h + 1;
  a.out_w = (a.w + 2 * a.pad_w - eff_w) / a.stride_w + 1;

  Tensor xc = x.detach().contiguous(), wc = weight.detach().contiguous();
  Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = ops::empty_out({a.n, a.c_out, a.out_h, a.out_w}, x.dtype(), x.device());
  ops::be(x).conv2d(a, ops::ref(xc), ops::ref(wc), ops::ref(bc), ops::ref(y));  // ref(undefined): null data
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
  record("conv2d", y, {x, weight, bias}, [a, xc, wc, gx, gw, gb](const Tensor& g) -> std::vector<Tensor> {
    Tensor gc = g.contiguous();
    Tensor gin_x = gx ? ops::empty_out(xc.shape(), g.dtype(), g.device()) : Tensor();
    Tensor gin_w = gw ? ops::empty_out(wc.shape(), g.dtype(), g.device()) : Tensor();
    Tensor gin_b = gb ? ops::empty_out({a.c_out}, g.dtype(), g.device()) : Tensor();
    ops::be(gc).conv2d_backward(a, ops::ref(xc), ops::ref(wc), ops::ref(gc), ops::ref(gin_x), ops::ref(gin_w),
                                ops::ref(gin_b));
    return {gin_x, gin_w, gin_b};
  }, {x, weight});
  return y;
}

// ---- conv1d: x (N, C_in, L), weight (C_out, C_in / groups, K) as a conv2d over (N, C_in, 1, L)
Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv1dOptions& o) {
  if (ops::autocast::active()) return ops::autocast::redispatch("conv1d", conv1d, x, weight, bias, o);
  check_float(x, "conv1d", "input");
  check_float(weight, "conv1d", "weight");
  if (x.dim() == 2) return conv1d(x.unsqueeze(0), weight, bias, o).squeeze(0);  // unbatched (C, L)
  if (x.dim() != 3 || weight.dim() != 3)
    ops::fail("conv1d: expected input (N, C_in, L) and weight (C_out, C_in/groups, K), got " + shape_str(x.shape()) +
              " and " + shape_str(weight.shape()));
  Conv2dOptions o2{.stride = {1, o.stride}, .padding = {0, o.padding}, .dilation = {1, o.dilation}, .groups = o.groups};
  return conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, o2).squeeze(2);
}

// ---- pooling: x (N, C, H, W) or (C, H, W)
namespace {

// PyTorch's pooling output size: floor or ceil of (size + 2 pad - k) / stride + 1, where with ceil_mode
// the last window must start inside the input or the left padding.
int64_t pool_out(int64_t size, int64_t k, int64_t pad, int64_t stride, bool ceil_mode) {
  const int64_t span = size + 2 * pad - k;
  int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= size + pad) --out;
  return out;
}

backend::Pool2dArgs pool_args(const Tensor& x, const Pool2dOptions& o, const char* op) {
  check_float(x, op, "input");
  if (x.dim() != 4)
    ops::fail(std::string(op) + ": expected input (N, C, H, W) or (C, H, W), got " + shape_str(x.shape()));
  const auto [kh, kw] = o.kernel_size;
  const auto [sh, sw] = o.stride.value_or(o.kernel_size);
  const auto [ph, pw] = o.padding;
  if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0)
    ops::fail(std::string(op) + ": invalid kernel_size " + pair_str(o.kernel_size) + ", stride " +
              pair_str({sh, sw}) + ", padding " + pair_str(o.padding));
  if (ph > kh / 2 || pw > kw / 2)
    ops::fail(std::string(op) + ": padding " + pair_str(o.padding) + " must be at most half of kernel_size " +
              pair_str(o.kernel_size));
  backend::Pool2dArgs a{};
  a.n = x.size(0);
  a.c = x.size(1);
  a.h = x.size(2);
  a.w = x.size(3);
  a.kh = kh;
  a.kw = kw;
  a.stride_h = sh;
  a.stride_w = sw;
  a.pad_h = ph;
  a.pad_w = pw;
  a.count_include_pad = o.count_include_pad;
  a.dtype = x.dtype();
  if (a.h + 2 * ph < kh || a.w + 2 * pw < kw)
    ops::fail(std::string(op) + ": input " + shape_str(x.shape()) + " with padding " + pair_str(o.padding) +
              " is smaller than kernel_size " + pair_str(o.kernel_size));
  a.out_h = pool_out(a.h, kh, ph, sh, o.ceil_mode);
  a.out_w = pool_out(a.w, kw, pw, sw, o.ceil_mode);
  if (a.out_h < 1 || a.out_w < 1)
    ops::fail(std::string(op) + ": output size is empty for input " + shape_str(x.shape()));
  return a;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& o) {
  if (x.defined() && x.dim() == 3) return max_pool2d(x.unsqueeze(0), o).squeeze(0);
  const backend::Pool2dArgs a = pool_args(x, o, "max_pool2d");
  Tensor xc = x.detach().contiguous();
  Tensor y = ops::empty_out({a.n, a.c, a.out_h, a.out_w}, x.dtype(), x.device());
  Tensor idx = ops::empty_out({a.n, a.c, a.out_h, a.out_w}, kInt64, x.device());
  if (y.numel() > 0) ops::be(x).max_pool2d(a, ops::ref(xc), ops::ref(y), ops::ref(idx));
  record("max_pool2d", y, {x}, [a, idx, x_shape = x.shape()](const Tensor& g) -> std::vector<Tensor> {
    Tensor gc = g.contiguous();
    Tensor gx = ops::empty_out(x_shape, g.dtype(), g.device());
    if (gx.numel() > 0) ops::be(gc).max_pool2d_backward(a, ops::ref(gc), ops::ref(idx), ops::ref(gx));
    return {gx};
  });
  return y;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& o) {
  if (x.defined() && x.dim() == 3) return avg_pool2d(x.unsqueeze(0), o).squeeze(0);
  const backend::Pool2dArgs a = pool_args(x, o, "avg_pool2d");
  Tensor xc = x.detach().contiguous();
  Tensor y = ops::empty_out({a.n, a.c, a.out_h, a.out_w}, x.dtype(), x.device());
  if (y.numel() > 0) ops::be(x).avg_pool2d(a, ops::ref(xc), ops::ref(y));
  record("avg_pool2d", y, {x}, [a, x_shape = x.shape()](const Tensor& g) -> std::vector<Tensor> {
    Tensor gc = g.contiguous();
    Tensor gx = ops::empty_out(x_shape, g.dtype(), g.device());
    if (gx.numel() > 0) ops::be(gc).avg_pool2d_backward(a, ops::ref(gc), ops::ref(gx));
    return {gx};
  });
  return y;
}

}  // namespace attn
