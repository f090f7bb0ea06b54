// attn/nn/module.h — the Module base class, Sequential and ModuleList (PyTorch's torch.nn.Module).
//
//   struct Net : attn::nn::Module {
//     std::shared_ptr<nn::Linear> fc1 = register_module("fc1", nn::Linear(784, 128));
//     std::shared_ptr<nn::Linear> fc2 = register_module("fc2", nn::Linear(128, 10));
//     Tensor forward(const Tensor& x) override { return fc2->forward(attn::relu(fc1->forward(x))); }
//   };
//   auto net = std::make_shared<Net>();
//   Tensor logits = (*net)(x);                                  // (B, 10)
//   attn::io::save_safetensors("net.safetensors", net->state_dict());   // "fc1.weight", "fc1.bias", ...
//   net->load_state_dict(attn::io::load_safetensors("net.safetensors"));
//
//   auto mlp = std::make_shared<nn::Sequential>(nn::Linear(784, 128), nn::ReLU(), nn::Linear(128, 10));
//   mlp->at<nn::Linear>(0)->weight;                             // children are named "0", "1", "2"
//
// Modules with several inputs or outputs follow one pattern (MultiheadAttention and the decoder layers in
// nn/transformer.h, RNN/LSTM/GRU in nn/rnn.h; new ones such as the Hugging Face models follow it too):
//   - one typed, non-virtual forward overload per call form: tensors as const Tensor&, optional inputs
//     (masks, flags) in an options struct filled with designated initialisers;
//   - several outputs come back as a small named struct (an aggregate, so structured bindings work),
//     never a std::pair or std::tuple: the fields say what each output is;
//   - state carried from call to call (a recurrent state, a key/value cache) is a struct the caller owns
//     and passes in (by reference when the module updates it), so one module serves many sequences;
//   - the virtual forward(const Tensor&) (what Sequential and operator() call) stays where a
//     single-input form makes sense, returning the main output.
//
//   struct AttentionOutput { Tensor output; Tensor weights; };                        // nn/transformer.h
//   AttentionOutput MultiheadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
//                                               const AttentionForwardOptions& o = {});
//   Tensor MultiheadAttention::forward(const Tensor& x) override;                     // self-attention output
//   auto [out, weights] = mha->forward(q, k, v, {.key_padding_mask = pad});
//   Tensor y_t = mha->forward_step(x_t, cache);                                       // nn::KVCache cache;
//   // recurrent modules, PyTorch's (output, h_n) / (output, (h_n, c_n)):     // nn/rnn.h
//   struct LSTMState { Tensor h; Tensor c; };
//   struct LSTMOutput { Tensor output; LSTMState state; };
//   LSTMOutput LSTM::forward(const Tensor& input, const LSTMState& state);         // {} = zeros
//   auto [y, state] = lstm->forward(x, {});
//   auto next = lstm->forward(x2, state);                                         // the state carried on
//
// Modules are used through std::shared_ptr. register_module accepts either a shared_ptr or a module
// value (which is moved into a new shared_ptr). Parameters and buffers are Tensor handles: the member
// (e.g. Linear::weight) and the registry share one TensorImpl, and load_state_dict / to(dtype) update
// that TensorImpl in place, so handles held elsewhere (optimizers) stay valid.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "attn/tensor.h"

namespace attn::nn {

class Module;

template <typename T> struct is_shared_ptr : std::false_type {};
template <typename T> struct is_shared_ptr<std::shared_ptr<T>> : std::true_type {};

// What load_state_dict(strict = false) did not match.
struct LoadStateDictResult {
  std::vector<std::string> missing_keys;     // expected by the module, absent from the map
  std::vector<std::string> unexpected_keys;  // in the map, unknown to the module
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;

  // ---- forward: single-input modules override this; others add typed overloads (the pattern above).
  virtual Tensor forward(const Tensor& x);  // default throws naming the module type
  Tensor operator()(const Tensor& x) { return forward(x); }

  // ---- registration (returns the stored handle / module)
  // Marks a defined tensor requires_grad. An undefined tensor registers an absent parameter (e.g. a
  // Linear without bias): it is skipped everywhere.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  // persistent = false: not part of state_dict (like PyTorch).
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true);
  template <typename M>
  auto register_module(const std::string& name, M&& m) {
    using D = std::decay_t<M>;
    if constexpr (is_shared_ptr<D>::value) {
      std::shared_ptr<Module> base = m;
      add_child(name, base);
      return D(m);
    } else {
      static_assert(std::is_base_of_v<Module, D>, "register_module: not a Module");
      auto p = std::make_shared<D>(std::forward<M>(m));
      add_child(name, p);
      return p;
    }
  }
  // Replaces an existing child (e.g. swapping a head); throws if `name` is not a child.
  virtual void replace_module(const std::string& name, std::shared_ptr<Module> m);

