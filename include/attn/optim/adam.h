// attn/optim/adam.h — Adam and AdamW (torch.optim.Adam / AdamW, single-tensor update rule), run by the
// backend's fused adam_step kernel.
//
//   optim::Adam adam(model->parameters(), {.lr = 1e-3});
//   optim::AdamW adamw(model->parameters(), {.lr = 3e-4, .betas = {0.9, 0.95}, .weight_decay = 0.1});
//
// Per parameter, at step t: Adam adds weight_decay * p to the gradient; AdamW instead scales
// p *= 1 - lr * weight_decay. m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2 (amsgrad: vmax = max(vmax, v));
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// State: "exp_avg", "exp_avg_sq" and with amsgrad "max_exp_avg_sq".
#pragma once
#include <utility>

#include "attn/optim/optimizer.h"

namespace attn::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::pair<double, double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  template <typename F> void visit(F&& f) {
    f("lr", lr), f("beta1", betas.first), f("beta2", betas.second), f("eps", eps);
    f("weight_decay", weight_decay), f("amsgrad", amsgrad);
  }
};

// AdamW's defaults differ only in weight_decay (1e-2).
struct AdamWOptions {
  double lr = 1e-3;
  std::pair<double, double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  template <typename F> void visit(F&& f) {
    f("lr", lr), f("beta1", betas.first), f("beta2", betas.second), f("eps", eps);
    f("weight_decay", weight_decay), f("amsgrad", amsgrad);
  }
};

class Adam : public OptimizerWithOptions<AdamOptions> {
 public:
  Adam(std::vector<Tensor> params, AdamOptions options = {});
  explicit Adam(std::vector<ParamGroup> groups);
  void step() override;

 protected:
  void validate(const AdamOptions& o) const override;
};

class AdamW : public OptimizerWithOptions<AdamWOptions> {
 public:
  AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  explicit AdamW(std::vector<ParamGroup> groups);
  void step() override;

 protected:
  void validate(const AdamWOptions& o) const override;
};

}  // namespace attn::optim
