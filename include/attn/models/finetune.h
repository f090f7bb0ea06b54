// attn/models/finetune.h — fine-tuning helpers: freeze / unfreeze parameters by name pattern and build
// optimizer parameter groups (own learning rate, weight decay, ...) by name pattern.
//
//   auto clf = attn::models::BertForSequenceClassification::from_pretrained(dir);
//   models::freeze(*clf, "bert.*");                      // feature extraction: only the head trains
//   models::unfreeze(*clf, "bert.encoder.layers.5.*");   // ... and the last encoder layer
//   // HF's recipe: no weight decay on biases and norm weights, a larger LR for the head
//   optim::AdamW opt(models::param_groups<optim::AdamWOptions>(
//       *clf, {{"*.bias", {.lr = 2e-5, .weight_decay = 0.0}}, {"*norm*", {.lr = 2e-5, .weight_decay = 0.0}},
//              {"classifier.*", {.lr = 1e-3, .weight_decay = 0.01}}},
//       {.lr = 2e-5, .weight_decay = 0.01}));
//
// Patterns are shell globs over the whole dotted parameter name (fnmatch: '*' also crosses dots, '?',
// [a-z]); names are the module's own (Module::named_parameters), or the Hugging Face checkpoint names
// through hf_named(). A pattern that matches no parameter is an error: a typo must not silently freeze
// nothing.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "attn/nn/module.h"
#include "attn/nn/var_builder.h"
#include "attn/optim/optimizer.h"

namespace attn::models {

using NamedParameters = std::vector<std::pair<std::string, Tensor>>;

// The (checkpoint key, parameter) pairs of a load (BertForSequenceClassification / GPT2LMHeadModel's
// hf_parameters()) as a NamedParameters list, so patterns can use Hugging Face's names.
NamedParameters hf_named(const std::vector<nn::VarBuilder::Loaded>& loaded);

// Whether the glob `pattern` matches the whole of `name`.
bool name_matches(const std::string& name, const std::string& pattern);

// Sets requires_grad on every parameter whose name matches; returns how many matched (throws when none).
int64_t set_requires_grad(const NamedParameters& params, const std::string& pattern, bool requires_grad);
inline int64_t freeze(const nn::Module& m, const std::string& pattern) {
  return set_requires_grad(m.named_parameters(), pattern, false);
}
inline int64_t unfreeze(const nn::Module& m, const std::string& pattern) {
  return set_requires_grad(m.named_parameters(), pattern, true);
}

template <typename Options>
struct ParamGroupRule {
  std::string pattern;
  Options options;
};

// Each trainable parameter (requires_grad; frozen ones are left out) joins the group of the first rule
// whose pattern matches its name, else the `rest` group; empty groups are dropped; group order is the
// rules' order, then rest. A rule that matches no parameter at all throws.
template <typename Options>
std::vector<typename optim::OptimizerWithOptions<Options>::ParamGroup> param_groups(
    const NamedParameters& params, const std::vector<ParamGroupRule<Options>>& rules, const Options& rest) {
  using Group = typename optim::OptimizerWithOptions<Options>::ParamGroup;
  std::vector<Group> groups(rules.size() + 1);
  std::vector<bool> used(rules.size(), false);
  for (size_t r = 0; r < rules.size(); ++r) groups[r].options = rules[r].options;
  groups.back().options = rest;
  for (const auto& [name, p] : params) {
    size_t g = rules.size();
    for (size_t r = 0; r < rules.size() && g == rules.size(); ++r)
      if (name_matches(name, rules[r].pattern)) g = r, used[r] = true;
    if (p.requires_grad()) groups[g].params.push_back(p);
  }
  for (size_t r = 0; r < rules.size(); ++r)
    if (!used[r]) throw std::invalid_argument("param_groups: pattern '" + rules[r].pattern + "' matches no parameter");
  std::vector<Group> out;
  for (auto& g : groups)
    if (!g.params.empty()) out.push_back(std::move(g));
  return out;
}
template <typename Options>
std::vector<typename optim::OptimizerWithOptions<Options>::ParamGroup> param_groups(
    const nn::Module& m, const std::vector<ParamGroupRule<Options>>& rules, const Options& rest) {
  return param_groups<Options>(m.named_parameters(), rules, rest);
}

}  // namespace attn::models
