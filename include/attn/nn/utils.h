// attn/nn/utils.h — gradient clipping (torch.nn.utils.clip_grad_norm_ / clip_grad_value_).
//
//   loss.backward();
//   double norm = nn::utils::clip_grad_norm_(model->parameters(), /*max_norm=*/1.0);   // pre-clip norm
//   opt.step();
#pragma once
#include <limits>
#include <vector>

#include "attn/tensor.h"

namespace attn::nn::utils {

inline constexpr double kInfNorm = std::numeric_limits<double>::infinity();

// Scales all gradients (in place) so that their joint norm is at most max_norm: each grad is
// multiplied by min(1, max_norm / (total_norm + 1e-6)). Returns the total norm before clipping
// (reductions accumulate in float64). norm_type may be kInfNorm. Parameters without a grad are skipped; with none
// at all it returns 0. error_if_nonfinite: throw if the total norm is nan or inf.
double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
// Clamps every gradient element into [-clip_value, clip_value].
void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value);

}  // namespace attn::nn::utils
