// tests/fuzz/fuzz_marian.cc — libFuzzer target for the Hugging Face Marian directory loader
// (attn/models/marian.h): config.json and vocab.json are fuzzed, the rest is tests/fixtures/marian_tiny.
//
//   build-fuzz/tests/fuzz/fuzz_marian -max_total_time=60 <scratch corpus dir> tests/fuzz/corpus/marian   (ctest fuzz.fuzz_marian)
//
// Input: config.json's bytes, a NUL byte, vocab.json's bytes (tests/fuzz/corpus/marian holds the fixture's).
// Any input must either load (and then translate a line) or throw a std::exception naming what is wrong.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "attn/models/marian.h"

namespace fs = std::filesystem;

namespace {
const fs::path& work_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("attn_fuzz_marian_" + std::to_string(::getpid()));
    fs::create_directories(d);
    for (const char* f : {"model.safetensors", "source.spm", "target.spm", "tokenizer_config.json"})
      fs::copy_file(fs::path(ATTN_FIXTURE_DIR) / "marian_tiny" / f, d / f, fs::copy_options::overwrite_existing);
    return d;
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const size_t split = bytes.find('\0');
  if (split == std::string::npos) return 0;
  const fs::path& d = work_dir();
  std::ofstream(d / "config.json", std::ios::binary) << bytes.substr(0, split);
  std::ofstream(d / "vocab.json", std::ios::binary) << bytes.substr(split + 1);
  try {
    attn::train::TranslationSession s = attn::models::load_hf_marian(d.string());
    s.translate({"In the beginning"}, {.beam_size = 2, .max_len_a = 0.0, .max_len_b = 4});
  } catch (const std::exception&) {
  }
  return 0;
}
