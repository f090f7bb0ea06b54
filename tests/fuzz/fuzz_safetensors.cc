// tests/fuzz/fuzz_safetensors.cc — libFuzzer target for the safetensors parser.
//
//   cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DATTN_BUILD_FUZZ=ON && cmake --build build-fuzz --target fuzz_safetensors
//   build-fuzz/tests/fuzz/fuzz_safetensors -dict=tests/fuzz/safetensors.dict -max_total_time=60 tests/fuzz/corpus/safetensors
//
// Any input must either parse or throw std::runtime_error; every accepted tensor is read in full,
// and a re-serialisation of the accepted tensors must parse back to the same bytes.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "attn/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    attn::io::SafeTensorsFile f = attn::io::SafeTensorsFile::from_bytes(std::move(bytes), "fuzz");
    std::map<std::string, attn::Tensor> tensors;
    for (const auto& key : f.keys()) {
      attn::Tensor t = f.get(key);
      const unsigned char* p = static_cast<const unsigned char*>(t.raw_data());
      volatile unsigned sum = 0;
      for (size_t i = 0; i < t.nbytes(); ++i) sum = sum + p[i];
      tensors.emplace(key, t);
    }
    std::string again = attn::io::serialize_safetensors(tensors, f.metadata());
    attn::io::SafeTensorsFile g = attn::io::SafeTensorsFile::from_bytes(again, "fuzz-again");
    for (const auto& [key, t] : tensors) {
      attn::Tensor u = g.get(key);
      if (u.shape() != t.shape() || u.dtype() != t.dtype() ||
          (t.nbytes() && std::memcmp(u.raw_data(), t.raw_data(), t.nbytes()) != 0))
        __builtin_trap();  // the writer and reader disagree
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
