// attn/text/wordpiece.h — BERT's WordPiece tokenizer, ids identical to the `tokenizers` package
// (BertNormalizer + BertPreTokenizer + WordPiece + [CLS]/[SEP] template) and transformers' BertTokenizer.
//
//   auto tok = attn::text::WordPieceTokenizer::from_tokenizer_json("all-MiniLM-L6-v2/tokenizer.json");
//   auto tok2 = attn::text::WordPieceTokenizer::from_vocab_txt("bert/vocab.txt", {.lowercase = true});
//   attn::text::Encoding e = tok.encode("Héllo, wörld!", {.max_length = 128});
//   // tokens: [CLS] hello , world ! [SEP]
//   attn::text::BatchEncoding b = tok.encode_batch(sentences, {.max_length = 256, .padding = attn::text::Padding::Longest});
//   std::vector<std::string> pieces = tok.tokenize("unaffable");   // {"una", "##ffa", "##ble"} (no specials)
//
// Steps, as the `tokenizers` package (Rust) does them:
//  1. special tokens written in the text ("[SEP]", ...) are split off first and map to their ids;
//  2. normalisation (BertNormalizer): clean_text drops U+0000, U+FFFD and control characters (Unicode
//     categories Cc, Cf, Co, Cs except \t \n \r; unassigned code points stay, as in `tokenizers`) and
//     turns whitespace (Unicode White_Space) into ' ';
//     tokenize_chinese_chars puts spaces around CJK ideographs; strip_accents (default: = lowercase)
//     decomposes to NFD and drops non-spacing marks (Mn); lowercase maps each code point to lower case.
//     Unicode data (NFD, categories, case) comes from utf8proc;
//  3. pre-tokenisation: split on whitespace, every punctuation character (ASCII punctuation or Unicode P*)
//     is a word of its own;
//  4. WordPiece: greedy longest match from the start of each word, continuation pieces prefixed "##"; a
//     word longer than max_input_chars_per_word code points, or one that cannot be covered, is [UNK];
//  5. [CLS] + pieces + [SEP] (tokenizer.json's post_processor template), truncated so that the total is
//     at most max_length.
// Truncation and padding are the caller's options: the "truncation" / "padding" sections of a
// tokenizer.json are not applied (MiniLM's says 128; sentence-transformers uses max_seq_length 256).
// Added tokens are matched on the raw text whatever their "normalized" flag (all BERT specials are
// normalized: false); "single_word" is ignored. decode throws on ids outside the vocabulary (the
// `tokenizers` package skips them).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "attn/text/tokenizer.h"

namespace attn::text {

struct WordPieceOptions {
  bool lowercase = true;
  int strip_accents = -1;          // -1: same as lowercase (BERT's default), 0: keep, 1: strip
  bool tokenize_chinese_chars = true;
  bool clean_text = true;
  int64_t max_input_chars_per_word = 100;
  std::string continuing_subword_prefix = "##";
  std::string unk_token = "[UNK]", cls_token = "[CLS]", sep_token = "[SEP]", pad_token = "[PAD]",
              mask_token = "[MASK]";
};

class WordPieceTokenizer final : public Tokenizer {
 public:
  // tokenizer.json with "model.type": "WordPiece" (normalizer BertNormalizer or null, pre_tokenizer
  // BertPreTokenizer or null); errors name the file and key.
  static WordPieceTokenizer from_tokenizer_json(const std::string& path);
  static WordPieceTokenizer from_tokenizer_json_string(std::string_view json, const std::string& name);
  // vocab.txt: one token per line, the line number (from 0) is its id.
  static WordPieceTokenizer from_vocab_txt(const std::string& path, const WordPieceOptions& options = {});
  static WordPieceTokenizer from_vocab_txt_string(std::string_view content, const std::string& name,
                                                  const WordPieceOptions& options = {});
  ~WordPieceTokenizer() override;
  WordPieceTokenizer(WordPieceTokenizer&&) noexcept;
  WordPieceTokenizer& operator=(WordPieceTokenizer&&) noexcept;

  using Tokenizer::encode_batch;
  Encoding encode(std::string_view text, const EncodeOptions& options = {}) const override;
  // The ids of the pieces only (no specials, no truncation); appends to `out` (reuse it: no allocation).
  void encode_pieces(std::string_view text, std::vector<int64_t>& out) const;
  std::vector<std::string> tokenize(std::string_view text) const;  // the pieces as strings
  // Tokens joined by spaces, "##" continuations glued, then BERT's cleanup (" ." -> ".", " n't" -> ...).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const override;

  int64_t vocab_size() const override;
  int64_t token_to_id(std::string_view token) const override;
  std::string id_to_token(int64_t id) const override;
  int64_t pad_id() const override;
  int64_t unk_id() const;
  int64_t cls_id() const;
  int64_t sep_id() const;
  int64_t mask_id() const;  // -1 if absent
  std::string_view model_type() const override { return "WordPiece"; }
  const WordPieceOptions& options() const;

 private:
  struct Impl;
  explicit WordPieceTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attn::text
