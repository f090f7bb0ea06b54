// src/ops/conv_max_over_time.cc — conv1d_max_over_time: a Kim text CNN's convolutions, ReLU and max over
// time in one op (same values and gradients as the composite below, PyTorch's formulation).
//
//   Tensor e = embedding->forward(ids);                                  // (B, T, E)
//   Tensor pooled = attn::conv1d_max_over_time(e, {w3, w4, w5}, {b3, b4, b5});   // (B, F3 + F4 + F5)
//
// The fast path (float32 / float64 CPU tensors; kernels in backend/cpu/conv_max_over_time.cc) reads the
// channels-last input directly (no transpose), shares one im2col among the widths, and its backward
// touches only the steps each max came from. Other dtypes and autocast run the composite.
#include <algorithm>
#include <memory>
#include <string>

#include "backend/cpu/conv_max_over_time.h"
#include "ops/autocast.h"
#include "ops/op_utils.h"

namespace attn {

using autograd::record;

namespace {

// cat_i amax_t relu(conv1d(x^T, w_i, b_i)): the definition, and the path for what the kernels do not take.
Tensor composite(const Tensor& x, const std::vector<Tensor>& weights, const std::vector<Tensor>& biases) {
  Tensor xt = x.transpose(1, 2);  // (B, E, T)
  std::vector<Tensor> pooled;
  for (size_t i = 0; i < weights.size(); ++i)
    pooled.push_back(amax(relu(conv1d(xt, weights[i], biases.empty() ? Tensor() : biases[i])), {2}));
  return cat(pooled, 1);
}

cpu::MaxOverTimeShape check_shapes(const Tensor& x, const std::vector<Tensor>& weights,
                                   const std::vector<Tensor>& biases) {
  ops::check_defined(x, "conv1d_max_over_time", "input");
  if (x.dim() != 3) ops::fail("conv1d_max_over_time: input must be (B, T, E), got " + shape_str(x.shape()));
  if (weights.empty()) ops::fail("conv1d_max_over_time: no weights");
  if (!biases.empty() && biases.size() != weights.size())
    ops::fail("conv1d_max_over_time: " + std::to_string(weights.size()) + " weights but " +
              std::to_string(biases.size()) + " biases");
  cpu::MaxOverTimeShape s{.batch = x.size(0), .time = x.size(1), .channels = x.size(2), .widths = {}, .filters = {}};
  for (size_t i = 0; i < weights.size(); ++i) {
    const Tensor& w = weights[i];
    ops::check_defined(w, "conv1d_max_over_time", "weight");
    if (w.dim() != 3 || w.size(1) != s.channels || w.size(0) < 1 || w.size(2) < 1)
      ops::fail("conv1d_max_over_time: weight " + std::to_string(i) + " " + shape_str(w.shape()) +
                " must be (F, E, k) with E = " + std::to_string(s.channels) + " (input " + shape_str(x.shape()) + ")");
    if (w.size(2) > s.time)
      ops::fail("conv1d_max_over_time: input " + shape_str(x.shape()) + " is shorter than kernel width " +
                std::to_string(w.size(2)));
    if (w.dtype() != x.dtype())
      ops::fail(std::string("conv1d_max_over_time: input is ") + dtype_name(x.dtype()) + " but weight " +
                std::to_string(i) + " is " + dtype_name(w.dtype()));
    ops::check_same_device(x, w, "conv1d_max_over_time");
    if (!biases.empty() && biases[i].defined() &&
        (biases[i].dim() != 1 || biases[i].size(0) != w.size(0) || biases[i].dtype() != x.dtype()))
      ops::fail("conv1d_max_over_time: bias " + std::to_string(i) + " " + shape_str(biases[i].shape()) + " (" +
                dtype_name(biases[i].dtype()) + ") does not match weight " + shape_str(w.shape()));
    s.widths.push_back(w.size(2));
    s.filters.push_back(w.size(0));
  }
  return s;
}

template <typename T> std::vector<const T*> const_ptrs(const std::vector<Tensor>& ts) {
  std::vector<const T*> p;
  for (const Tensor& t : ts) p.push_back(t.defined() ? t.data_ptr<T>() : nullptr);
  return p;
}

template <typename T> std::vector<T*> ptrs(const std::vector<Tensor>& ts) {
  std::vector<T*> p;
  for (const Tensor& t : ts) p.push_back(t.defined() ? t.data_ptr<T>() : nullptr);
  return p;
}

template <typename T>
Tensor fast(const Tensor& x, const std::vector<Tensor>& weights, const std::vector<Tensor>& biases,
            const cpu::MaxOverTimeShape& s) {
  const size_t n = weights.size();
  Tensor xc = x.detach().contiguous();
  std::vector<Tensor> packed(n), bc(n);  // packed (F, k, E): a filter is one run over a window
  for (size_t i = 0; i < n; ++i) {
    packed[i] = weights[i].detach().transpose(1, 2).contiguous();
    if (!biases.empty() && biases[i].defined()) bc[i] = biases[i].detach().contiguous();
  }
  Tensor out = ops::empty_out({s.batch, s.total_filters()}, x.dtype(), x.device());
  auto picks = std::make_shared<cpu::MaxOverTimePicks>();
  cpu::conv1d_max_over_time<T>(s, xc.data_ptr<T>(), const_ptrs<T>(packed), const_ptrs<T>(bc), out.data_ptr<T>(),
                               *picks);
  std::vector<Tensor> inputs = {x};
  for (size_t i = 0; i < n; ++i) inputs.push_back(weights[i]);
  for (size_t i = 0; i < n; ++i) inputs.push_back(biases.empty() ? Tensor() : biases[i]);
  std::vector<bool> want(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) want[i] = inputs[i].defined() && inputs[i].requires_grad();
  record("conv1d_max_over_time", out, inputs, [s, xc, packed, picks, want, n](const Tensor& g) {
    Tensor gc = g.contiguous();
    std::vector<Tensor> grads(1 + 2 * n), gw_packed(n);
    if (want[0]) grads[0] = ops::empty_out(xc.shape(), xc.dtype(), xc.device());
    bool any_w = false, any_b = false;
    for (size_t i = 0; i < n; ++i) {
      if (want[1 + i]) gw_packed[i] = ops::empty_out(packed[i].shape(), xc.dtype(), xc.device()), any_w = true;
      if (want[1 + n + i]) grads[1 + n + i] = ops::empty_out({s.filters[i]}, xc.dtype(), xc.device()), any_b = true;
    }
    std::vector<Tensor> gb(grads.begin() + 1 + std::ptrdiff_t(n), grads.end());
    cpu::conv1d_max_over_time_backward<T>(s, xc.data_ptr<T>(), const_ptrs<T>(packed), *picks, gc.data_ptr<T>(),
                                          want[0] ? grads[0].data_ptr<T>() : nullptr,
                                          any_w ? ptrs<T>(gw_packed) : std::vector<T*>{},
                                          any_b ? ptrs<T>(gb) : std::vector<T*>{});
    for (size_t i = 0; i < n; ++i)
      if (want[1 + i]) grads[1 + i] = gw_packed[i].transpose(1, 2).contiguous();  // back to (F, E, k)
    return grads;
  }, {x});
  return out;
}

}  // namespace

Tensor conv1d_max_over_time(const Tensor& x, const std::vector<Tensor>& weights, const std::vector<Tensor>& biases) {
  const cpu::MaxOverTimeShape s = check_shapes(x, weights, biases);
  const bool fast_dtype = x.dtype() == kFloat32 || x.dtype() == kFloat64;
  if (ops::autocast::active() || !fast_dtype || x.device() != kCPU || s.batch == 0)
    return composite(x, weights, biases);
  return x.dtype() == kFloat32 ? fast<float>(x, weights, biases, s) : fast<double>(x, weights, biases, s);
}

}  // namespace attn
