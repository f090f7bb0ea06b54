// src/models/marian_tokenizer.cc — transformers' MarianTokenizer (tokenization_marian.py) in C++:
// SentencePiece segmentation into pieces, vocab.json's ids, decoding without the special tokens.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "attn/models/marian.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::models {

namespace {

// A special token's text in tokenizer_config.json: a string or an AddedToken object {"content": ...}.
std::string special_token(const json& cfg, const std::string& path, const std::string& key, const std::string& fallback) {
  if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  throw std::runtime_error(path + ": \"" + key + "\" must be a string or {\"content\": string}");
}

std::shared_ptr<text::SentencePiece> load_spm(const std::string& path) {
  if (!fs::is_regular_file(path)) throw std::runtime_error("missing " + path + " (MarianTokenizer's SentencePiece model)");
  return std::make_shared<text::SentencePiece>(path);
}

}  // namespace

std::shared_ptr<MarianTokenizer> MarianTokenizer::load(const std::string& dir) {
  auto t = std::make_shared<MarianTokenizer>();
  t->dir_ = dir;
  json cfg = json::object();
  const std::string cfg_path = dir + "/tokenizer_config.json";
  if (fs::is_regular_file(cfg_path)) {
    std::ifstream f(cfg_path);
    cfg = json::parse(f, nullptr, /*allow_exceptions=*/false);
    if (cfg.is_discarded() || !cfg.is_object()) throw std::runtime_error(cfg_path + ": invalid JSON");
    if (cfg.contains("separate_vocabs") && cfg["separate_vocabs"].is_boolean() && cfg["separate_vocabs"].get<bool>())
      throw std::runtime_error(cfg_path + ": \"separate_vocabs\": true (target_vocab.json) is not supported");
  }
  const std::string vocab_path = dir + "/vocab.json";
  std::ifstream vf(vocab_path);
  if (!vf) throw std::runtime_error("missing " + vocab_path + " (MarianTokenizer's vocabulary)");
  json vocab = json::parse(vf, nullptr, /*allow_exceptions=*/false);
  if (vocab.is_discarded() || !vocab.is_object() || vocab.empty())
    throw std::runtime_error(vocab_path + ": expected a JSON object {piece: id}");
  for (const auto& [piece, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t(1) << 24))
      throw std::runtime_error(vocab_path + ": \"" + piece + "\" has id " + id.dump() + ", expected an integer in [0, 2^24)");
    const size_t i = size_t(id.get<int64_t>());
    if (i >= t->pieces_.size()) t->pieces_.resize(i + 1);
    if (!t->pieces_[i].empty())
      throw std::runtime_error(vocab_path + ": id " + std::to_string(i) + " is given to both \"" + t->pieces_[i] +
                               "\" and \"" + piece + "\"");
    t->pieces_[i] = piece;
    t->ids_[piece] = int(i);
  }
  auto id_of = [&](const std::string& key, const std::string& fallback) {
    const std::string piece = special_token(cfg, cfg_path, key, fallback);
    auto it = t->ids_.find(piece);
    if (it == t->ids_.end()) throw std::runtime_error(vocab_path + ": no entry for the " + key + " \"" + piece + "\"");
    return it->second;
  };
  t->unk_ = id_of("unk_token", "<unk>");
  t->eos_ = id_of("eos_token", "</s>");
  t->pad_ = id_of("pad_token", "<pad>");
  t->source_ = load_spm(dir + "/source.spm");
  t->target_ = load_spm(dir + "/target.spm");
  return t;
}

std::vector<int> MarianTokenizer::encode(const text::SentencePiece& sp, const std::string& line) const {
  std::vector<int> ids;
  auto lookup = [&](const std::string& piece) {
    auto it = ids_.find(piece);
    ids.push_back(it == ids_.end() ? unk_ : it->second);
  };
  std::string text = line;
  // a leading language code ">>xx<<" (multilingual models) is one token, as in remove_language_code
  if (text.rfind(">>", 0) == 0) {
    size_t end = text.find("<<");
    if (end != std::string::npos) {
      lookup(text.substr(0, end + 2));
      text = text.substr(end + 2);
    }
  }
  for (const std::string& piece : sp.encode_pieces(text)) lookup(piece);
  return ids;
}

std::vector<int> MarianTokenizer::encode_source(const std::string& line) const { return encode(*source_, line); }
std::vector<int> MarianTokenizer::encode_target(const std::string& line) const { return encode(*target_, line); }

std::string MarianTokenizer::decode_target(const std::vector<int>& ids) const {
  std::vector<std::string> pieces;
  for (int id : ids) {
    if (id == pad_ || id == eos_ || id == unk_) continue;  // skip_special_tokens=True
    pieces.push_back(piece(id));
  }
  const std::string decoded = target_->decode_pieces(pieces);
  // convert_tokens_to_string: any remaining "▁" becomes a space, then strip()
  const std::string underline = "\xE2\x96\x81";
  std::string out;
  for (size_t p = 0; p < decoded.size();) {
    if (decoded.compare(p, underline.size(), underline) == 0) {
      out += ' ';
      p += underline.size();
    } else {
      out += decoded[p++];
    }
  }
  size_t b = out.find_first_not_of(" \t\n\r"), e = out.find_last_not_of(" \t\n\r");
  return b == std::string::npos ? std::string() : out.substr(b, e - b + 1);
}

std::string MarianTokenizer::piece(int id) const {
  if (id < 0 || size_t(id) >= pieces_.size())
    throw std::out_of_range(dir_ + "/vocab.json: id " + std::to_string(id) + " outside 0.." + std::to_string(pieces_.size() - 1));
  return pieces_[size_t(id)].empty() ? pieces_[size_t(unk_)] : pieces_[size_t(id)];
}

}  // namespace attn::models