  // ---- traversal; names are dotted PyTorch keys ("encoder.layers.0.linear1.weight")
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<std::shared_ptr<Module>> children() const;
  // This module first (named `prefix`, "" by default), then every descendant, depth first.
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "") const;
  std::vector<Module*> modules() const;
  std::shared_ptr<Module> get_submodule(const std::string& dotted) const;  // throws naming the path
  Tensor get_parameter(const std::string& dotted) const;
  Tensor get_buffer(const std::string& dotted) const;

  // ---- checkpoints
  // Parameters and persistent buffers, detached (sharing storage).
  std::map<std::string, Tensor> state_dict() const;
  // Copies values in place (converting dtype). Shape mismatches always throw, naming the key and both
  // shapes; with strict, missing and unexpected keys throw too (all listed in one message).
  LoadStateDictResult load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);

  // ---- modes and bulk operations
  Module& train(bool on = true);  // recursive
  Module& eval() { return train(false); }
  bool is_training() const { return training_; }
  int64_t num_parameters(bool only_trainable = false) const;
  void zero_grad(bool set_to_none = true);
  Module& requires_grad_(bool on = true);  // freeze (false) / unfreeze all parameters
  Module& apply(const std::function<void(Module&)>& fn);  // children first, then this (like PyTorch)
  // Casts floating-point parameters and buffers in place (integer buffers keep their dtype).
  Module& to(DType dtype);
  Module& to(Device device);

  // ---- printing: PyTorch-style tree ("Linear(in_features=784, out_features=10, bias=true)")
  std::string type_name() const;              // demangled class name without namespaces
  virtual std::string extra_repr() const { return ""; }
  std::string repr() const;

 protected:
  // for subclasses that need direct access
  struct ParamSlot {
    std::string name;
    Tensor tensor;
  };
  struct BufferSlot {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  const std::vector<ParamSlot>& own_parameters() const { return params_; }
  const std::vector<BufferSlot>& own_buffers() const { return buffers_; }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void check_new_name(const std::string& name, const char* what) const;
  // The one walk behind traversal, state_dict, load_state_dict and to(): fn(key, tensor, is_parameter,
  // persistent) for every defined parameter, then buffer, of this module, then (when recurse) of each
  // child in registration order, with dotted keys under `prefix`.
  using StateVisitor = std::function<void(const std::string& key, const Tensor& t, bool is_parameter, bool persistent)>;
  void walk_state(const StateVisitor& fn, bool recurse = true, const std::string& prefix = "") const;

  std::vector<ParamSlot> params_;
  std::vector<BufferSlot> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

// Replaces the data of `t` (and every handle sharing its TensorImpl) with `value`'s, in place.
// Used by Module::to; keeps requires_grad, drops .grad.
void set_data(const Tensor& t, const Tensor& value);

// ---- containers

// A list of modules named "0", "1", ... (for stacks of layers: "layers.3.linear1.weight").
class ModuleList : public Module {
 public:
  ModuleList() = default;
  template <typename... M>
  explicit ModuleList(M&&... modules) {
    (push_back(std::forward<M>(modules)), ...);
  }
  template <typename M>
  auto push_back(M&& m) {
    auto p = register_module(std::to_string(items_.size()), std::forward<M>(m));
    items_.push_back(p);
    return p;
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  std::shared_ptr<Module> operator[](int64_t i) const;  // negative counts from the end
  template <typename T> std::shared_ptr<T> at(int64_t i) const {
    auto m = (*this)[i];
    auto p = std::dynamic_pointer_cast<T>(m);
    if (!p) throw std::invalid_argument(type_name() + "::at(" + std::to_string(i) + "): child is a " +
                                        m->type_name() + ", not the requested type");
    return p;
  }
  std::vector<std::shared_ptr<Module>>::const_iterator begin() const { return items_.begin(); }
  std::vector<std::shared_ptr<Module>>::const_iterator end() const { return items_.end(); }
  void replace_module(const std::string& name, std::shared_ptr<Module> m) override;

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

// Runs its children in order: x -> m0 -> m1 -> ... A ReLU directly followed by a MaxPool2d runs as the
// pool, then the ReLU: the same output and gradients bit for bit (max commutes with ReLU), with a quarter
// of the ReLU work for 2 x 2 windows. A ReLU directly followed by a Dropout runs fused (relu_dropout): the
// same draws, output and gradients bit for bit, one pass each way.
class Sequential : public ModuleList {
 public:
  Sequential() = default;
  template <typename... M>
  explicit Sequential(M&&... modules) : ModuleList(std::forward<M>(modules)...) {}
  Tensor forward(const Tensor& x) override;
};

}  // namespace attn::nn
