// attn/text/tokenizer.h — the common interface of the Hugging Face-compatible tokenizers (WordPiece for
// BERT, byte-level BPE for GPT-2) and a factory that reads a tokenizer.json or a model directory.
//
//   auto tok = attn::text::load_tokenizer("model/tokenizer.json");       // picks by "model.type"
//   auto tok2 = attn::text::load_tokenizer_dir("model");                  // tokenizer.json, else vocab.txt
//                                                                         // (BERT), else vocab.json+merges.txt
//   attn::text::Encoding e = tok->encode("Hello world!", {.max_length = 256});
//   // e.ids: [CLS] hello world ! [SEP] -> {101, 7592, 2088, 999, 102}; e.attention_mask: {1, 1, 1, 1, 1}
//   attn::text::BatchEncoding b = tok->encode_batch({"a", "b c"}, {.max_length = 256});
//   // b.ids: (b.batch, b.length) row-major, right-padded with pad_id(); b.attention_mask 0 on padding
//   std::string text = tok->decode(e.ids);                                // "hello world!" (specials skipped)
//
// Token ids equal those of the `tokenizers` / `transformers` packages on the same files (tested against
// fixtures made by tests/make_tokenizer_fixtures.py). Input text is UTF-8; invalid UTF-8 never throws:
// WordPiece reads each invalid sequence as U+FFFD (as Python's bytes.decode(errors="replace"); BERT's
// text cleaning then drops it), byte-level BPE keeps the raw bytes (decode_bytes gives them back).
//
// Special (added) tokens written in the text, e.g. "[SEP]" or "<|endoftext|>", are recognised as their
// ids, as the `tokenizers` package does by default (leftmost-longest match on the raw text).
// All methods are const and thread-safe (encode_batch may be called from several threads at once).
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace attn::text {

// A bad tokenizer file or argument: the message names the file (or source) and the key or line.
struct TokenizerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Padding {
  None,       // rows keep their own lengths (BatchEncoding pads anyway to the longest; see below)
  Longest,    // pad every row to the longest row of the batch (sentence-transformers' padding=True)
  MaxLength,  // pad every row to max_length (needs max_length > 0)
};

struct EncodeOptions {
  int64_t max_length = 0;           // truncate to this many tokens, specials included; 0: no truncation
  bool add_special_tokens = true;   // WordPiece: [CLS] ... [SEP]; byte-level BPE (GPT-2) adds none
};

struct BatchEncodeOptions {
  int64_t max_length = 0;           // as EncodeOptions
  bool add_special_tokens = true;
  Padding padding = Padding::Longest;
};

// One sequence. All three vectors have the same length.
struct Encoding {
  std::vector<int64_t> ids;
  std::vector<int64_t> token_type_ids;  // 0 for a single sequence
  std::vector<int64_t> attention_mask;  // 1 on tokens, 0 on padding
};

// A batch, row-major (batch, length); rows shorter than `length` are right-padded with pad_id(),
// token type pad_type_id 0 and attention mask 0. Padding::None still gives a rectangle (the longest
// row); `lengths` holds each row's unpadded length.
struct BatchEncoding {
  int64_t batch = 0, length = 0;
  std::vector<int64_t> ids, token_type_ids, attention_mask;  // (batch, length) each
  std::vector<int64_t> lengths;                              // (batch,)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual Encoding encode(std::string_view text, const EncodeOptions& options = {}) const = 0;
  // Parallel over texts (OpenMP); each row equals encode(text) truncated and then padded.
  BatchEncoding encode_batch(const std::vector<std::string>& texts, const BatchEncodeOptions& options = {}) const;
  // Token ids -> text. Unknown ids throw naming the id. skip_special_tokens: the added special tokens.
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const = 0;

  virtual int64_t vocab_size() const = 0;                     // largest id + 1 (added tokens included)
  virtual int64_t token_to_id(std::string_view token) const = 0;  // -1 if absent
  virtual std::string id_to_token(int64_t id) const = 0;      // throws for ids out of range
  virtual int64_t pad_id() const = 0;                         // -1 if the tokenizer has none
  virtual std::string_view model_type() const = 0;            // "WordPiece" or "BPE"
};

// tokenizer.json: "model.type" WordPiece -> WordPieceTokenizer, BPE -> ByteLevelBPE; anything else is a
// TokenizerError naming the file and the key.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& tokenizer_json_path);
// The same from tokenizer.json's text; `name` stands for the file in errors.
std::unique_ptr<Tokenizer> load_tokenizer_from_string(std::string_view tokenizer_json, const std::string& name);
// A Hugging Face model directory: tokenizer.json if present, else vocab.txt (BERT, lower-cased unless
// tokenizer_config.json says "do_lower_case": false), else vocab.json + merges.txt (GPT-2).
std::unique_ptr<Tokenizer> load_tokenizer_dir(const std::string& directory);

}  // namespace attn::text
