// src/nn/utils.cc — gradient clipping.
#include "attn/nn/utils.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "attn/autograd.h"
#include "attn/ops.h"

namespace attn::nn::utils {

double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  if (!(norm_type > 0)) throw std::invalid_argument("clip_grad_norm_: norm_type must be positive, got " +
                                                    std::to_string(norm_type));
  NoGradGuard ng;
  std::vector<Tensor> grads;
  for (auto& p : parameters)
    if (p.defined() && p.impl()->grad) grads.emplace_back(p.impl()->grad);
  if (grads.empty()) return 0.0;
  // Per-tensor partial norms in the gradient's dtype (the reductions accumulate in float64), folded
  // on the device in float64 in parameter order, as the host loop did: one sync at the end, not one
  // per parameter.
  Tensor acc;  // float64 scalar
  for (auto& g : grads) {
    if (g.numel() == 0) continue;
    Tensor v;
    if (std::isinf(norm_type)) v = amax(abs(g));
    else if (norm_type == 2.0) v = sum(square(g));
    else if (norm_type == 1.0) v = sum(abs(g));
    else v = sum(pow(abs(g), norm_type));
    v = v.to(kFloat64);
    if (acc.defined() && v.device() != acc.device()) v = v.to(acc.device());
    if (!acc.defined()) acc = v;  // 0 + v == v and max(0, v) == v for v >= 0 or NaN
    else if (std::isinf(norm_type)) acc = where(logical_or(ne(v, v), gt(v, acc)), v, acc);  // NaN propagates
    else acc = add(acc, v);
  }
  double total = acc.defined() ? acc.item() : 0.0;
  if (!std::isinf(norm_type)) total = norm_type == 1.0 ? total : std::pow(total, 1.0 / norm_type);
  if (error_if_nonfinite && !std::isfinite(total))
    throw std::runtime_error("clip_grad_norm_: the total norm of order " + std::to_string(norm_type) +
                             " for gradients from `parameters` is non-finite, so it cannot be clipped");
  double coef = max_norm / (total + 1e-6);
  if (coef < 1.0)
    for (auto& g : grads) g.mul_(coef);
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value) {
  if (clip_value < 0) throw std::invalid_argument("clip_grad_value_: clip_value must be >= 0");
  NoGradGuard ng;
  for (auto& p : parameters)
    if (p.defined() && p.impl()->grad) Tensor(p.impl()->grad).clamp_(-clip_value, clip_value);
}

}  // namespace attn::nn::utils
