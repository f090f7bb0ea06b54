// src/optim/sgd.cc — torch.optim.SGD (_single_tensor_sgd).
#include "attn/optim/sgd.h"

#include <stdexcept>

#include "attn/autograd.h"
#include "attn/ops.h"

namespace attn::optim {

SGD::SGD(std::vector<Tensor> params, SGDOptions options) {
  add_param_group({std::move(params), options});
}

SGD::SGD(std::vector<ParamGroup> groups) {
  if (groups.empty()) throw std::invalid_argument("SGD: got no parameter groups");
  for (auto& g : groups) add_param_group(std::move(g));
}

void SGD::validate(const SGDOptions& o) const {
  if (o.lr < 0) throw std::invalid_argument("SGD: invalid learning rate " + std::to_string(o.lr));
  if (o.momentum < 0) throw std::invalid_argument("SGD: invalid momentum " + std::to_string(o.momentum));
  if (o.weight_decay < 0) throw std::invalid_argument("SGD: invalid weight_decay " + std::to_string(o.weight_decay));
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
    throw std::invalid_argument("SGD: nesterov momentum requires a momentum and zero dampening");
}

void SGD::step() {
  NoGradGuard ng;
  for (auto& group : groups_) {
    const SGDOptions& o = group.options;
    for (auto& p : group.params) {
      if (!p.impl()->grad) continue;
      Tensor g(p.impl()->grad);
      if (g.shape() != p.shape())
        throw std::runtime_error("SGD: gradient shape " + shape_str(g.shape()) + " != parameter shape " +
                                 shape_str(p.shape()));
      if (o.maximize) g = neg(g);
      if (o.weight_decay != 0) g = add(g, p, o.weight_decay);
      ParamState& st = state(p, "SGD");
      st.step += 1;
      if (o.momentum != 0) {
        Tensor& buf = st.buffers["momentum_buffer"];
        if (!buf.defined()) {
          buf = g.clone();
        } else {
          buf.mul_(o.momentum);
          buf.add_(g, 1.0 - o.dampening);
        }
        g = o.nesterov ? add(g, buf, o.momentum) : buf;
      }
      Tensor(p).add_(g, -o.lr);
    }
  }
}

}  // namespace attn::optim
