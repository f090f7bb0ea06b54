// src/nn/module.cc — Module registration, traversal, state_dict loading and bulk operations.
#include "attn/nn/module.h"

#include <cxxabi.h>

#include <algorithm>
#include <iterator>
#include <set>
#include <sstream>
#include <typeinfo>

#include "attn/autograd.h"
#include "attn/nn/activation.h"
#include "attn/nn/linear.h"
#include "attn/nn/pooling.h"

namespace attn::nn {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string list_keys(const std::vector<std::string>& keys) {
  std::string s;
  for (size_t i = 0; i < keys.size(); ++i) s += (i ? ", \"" : "\"") + keys[i] + "\"";
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------- forward

Tensor Module::forward(const Tensor&) {
  throw std::logic_error(type_name() + " has no single-input forward(const Tensor&); call its own forward");
}

// ----------------------------------------------------------------------------------- registration

void Module::check_new_name(const std::string& name, const char* what) const {
  if (name.empty() || name.find('.') != std::string::npos)
    throw std::invalid_argument(type_name() + ": " + what + " name \"" + name +
                                "\" must be non-empty and contain no '.'");
  auto taken = [&](const std::string& n) {
    for (auto& p : params_) if (p.name == n) return true;
    for (auto& b : buffers_) if (b.name == n) return true;
    for (auto& c : children_) if (c.first == n) return true;
    return false;
  };
  if (taken(name))
    throw std::invalid_argument(type_name() + ": " + what + " name \"" + name + "\" is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name, "parameter");
  if (t.defined()) {
    if (!t.is_leaf()) t = t.detach();
    if (requires_grad && !is_floating(t.dtype()))
      throw std::invalid_argument(type_name() + ": parameter \"" + name + "\" has dtype " +
                                  dtype_name(t.dtype()) + "; only floating-point tensors can require grad");
    t.requires_grad_(requires_grad);
  }
  params_.push_back({name, std::move(t)});
  return params_.back().tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_new_name(name, "buffer");
  buffers_.push_back({name, std::move(t), persistent});
  return buffers_.back().tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name, "module");
  if (!m) throw std::invalid_argument(type_name() + ": register_module(\"" + name + "\") got a null module");
  children_.emplace_back(name, std::move(m));
}

void Module::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  if (!m) throw std::invalid_argument(type_name() + ": replace_module(\"" + name + "\") got a null module");
  for (auto& c : children_)
    if (c.first == name) {
      c.second = std::move(m);
      return;
    }
  throw std::invalid_argument(type_name() + ": replace_module: no child named \"" + name + "\"");
}

// -------------------------------------------------------------------------------------- traversal

std::vector<std::pair<std::string, Module*>> Module::named_modules(const std::string& prefix) const {
  std::vector<std::pair<std::string, Module*>> out;
  out.emplace_back(prefix, const_cast<Module*>(this));
  for (auto& [name, child] : children_) {
    auto sub = child->named_modules(join(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<Module*> Module::modules() const {
  std::vector<Module*> out;
  for (auto& [n, m] : named_modules()) out.push_back(m);
  return out;
}

void Module::walk_state(const StateVisitor& fn, bool recurse, const std::string& prefix) const {
  for (auto& p : params_)
    if (p.tensor.defined()) fn(join(prefix, p.name), p.tensor, true, true);
  for (auto& b : buffers_)
    if (b.tensor.defined()) fn(join(prefix, b.name), b.tensor, false, b.persistent);
  if (recurse)
    for (auto& [name, child] : children_) child->walk_state(fn, true, join(prefix, name));
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  std::set<const TensorImpl*> seen;  // shared (tied) parameters are listed once, like PyTorch
  walk_state([&](const std::string& key, const Tensor& t, bool is_parameter, bool) {
    if (is_parameter && seen.insert(t.impl()).second) out.emplace_back(key, t);
  }, recurse);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  walk_state([&](const std::string& key, const Tensor& t, bool is_parameter, bool) {
    if (!is_parameter) out.emplace_back(key, t);
  }, recurse);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_buffers(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const { return children_; }

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (auto& c : children_) out.push_back(c.second);
  return out;
}

std::shared_ptr<Module> Module::get_submodule(const std::string& dotted) const {
  const Module* cur = this;
  std::shared_ptr<Module> found;
  std::stringstream ss(dotted);
  std::string part, path;
  while (std::getline(ss, part, '.')) {
    std::shared_ptr<Module> next;
    for (auto& c : cur->children_)
      if (c.first == part) next = c.second;
    if (!next)
      throw std::invalid_argument(type_name() + ".get_submodule(\"" + dotted + "\"): " +
                                  (path.empty() ? std::string("the module") : "\"" + path + "\"") +
                                  " has no child \"" + part + "\"");
    path = join(path, part);
    found = next;
    cur = next.get();
  }
  if (!found) throw std::invalid_argument(type_name() + ".get_submodule: empty path");
  return found;
}

namespace {
// The module that holds the last component of a dotted name (kept alive by its parent), and that component.
std::pair<const Module*, std::string> holder_of(const Module& root, const std::string& dotted) {
  const auto dot = dotted.rfind('.');
  if (dot == std::string::npos) return {&root, dotted};
  return {root.get_submodule(dotted.substr(0, dot)).get(), dotted.substr(dot + 1)};
}
}  // namespace

Tensor Module::get_parameter(const std::string& dotted) const {
  const auto [m, leaf] = holder_of(*this, dotted);
  for (auto& p : m->params_)
    if (p.name == leaf && p.tensor.defined()) return p.tensor;
  throw std::invalid_argument(type_name() + ".get_parameter: no parameter \"" + dotted + "\"");
}

Tensor Module::get_buffer(const std::string& dotted) const {
  const auto [m, leaf] = holder_of(*this, dotted);
  for (auto& b : m->buffers_)
    if (b.name == leaf && b.tensor.defined()) return b.tensor;
  throw std::invalid_argument(type_name() + ".get_buffer: no buffer \"" + dotted + "\"");
}

// ------------------------------------------------------------------------------------ state_dict

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  walk_state([&](const std::string& key, const Tensor& t, bool, bool persistent) {
    if (persistent) out.emplace(key, t.detach());
  });
  return out;
}

// Checks every key first and copies only then, so a refused state_dict leaves the module as it was.
LoadStateDictResult Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict) {
  LoadStateDictResult r;
  std::set<std::string> used_set;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (module tensor, source)
  walk_state([&](const std::string& key, const Tensor& dst, bool, bool persistent) {
    if (!persistent) return;
    auto it = state.find(key);
    if (it == state.end()) {
      r.missing_keys.push_back(key);
      return;
    }
    used_set.insert(key);
    const Tensor& src = it->second;
    if (!src.defined()) throw std::invalid_argument("load_state_dict: \"" + key + "\" is an undefined tensor");
    if (src.shape() != dst.shape())
      throw std::invalid_argument("load_state_dict: size mismatch for \"" + key + "\": checkpoint has shape " +
                                  shape_str(src.shape()) + ", the module has shape " + shape_str(dst.shape()));
    copies.emplace_back(dst, src);
  });
  for (auto& [k, v] : state)
    if (!used_set.count(k)) r.unexpected_keys.push_back(k);
  if (strict && (!r.missing_keys.empty() || !r.unexpected_keys.empty())) {
    std::string msg = "Error(s) in loading state_dict for " + type_name() + ":";
    if (!r.missing_keys.empty()) msg += " Missing key(s) in state_dict: " + list_keys(r.missing_keys) + ".";
    if (!r.unexpected_keys.empty())
      msg += " Unexpected key(s) in state_dict: " + list_keys(r.unexpected_keys) + ".";
    throw std::invalid_argument(msg);
  }
  NoGradGuard ng;
  for (auto& [dst, src] : copies) dst.copy_(src);  // converts dtype and device
  return r;
}

// -------------------------------------------------------------------------------- bulk operations

Module& Module::train(bool on) {
  for (auto* m : modules()) m->training_ = on;
  return *this;
}

int64_t Module::num_parameters(bool only_trainable) const {
  int64_t n = 0;
  for (auto& p : parameters())
    if (!only_trainable || p.requires_grad()) n += p.numel();
  return n;
}

void Module::zero_grad(bool set_to_none) {
  for (auto& p : parameters()) {
    if (!p.impl()->grad) continue;
    if (set_to_none) {
      p.impl()->grad.reset();
    } else {
      Tensor g(p.impl()->grad);
      NoGradGuard ng;
      g.zero_();
    }
  }
}

Module& Module::requires_grad_(bool on) {
  for (auto& p : parameters()) p.requires_grad_(on);
  return *this;
}

Module& Module::apply(const std::function<void(Module&)>& fn) {
  for (auto& c : children_) c.second->apply(fn);
  fn(*this);
  return *this;
}

void set_data(const Tensor& t, const Tensor& value) {
  if (!t.defined() || !value.defined()) throw std::invalid_argument("set_data: undefined tensor");
  TensorImpl* dst = t.impl();
  const TensorImpl* src = value.impl();
  dst->storage = src->storage;
  dst->offset = src->offset;
  dst->shape = src->shape;
  dst->strides = src->strides;
  dst->dtype = src->dtype;
  dst->grad.reset();
}

Module& Module::to(DType dtype) {
  if (!is_floating(dtype)) throw std::invalid_argument(type_name() + ".to: target dtype must be floating point, got " +
                                                       std::string(dtype_name(dtype)));
  NoGradGuard ng;
  // Tied tensors are converted once. Each old storage goes back to the system as soon as it is replaced,
  // so the conversion needs the model's old size plus one tensor, and the memory drops after it.
  walk_state([&](const std::string&, const Tensor& t, bool, bool) {
    if (!is_floating(t.dtype()) || t.dtype() == dtype) return;
    set_data(t, t.detach().to(dtype).contiguous());
    empty_cache(t.device());
  });
  return *this;
}

Module& Module::to(Device device) {
  NoGradGuard ng;
  walk_state([&](const std::string&, const Tensor& t, bool, bool) {
    if (t.device() != device) set_data(t, t.detach().to(device));
  });
  return *this;
}

// -------------------------------------------------------------------------------------- printing

std::string Module::type_name() const {
  const char* mangled = typeid(*this).name();
  int status = 0;
  char* dem = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string s = (status == 0 && dem) ? dem : mangled;
  std::free(dem);
  // strip namespaces, but not inside template arguments
  size_t angle = s.find('<');
  size_t colon = s.rfind("::", angle == std::string::npos ? std::string::npos : angle);
  if (colon != std::string::npos) s = s.substr(colon + 2);
  return s;
}

std::string Module::repr() const {
  std::string head = type_name() + "(" + extra_repr();
  if (children_.empty()) return head + ")";
  std::string s = head + "\n";
  for (auto& [name, child] : children_) {
    std::string sub = child->repr();
    std::string indented;
    for (char ch : sub) {
      indented += ch;
      if (ch == '\n') indented += "  ";
    }
    s += "  (" + name + "): " + indented + "\n";
  }
  return s + ")";
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.repr(); }

// ------------------------------------------------------------------------------------- containers

std::shared_ptr<Module> ModuleList::operator[](int64_t i) const {
  int64_t n = int64_t(items_.size());
  int64_t j = i < 0 ? i + n : i;
  if (j < 0 || j >= n)
    throw std::out_of_range(type_name() + ": index " + std::to_string(i) + " out of range for " +
                            std::to_string(n) + " modules");
  return items_[size_t(j)];
}

void ModuleList::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  Module::replace_module(name, m);
  for (size_t i = 0; i < items_.size(); ++i)
    if (std::to_string(i) == name) items_[i] = m;
}

// ReLU followed by MaxPool2d runs as MaxPool2d, then ReLU. Max commutes with ReLU (a non-decreasing
// function), so the output is the same; so is every gradient: where a window's maximum is positive both
// orders pick the same (first) maximal element and pass its gradient, and where it is <= 0 (or NaN)
// both pass 0. ReLU's forward and backward then touch 1 / (kernel area) of the elements, and the full-
// size ReLU output is never stored (the Fashion-MNIST CNN's training step: ~10 % faster).
// ReLU followed by Dropout runs as relu_dropout: the composite's draws, values and gradients in one pass
// each way, keeping 2 bits per element instead of the ReLU output.
Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto it = begin(); it != end(); ++it) {
    const auto next = std::next(it);
    if (next != end() && typeid(**it) == typeid(ReLU) && typeid(**next) == typeid(MaxPool2d)) {
      h = (*it)->forward((*next)->forward(h));
      it = next;
    } else if (next != end() && typeid(**it) == typeid(ReLU) && typeid(**next) == typeid(Dropout)) {
      const auto& drop = static_cast<const Dropout&>(**next);
      h = relu_dropout(h, drop.p, drop.is_training());
      it = next;
    } else {
      h = (*it)->forward(h);
    }
  }
  return h;
}

}  // namespace attn::nn
