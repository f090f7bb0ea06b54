// attn/text/sentencepiece.h — subword tokenisation with SentencePiece (Debian's libsentencepiece).
//
//   attn::text::SentencePiece::train({.input_files = {"data/bible/train.en", "data/bible/train.es"},
//                                     .model_prefix = "runs/spm", .vocab_size = 8000});
//   attn::text::SentencePiece sp("runs/spm.model");
//   std::vector<int> ids = sp.encode("In the beginning");   // no BOS/EOS added
//   std::string text = sp.decode(ids);
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace attn::text {

enum class SentencePieceModel { Unigram, Bpe, Char, Word };

struct SentencePieceTrainOptions {
  std::vector<std::string> input_files = {};  // one sentence per line
  std::string model_prefix = {};         // writes <prefix>.model and <prefix>.vocab
  int vocab_size = 8000;
  SentencePieceModel model_type = SentencePieceModel::Unigram;
  double character_coverage = 1.0;
  int64_t input_sentence_size = 0;       // 0: use every sentence
  int max_sentence_length = 4192;        // bytes; longer lines are skipped by the trainer
  int num_threads = 2;
  // special ids (PyTorch/fairseq-style layout: pad 0, unk 1, bos 2, eos 3)
  int pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;
  std::vector<std::string> user_defined_symbols = {};
  bool byte_fallback = false;  // unknown characters as UTF-8 byte pieces instead of <unk>
  bool hard_vocab_limit = true;  // false: vocab_size is an upper bound (small corpora)
};

class SentencePiece {
 public:
  explicit SentencePiece(const std::string& model_path);  // throws naming the file on bad input
  static SentencePiece from_serialized(const std::string& proto, const std::string& name = "<memory>");
  ~SentencePiece();
  SentencePiece(SentencePiece&&) noexcept;
  SentencePiece& operator=(SentencePiece&&) noexcept;

  static void train(const SentencePieceTrainOptions& o);

  std::vector<int> encode(const std::string& text) const;
  std::vector<std::string> encode_pieces(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;  // skips pad/bos/eos
  std::string decode_pieces(const std::vector<std::string>& pieces) const;  // a piece not in the model stays as is
  std::string id_to_piece(int id) const;
  int piece_to_id(const std::string& piece) const;
  int vocab_size() const;
  int pad_id() const;
  int unk_id() const;
  int bos_id() const;
  int eos_id() const;
  const std::string& serialized() const { return serialized_; }  // the model proto, for checkpoints

 private:
  SentencePiece() = default;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string name_, serialized_;
};

}  // namespace attn::text
