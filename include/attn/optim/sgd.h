// attn/optim/sgd.h — stochastic gradient descent with momentum (torch.optim.SGD, same update rule).
//
//   optim::SGD opt(model->parameters(), {.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
//   opt.zero_grad(); loss.backward(); opt.step();
//
// Per parameter: g = grad + weight_decay * p; with momentum, buf = g on the first step and
// buf = momentum * buf + (1 - dampening) * g afterwards; g = nesterov ? g + momentum * buf : buf;
// p -= lr * g. State: "momentum_buffer".
#pragma once
#include <type_traits>

#include "attn/optim/optimizer.h"

namespace attn::optim {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
  template <typename F> void visit(F&& f) {
    f("lr", lr), f("momentum", momentum), f("dampening", dampening), f("weight_decay", weight_decay);
    f("nesterov", nesterov), f("maximize", maximize);
  }
};

class SGD : public OptimizerWithOptions<SGDOptions> {
 public:
  SGD(std::vector<Tensor> params, SGDOptions options);
  explicit SGD(std::vector<ParamGroup> groups);
  void step() override;

 protected:
  void validate(const SGDOptions& o) const override;
};

}  // namespace attn::optim
