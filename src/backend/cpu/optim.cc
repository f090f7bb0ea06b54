// src/backend/cpu/optim.cc — the fused Adam/AdamW step: one pass over param, grad, exp_avg, exp_avg_sq
// (and max_exp_avg_sq with amsgrad) doing, per element and in PyTorch's order and precision,
// torch.optim.Adam's _single_tensor_adam (foreach=False):
//   grad += wd * param (Adam) | param *= 1 - lr * wd (AdamW)
//   exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * grad * grad
//   denom = sqrt(exp_avg_sq or max_exp_avg_sq) / sqrt(1 - beta2^step) + eps
//   param += -(lr / (1 - beta1^step)) * exp_avg / denom
// Scalars are computed in double (as Python does) and rounded to T, like PyTorch's scalar arguments.
// Oracle: ref::adam_step (reference.cc), which runs the same ops one full pass at a time.
#include <cmath>
#include <limits>

#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"

namespace attn::cpu {

namespace {
template <typename T, bool kDecay, bool kDecoupled, bool kAmsgrad>
void adam_loop(const backend::AdamArgs& a, T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
               int64_t n) {
  const T decay = T(1.0 - a.lr * a.weight_decay);
  const T wd = T(a.weight_decay);
  const T w1 = T(1.0 - a.beta1);
  const bool small_w1 = w1 < T(0.5);
  const T b2 = T(a.beta2), w2 = T(1.0 - a.beta2);
  const double step = double(a.step);
  const double bias_correction1 = 1.0 - std::pow(a.beta1, step);
  const double bias_correction2 = 1.0 - std::pow(a.beta2, step);
  const T neg_step = T(-(a.lr / bias_correction1));
  const T bc2_sqrt = T(std::pow(bias_correction2, 0.5));
  const T eps = T(a.eps);
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    T p = param[i];
    T g = grad[i];
    if constexpr (kDecay) {
      if constexpr (kDecoupled) p = p * decay;
      else g = g + wd * p;
    }
    const T s = exp_avg[i];
    const T m = small_w1 ? s + w1 * (g - s) : g - (g - s) * (T(1) - w1);
    exp_avg[i] = m;
    T v = exp_avg_sq[i] * b2;
    v = v + w2 * g * g;
    exp_avg_sq[i] = v;
    if constexpr (kAmsgrad) {
      const T old = max_exp_avg_sq[i];
      v = (old != old || v != v) ? std::numeric_limits<T>::quiet_NaN() : (old > v ? old : v);
      max_exp_avg_sq[i] = v;
    }
    const T denom = std::sqrt(v) / bc2_sqrt + eps;
    param[i] = p + neg_step * m / denom;
  }
}

template <typename T, bool kDecay, bool kDecoupled>
void adam_amsgrad(const backend::AdamArgs& a, T* p, const T* g, T* m, T* v, T* vm, int64_t n) {
  if (a.amsgrad) adam_loop<T, kDecay, kDecoupled, true>(a, p, g, m, v, vm, n);
  else adam_loop<T, kDecay, kDecoupled, false>(a, p, g, m, v, vm, n);
}
}  // namespace

template <typename T>
void adam_step(const backend::AdamArgs& a, T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
               int64_t n) {
  if (n <= 0) return;
  if (a.weight_decay == 0.0) adam_amsgrad<T, false, false>(a, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n);
  else if (a.decoupled_weight_decay)
    adam_amsgrad<T, true, true>(a, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n);
  else adam_amsgrad<T, true, false>(a, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n);
}

template void adam_step<float>(const backend::AdamArgs&, float*, const float*, float*, float*, float*, int64_t);
template void adam_step<double>(const backend::AdamArgs&, double*, const double*, double*, double*, double*,
                                int64_t);

}  // namespace attn::cpu
