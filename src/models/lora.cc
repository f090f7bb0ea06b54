// src/models/lora.cc — LoRA adapters: LoraLinear, wrapping targets in place, peft's adapter files.
#include "attn/models/lora.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/models/bert.h"
#include "attn/nn/init.h"
#include "attn/nn/transformer.h"
#include "attn/ops.h"

namespace attn::models {

namespace {
const char* kWeights = "adapter_model.safetensors";
const char* kConfig = "adapter_config.json";
const char* kPrefix = "base_model.model.";  // peft's key prefix
constexpr int64_t kMaxRank = 65536;          // a larger rank is no low-rank adapter (and would allocate absurdly)

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument("LoRA: " + msg); }

// The parent's member that holds child `name` (so forward() sees the wrapper), or null when the parent's
// type is unknown. ModuleList's items are rebound by replace_module itself.
std::shared_ptr<nn::Linear>* member_slot(nn::Module& parent, const std::string& name, bool& is_list) {
  is_list = dynamic_cast<nn::ModuleList*>(&parent) != nullptr;
  if (auto* m = dynamic_cast<nn::MultiheadAttention*>(&parent)) {
    if (name == "query") return &m->query;
    if (name == "key") return &m->key;
    if (name == "value") return &m->value;
    if (name == "out_proj") return &m->out_proj;
  } else if (auto* e = dynamic_cast<nn::TransformerEncoderLayer*>(&parent)) {
    if (name == "linear1") return &e->linear1;
    if (name == "linear2") return &e->linear2;
  } else if (auto* d = dynamic_cast<nn::TransformerDecoderLayer*>(&parent)) {
    if (name == "linear1") return &d->linear1;
    if (name == "linear2") return &d->linear2;
  } else if (auto* b = dynamic_cast<BertModel*>(&parent)) {
    if (name == "pooler") return &b->pooler;
  } else if (auto* c = dynamic_cast<BertForSequenceClassification*>(&parent)) {
    if (name == "classifier") return &c->classifier;
  }
  return nullptr;
}

// library module name -> Hugging Face module name, through the shared weight tensors.
std::map<std::string, std::string> hf_module_names(const nn::Module& root, const NamedParameters& hf) {
  std::map<const TensorImpl*, std::string> by_impl;
  for (const auto& [key, p] : hf) by_impl[p.impl()] = key;
  std::map<std::string, std::string> out;
  auto strip = [](const std::string& k) { return k.substr(0, k.size() - std::string(".weight").size()); };
  for (const auto& [name, p] : root.named_parameters()) {
    auto it = by_impl.find(p.impl());
    const bool is_weight = name.size() > 7 && name.ends_with(".weight");
    if (it != by_impl.end() && is_weight && it->second.ends_with(".weight")) out[strip(name)] = strip(it->second);
  }
  return out;
}

// peft's list semantics with globs: an entry matches the whole name or a dotted suffix of it.
bool in_list(const std::string& name, const std::vector<std::string>& list) {
  for (const auto& t : list)
    if (name_matches(name, t) || name_matches(name, "*." + t)) return true;
  return false;
}

std::vector<std::string> split_alternatives(const std::string& pattern) {
  std::vector<std::string> out;
  for (size_t start = 0;;) {
    const size_t bar = pattern.find('|', start);
    std::string alt = pattern.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
    if (alt.empty()) bad("empty alternative in target pattern '" + pattern + "'");
    out.push_back(alt);
    if (bar == std::string::npos) return out;
    start = bar + 1;
  }
}

LoraModel wrap(nn::Module& root, const LoraConfig& config, const NamedParameters& hf) {
  if (config.r <= 0) bad("r must be positive, got " + std::to_string(config.r));
  if (!(config.dropout >= 0.0 && config.dropout < 1.0)) bad("lora_dropout must be in [0, 1), got " + std::to_string(config.dropout));
  if (config.target_pattern.empty() && config.target_modules.empty())
    bad("no target modules (give a target pattern or target_modules)");
  const std::vector<std::string> wanted =
      config.target_pattern.empty() ? config.target_modules : split_alternatives(config.target_pattern);
  const auto hf_names = hf_module_names(root, hf);
  LoraModel out;
  out.config = config;
  out.config.target_modules.clear();
  for (const auto& [name, module] : root.named_modules()) {
    auto* lin = dynamic_cast<nn::Linear*>(module);
    if (!lin || dynamic_cast<LoraLinear*>(module) || name.find(".lora_") != std::string::npos) continue;
    auto hit = hf_names.find(name);
    const std::string hf_name = hit == hf_names.end() ? "" : hit->second;
    if (in_list(name, wanted) || (!hf_name.empty() && in_list(hf_name, wanted))) out.targets.push_back({name, hf_name, nullptr});
  }
  if (out.targets.empty())
    bad("no Linear module matches '" + (config.target_pattern.empty() ? std::string("target_modules") : config.target_pattern) + "'");
  for (auto& t : out.targets) {
    const auto dot = t.name.rfind('.');
    const std::string parent_name = dot == std::string::npos ? "" : t.name.substr(0, dot);
    const std::string child = dot == std::string::npos ? t.name : t.name.substr(dot + 1);
    if (t.name.empty()) bad("the root module itself cannot be wrapped");
    auto parent = parent_name.empty() ? nullptr : root.get_submodule(parent_name);
    nn::Module& p = parent ? *parent : root;
    bool is_list = false;
    std::shared_ptr<nn::Linear>* slot = member_slot(p, child, is_list);
    if (!slot && !is_list) bad("cannot wrap '" + t.name + "': its parent " + p.type_name() + " is not one LoRA knows how to rebind");
    auto base = std::dynamic_pointer_cast<nn::Linear>(p.get_submodule(child));
    t.layer = std::make_shared<LoraLinear>(*base, config.r, config.alpha, config.dropout);
    p.replace_module(child, t.layer);
    if (slot) *slot = t.layer;
    out.config.target_modules.push_back(t.saved_name());
  }
  return out;
}
}  // namespace

