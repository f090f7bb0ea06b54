// attn/text/byte_bpe.h — GPT-2's byte-level BPE, ids identical to the `tokenizers` package
// (ByteLevel pre-tokenizer + BPE model) and transformers' GPT2Tokenizer.
//
//   auto tok = attn::text::ByteLevelBPE::from_files("gpt2/vocab.json", "gpt2/merges.txt");
//   auto tok2 = attn::text::ByteLevelBPE::from_tokenizer_json("gpt2/tokenizer.json");
//   attn::text::Encoding e = tok.encode("Hello world");          // {15496, 995} with GPT-2's vocabulary
//   std::string text = tok.decode(e.ids);                          // "Hello world"
//   std::string bytes = tok.decode_bytes(e.ids);                   // the exact bytes, even if not UTF-8
//
// Steps:
//  1. special tokens written in the text ("<|endoftext|>") are split off first and map to their ids;
//  2. normalizer (tokenizer.json only): null, NFC, NFD, NFKC, NFKD or a Sequence of them (utf8proc);
//  3. pre-tokenisation with GPT-2's regex, run by PCRE2 with Unicode properties:
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//     (add_prefix_space: a space is put before text that does not start with one); bytes that are not
//     valid UTF-8 form pre-tokens of their own, so that any byte string round-trips;
//  4. each pre-token's bytes are symbols (vocabulary strings use GPT-2's byte-to-unicode mapping, e.g.
//     ' ' is "Ġ"); adjacent pairs merge lowest merge rank first, as merges.txt orders them; words up to
//     256 bytes are cached (a bounded cache shared by all threads).
//  No specials are added by encode (GPT-2's post-processor adds none); max_length truncates.
// decode: bytes of the tokens; invalid UTF-8 becomes U+FFFD per maximal invalid subpart (as Python's
// bytes.decode(errors="replace") and Rust's String::from_utf8_lossy). Ids outside the vocabulary throw.
// With a normalizer, invalid UTF-8 is read as U+FFFD before normalisation (so bytes no longer round-trip).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "attn/text/tokenizer.h"

namespace attn::text {

struct ByteLevelBPEOptions {
  bool add_prefix_space = false;
  // Added tokens recognised in the text, given ids in vocab.json (GPT-2: "<|endoftext|>").
  std::vector<std::string> special_tokens = {"<|endoftext|>"};
  std::string pad_token = {};  // empty: none (GPT-2 has no pad token; pad_id() is then -1)
};

class ByteLevelBPE final : public Tokenizer {
 public:
  // vocab.json: {"token": id, ...}; merges.txt: optional "#version" line, then "left right" per line.
  // Merges whose parts or result are not in the vocabulary are an error naming the file and line.
  static ByteLevelBPE from_files(const std::string& vocab_json_path, const std::string& merges_txt_path,
                                 const ByteLevelBPEOptions& options = {});
  static ByteLevelBPE from_strings(std::string_view vocab_json, std::string_view merges_txt,
                                   const std::string& name, const ByteLevelBPEOptions& options = {});
  // tokenizer.json with "model.type": "BPE" and a ByteLevel pre_tokenizer.
  static ByteLevelBPE from_tokenizer_json(const std::string& path);
  static ByteLevelBPE from_tokenizer_json_string(std::string_view json, const std::string& name);
  ~ByteLevelBPE() override;
  ByteLevelBPE(ByteLevelBPE&&) noexcept;
  ByteLevelBPE& operator=(ByteLevelBPE&&) noexcept;

  using Tokenizer::encode_batch;
  Encoding encode(std::string_view text, const EncodeOptions& options = {}) const override;
  void encode_ids(std::string_view text, std::vector<int64_t>& out) const;  // appends; no truncation
  std::vector<std::string> tokenize(std::string_view text) const;         // vocabulary strings ("Ġworld")
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const override;
  std::string decode_bytes(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const;

  int64_t vocab_size() const override;
  int64_t token_to_id(std::string_view token) const override;  // vocabulary strings, e.g. "Ġworld"
  std::string id_to_token(int64_t id) const override;
  int64_t pad_id() const override;
  int64_t eos_id() const;  // "<|endoftext|>" if present, else -1
  std::string_view model_type() const override { return "BPE"; }

  // GPT-2's byte-to-unicode table: printable bytes map to themselves, the others to U+0100 + n.
  static const std::vector<std::string>& byte_to_unicode();

 private:
  struct Impl;
  explicit ByteLevelBPE(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attn::text
