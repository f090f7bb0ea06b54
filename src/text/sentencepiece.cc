// src/text/sentencepiece.cc — thin, checked wrapper over libsentencepiece.
#include "attn/text/sentencepiece.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace attn::text {

namespace {
void check(const sentencepiece::util::Status& s, const std::string& what) {
  if (!s.ok()) throw std::runtime_error("sentencepiece: " + what + ": " + s.ToString());
}
const char* model_name(SentencePieceModel m) {
  switch (m) {
    case SentencePieceModel::Unigram: return "unigram";
    case SentencePieceModel::Bpe: return "bpe";
    case SentencePieceModel::Char: return "char";
    case SentencePieceModel::Word: return "word";
  }
  return "unigram";
}
}  // namespace

SentencePiece::SentencePiece(const std::string& model_path) : name_(model_path) {
  std::ifstream f(model_path, std::ios::binary);
  if (!f) throw std::runtime_error("sentencepiece: cannot open model file " + model_path);
  std::stringstream ss;
  ss << f.rdbuf();
  serialized_ = ss.str();
  sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  check(sp_->LoadFromSerializedProto(serialized_), "loading " + model_path);
}

SentencePiece SentencePiece::from_serialized(const std::string& proto, const std::string& name) {
  SentencePiece s;
  s.name_ = name;
  s.serialized_ = proto;
  s.sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  check(s.sp_->LoadFromSerializedProto(proto), "loading " + name);
  return s;
}

SentencePiece::~SentencePiece() = default;
SentencePiece::SentencePiece(SentencePiece&&) noexcept = default;
SentencePiece& SentencePiece::operator=(SentencePiece&&) noexcept = default;

void SentencePiece::train(const SentencePieceTrainOptions& o) {
  if (o.input_files.empty()) throw std::invalid_argument("sentencepiece train: no input files");
  if (o.model_prefix.empty()) throw std::invalid_argument("sentencepiece train: model_prefix is empty");
  std::string inputs;
  for (const auto& p : o.input_files) {
    if (!std::ifstream(p)) throw std::runtime_error("sentencepiece train: cannot open input file " + p);
    if (p.find(',') != std::string::npos)
      throw std::invalid_argument("sentencepiece train: input path contains a comma: " + p);
    inputs += (inputs.empty() ? "" : ",") + p;
  }
  std::unordered_map<std::string, std::string> kw = {
      {"input", inputs},
      {"model_prefix", o.model_prefix},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"model_type", model_name(o.model_type)},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"max_sentence_length", std::to_string(o.max_sentence_length)},
      {"num_threads", std::to_string(o.num_threads)},
      {"pad_id", std::to_string(o.pad_id)},
      {"unk_id", std::to_string(o.unk_id)},
      {"bos_id", std::to_string(o.bos_id)},
      {"eos_id", std::to_string(o.eos_id)},
      {"minloglevel", "2"},
      {"byte_fallback", o.byte_fallback ? "true" : "false"},
      {"hard_vocab_limit", o.hard_vocab_limit ? "true" : "false"},
  };
  if (o.input_sentence_size > 0) {
    kw["input_sentence_size"] = std::to_string(o.input_sentence_size);
    kw["shuffle_input_sentence"] = "true";
  }
  if (!o.user_defined_symbols.empty()) {
    std::string s;
    for (const auto& u : o.user_defined_symbols) s += (s.empty() ? "" : ",") + u;
    kw["user_defined_symbols"] = s;
  }
  check(sentencepiece::SentencePieceTrainer::Train(kw), "training " + o.model_prefix);
}

std::vector<int> SentencePiece::encode(const std::string& text) const {
  std::vector<int> ids;
  check(sp_->Encode(text, &ids), "encoding with " + name_);
  return ids;
}
std::vector<std::string> SentencePiece::encode_pieces(const std::string& text) const {
  std::vector<std::string> pieces;
  check(sp_->Encode(text, &pieces), "encoding with " + name_);
  return pieces;
}
std::string SentencePiece::decode(const std::vector<int>& ids) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  int n = vocab_size();
  for (int id : ids) {
    if (id == pad_id() || id == bos_id() || id == eos_id()) continue;
    if (id < 0 || id >= n)
      throw std::out_of_range("sentencepiece: id " + std::to_string(id) + " is outside the vocabulary of " +
                              std::to_string(n) + " (" + name_ + ")");
    kept.push_back(id);
  }
  std::string out;
  check(sp_->Decode(kept, &out), "decoding with " + name_);
  return out;
}
std::string SentencePiece::decode_pieces(const std::vector<std::string>& pieces) const {
  std::string out;
  check(sp_->Decode(pieces, &out), "decoding pieces with " + name_);
  return out;
}
std::string SentencePiece::id_to_piece(int id) const {
  if (id < 0 || id >= vocab_size()) throw std::out_of_range("sentencepiece: id " + std::to_string(id) + " out of range");
  return sp_->IdToPiece(id);
}
int SentencePiece::piece_to_id(const std::string& piece) const { return sp_->PieceToId(piece); }
int SentencePiece::vocab_size() const { return sp_->GetPieceSize(); }
int SentencePiece::pad_id() const { return sp_->pad_id(); }
int SentencePiece::unk_id() const { return sp_->unk_id(); }
int SentencePiece::bos_id() const { return sp_->bos_id(); }
int SentencePiece::eos_id() const { return sp_->eos_id(); }

}  // namespace attn::text
