// tests/fuzz/fuzz_vocab.cc — libFuzzer target for the vocabulary file parser (attn/text/vocab.h).
//
//   build-fuzz/tests/fuzz/fuzz_vocab -max_total_time=60 <scratch corpus dir> tests/fuzz/corpus/vocab
//
// Any input must either parse or throw std::runtime_error; what parses must serialize to a file that
// parses back to the same vocabulary (and encodes its own tokens to their ids).
#include <cstdint>
#include <stdexcept>
#include <string_view>

#include "attn/text/vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  attn::text::Vocab v;
  try {
    v = attn::text::Vocab::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const std::runtime_error&) {
    return 0;
  }
  const attn::text::Vocab again = attn::text::Vocab::parse(v.serialize(), "fuzz-roundtrip");
  if (again.tokens() != v.tokens() || again.unk_id() != v.unk_id() || again.level() != v.level() ||
      again.num_specials() != v.num_specials())
    __builtin_trap();
  for (int64_t id = v.num_specials(); id < v.size(); ++id) {
    const std::vector<int64_t> ids = v.encode_strict(v.token(id), "fuzz-token");
    if (ids.size() != 1 || ids[0] != id) __builtin_trap();
  }
  return 0;
}
