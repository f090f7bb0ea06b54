// tests/fuzz/fuzz_int8_model.cc — libFuzzer target for the int8 translator loader (attn quantize's
// model.int8.safetensors, models/int8_translator.h) on a tiny model (vocab 8, d_model 4, 1 + 1 layers).
//
//   build-fuzz/tests/fuzz/fuzz_int8_model -dict=tests/fuzz/safetensors.dict -max_total_time=60 tests/fuzz/corpus/int8_model
//
// Any input must either load or throw std::runtime_error; a loaded model must decode a step.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attn/autograd.h"
#include "attn/models/int8_translator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attn;
  static models::TranslatorOptions options{.vocab_size = 8, .d_model = 4, .nhead = 1, .num_encoder_layers = 1,
                                           .num_decoder_layers = 1, .dim_feedforward = 8, .dropout = 0.0,
                                           .max_len = 8};
  std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    io::SafeTensorsFile f = io::SafeTensorsFile::from_bytes(std::move(bytes), "fuzz");
    models::Translator model(options);
    models::load_int8_translator(model, f);
    if (!models::is_int8(model)) __builtin_trap();  // loaded, yet not quantised
    NoGradGuard ng;
    auto dec = model.start_decoding(from_vector(std::vector<int64_t>{4, 5, 3}, {1, 3}));
    dec->step(from_vector(std::vector<int64_t>{2}, {1}));
  } catch (const std::runtime_error&) {
  }
  return 0;
}
