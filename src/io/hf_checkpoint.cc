// src/io/hf_checkpoint.cc — Hugging Face model directories: config.json checks, the weights files
// (single, sharded, safetensors or torch.save), fp16/bf16 -> fp32 on load, key reports by name.
#include "attn/io/hf_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <variant>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/io/torch_pickle.h"
#include "io/map_keys.h"
#include "io/printable.h"

namespace attn::io {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxJsonFileBytes = 64u << 20;  // config / index files are KBs; refuse absurd ones
constexpr int kMaxJsonDepth = 64;

[[noreturn]] void fail(const std::string& file, const std::string& key, const std::string& what) {
  std::string msg = "'" + file + "'";
  if (!key.empty()) msg += ", key '" + printable(key) + "'";
  throw std::runtime_error(msg + ": " + what);
}

std::string read_small_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(path, "", "missing or not a regular file");
  auto size = fs::file_size(path, ec);
  if (ec) fail(path, "", "cannot stat: " + ec.message());
  if (size > kMaxJsonFileBytes) fail(path, "", "file is " + std::to_string(size) + " bytes, too large for JSON");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "", "cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Nesting depth of [ and { outside strings, so "[[[[..." cannot exhaust the parser's stack.
int json_depth(const std::string& text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escape = false;
  for (char c : text) {
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

json parse_json_object(const std::string& text, const std::string& file) {
  if (json_depth(text) > kMaxJsonDepth) fail(file, "", "JSON is nested too deeply");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(file, "", std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(file, "", std::string("must be a JSON object, got ") + j.type_name());
  return j;
}

// Fields whose meaning is the same in every Hugging Face config: checked when present, so a damaged
// config fails here with its name rather than as a huge allocation in the model code.
struct IntField { const char* key; int64_t lo, hi; };
constexpr IntField kIntFields[] = {
    {"vocab_size", 1, 1 << 24},          {"hidden_size", 1, 1 << 16},
    {"n_embd", 1, 1 << 16},              {"num_hidden_layers", 0, 1024},
    {"n_layer", 0, 1024},                {"num_attention_heads", 1, 1024},
    {"n_head", 1, 1024},                 {"intermediate_size", 1, 1 << 20},
    {"n_inner", 1, 1 << 20},             {"max_position_embeddings", 1, 1 << 20},
    {"n_positions", 1, 1 << 20},         {"n_ctx", 1, 1 << 20},
    {"type_vocab_size", 1, 1 << 16},
};
struct FloatField { const char* key; double lo, hi; };
constexpr FloatField kFloatFields[] = {
    {"layer_norm_eps", 0, 1},           {"layer_norm_epsilon", 0, 1},
    {"hidden_dropout_prob", 0, 1},      {"attention_probs_dropout_prob", 0, 1},
    {"resid_pdrop", 0, 1},              {"embd_pdrop", 0, 1},
    {"attn_pdrop", 0, 1},               {"initializer_range", 0, 1e3},
};

void check_common_fields(const HFConfig& c) {
  for (const auto& f : kIntFields)
    if (c.has(f.key)) c.get_int(f.key, f.lo, f.hi);
  for (const auto& f : kFloatFields)
    if (c.has(f.key)) c.get_float(f.key, f.lo, f.hi);
  for (const char* key : {"model_type", "hidden_act", "activation_function"})
    if (c.has(key)) c.get_string(key);
  for (auto [width, heads] : {std::pair{"hidden_size", "num_attention_heads"}, std::pair{"n_embd", "n_head"}}) {
    if (!c.has(width) || !c.has(heads)) continue;
    int64_t w = c.get_int(width, 1, 1 << 16), h = c.get_int(heads, 1, 1024);
    if (w % h != 0)
      fail(c.file(), heads, std::to_string(h) + " heads do not divide " + width + " " + std::to_string(w));
  }
}

bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos;
}

}  // namespace

// ---- HFConfig

struct HFConfig::Impl {
  json j;
};

HFConfig HFConfig::parse(const std::string& json_text, const std::string& file) {
  HFConfig c;
  c.file_ = file;
  c.text_ = json_text;
  c.impl_ = std::make_shared<const Impl>(Impl{parse_json_object(json_text, file)});
  check_common_fields(c);
  return c;
}

HFConfig HFConfig::load(const std::string& path) { return parse(read_small_file(path), path); }

bool HFConfig::has(const std::string& key) const {
  if (!impl_) return false;
  auto it = impl_->j.find(key);
  return it != impl_->j.end() && !it->is_null();
}

namespace {
const json& required(const json& j, const std::string& file, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) fail(file, key, "missing");
  return *it;
}
std::string brief(const json& v) { return v.dump().substr(0, 80); }
}  // namespace

int64_t HFConfig::get_int(const std::string& key, int64_t lo, int64_t hi) const {
  if (!impl_) fail(file_, key, "missing (no config)");
  const json& v = required(impl_->j, file_, key);
  int64_t x;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      fail(file_, key, "value " + brief(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    x = v.get<int64_t>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::floor(v.get<double>()) &&
             std::fabs(v.get<double>()) < 9e18) {
    x = int64_t(v.get<double>());
  } else {
    fail(file_, key, "must be an integer, got " + brief(v));
  }
  if (x < lo || x > hi)
    fail(file_, key, "value " + std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

int64_t HFConfig::get_int(const std::string& key, int64_t lo, int64_t hi, int64_t fallback) const {
  return has(key) ? get_int(key, lo, hi) : fallback;
}

double HFConfig::get_float(const std::string& key, double lo, double hi) const {
  if (!impl_) fail(file_, key, "missing (no config)");
  const json& v = required(impl_->j, file_, key);
  if (!v.is_number()) fail(file_, key, "must be a number, got " + brief(v));
  double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    fail(file_, key, "value " + brief(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

double HFConfig::get_float(const std::string& key, double lo, double hi, double fallback) const {
  return has(key) ? get_float(key, lo, hi) : fallback;
}

bool HFConfig::get_bool(const std::string& key) const {
  if (!impl_) fail(file_, key, "missing (no config)");
  const json& v = required(impl_->j, file_, key);
  if (!v.is_boolean()) fail(file_, key, "must be true or false, got " + brief(v));
  return v.get<bool>();
}

bool HFConfig::get_bool(const std::string& key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }

std::string HFConfig::get_string(const std::string& key) const {
  if (!impl_) fail(file_, key, "missing (no config)");
  const json& v = required(impl_->j, file_, key);
  if (!v.is_string()) fail(file_, key, "must be a string, got " + brief(v));
  return v.get<std::string>();
}

std::string HFConfig::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

std::vector<std::string> HFConfig::get_strings(const std::string& key) const {
  std::vector<std::string> out;
  if (!has(key)) return out;
  const json& v = impl_->j.at(key);
  if (!v.is_array()) fail(file_, key, "must be an array of strings, got " + brief(v));
  for (const auto& s : v) {
    if (!s.is_string()) fail(file_, key, "must be an array of strings, has " + brief(s));
    out.push_back(s.get<std::string>());
  }
  return out;
}

// ---- KeyReport

std::string KeyReport::str() const {
  std::string out;
  for (const auto& k : missing) out += "  missing from the checkpoint: " + k + "\n";
  for (const auto& k : unexpected) out += "  unexpected in the checkpoint: " + k + "\n";
  for (const auto& k : mis_shaped) out += "  mis-shaped: " + k + "\n";
  return out;
}

void KeyReport::throw_if_any() const {
  if (ok()) return;
  throw std::runtime_error("checkpoint '" + source + "' does not fit the model (" + std::to_string(missing.size()) +
                           " missing, " + std::to_string(unexpected.size()) + " unexpected, " +
                           std::to_string(mis_shaped.size()) + " mis-shaped keys):\n" + str());
}

// ---- HFCheckpoint

struct HFCheckpoint::Source {
  std::variant<SafeTensorsFile, TorchFile> file;
  const std::string& path() const {
    return std::visit([](const auto& f) -> const std::string& { return f.path(); }, file);
  }
  std::vector<std::string> keys() const {
    return std::visit([](const auto& f) { return f.keys(); }, file);
  }
  bool contains(const std::string& k) const {
    return std::visit([&](const auto& f) { return f.contains(k); }, file);
  }
  Tensor get(const std::string& k) const {
    return std::visit([&](const auto& f) { return f.get(k); }, file);
  }
  Shape shape(const std::string& k) const {
    if (auto* st = std::get_if<SafeTensorsFile>(&file)) return st->entries().at(k).shape;
    return std::get<TorchFile>(file).shape(k);
  }
};

namespace {

std::shared_ptr<const HFCheckpoint::Source> open_source(const std::string& path) {
  auto ends_with = [&](const char* s) {
    std::string suf(s);
    return path.size() >= suf.size() && path.compare(path.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (ends_with(".safetensors"))
    return std::make_shared<const HFCheckpoint::Source>(HFCheckpoint::Source{SafeTensorsFile::open(path)});
  return std::make_shared<const HFCheckpoint::Source>(HFCheckpoint::Source{TorchFile::open(path)});
}

// {"metadata": {...}, "weight_map": {key: "shard file name"}}: shard names must be plain file names
// in the directory (a hostile index cannot point elsewhere).
std::map<std::string, std::string> read_index(const std::string& path) {
  json j = parse_json_object(read_small_file(path), path);
  auto wm = j.find("weight_map");
  if (wm == j.end()) fail(path, "weight_map", "missing");
  if (!wm->is_object() || wm->empty()) fail(path, "weight_map", "must be a non-empty object {tensor: shard file}");
  std::map<std::string, std::string> out;
  for (const auto& [key, shard] : wm->items()) {
    if (!shard.is_string()) fail(path, "weight_map." + key, "shard must be a file name string, got " + brief(shard));
    const std::string& name = shard.get_ref<const std::string&>();
    if (!is_plain_file_name(name))
      fail(path, "weight_map." + key, "shard '" + printable(name) + "' is not a file name in the directory");
    out[key] = name;
  }
  return out;
}

}  // namespace

HFCheckpoint HFCheckpoint::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::runtime_error("'" + dir + "': not a model directory");
  HFCheckpoint ck;
  ck.dir_ = dir;
  ck.config_ = HFConfig::load((fs::path(dir) / "config.json").string());
  auto in_dir = [&](const std::string& name) { return (fs::path(dir) / name).string(); };
  auto open_single = [&](const std::string& name) {
    ck.weights_file_ = in_dir(name);
    ck.sources_.push_back(open_source(ck.weights_file_));
    for (const auto& k : ck.sources_.back()->keys()) ck.where_[k] = ck.sources_.back().get();
  };
  auto open_sharded = [&](const std::string& name) {
    ck.weights_file_ = in_dir(name);
    std::map<std::string, const Source*> by_shard;
    for (const auto& [key, shard] : read_index(ck.weights_file_)) {
      auto it = by_shard.find(shard);
      if (it == by_shard.end()) {
        ck.sources_.push_back(open_source(in_dir(shard)));
        it = by_shard.emplace(shard, ck.sources_.back().get()).first;
      }
      if (!it->second->contains(key))
        fail(ck.weights_file_, "weight_map." + key, "shard '" + shard + "' has no tensor of that name");
      ck.where_[key] = it->second;
    }
  };
  if (fs::exists(in_dir("model.safetensors"), ec)) open_single("model.safetensors");
  else if (fs::exists(in_dir("model.safetensors.index.json"), ec)) open_sharded("model.safetensors.index.json");
  else if (fs::exists(in_dir("pytorch_model.bin"), ec)) open_single("pytorch_model.bin");
  else if (fs::exists(in_dir("pytorch_model.bin.index.json"), ec)) open_sharded("pytorch_model.bin.index.json");
  else
    throw std::runtime_error("'" + dir + "': no weights (model.safetensors, model.safetensors.index.json, "
                             "pytorch_model.bin or pytorch_model.bin.index.json)");
  return ck;
}

std::string HFCheckpoint::weights_file() const { return weights_file_; }

std::vector<std::string> HFCheckpoint::keys() const { return map_keys(where_); }

bool HFCheckpoint::contains(const std::string& key) const { return where_.count(key) != 0; }

Tensor HFCheckpoint::get(const std::string& key) const {
  auto it = where_.find(key);
  if (it == where_.end()) fail(weights_file_, key, "no such tensor in the checkpoint");
  Tensor t = it->second->get(key);
  if (t.dtype() == kBFloat16) {
    NoGradGuard no_grad;
    t = t.to(kFloat32);
  }
  return t;
}

Shape HFCheckpoint::shape(const std::string& key) const {
  auto it = where_.find(key);
  if (it == where_.end()) fail(weights_file_, key, "no such tensor in the checkpoint");
  return it->second->shape(key);
}

KeyReport HFCheckpoint::check_keys(const std::map<std::string, Shape>& expected) const {
  KeyReport r;
  r.source = weights_file_;
  for (const auto& [key, shape] : expected) {
    if (!contains(key)) {
      r.missing.push_back(key);
      continue;
    }
    Shape have = this->shape(key);
    if (have != shape) r.mis_shaped.push_back(key + ": checkpoint " + shape_str(have) + " vs model " + shape_str(shape));
  }
  for (const auto& kv : where_)
    if (!expected.count(kv.first)) r.unexpected.push_back(kv.first);
  return r;
}

}  // namespace attn::io
