// src/train/quantize_run.cc — see quantize_run.h.
#include "attn/train/quantize_run.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "attn/io/safetensors.h"
#include "attn/models/int8_translator.h"
#include "attn/train/translation.h"
#include "io/json_file.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::train {

std::string quantize_run_dir(const std::string& run_dir, const std::string& out_dir, const std::string& checkpoint) {
  const std::string config_path = run_dir + "/config.json";
  json config = io::read_json_file(config_path);
  if (config.is_object() && config.contains("quantized"))
    throw std::invalid_argument(run_dir + " already holds a quantised model (\"quantized\" in " + config_path +
                                "): quantize the float32 run directory it came from");
  if (fs::exists(out_dir) && fs::equivalent(out_dir, run_dir))
    throw std::invalid_argument("attn quantize: --out must differ from --model (" + out_dir + ")");
  TranslationSession session = TranslationSession::load(run_dir, checkpoint);  // checks config, tokenizer, weights
  if (!session.checkpoint_note().empty()) std::fprintf(stderr, "attn quantize: note: %s\n", session.checkpoint_note().c_str());
  models::quantize_translator_int8(session.model());

  fs::create_directories(out_dir);
  const std::string spm_name = config.contains("spm") ? config.at("spm").get<std::string>() : "spm.model";
  if (!fs::path(spm_name).is_absolute()) {
    fs::create_directories((fs::path(out_dir) / spm_name).parent_path());
    fs::copy_file(fs::path(run_dir) / spm_name, fs::path(out_dir) / spm_name, fs::copy_options::overwrite_existing);
  }
  const std::string weights = out_dir + "/" + kInt8WeightsFile;
  models::save_int8_translator(session.model(), weights);
  config["quantized"] = "int8";  // "precision" stays the training precision train_translator recorded
  config["weights"] = kInt8WeightsFile;
  io::write_file_atomic(out_dir + "/config.json", config.dump(2) + "\n");
  return weights;
}

}  // namespace attn::train
