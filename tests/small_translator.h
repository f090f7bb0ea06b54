// tests/small_translator.h — the small trained translator fixture (tests/fixtures/translator_small.safetensors,
// a reversal task made by tests/make_translator_fixture.py), loaded in eval mode.
//
//   auto file = attn_test::small_translator_file();
//   auto model = attn_test::small_translator(file);    // std::unique_ptr<models::Translator>
//   Tensor src = file.get("src");                       // (6, 17) source ids stored beside the weights
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "attn/io/safetensors.h"
#include "attn/models/translator.h"

namespace attn_test {

inline attn::io::SafeTensorsFile small_translator_file() {
  return attn::io::SafeTensorsFile::open(std::string(ATTN_FIXTURE_DIR) + "/translator_small.safetensors");
}

inline std::unique_ptr<attn::models::Translator> small_translator(const attn::io::SafeTensorsFile& file) {
  const nlohmann::json meta = nlohmann::json::parse(file.metadata().at("options"));
  auto model = std::make_unique<attn::models::Translator>(attn::models::TranslatorOptions{
      .vocab_size = meta["vocab_size"], .d_model = meta["d_model"], .nhead = meta["nhead"],
      .num_encoder_layers = meta["num_layers"], .num_decoder_layers = meta["num_layers"],
      .dim_feedforward = meta["dim_feedforward"], .dropout = 0.0, .max_len = meta["max_len"]});
  std::map<std::string, attn::Tensor> state;
  for (const auto& k : file.keys())
    if (k != "src") state[k] = file.get(k);
  model->load_state_dict(state);
  model->eval();
  return model;
}

}  // namespace attn_test
