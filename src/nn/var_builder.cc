// src/nn/var_builder.cc — prefixed, shape-checked loading of checkpoint tensors into parameters.
#include "attn/nn/var_builder.h"

#include <algorithm>
#include <set>
#include <stdexcept>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/ops.h"

namespace attn::nn {

// ---- SafeTensorsWeights
std::shared_ptr<SafeTensorsWeights> SafeTensorsWeights::open(const std::string& path) {
  auto file = std::make_shared<io::SafeTensorsFile>(io::SafeTensorsFile::open(path));
  return std::shared_ptr<SafeTensorsWeights>(new SafeTensorsWeights(std::move(file)));
}
std::vector<std::string> SafeTensorsWeights::keys() const { return file_->keys(); }
bool SafeTensorsWeights::contains(const std::string& key) const { return file_->contains(key); }
Shape SafeTensorsWeights::shape(const std::string& key) const {
  auto it = file_->entries().find(key);
  if (it == file_->entries().end()) throw std::out_of_range(file_->path() + ": no tensor '" + key + "'");
  return it->second.shape;
}
Tensor SafeTensorsWeights::get(const std::string& key) const {
  Tensor t = file_->get(key);
  return t.dtype() == kFloat32 ? t : t.to(kFloat32);
}
std::string SafeTensorsWeights::name() const { return file_->path(); }

// ---- VarBuilderReport
namespace {
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}
Shape stored_shape(const Shape& s, VarBuilder::Layout layout) {
  if (layout == VarBuilder::AsStored) return s;
  if (s.size() != 2) return s;  // a non-2-d tensor cannot be the transposed one: reported as mis-shaped
  return {s[1], s[0]};
}
}  // namespace

std::string VarBuilderReport::message() const {
  std::string m;
  if (!missing.empty()) m += "missing keys: " + join(missing) + "\n";
  if (!misshaped.empty()) m += "mis-shaped keys: " + join(misshaped) + "\n";
  if (!unexpected.empty()) m += "unexpected keys: " + join(unexpected) + "\n";
  return m;
}

// ---- VarBuilder
VarBuilder::VarBuilder(std::shared_ptr<const WeightSource> source) : state_(std::make_shared<State>()) {
  if (!source) throw std::invalid_argument("VarBuilder: null weight source");
  state_->source = std::move(source);
}

VarBuilder VarBuilder::pp(const std::string& name) const { return VarBuilder(state_, key(name)); }

bool VarBuilder::contains(const std::string& name) const { return state_->source->contains(key(name)); }

bool VarBuilder::load(const std::string& name, const Tensor& param, Layout layout) const {
  const std::string k = key(name);
  const WeightSource& src = *state_->source;
  if (!src.contains(k)) {
    state_->missing.push_back(k);
    return false;
  }
  state_->used.push_back(k);
  const Shape stored = src.shape(k);
  const Shape want = stored_shape(param.shape(), layout);  // the shape the checkpoint should hold
  if (stored != want || (layout == Transposed && stored.size() != 2)) {
    state_->misshaped.push_back(k + " (checkpoint " + shape_str(stored) + ", expected " + shape_str(want) +
                                (layout == Transposed ? ", transposed on load" : "") + ")");
    return false;
  }
  Tensor t = src.get(k);
  NoGradGuard ng;
  Tensor target = param;  // a handle on the same TensorImpl: the module sees the values
  target.copy_(layout == Transposed ? t.transpose(0, 1) : t);
  state_->loaded.push_back({k, param, layout});
  return true;
}

Tensor VarBuilder::get(const std::string& name, const Shape& expected, Layout layout) const {
  const std::string k = key(name);
  const WeightSource& src = *state_->source;
  if (!src.contains(k)) throw std::runtime_error(src.name() + ": missing key '" + k + "'");
  const Shape stored = src.shape(k);
  const Shape want = stored_shape(expected, layout);
  if (stored != want)
    throw std::runtime_error(src.name() + ": key '" + k + "' has shape " + shape_str(stored) + ", expected " +
                             shape_str(want));
  state_->used.push_back(k);
  Tensor t = src.get(k);
  return (layout == Transposed ? t.transpose(0, 1) : t).contiguous().clone();
}

VarBuilderReport VarBuilder::report(const VarBuilderFinishOptions& o) const {
  VarBuilderReport r;
  r.missing = state_->missing;
  r.misshaped = state_->misshaped;
  const std::set<std::string> used(state_->used.begin(), state_->used.end());
  for (const auto& k : state_->source->keys()) {
    if (used.count(k)) continue;
    const bool ignored = std::any_of(o.ignore.begin(), o.ignore.end(),
                                     [&](const std::string& pat) { return k.find(pat) != std::string::npos; });
    if (!ignored) r.unexpected.push_back(k);
  }
  return r;
}

VarBuilderReport VarBuilder::finish(const VarBuilderFinishOptions& o) const {
  VarBuilderReport r = report(o);
  if (!r.missing.empty() || !r.misshaped.empty() || (o.strict && !r.unexpected.empty())) {
    VarBuilderReport shown = r;
    if (!o.strict) shown.unexpected.clear();
    throw std::runtime_error(state_->source->name() + ": checkpoint does not match the model:\n" + shown.message());
  }
  return r;
}

void load_linear(const VarBuilder& vb, const Linear& m, VarBuilder::Layout layout) {
  vb.load("weight", m.weight, layout);
  if (m.bias.defined()) vb.load("bias", m.bias);
}

void load_layer_norm(const VarBuilder& vb, const LayerNorm& m) {
  if (m.weight.defined()) vb.load("weight", m.weight);
  if (m.bias.defined()) vb.load("bias", m.bias);
}

void load_embedding(const VarBuilder& vb, const Embedding& m) { vb.load("weight", m.weight); }

}  // namespace attn::nn
