// tests/fuzz/fuzz_idx.cc — libFuzzer target for the IDX parser (plain and gzip input).
//
//   build-fuzz/tests/fuzz/fuzz_idx -max_total_time=60 tests/fuzz/corpus/idx
//
// Any input must either parse or throw std::runtime_error, and never allocate more than the input
// could possibly describe (deflate expands at most 1032x).
#include <cstdint>
#include <stdexcept>

#include "attn/data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    attn::Tensor t = attn::data::parse_idx(data, size, "fuzz");
    if (t.nbytes() > 1032 * size + 4096) __builtin_trap();
    const unsigned char* p = static_cast<const unsigned char*>(t.raw_data());
    volatile unsigned sum = 0;
    for (size_t i = 0; i < t.nbytes(); ++i) sum = sum + p[i];
  } catch (const std::runtime_error&) {
  }
  return 0;
}
