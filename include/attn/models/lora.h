// attn/models/lora.h — LoRA adapters (Hu et al. 2021; peft's LoraModel) on a model's Linear layers:
// y = W x + b + (alpha / r) * B(A(dropout(x))), A (r, in) kaiming-uniform as peft inits it, B (out, r) zeros,
// the wrapped W and b frozen. Adapters save to and load from their own directory in peft's format
// (adapter_model.safetensors with "base_model.model.<module>.lora_A.weight" / ".lora_B.weight" keys,
// adapter_config.json with r, lora_alpha, lora_dropout, target_modules), apart from the base weights,
// and merge into them (W += (alpha / r) B A) and back out.
//
//   auto clf = models::BertForSequenceClassification::from_pretrained(dir);
//   models::freeze(*clf, "bert.*");                        // the encoder stays as loaded; head trains
//   auto lora = models::LoraModel::apply(*clf, {.r = 8, .alpha = 16, .dropout = 0.1,
//       .target_pattern = "attention.self.query|attention.self.value"}, models::hf_named(clf->hf_parameters()));
//   ... train: only the lora_A / lora_B weights (and the unfrozen head) require grad ...
//   lora.save("adapter/");                                   // adapter_model.safetensors + adapter_config.json
//   auto again = models::LoraModel::load(*fresh_clf, "adapter/", models::hf_named(fresh_clf->hf_parameters()));
//   lora.merge();                                            // plain Linear speed, same outputs
//
// Targets are matched against each Linear's module name in the library ("bert.encoder.layers.0.self_attn.query")
// and, when the checkpoint names are given, its Hugging Face name ("bert.encoder.layer.0.attention.self.query").
// The wrapped layer must be held by a parent the library knows how to rebind (MultiheadAttention's
// projections, the Transformer layers' linear1 / linear2, BERT's pooler and classifier, ModuleList items);
// any other parent is a clear error. GPT-2's packed c_attn has no Linear to wrap.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "attn/models/finetune.h"
#include "attn/nn/linear.h"

namespace attn::models {

struct LoraConfig {
  int64_t r = 8;
  double alpha = 8.0;
  double dropout = 0.0;
  // Alternatives separated by '|', each a glob (models::name_matches) over the whole module name or a
  // dotted suffix of it (library or Hugging Face name): "query|value", "*.layer.[0-2].*.query". apply() reads it.
  std::string target_pattern = {};
  // peft's list form, the same matching per entry (a plain name: equal, or a dotted suffix).
  // Filled by apply() with the (Hugging Face when known) names it wrapped; what load() matches.
  std::vector<std::string> target_modules = {};
};

// peft's adapter_config.json text -> LoraConfig (peft_type LORA, r an integer in [1, 65536], a finite
// lora_alpha, lora_dropout in [0, 1), target_modules a non-empty list of names). Anything else, or a
// variant plain LoRA would mis-apply (DoRA, rsLoRA, fan_in_fan_out, per-module ranks), throws
// std::invalid_argument naming `name` and the key. LoraModel::load reads the file through it.
LoraConfig parse_adapter_config(std::string_view text, const std::string& name);

// A Linear with a LoRA branch. Shares the wrapped layer's weight and bias storage (frozen).
class LoraLinear : public nn::Linear {
 public:
  LoraLinear(const nn::Linear& base, int64_t r, double alpha, double dropout);
  Tensor forward(const Tensor& x) override;  // (*, in) -> (*, out)
  std::string extra_repr() const override;
  void merge();    // W += scaling * B A (the branch is then skipped); no-op when merged
  void unmerge();  // W -= scaling * B A
  bool merged() const { return merged_; }

  int64_t r;
  double scaling;  // alpha / r
  std::shared_ptr<nn::Dropout> lora_dropout;
  std::shared_ptr<nn::Linear> lora_A;  // (r, in), no bias
  std::shared_ptr<nn::Linear> lora_B;  // (out, r), no bias

 private:
  Tensor delta_weight() const;  // (out, in) = scaling * B A
  bool merged_ = false;
};

struct LoraTarget {
  std::string name;     // the module's library name
  std::string hf_name;  // its Hugging Face name ("" when unknown)
  std::shared_ptr<LoraLinear> layer;
  const std::string& saved_name() const { return hf_name.empty() ? name : hf_name; }
};

class LoraModel {
 public:
  // Wraps every Linear of `root` whose name matches config.target_pattern (or, when the pattern is empty,
  // config.target_modules). hf: the checkpoint names (hf_named(...)), for matching and saving.
  // Throws when nothing matches.
  static LoraModel apply(nn::Module& root, const LoraConfig& config, const NamedParameters& hf = {});
  // Reads dir/adapter_config.json, wraps its target_modules and fills A and B from
  // dir/adapter_model.safetensors (missing or mis-shaped keys name the file and key).
  static LoraModel load(nn::Module& root, const std::string& dir, const NamedParameters& hf = {});
  void save(const std::string& dir) const;  // creates dir; atomic writes
  void merge();
  void unmerge();
  std::vector<Tensor> parameters() const;  // every lora_A / lora_B weight

  LoraConfig config;
  std::vector<LoraTarget> targets;
};

}  // namespace attn::models
