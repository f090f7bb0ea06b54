// src/optim/adam.cc — torch.optim.Adam / AdamW through the backend's fused adam_step.
#include "attn/optim/adam.h"

#include <stdexcept>

#include "attn/autograd.h"
#include "backend/backend.h"

namespace attn::optim {

namespace {

struct Hyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, decoupled;
};

template <typename O> Hyper hyper(const O& o, bool decoupled) {
  return {o.lr, o.betas.first, o.betas.second, o.eps, o.weight_decay, o.amsgrad, decoupled};
}

template <typename O> void check(const O& o, const char* who) {
  auto bad = [&](const std::string& what, double v) {
    throw std::invalid_argument(std::string(who) + ": invalid " + what + " " + std::to_string(v));
  };
  if (o.lr < 0) bad("learning rate", o.lr);
  if (o.eps < 0) bad("epsilon value", o.eps);
  if (o.betas.first < 0 || o.betas.first >= 1) bad("beta parameter at index 0:", o.betas.first);
  if (o.betas.second < 0 || o.betas.second >= 1) bad("beta parameter at index 1:", o.betas.second);
  if (o.weight_decay < 0) bad("weight_decay value", o.weight_decay);
}

void adam_update(const char* who, const Tensor& p, Optimizer::ParamState& st, const Hyper& h) {
  Tensor grad(p.impl()->grad);
  if (grad.shape() != p.shape())
    throw std::runtime_error(std::string(who) + ": gradient shape " + shape_str(grad.shape()) +
                             " != parameter shape " + shape_str(p.shape()));
  if (!p.is_contiguous())
    throw std::runtime_error(std::string(who) + ": parameters must be contiguous, got strides " +
                             shape_str(p.strides()) + " for shape " + shape_str(p.shape()));
  if (grad.dtype() != p.dtype()) grad = grad.to(p.dtype());
  grad = grad.contiguous();
  Tensor& m = st.buffers["exp_avg"];
  Tensor& v = st.buffers["exp_avg_sq"];
  if (!m.defined()) m = zeros_like(p);
  if (!v.defined()) v = zeros_like(p);
  Tensor vmax;
  if (h.amsgrad) {
    Tensor& vm = st.buffers["max_exp_avg_sq"];
    if (!vm.defined()) vm = zeros_like(p);
    vmax = vm;
  }
  st.step += 1;
  backend::AdamArgs args{.lr = h.lr, .beta1 = h.beta1, .beta2 = h.beta2, .eps = h.eps,
                         .weight_decay = h.weight_decay, .decoupled_weight_decay = h.decoupled,
                         .amsgrad = h.amsgrad, .step = st.step};
  backend::TensorRef none{};
  none.dtype = p.dtype();
  backend::backend_for(p.device())
      .adam_step(args, backend::ref(p), backend::ref(grad), backend::ref(m), backend::ref(v),
                 vmax.defined() ? backend::ref(vmax) : none);
  p.bump_version();
  m.bump_version();
  v.bump_version();
  if (vmax.defined()) vmax.bump_version();
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options) { add_param_group({std::move(params), options}); }
Adam::Adam(std::vector<ParamGroup> groups) {
  if (groups.empty()) throw std::invalid_argument("Adam: got no parameter groups");
  for (auto& g : groups) add_param_group(std::move(g));
}
void Adam::validate(const AdamOptions& o) const { check(o, "Adam"); }
void Adam::step() {
  NoGradGuard ng;
  for (auto& group : groups_)
    for (auto& p : group.params)
      if (p.impl()->grad) adam_update("Adam", p, state(p, "Adam"), hyper(group.options, false));
}

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options) { add_param_group({std::move(params), options}); }
AdamW::AdamW(std::vector<ParamGroup> groups) {
  if (groups.empty()) throw std::invalid_argument("AdamW: got no parameter groups");
  for (auto& g : groups) add_param_group(std::move(g));
}
void AdamW::validate(const AdamWOptions& o) const { check(o, "AdamW"); }
void AdamW::step() {
  NoGradGuard ng;
  for (auto& group : groups_)
    for (auto& p : group.params)
      if (p.impl()->grad) adam_update("AdamW", p, state(p, "AdamW"), hyper(group.options, true));
}

}  // namespace attn::optim