// ------------------------------------------------------------------------------------------ LoraLinear

LoraLinear::LoraLinear(const nn::Linear& base, int64_t r_, double alpha, double dropout)
    : nn::Linear(base.options), r(r_), scaling(alpha / double(r_)) {
  if (r_ <= 0) bad("r must be positive, got " + std::to_string(r_));
  NoGradGuard ng;
  // share the wrapped layer's storage: checkpoints and the base model see the same (merged) values
  nn::set_data(weight, base.weight);
  weight.requires_grad_(false);
  if (bias.defined()) {
    nn::set_data(bias, base.bias);
    bias.requires_grad_(false);
  }
  lora_dropout = register_module("lora_dropout", nn::Dropout(dropout));
  lora_A = register_module("lora_A", nn::Linear(options.in_features, r_, false));   // kaiming_uniform_(a=sqrt(5)), as peft
  lora_B = register_module("lora_B", nn::Linear(r_, options.out_features, false));
  lora_B->weight.zero_();
  if (weight.dtype() != lora_A->weight.dtype()) {
    lora_A->to(weight.dtype());
    lora_B->to(weight.dtype());
  }
  train(base.is_training());
}

Tensor LoraLinear::forward(const Tensor& x) {
  Tensor y = nn::Linear::forward(x);
  if (merged_) return y;
  return y + lora_B->forward(lora_A->forward(lora_dropout->forward(x))) * scaling;
}

Tensor LoraLinear::delta_weight() const { return mm(lora_B->weight, lora_A->weight) * scaling; }

void LoraLinear::merge() {
  if (merged_) return;
  NoGradGuard ng;
  weight.add_(delta_weight());
  merged_ = true;
}

void LoraLinear::unmerge() {
  if (!merged_) return;
  NoGradGuard ng;
  weight.sub_(delta_weight());
  merged_ = false;
}

std::string LoraLinear::extra_repr() const {
  return nn::Linear::extra_repr() + ", r=" + std::to_string(r) + ", scaling=" + std::to_string(scaling);
}

// ------------------------------------------------------------------------------------------ LoraModel

LoraModel LoraModel::apply(nn::Module& root, const LoraConfig& config, const NamedParameters& hf) {
  return wrap(root, config, hf);
}

void LoraModel::save(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  std::map<std::string, Tensor> tensors;
  for (const auto& t : targets) {
    const std::string key = kPrefix + t.saved_name();
    tensors[key + ".lora_A.weight"] = t.layer->lora_A->weight.detach();
    tensors[key + ".lora_B.weight"] = t.layer->lora_B->weight.detach();
  }
  io::save_safetensors(dir + "/" + kWeights, tensors, {{"format", "pt"}});
  nlohmann::json j = {{"peft_type", "LORA"},          {"r", config.r},
                      {"lora_alpha", config.alpha},   {"lora_dropout", config.dropout},
                      {"target_modules", config.target_modules}, {"bias", "none"},
                      {"fan_in_fan_out", false},      {"inference_mode", false}};
  io::write_file_atomic(dir + "/" + kConfig, j.dump(2) + "\n");
}

