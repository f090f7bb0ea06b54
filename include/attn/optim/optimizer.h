// attn/optim/optimizer.h — the Optimizer base: parameter groups, per-parameter state, checkpoints.
//
//   optim::AdamW opt(model->parameters(), {.lr = 3e-4, .weight_decay = 0.1});
//   for (...) {
//     opt.zero_grad();                       // grads -> none
//     loss.backward();
//     opt.step();
//   }
//   auto sd = opt.state_dict();              // "state.0.exp_avg", "state.0.step", "param_groups.0.lr", ...
//   opt.load_state_dict(sd);                 // same parameters, same groups: resumes exactly
//
//   // groups with their own options (other fields copy the defaults you spell out):
//   optim::SGD sgd({{.params = body->parameters(), .options = {.lr = 0.01, .momentum = 0.9}},
//                   {.params = head->parameters(), .options = {.lr = 0.1, .momentum = 0.9}}});
//
// State dict layout (all values tensors): per parameter i (counted across groups in order)
// "state.<i>.<buffer>" and "state.<i>.step" (0-d float32, like PyTorch); per group g
// "param_groups.<g>.<option>" (0-d float64; booleans as 0/1) and "param_groups.<g>.params" (int64 indices).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "attn/tensor.h"

namespace attn::optim {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  // set_to_none = true drops the gradients (PyTorch's default); false fills them with zeros.
  void zero_grad(bool set_to_none = true);

  // ---- groups, through a type-independent interface (used by LR schedulers)
  virtual size_t num_param_groups() const = 0;
  virtual const std::vector<Tensor>& group_params(size_t group) const = 0;
  virtual double get_lr(size_t group = 0) const = 0;
  virtual void set_lr(double lr, size_t group) = 0;
  void set_lr(double lr);  // every group
  std::vector<Tensor> parameters() const;  // all groups, in order

  // ---- checkpoints
  std::map<std::string, Tensor> state_dict() const;
  // Throws (naming the key and shapes) when the groups, parameter counts or state shapes don't match.
  void load_state_dict(const std::map<std::string, Tensor>& state);

  // ---- per-parameter state: named buffers plus a step count
  struct ParamState {
    int64_t step = 0;
    std::map<std::string, Tensor> buffers;
  };
  const ParamState* state_of(const Tensor& param) const;  // null before its first step

 protected:
  // The state of `param`, its buffers in the parameter's dtype and device: buffers made before the
  // model moved (Module::to) are converted, like PyTorch's load_state_dict casts loaded state; a buffer
  // whose shape no longer matches throws, naming `who`, the buffer and both shapes.
  ParamState& state(const Tensor& param, const char* who = "optimizer");
  // Calls fn(name, double*, bool*) for each option of group g (exactly one pointer set).
  using HParamFn = std::function<void(const std::string& name, double* d, bool* b)>;
  virtual void visit_group_options(size_t group, const HParamFn& fn) = 0;
  // Checks each group's options; throws std::invalid_argument.
  static void check_params(const std::vector<Tensor>& params, const char* who);

 private:
  std::unordered_map<const TensorImpl*, ParamState> state_;
};

// Typed parameter groups: Options is an aggregate with a `visit(f)` that calls f(name, field) for
// every field (double or bool).
template <typename Options>
class OptimizerWithOptions : public Optimizer {
 public:
  struct ParamGroup {
    std::vector<Tensor> params;
    Options options;
  };

  size_t num_param_groups() const override { return groups_.size(); }
  const std::vector<Tensor>& group_params(size_t g) const override { return groups_.at(g).params; }
  double get_lr(size_t g = 0) const override { return groups_.at(g).options.lr; }
  void set_lr(double lr, size_t g) override { groups_.at(g).options.lr = lr; }
  using Optimizer::set_lr;

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  void add_param_group(ParamGroup group) {
    check_params(group.params, "add_param_group");
    for (auto& p : group.params)
      for (auto& g : groups_)
        for (auto& q : g.params)
          if (q.is_same(p))
            throw std::invalid_argument("add_param_group: some parameters appear in more than one parameter group");
    validate(group.options);
    groups_.push_back(std::move(group));
  }

 protected:
  virtual void validate(const Options& o) const = 0;
  void visit_group_options(size_t g, const HParamFn& fn) override {
    groups_.at(g).options.visit([&](const char* name, auto& field) {
      if constexpr (std::is_same_v<std::decay_t<decltype(field)>, bool>)
        fn(name, nullptr, &field);
      else
        fn(name, &field, nullptr);
    });
  }
  std::vector<ParamGroup> groups_;
};

}  // namespace attn::optim
