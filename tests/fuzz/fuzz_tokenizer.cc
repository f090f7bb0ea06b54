// tests/fuzz/fuzz_tokenizer.cc — libFuzzer target for the Hugging Face tokenizer readers and encoders
// (attn/text/tokenizer.h, wordpiece.h, byte_bpe.h).
//
//   build-fuzz/tests/fuzz/fuzz_tokenizer -dict=tests/fuzz/tokenizer.dict -max_total_time=60 <scratch> tests/fuzz/corpus/tokenizer
//
// Input: one mode byte, then a file part and a text part separated by the first "\0\0":
//   mode % 4 == 0: the file part is a tokenizer.json (load_tokenizer_from_string)
//             1: a vocab.txt (WordPiece)       2: vocab.json "\n#merges\n" merges.txt (byte-level BPE)
//             3: no file: the text is encoded by fixed small WordPiece and BPE tokenizers
// Any file must load or throw std::runtime_error (TokenizerError). A loaded tokenizer encodes any bytes
// into ids it can decode; the fixed byte-level BPE gives every byte string back exactly.
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "attn/text/byte_bpe.h"
#include "attn/text/tokenizer.h"
#include "attn/text/wordpiece.h"

namespace {

using attn::text::ByteLevelBPE;
using attn::text::Tokenizer;
using attn::text::WordPieceTokenizer;

void check_encodes(const Tokenizer& tok, std::string_view text, uint8_t mode) {
  const int64_t max_length = (mode >> 2) % 8 == 0 ? 0 : 2 + (mode >> 2) % 8;
  attn::text::Encoding e;
  try {
    e = tok.encode(text, {.max_length = max_length});
  } catch (const attn::text::TokenizerError&) {
    if (max_length == 0) __builtin_trap();  // only a max_length too small for the template's specials may refuse
    return;
  }
  if (max_length > 0 && static_cast<int64_t>(e.ids.size()) > max_length) __builtin_trap();
  if (e.token_type_ids.size() != e.ids.size() || e.attention_mask.size() != e.ids.size()) __builtin_trap();
  for (int64_t id : e.ids)
    if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
  (void)tok.decode(e.ids, false);  // ids from encode always decode
  (void)tok.decode(e.ids, true);
}

const WordPieceTokenizer& fixed_wordpiece() {
  static const WordPieceTokenizer tok = WordPieceTokenizer::from_vocab_txt_string(
      "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\nab\n##a\n##b\n##c\n##bc\n.\n,\n!\n\xC3\xA9\n\xE4\xB8\xAD\n", "fixed vocab.txt");
  return tok;
}

// Every byte, plus a few merges, so that any byte string encodes and decodes back exactly.
const ByteLevelBPE& fixed_bpe() {
  static const ByteLevelBPE tok = [] {
    std::string vocab = "{";
    const auto& b2u = ByteLevelBPE::byte_to_unicode();
    auto quoted = [](const std::string& s) {
      std::string q = "\"";
      for (char c : s) {
        if (c == '"' || c == '\\') q += '\\';
        q += c;
      }
      return q + "\"";
    };
    for (int b = 0; b < 256; ++b) vocab += quoted(b2u[static_cast<size_t>(b)]) + ":" + std::to_string(b) + ",";
    vocab += "\"\xC4\xA0t\":256,\"he\":257,\"\xC4\xA0the\":258,\"<|endoftext|>\":259}";
    return ByteLevelBPE::from_strings(vocab, "#version: 0.2\n\xC4\xA0 t\nh e\n\xC4\xA0t he\n", "fixed");
  }();
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t split = rest.find(std::string_view("\0\0", 2));
  const std::string_view file = split == std::string_view::npos ? rest : rest.substr(0, split);
  const std::string_view text = split == std::string_view::npos ? std::string_view() : rest.substr(split + 2);
  if (mode % 4 == 3) {
    check_encodes(fixed_wordpiece(), rest, mode);
    check_encodes(fixed_bpe(), rest, mode);
    const std::vector<int64_t> ids = fixed_bpe().encode(rest).ids;
    if (fixed_bpe().decode_bytes(ids, false) != rest) __builtin_trap();
    return 0;
  }
  std::unique_ptr<Tokenizer> tok;
  try {
    if (mode % 4 == 0) {
      tok = attn::text::load_tokenizer_from_string(file, "fuzz tokenizer.json");
    } else if (mode % 4 == 1) {
      tok = std::make_unique<WordPieceTokenizer>(WordPieceTokenizer::from_vocab_txt_string(file, "fuzz vocab.txt"));
    } else {
      const size_t at = file.find("\n#merges\n");
      if (at == std::string_view::npos) return 0;
      tok = std::make_unique<ByteLevelBPE>(ByteLevelBPE::from_strings(file.substr(0, at), file.substr(at + 9), "fuzz"));
    }
  } catch (const std::runtime_error&) {
    return 0;
  }
  check_encodes(*tok, text, mode);
  return 0;
}
