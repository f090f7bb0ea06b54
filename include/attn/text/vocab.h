// attn/text/vocab.h — character- and word-level vocabularies for recurrent and convolutional text models.
//
//   auto v = attn::text::Vocab::build_from_files({"data/austen/train.txt"}, {.level = attn::text::VocabLevel::Char});
//   std::vector<int64_t> ids = v.encode("It is a truth");   // one id per code point; unknown -> <unk>
//   std::string back = v.decode(ids);
//   v.save("runs/lm/vocab.txt");
//   attn::text::Vocab w = attn::text::Vocab::load("runs/lm/vocab.txt");
//   v.encode_strict("Café", "prompt");    // throws naming 'é' and its byte offset if it is not in v
//
// A character is a Unicode code point (UTF-8 decoded; invalid UTF-8 is an error naming the source and
// byte offset). Words are what Python's str.split() gives: runs of non-whitespace (ASCII and Unicode
// spaces). Ids: the specials first, in the given order, then tokens by falling count, ties by byte order.
//
// File format (UTF-8 text, one entry per line, lines end in "\n"):
//   attn-vocab 1
//   level=char            (or word)
//   specials=2            (the first 2 tokens below are specials: kept whatever the counts)
//   unk=<unk>             (the unknown token, one of the tokens; "unk=" for none)
//   size=98               (number of token lines that follow; the line number - 6 is the id)
//   <pad>
//   <unk>
//   \s                    (a space; tokens are escaped: \\ \n \t \r \s and \xHH for other control bytes)
//   e
//   ...
#pragma once
#include <cstdint>
#include <unordered_map>
#include <string>
#include <string_view>
#include <vector>

namespace attn::text {

enum class VocabLevel { Char, Word };

struct VocabOptions {
  VocabLevel level = VocabLevel::Char;
  int64_t min_freq = 1;    // tokens seen fewer times are left out (specials always stay)
  int64_t max_size = -1;   // at most this many ids, specials included; -1: no limit
  std::vector<std::string> specials = {"<pad>", "<unk>"};
  std::string unk_token = "<unk>";  // must be one of the specials, or empty: unknown tokens are an error
};

class Vocab {
 public:
  Vocab() = default;
  // `source` names the text in errors (a file name, "prompt", ...).
  static Vocab build(std::string_view text, const VocabOptions& options = {}, const std::string& source = "<text>");
  static Vocab build_from_files(const std::vector<std::string>& paths, const VocabOptions& options = {});
  static Vocab load(const std::string& path);
  // The file format above from memory; errors name `name` and the line.
  static Vocab parse(std::string_view content, const std::string& name);
  void save(const std::string& path) const;  // atomic: written to a temporary file, then renamed
  std::string serialize() const;

  // The tokens of `text` at this vocabulary's level (code points or words), without looking them up.
  std::vector<std::string> split(std::string_view text, const std::string& source = "<text>") const;
  // Unknown tokens map to unk_id(); without an unknown token they are an error (as encode_strict).
  std::vector<int64_t> encode(std::string_view text, const std::string& source = "<text>") const;
  // Any token not in the vocabulary is an error naming it, `source` and its byte offset.
  std::vector<int64_t> encode_strict(std::string_view text, const std::string& source = "<text>") const;
  // Char level: tokens concatenated; word level: joined by one space. Ids out of range throw.
  std::string decode(const std::vector<int64_t>& ids) const;

  int64_t size() const { return int64_t(tokens_.size()); }
  VocabLevel level() const { return level_; }
  int64_t num_specials() const { return num_specials_; }
  int64_t unk_id() const { return unk_id_; }  // -1 if none
  bool contains(const std::string& token) const { return ids_.count(token) != 0; }
  int64_t id(const std::string& token) const;  // -1 if absent
  const std::string& token(int64_t id) const;  // throws on an out-of-range id
  const std::vector<std::string>& tokens() const { return tokens_; }

 private:
  void add(const std::string& token);
  std::vector<int64_t> lookup(std::string_view text, const std::string& source, bool strict) const;

  VocabLevel level_ = VocabLevel::Char;
  int64_t num_specials_ = 0;
  int64_t unk_id_ = -1;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
};

// ---- UTF-8 helpers (also used by the vocabulary)

// Checks that `text` is valid UTF-8 (no overlong forms, surrogates or code points above U+10FFFF);
// throws std::runtime_error naming `source`, the byte offset and the offending byte otherwise.
void check_utf8(std::string_view text, const std::string& source);
// The length in bytes of the valid UTF-8 sequence starting at text[pos], or 0 if it is invalid.
size_t utf8_sequence_length(std::string_view text, size_t pos);

}  // namespace attn::text
