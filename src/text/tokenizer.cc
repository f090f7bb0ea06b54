// src/text/tokenizer.cc — the tokenizer factory, batch encoding, and tokenizer.json access helpers.
#include "attn/text/tokenizer.h"

#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "attn/text/byte_bpe.h"
#include "attn/text/wordpiece.h"
#include "text/tokenizer_json.h"

namespace attn::text {
namespace detail {

std::string read_tokenizer_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TokenizerError(path + ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw TokenizerError(path + ": read error");
  return ss.str();
}

json parse_tokenizer_json(std::string_view text, const std::string& name) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw TokenizerError(name + ": not valid JSON: " + e.what());
  }
}

static std::string join(const std::string& path, const char* key) {
  return path.empty() ? std::string(key) : path + "." + key;
}

void fail(const std::string& name, const std::string& key, const std::string& message) {
  throw TokenizerError(name + ": key '" + key + "': " + message);
}

const json& require(const json& obj, const std::string& path, const char* key, const std::string& name) {
  const std::string full = join(path, key);
  if (!obj.is_object()) fail(name, path.empty() ? "(root)" : path, "is not a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end()) fail(name, full, "missing");
  return *it;
}

std::string get_string(const json& obj, const std::string& path, const char* key, const std::string& name) {
  const json& v = require(obj, path, key, name);
  if (!v.is_string()) fail(name, join(path, key), "is not a string");
  return v.get<std::string>();
}

bool get_bool(const json& obj, const std::string& path, const char* key, bool fallback, const std::string& name) {
  if (!obj.is_object()) fail(name, path.empty() ? "(root)" : path, "is not a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail(name, join(path, key), "is not true or false");
  return it->get<bool>();
}

int64_t get_int(const json& obj, const std::string& path, const char* key, int64_t fallback, int64_t lo, int64_t hi,
                const std::string& name) {
  if (!obj.is_object()) fail(name, path.empty() ? "(root)" : path, "is not a JSON object");
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) fail(name, join(path, key), "is not an integer");
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi)
    fail(name, join(path, key), std::to_string(v) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

std::string type_of(const json& component, const std::string& path, const std::string& name) {
  if (component.is_null()) return "";
  return get_string(component, path, "type", name);
}

void read_added_tokens(const json& root, const std::string& name, AddedTokens& out) {
  const auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return;
  if (!it->is_array()) fail(name, "added_tokens", "is not an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    const json& t = (*it)[i];
    AddedToken a;
    a.content = get_string(t, path, "content", name);
    a.id = get_int(t, path, "id", -1, 0, (int64_t{1} << 31) - 1, name);
    if (a.id < 0) fail(name, path + ".id", "missing");
    a.special = get_bool(t, path, "special", false, name);
    a.lstrip = get_bool(t, path, "lstrip", false, name);
    a.rstrip = get_bool(t, path, "rstrip", false, name);
    out.add(std::move(a));
  }
}

}  // namespace detail

BatchEncoding Tokenizer::encode_batch(const std::vector<std::string>& texts, const BatchEncodeOptions& options) const {
  if (options.padding == Padding::MaxLength && options.max_length <= 0)
    throw TokenizerError("encode_batch: Padding::MaxLength needs max_length > 0");
  if (options.padding != Padding::None && pad_id() < 0)
    throw TokenizerError("encode_batch: padding needs a pad token, and this " + std::string(model_type()) +
                         " tokenizer has none");
  const int64_t n = static_cast<int64_t>(texts.size());
  std::vector<Encoding> rows(texts.size());
  const EncodeOptions eo{.max_length = options.max_length, .add_special_tokens = options.add_special_tokens};
  if (n > 0) rows[0] = encode(texts[0], eo);  // throws here, outside the parallel loop, on bad options
  std::exception_ptr error;  // an exception must not leave an OpenMP region: the first one is rethrown
#pragma omp parallel for schedule(dynamic, 8) if (n > 16)
  for (int64_t i = 1; i < n; ++i) {
    try {
      rows[static_cast<size_t>(i)] = encode(texts[static_cast<size_t>(i)], eo);
    } catch (...) {
#pragma omp critical(attn_tokenizer_batch_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);

  BatchEncoding b;
  b.batch = n;
  for (const Encoding& r : rows) b.length = std::max<int64_t>(b.length, static_cast<int64_t>(r.ids.size()));
  if (options.padding == Padding::MaxLength) b.length = std::max(b.length, options.max_length);
  const int64_t pad = std::max<int64_t>(pad_id(), 0);
  b.ids.assign(static_cast<size_t>(n * b.length), pad);
  b.token_type_ids.assign(b.ids.size(), 0);
  b.attention_mask.assign(b.ids.size(), 0);
  b.lengths.resize(texts.size());
  for (int64_t i = 0; i < n; ++i) {
    const Encoding& r = rows[static_cast<size_t>(i)];
    const size_t at = static_cast<size_t>(i * b.length);
    std::copy(r.ids.begin(), r.ids.end(), b.ids.begin() + static_cast<std::ptrdiff_t>(at));
    std::copy(r.token_type_ids.begin(), r.token_type_ids.end(), b.token_type_ids.begin() + static_cast<std::ptrdiff_t>(at));
    std::copy(r.attention_mask.begin(), r.attention_mask.end(), b.attention_mask.begin() + static_cast<std::ptrdiff_t>(at));
    b.lengths[static_cast<size_t>(i)] = static_cast<int64_t>(r.ids.size());
  }
  return b;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& tokenizer_json_path) {
  return load_tokenizer_from_string(detail::read_tokenizer_file(tokenizer_json_path), tokenizer_json_path);
}

std::unique_ptr<Tokenizer> load_tokenizer_from_string(std::string_view text, const std::string& name) {
  // Parsed twice (here for the type, then by the tokenizer): a few ms for a 30,000-token vocabulary.
  const detail::json root = detail::parse_tokenizer_json(text, name);
  const detail::json& model = detail::require(root, "", "model", name);
  const std::string type = detail::get_string(model, "model", "type", name);
  if (type == "WordPiece") return std::make_unique<WordPieceTokenizer>(WordPieceTokenizer::from_tokenizer_json_string(text, name));
  if (type == "BPE") return std::make_unique<ByteLevelBPE>(ByteLevelBPE::from_tokenizer_json_string(text, name));
  detail::fail(name, "model.type", "'" + type + "' is not supported (attn reads WordPiece and byte-level BPE tokenizers)");
}

std::unique_ptr<Tokenizer> load_tokenizer_dir(const std::string& directory) {
  namespace fs = std::filesystem;
  const fs::path dir(directory);
  if (fs::exists(dir / "tokenizer.json")) return load_tokenizer((dir / "tokenizer.json").string());
  if (fs::exists(dir / "vocab.txt")) {
    WordPieceOptions o;
    const fs::path config = dir / "tokenizer_config.json";
    if (fs::exists(config)) {
      const std::string name = config.string();
      const detail::json c = detail::parse_tokenizer_json(detail::read_tokenizer_file(name), name);
      if (!c.is_object()) detail::fail(name, "(root)", "is not a JSON object");
      o.lowercase = detail::get_bool(c, "", "do_lower_case", true, name);
      o.tokenize_chinese_chars = detail::get_bool(c, "", "tokenize_chinese_chars", true, name);
      const auto sa = c.find("strip_accents");
      if (sa != c.end() && !sa->is_null()) o.strip_accents = detail::get_bool(c, "", "strip_accents", true, name) ? 1 : 0;
    }
    return std::make_unique<WordPieceTokenizer>(WordPieceTokenizer::from_vocab_txt((dir / "vocab.txt").string(), o));
  }
  if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt"))
    return std::make_unique<ByteLevelBPE>(
        ByteLevelBPE::from_files((dir / "vocab.json").string(), (dir / "merges.txt").string()));
  throw TokenizerError(directory + ": no tokenizer.json, vocab.txt or vocab.json + merges.txt in this directory");
}

}  // namespace attn::text
