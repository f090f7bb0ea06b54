// attn/io/hf_checkpoint.h — a Hugging Face model directory: config.json plus the weights, read as is.
//
//   auto ck = attn::io::HFCheckpoint::open("all-MiniLM-L6-v2/");        // throws on bad input
//   int64_t d = ck.config().get_int("hidden_size", 1, 1 << 16);         // error names file and key
//   attn::Tensor w = ck.get("embeddings.word_embeddings.weight");       // fp32 (f16/bf16 converted)
//   auto report = ck.check_keys({{"embeddings.word_embeddings.weight", {30522, 384}}, ...});
//   report.unexpected.clear();  // e.g. buffers the model recomputes
//   report.throw_if_any();      // names every missing, unexpected and mis-shaped key
//
// Weights, first found wins: model.safetensors; model.safetensors.index.json (sharded safetensors);
// pytorch_model.bin (torch.save zip + pickle, read by io/torch_pickle.h, never executing code);
// pytorch_model.bin.index.json (sharded .bin). Safetensors and contiguous .bin tensors are views of
// memory-mapped files; f16/bf16 weights are converted to fp32 by get().
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attn/tensor.h"

namespace attn::io {

// config.json, with typed accessors that check presence, type and range; errors name file and key.
// (nlohmann-json stays out of public headers: text() gives the raw JSON to code that wants more.)
class HFConfig {
 public:
  static HFConfig load(const std::string& path);
  static HFConfig parse(const std::string& json_text, const std::string& file = "<memory>");
  const std::string& file() const { return file_; }
  const std::string& text() const { return text_; }
  bool has(const std::string& key) const;  // present and not null
  // Required (throws if missing) and optional (fallback if missing or null) forms. Integers must be
  // whole numbers in [lo, hi]; floats finite numbers in [lo, hi].
  int64_t get_int(const std::string& key, int64_t lo, int64_t hi) const;
  int64_t get_int(const std::string& key, int64_t lo, int64_t hi, int64_t fallback) const;
  double get_float(const std::string& key, double lo, double hi) const;
  double get_float(const std::string& key, double lo, double hi, double fallback) const;
  bool get_bool(const std::string& key) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> get_strings(const std::string& key) const;  // array of strings, [] if missing

 private:
  struct Impl;
  std::string file_, text_;
  std::shared_ptr<const Impl> impl_;
};

// Result of HFCheckpoint::check_keys: every difference by name.
struct KeyReport {
  std::string source;                     // the checkpoint directory, for the message
  std::vector<std::string> missing;       // expected, absent from the checkpoint (sorted)
  std::vector<std::string> unexpected;    // in the checkpoint, not expected (sorted)
  std::vector<std::string> mis_shaped;    // "key: checkpoint [a, b] vs model [c, d]"
  bool ok() const { return missing.empty() && unexpected.empty() && mis_shaped.empty(); }
  std::string str() const;                // one line per problem
  void throw_if_any() const;              // std::runtime_error with str()
};

class HFCheckpoint {
 public:
  static HFCheckpoint open(const std::string& dir);
  const std::string& dir() const { return dir_; }
  const HFConfig& config() const { return config_; }
  std::string weights_file() const;          // the file (or index) the weights came from
  std::vector<std::string> keys() const;     // sorted
  bool contains(const std::string& key) const;
  Tensor get(const std::string& key) const;  // fp32 for f32/f16/bf16; ints as stored
  Shape shape(const std::string& key) const;
  KeyReport check_keys(const std::map<std::string, Shape>& expected) const;

  struct Source;  // one weights file (safetensors or torch), opened once

 private:
  std::string dir_, weights_file_;
  HFConfig config_;
  std::vector<std::shared_ptr<const Source>> sources_;
  std::map<std::string, const Source*> where_;  // key -> the file holding it
};

}  // namespace attn::io
