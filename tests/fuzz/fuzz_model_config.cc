// tests/fuzz/fuzz_model_config.cc — libFuzzer target for the model configs built on io::HFConfig
// (attn/models/bert.h BertConfig::from_config, attn/models/gpt2.h GPT2Config::from_config).
//
//   build-fuzz/tests/fuzz/fuzz_model_config -dict=tests/fuzz/hf_config.dict -max_total_time=60 <scratch dir> \
//       tests/fuzz/corpus/model_config
//
// Any input must parse or throw std::runtime_error; an accepted config describes a model that can be
// built (positive sizes, heads dividing the width, a bounded parameter count).
#include <cstdint>
#include <stdexcept>
#include <string>

// clang's -Wall warns that nn/transformer.h's typed forward overloads hide Module::forward (the module
// pattern of nn/module.h, on purpose); gcc, which gates the library's warnings, does not.
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Woverloaded-virtual"
#include "attn/models/bert.h"
#include "attn/models/gpt2.h"
#pragma clang diagnostic pop

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  attn::io::HFConfig c;
  try {
    c = attn::io::HFConfig::parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const std::runtime_error&) {
    return 0;
  }
  try {
    const attn::models::BertConfig b = attn::models::BertConfig::from_config(c);
    if (b.vocab_size < 1 || b.hidden_size < 1 || b.num_attention_heads < 1 || b.hidden_size % b.num_attention_heads != 0 ||
        b.max_position_embeddings < 1 || b.num_labels < 1 || b.pad_token_id < 0 || b.pad_token_id >= b.vocab_size)
      __builtin_trap();
  } catch (const std::runtime_error&) {
  }
  try {
    const attn::models::GPT2Config g = attn::models::GPT2Config::from_config(c);
    if (g.vocab_size < 1 || g.n_embd < 1 || g.n_head < 1 || g.n_embd % g.n_head != 0 || g.n_positions < 1 ||
        g.n_inner < 0 || g.eos_token_id >= g.vocab_size)
      __builtin_trap();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