LoraConfig parse_adapter_config(std::string_view text, const std::string& name) {
  LoraConfig config;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (!j.is_object()) bad(name + ": not a JSON object");
    if (j.value("peft_type", "LORA") != "LORA") bad(name + ": peft_type '" + j["peft_type"].get<std::string>() + "' is not LORA");
    const auto& r = j.at("r");
    if (!r.is_number_integer() || r.get<int64_t>() < 1 || r.get<int64_t>() > kMaxRank)
      bad(name + ": key 'r' = " + r.dump() + " must be an integer in [1, " + std::to_string(kMaxRank) + "]");
    config.r = r.get<int64_t>();
    const auto& alpha = j.at("lora_alpha");
    if (!alpha.is_number() || !std::isfinite(alpha.get<double>()))
      bad(name + ": key 'lora_alpha' = " + alpha.dump() + " must be a finite number");
    config.alpha = alpha.get<double>();
    config.dropout = j.value("lora_dropout", 0.0);
    if (!(config.dropout >= 0.0 && config.dropout < 1.0))
      bad(name + ": key 'lora_dropout' = " + std::to_string(config.dropout) + " must be in [0, 1)");
    const auto& tm = j.at("target_modules");
    if (tm.is_string())  // peft: a Python regex (re.fullmatch); attn's patterns are globs
      bad(name + ": target_modules as a regular expression ('" + tm.get<std::string>() + "') is not supported; use a list");
    config.target_modules = tm.get<std::vector<std::string>>();
    if (config.target_modules.empty()) bad(name + ": key 'target_modules' is an empty list");
    for (const auto& t : config.target_modules)
      if (t.empty()) bad(name + ": key 'target_modules' holds an empty name");
    // variants whose arithmetic differs from plain LoRA's are refused, not silently mis-applied
    for (const char* flag : {"fan_in_fan_out", "use_dora", "use_rslora", "use_qalora"})
      if (j.contains(flag) && j[flag].is_boolean() && j[flag].get<bool>()) bad(name + ": " + flag + " adapters are not supported");
    for (const char* per_layer : {"rank_pattern", "alpha_pattern"})
      if (j.contains(per_layer) && j[per_layer].is_object() && !j[per_layer].empty())
        bad(name + ": per-module " + per_layer + " is not supported");
  } catch (const nlohmann::json::exception& e) {
    bad(name + ": " + e.what());
  }
  return config;
}

LoraModel LoraModel::load(nn::Module& root, const std::string& dir, const NamedParameters& hf) {
  const std::string cfg_path = dir + "/" + kConfig, w_path = dir + "/" + kWeights;
  std::ifstream in(cfg_path, std::ios::binary);
  if (!in) bad(cfg_path + ": cannot open");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const LoraConfig config = parse_adapter_config(text, cfg_path);
  LoraModel m = wrap(root, config, hf);
  const auto f = io::SafeTensorsFile::open(w_path);
  for (const auto& t : m.targets) {
    for (const auto& [part, lin] : {std::pair{"lora_A", t.layer->lora_A}, std::pair{"lora_B", t.layer->lora_B}}) {
      std::string key = kPrefix + t.saved_name() + "." + part + ".weight";
      if (!f.contains(key)) bad(w_path + ": missing key '" + key + "'");
      Tensor v = f.get(key);
      if (v.shape() != lin->weight.shape())
        bad(w_path + ": key '" + key + "' has shape " + shape_str(v.shape()) + ", expected " + shape_str(lin->weight.shape()));
      NoGradGuard ng;
      lin->weight.copy_(v);
    }
  }
  return m;
}

void LoraModel::merge() {
  for (auto& t : targets) t.layer->merge();
}
void LoraModel::unmerge() {
  for (auto& t : targets) t.layer->unmerge();
}

std::vector<Tensor> LoraModel::parameters() const {
  std::vector<Tensor> out;
  for (const auto& t : targets) {
    out.push_back(t.layer->lora_A->weight);
    out.push_back(t.layer->lora_B->weight);
  }
  return out;
}

}  // namespace attn::models
