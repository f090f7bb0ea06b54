// tests/fuzz/fuzz_hf_config.cc — libFuzzer target for the Hugging Face config.json reader
// (attn/io/hf_checkpoint.h: HFConfig).
//
//   build-fuzz/tests/fuzz/fuzz_hf_config -dict=tests/fuzz/hf_config.dict -max_total_time=60 <scratch dir> tests/fuzz/corpus/hf_config
//
// Any input must parse or throw std::runtime_error; on a parsed config every accessor, with and
// without a fallback, returns a value in range or throws std::runtime_error.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attn/io/hf_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  attn::io::HFConfig c;
  try {
    c = attn::io::HFConfig::parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const std::runtime_error&) {
    return 0;
  }
  for (const char* key : {"vocab_size", "hidden_size", "n_embd", "num_hidden_layers", "layer_norm_eps", "model_type",
                          "architectures", "hidden_act", "tie_word_embeddings", "pad_token_id", "x"}) {
    auto guard = [](auto&& f) {
      try {
        f();
      } catch (const std::runtime_error&) {
      }
    };
    guard([&] {
      int64_t v = c.get_int(key, -5, 1 << 20);
      if (v < -5 || v > (1 << 20)) __builtin_trap();
    });
    guard([&] { (void)c.get_int(key, 0, 10, 3); });
    guard([&] {
      double v = c.get_float(key, 0, 1);
      if (!(v >= 0 && v <= 1)) __builtin_trap();
    });
    guard([&] { (void)c.get_bool(key, true); });
    guard([&] { (void)c.get_string(key); });
    guard([&] { (void)c.get_strings(key); });
  }
  return 0;
}
