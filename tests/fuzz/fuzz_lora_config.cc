// tests/fuzz/fuzz_lora_config.cc — libFuzzer target for peft's adapter_config.json reader
// (attn/models/lora.h parse_adapter_config, what LoraModel::load reads).
//
//   build-fuzz/tests/fuzz/fuzz_lora_config -dict=tests/fuzz/lora_config.dict -max_total_time=60 <scratch dir> \
//       tests/fuzz/corpus/lora_config
//
// Any input must parse or throw std::invalid_argument (the reader's error, naming the file and key); an
// accepted config is one LoraModel can apply: rank in [1, 65536], finite alpha, dropout in [0, 1), a
// non-empty list of non-empty target names.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Woverloaded-virtual"
#include "attn/models/lora.h"
#pragma clang diagnostic pop

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const attn::models::LoraConfig c =
        attn::models::parse_adapter_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    if (c.r < 1 || c.r > 65536 || !std::isfinite(c.alpha) || !(c.dropout >= 0.0 && c.dropout < 1.0) ||
        c.target_modules.empty())
      __builtin_trap();
    for (const std::string& t : c.target_modules)
      if (t.empty()) __builtin_trap();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
