// src/optim/optimizer.cc — Optimizer base: zero_grad, state_dict / load_state_dict.
#include "attn/optim/optimizer.h"

#include <set>
#include <stdexcept>

#include "attn/autograd.h"

namespace attn::optim {

void Optimizer::zero_grad(bool set_to_none) {
  for (size_t g = 0; g < num_param_groups(); ++g)
    for (auto& p : group_params(g)) {
      if (!p.impl()->grad) continue;
      if (set_to_none) {
        p.impl()->grad.reset();
      } else {
        NoGradGuard ng;
        Tensor(p.impl()->grad).zero_();
      }
    }
}

void Optimizer::set_lr(double lr) {
  for (size_t g = 0; g < num_param_groups(); ++g) set_lr(lr, g);
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> out;
  for (size_t g = 0; g < num_param_groups(); ++g)
    for (auto& p : group_params(g)) out.push_back(p);
  return out;
}

Optimizer::ParamState& Optimizer::state(const Tensor& param, const char* who) {
  ParamState& st = state_[param.impl()];
  for (auto& [name, buf] : st.buffers) {
    if (!buf.defined()) continue;
    if (buf.shape() != param.shape())
      throw std::runtime_error(std::string(who) + ": state \"" + name + "\" has shape " + shape_str(buf.shape()) +
                               ", the parameter " + shape_str(param.shape()));
    if (buf.dtype() != param.dtype() || buf.device() != param.device())
      buf = buf.to(param.dtype()).to(param.device()).contiguous();
  }
  return st;
}

const Optimizer::ParamState* Optimizer::state_of(const Tensor& param) const {
  auto it = state_.find(param.impl());
  return it == state_.end() ? nullptr : &it->second;
}

void Optimizer::check_params(const std::vector<Tensor>& params, const char* who) {
  if (params.empty()) throw std::invalid_argument(std::string(who) + ": got an empty parameter list");
  std::set<const TensorImpl*> seen;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    if (!p.defined()) throw std::invalid_argument(std::string(who) + ": parameter " + std::to_string(i) + " is undefined");
    if (!p.is_leaf())
      throw std::invalid_argument(std::string(who) + ": parameter " + std::to_string(i) +
                                  " is not a leaf tensor (can't optimize a non-leaf Tensor)");
    if (!is_floating(p.dtype()))
      throw std::invalid_argument(std::string(who) + ": parameter " + std::to_string(i) + " has dtype " +
                                  dtype_name(p.dtype()) + ", expected floating point");
    if (!seen.insert(p.impl()).second)
      throw std::invalid_argument(std::string(who) + ": parameter " + std::to_string(i) +
                                  " appears more than once in the list");
  }
}

std::map<std::string, Tensor> Optimizer::state_dict() const {
  std::map<std::string, Tensor> out;
  int64_t index = 0;
  for (size_t g = 0; g < num_param_groups(); ++g) {
    std::string gp = "param_groups." + std::to_string(g) + ".";
    const_cast<Optimizer*>(this)->visit_group_options(g, [&](const std::string& name, double* d, bool* b) {
      out[gp + name] = scalar_tensor(d ? *d : (*b ? 1.0 : 0.0), {.dtype = kFloat64});
    });
    std::vector<int64_t> idx;
    for (auto& p : group_params(g)) {
      auto it = state_.find(p.impl());
      if (it != state_.end()) {
        std::string sp = "state." + std::to_string(index) + ".";
        out[sp + "step"] = scalar_tensor(double(it->second.step), {.dtype = kFloat32});
        for (auto& [name, t] : it->second.buffers)
          if (t.defined()) out[sp + name] = t.detach();
      }
      idx.push_back(index++);
    }
    out[gp + "params"] = from_vector<int64_t>(idx, {int64_t(idx.size())});
  }
  return out;
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& sd) {
  auto need = [&](const std::string& key) -> const Tensor& {
    auto it = sd.find(key);
    if (it == sd.end() || !it->second.defined())
      throw std::invalid_argument("Optimizer::load_state_dict: missing key \"" + key + "\"");
    return it->second;
  };
  // Validate the group structure before changing anything.
  size_t groups = 0;
  while (sd.count("param_groups." + std::to_string(groups) + ".params")) ++groups;
  if (groups != num_param_groups())
    throw std::invalid_argument("Optimizer::load_state_dict: the state dict has " + std::to_string(groups) +
                                " parameter groups, the optimizer has " + std::to_string(num_param_groups()));
  std::set<std::string> known;
  int64_t index = 0;
  for (size_t g = 0; g < groups; ++g) {
    std::string key = "param_groups." + std::to_string(g) + ".params";
    const Tensor& idx = need(key);
    known.insert(key);
    if (idx.numel() != int64_t(group_params(g).size()))
      throw std::invalid_argument("Optimizer::load_state_dict: \"" + key + "\" lists " + std::to_string(idx.numel()) +
                                  " parameters, the optimizer's group " + std::to_string(g) + " has " +
                                  std::to_string(group_params(g).size()));
    visit_group_options(g, [&](const std::string& name, double*, bool*) {
      need("param_groups." + std::to_string(g) + "." + name);
      known.insert("param_groups." + std::to_string(g) + "." + name);
    });
    for (auto& p : group_params(g)) {
      std::string sp = "state." + std::to_string(index++) + ".";
      for (auto it = sd.lower_bound(sp); it != sd.end() && it->first.compare(0, sp.size(), sp) == 0; ++it) {
        known.insert(it->first);
        std::string name = it->first.substr(sp.size());
        if (name == "step") {
          if (it->second.numel() != 1)
            throw std::invalid_argument("Optimizer::load_state_dict: \"" + it->first + "\" has shape " +
                                        shape_str(it->second.shape()) + ", expected a single value");
        } else if (it->second.shape() != p.shape()) {
          throw std::invalid_argument("Optimizer::load_state_dict: \"" + it->first + "\" has shape " +
                                      shape_str(it->second.shape()) + ", the parameter has shape " +
                                      shape_str(p.shape()));
        }
      }
    }
  }
  for (auto& [k, v] : sd)
    if (!known.count(k)) throw std::invalid_argument("Optimizer::load_state_dict: unexpected key \"" + k + "\"");

  // Apply.
  NoGradGuard ng;
  index = 0;
  for (size_t g = 0; g < groups; ++g) {
    visit_group_options(g, [&](const std::string& name, double* d, bool* b) {
      double v = sd.at("param_groups." + std::to_string(g) + "." + name).item();
      if (d) *d = v;
      else *b = v != 0.0;
    });
    for (auto& p : group_params(g)) {
      std::string sp = "state." + std::to_string(index++) + ".";
      state_.erase(p.impl());
      auto first = sd.lower_bound(sp);
      if (first == sd.end() || first->first.compare(0, sp.size(), sp) != 0) continue;
      ParamState& st = state_[p.impl()];
      for (auto it = first; it != sd.end() && it->first.compare(0, sp.size(), sp) == 0; ++it) {
        std::string name = it->first.substr(sp.size());
        if (name == "step") {
          st.step = int64_t(it->second.item());
        } else {
          Tensor t = empty(p.shape(), {.dtype = p.dtype(), .device = p.device()});
          t.copy_(it->second);  // owns its memory, the parameter's dtype and device
          st.buffers[name] = t;
        }
      }
    }
  }
}

}  // namespace attn::optim
