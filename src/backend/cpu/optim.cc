// src/backend/cpu/optim.cc — the fused Adam/AdamW step: one pass over param, grad, exp_avg, exp_avg_sq
// (and max_exp_avg_sq with amsgrad) doing, per element and in PyTorch's order and precision,
// torch.optim.Adam's _single_tensor_adam (foreach=False):
//   grad += wd * param (Adam) | param *= 1 - lr * wd (AdamW)
//   exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * grad * grad
//   denom = sqrt(exp_avg_sq or max_exp_avg_sq) / sqrt(1 - beta2^step) + eps
//   param += -(lr / (1 - beta1^step)) * exp_avg / denom
// Scalars are computed in double (as Python does) and rounded to T, like PyTorch's scalar arguments.
// Oracle: ref::adam_step (reference.cc), which runs the same ops one full pass at a time. The loop is in
// optim_loop.inc, built here for any x86-64 and in optim_avx512.cc / optim_avx2.cc: the baseline build
// is not vectorised at all (scalar sqrtss / divss), and Adam was 10-13 % of mlp_train_step.
#include <cmath>
#include <limits>

#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"

#define ATTN_OPTIM_NS generic
#include "backend/cpu/optim_loop.inc"
#undef ATTN_OPTIM_NS

namespace attn::cpu {

namespace avx512 {
template <typename T>
void adam_step(const backend::AdamArgs& a, T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
               int64_t n);
}
namespace avx2 {
template <typename T>
void adam_step(const backend::AdamArgs& a, T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
               int64_t n);
}

template <typename T>
void adam_step(const backend::AdamArgs& a, T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq,
               int64_t n) {
  switch (active_isa()) {
    case Isa::Avx512: return avx512::adam_step(a, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n);
    case Isa::Avx2: return avx2::adam_step(a, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n);
    case Isa::Reference: break;
  }
  generic::adam_step(a, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n);
}

template void adam_step<float>(const backend::AdamArgs&, float*, const float*, float*, float*, float*, int64_t);
template void adam_step<double>(const backend::AdamArgs&, double*, const double*, double*, double*, double*,
                                int64_t);

}  // namespace attn::cpu
