// src/text/wordpiece.cc — BERT's WordPiece tokenizer (see attn/text/wordpiece.h for the steps).
#include "attn/text/wordpiece.h"

#include <algorithm>

#include "text/added_tokens.h"
#include "text/token_map.h"
#include "text/tokenizer_json.h"
#include "text/unicode_chars.h"

namespace attn::text {

using detail::json;

namespace {

// The post-processor's specials around a single sequence, and their token type ids.
struct Template {
  std::vector<int64_t> prefix, prefix_types, suffix, suffix_types;
  int64_t sequence_type = 0;
};

}  // namespace

struct WordPieceTokenizer::Impl {
  std::string name;
  WordPieceOptions opt;
  bool strip_accents = true;
  std::vector<std::string> tokens;   // by id; "" for ids no token has
  std::vector<char> has_token;       // by id
  detail::TokenMap word_start;       // every vocabulary token
  detail::TokenMap continuation;     // tokens that start with the continuing prefix, prefix removed
  detail::AddedTokens added;
  int64_t unk = -1, cls = -1, sep = -1, pad = -1, mask = -1;
  Template tmpl;

  void set_token(int64_t id, const std::string& token);
  void finish();
  void wordpiece(const char32_t* word, size_t n, std::vector<int64_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int64_t>& out) const;
  void encode_text(std::string_view text, std::vector<int64_t>& out) const;
};

namespace {

// Per-thread buffers: encoding allocates only while they grow.
struct Scratch {
  std::u32string cps, nfd;
  std::string word;
  std::vector<uint32_t> offsets;
};
thread_local Scratch t_scratch;

}  // namespace

void WordPieceTokenizer::Impl::set_token(int64_t id, const std::string& token) {
  detail::set_token_at(tokens, has_token, id, token);
}

// Builds the lookup maps and resolves the special tokens once the tokens are known.
void WordPieceTokenizer::Impl::finish() {
  strip_accents = opt.strip_accents < 0 ? opt.lowercase : opt.strip_accents != 0;
  word_start.clear();
  continuation.clear();
  word_start.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (!has_token[id]) continue;
    const std::string& t = tokens[id];
    word_start[t] = static_cast<int64_t>(id);
    if (t.starts_with(opt.continuing_subword_prefix))
      continuation[t.substr(opt.continuing_subword_prefix.size())] = static_cast<int64_t>(id);
  }
  auto id_of = [&](const std::string& t) -> int64_t {
    if (const detail::AddedToken* a = added.find(t)) return a->id;
    return detail::lookup(word_start, t);
  };
  unk = id_of(opt.unk_token);
  if (unk < 0) throw TokenizerError(name + ": the unknown token '" + opt.unk_token + "' is not in the vocabulary");
  cls = id_of(opt.cls_token);
  sep = id_of(opt.sep_token);
  pad = id_of(opt.pad_token);
  mask = id_of(opt.mask_token);
}

// Greedy longest-match-first over one pre-tokenized word (code points), as the WordPiece model does.
void WordPieceTokenizer::Impl::wordpiece(const char32_t* word, size_t n, std::vector<int64_t>& out) const {
  if (static_cast<int64_t>(n) > opt.max_input_chars_per_word) {
    out.push_back(unk);
    return;
  }
  Scratch& s = t_scratch;
  s.word.clear();
  s.offsets.clear();
  for (size_t k = 0; k < n; ++k) {
    s.offsets.push_back(static_cast<uint32_t>(s.word.size()));
    detail::append_utf8(s.word, word[k]);
  }
  s.offsets.push_back(static_cast<uint32_t>(s.word.size()));
  const std::string_view w(s.word);
  const size_t rollback = out.size();
  size_t start = 0;
  while (start < n) {
    const detail::TokenMap& map = start == 0 ? word_start : continuation;
    int64_t found = -1;
    size_t end = n;
    for (; end > start; --end) {
      found = detail::lookup(map, w.substr(s.offsets[start], s.offsets[end] - s.offsets[start]));
      if (found >= 0) break;
    }
    if (found < 0) {
      out.resize(rollback);
      out.push_back(unk);
      return;
    }
    out.push_back(found);
    start = end;
  }
}

// Normalisation (BertNormalizer), pre-tokenisation (BertPreTokenizer) and WordPiece of text that holds
// no added token.
void WordPieceTokenizer::Impl::encode_plain(std::string_view text, std::vector<int64_t>& out) const {
  Scratch& s = t_scratch;
  std::u32string& cps = s.cps;
  cps.clear();
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    bool valid = true;
    char32_t c = detail::decode_utf8(bytes, text.size(), i, valid);
    if (opt.clean_text) {
      if (c == 0 || c == detail::kReplacementChar || detail::is_control(c)) continue;
      if (detail::is_whitespace(c)) c = ' ';
    }
    if (opt.tokenize_chinese_chars && c >= 0x3400 && detail::is_chinese_char(c)) {
      cps.push_back(' ');
      cps.push_back(c);
      cps.push_back(' ');
    } else {
      cps.push_back(c);
    }
  }
  if (strip_accents) {
    s.nfd.clear();
    for (char32_t c : cps) detail::append_nfd(c, s.nfd);
    detail::canonical_reorder(s.nfd, 0);
    cps.clear();
    for (char32_t c : s.nfd)
      if (!detail::is_nonspacing_mark(c)) cps.push_back(c);
  }
  if (opt.lowercase) {
    for (size_t k = 0; k < cps.size(); ++k) {
      if (cps[k] == 0x130) {  // 'İ' lower-cases to "i̇" (two code points: Rust's char::to_lowercase)
        cps[k] = 'i';
        cps.insert(cps.begin() + static_cast<std::ptrdiff_t>(k) + 1, char32_t{0x307});
        continue;
      }
      cps[k] = detail::to_lower(cps[k]);
    }
  }
  // Pre-tokenisation: whitespace separates words; each punctuation character is a word of its own.
  size_t word_begin = 0;
  for (size_t k = 0; k <= cps.size(); ++k) {
    const bool end = k == cps.size();
    const bool space = !end && detail::is_whitespace(cps[k]);
    const bool punct = !end && !space && detail::is_punctuation(cps[k]);
    if (end || space || punct) {
      if (k > word_begin) wordpiece(cps.data() + word_begin, k - word_begin, out);
      if (punct) wordpiece(cps.data() + k, 1, out);
      word_begin = k + 1;
    }
  }
}

void WordPieceTokenizer::Impl::encode_text(std::string_view text, std::vector<int64_t>& out) const {
  added.split(text, [&](std::string_view plain) { encode_plain(plain, out); },
              [&](const detail::AddedToken& t) { out.push_back(t.id); });
}

WordPieceTokenizer::WordPieceTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
WordPieceTokenizer::~WordPieceTokenizer() = default;
WordPieceTokenizer::WordPieceTokenizer(WordPieceTokenizer&&) noexcept = default;
WordPieceTokenizer& WordPieceTokenizer::operator=(WordPieceTokenizer&&) noexcept = default;

WordPieceTokenizer WordPieceTokenizer::from_vocab_txt(const std::string& path, const WordPieceOptions& options) {
  return from_vocab_txt_string(detail::read_tokenizer_file(path), path, options);
}

WordPieceTokenizer WordPieceTokenizer::from_vocab_txt_string(std::string_view content, const std::string& name,
                                                             const WordPieceOptions& options) {
  if (options.max_input_chars_per_word < 1)
    throw TokenizerError(name + ": max_input_chars_per_word must be >= 1");
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  impl->opt = options;
  // One token per line, the line number is its id (transformers' load_vocab: the line without its "\n";
  // a later duplicate wins the lookup).
  int64_t id = 0;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t eol = content.find('\n', pos);
    if (eol == std::string_view::npos) eol = content.size();
    std::string_view line = content.substr(pos, eol - pos);
    if (line.ends_with('\r')) line.remove_suffix(1);
    impl->set_token(id++, std::string(line));
    pos = eol + 1;
  }
  if (id == 0) throw TokenizerError(name + ": empty vocabulary");
  for (const std::string* t : {&options.pad_token, &options.unk_token, &options.cls_token, &options.sep_token,
                               &options.mask_token}) {
    const auto it = std::find(impl->tokens.begin(), impl->tokens.end(), *t);
    if (it != impl->tokens.end() && !t->empty())
      impl->added.add({.content = *t, .id = it - impl->tokens.begin(), .special = true});
  }
  impl->finish();
  if (impl->cls < 0 || impl->sep < 0)
    throw TokenizerError(name + ": the vocabulary lacks '" + options.cls_token + "' or '" + options.sep_token + "'");
  impl->tmpl = {.prefix = {impl->cls}, .prefix_types = {0}, .suffix = {impl->sep}, .suffix_types = {0}};
  return WordPieceTokenizer(std::move(impl));
}

namespace {

// The post-processor's specials around a single sequence: BertProcessing or TemplateProcessing's "single".
void read_post_processor(const json& root, const std::string& name, Template& impl) {
  const auto it = root.find("post_processor");
  if (it == root.end() || it->is_null()) return;
  const json& pp = *it;
  const std::string type = detail::type_of(pp, "post_processor", name);
  if (type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const json& v = detail::require(pp, "post_processor", key, name);
      if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer() || v[1].get<int64_t>() < 0)
        detail::fail(name, std::string("post_processor.") + key, "is not [token, id]");
      (std::string(key) == "cls" ? impl.prefix : impl.suffix).push_back(v[1].get<int64_t>());
      (std::string(key) == "cls" ? impl.prefix_types : impl.suffix_types).push_back(0);
    }
    return;
  }
  if (type != "TemplateProcessing")
    detail::fail(name, "post_processor.type", "'" + type + "' is not supported for WordPiece "
                 "(attn reads BertProcessing and TemplateProcessing)");
  const json& single = detail::require(pp, "post_processor", "single", name);
  const json& specials = detail::require(pp, "post_processor", "special_tokens", name);
  if (!single.is_array()) detail::fail(name, "post_processor.single", "is not an array");
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string path = "post_processor.single[" + std::to_string(i) + "]";
    const json& item = single[i];
    if (item.is_object() && item.contains("Sequence")) {
      if (seen_sequence) detail::fail(name, path, "a second sequence in a single-sequence template");
      seen_sequence = true;
      impl.sequence_type = detail::get_int(item["Sequence"], path + ".Sequence", "type_id", 0, 0, 1 << 20, name);
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken")) detail::fail(name, path, "is neither Sequence nor SpecialToken");
    const json& st = item["SpecialToken"];
    const std::string token = detail::get_string(st, path + ".SpecialToken", "id", name);
    const int64_t type_id = detail::get_int(st, path + ".SpecialToken", "type_id", 0, 0, 1 << 20, name);
    const std::string spath = "post_processor.special_tokens." + token;
    const json& entry = detail::require(specials, "post_processor.special_tokens", token.c_str(), name);
    const json& ids = detail::require(entry, spath, "ids", name);
    if (!ids.is_array()) detail::fail(name, spath + ".ids", "is not an array");
    for (const json& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) detail::fail(name, spath + ".ids", "holds a non-id");
      (seen_sequence ? impl.suffix : impl.prefix).push_back(id.get<int64_t>());
      (seen_sequence ? impl.suffix_types : impl.prefix_types).push_back(type_id);
    }
  }
  if (!seen_sequence) detail::fail(name, "post_processor.single", "has no Sequence item");
}

void read_bert_normalizer(const json& root, const std::string& name, WordPieceOptions& o) {
  const json& norm = detail::require(root, "", "normalizer", name);
  const std::string type = detail::type_of(norm, "normalizer", name);
  if (type.empty()) {
    o.lowercase = o.tokenize_chinese_chars = o.clean_text = false;
    o.strip_accents = 0;
    return;
  }
  if (type != "BertNormalizer")
    detail::fail(name, "normalizer.type", "'" + type + "' is not supported for WordPiece (attn reads BertNormalizer)");
  o.clean_text = detail::get_bool(norm, "normalizer", "clean_text", true, name);
  o.tokenize_chinese_chars = detail::get_bool(norm, "normalizer", "handle_chinese_chars", true, name);
  o.lowercase = detail::get_bool(norm, "normalizer", "lowercase", true, name);
  const auto sa = norm.find("strip_accents");
  o.strip_accents = (sa == norm.end() || sa->is_null()) ? -1
                    : detail::get_bool(norm, "normalizer", "strip_accents", true, name) ? 1 : 0;
}

}  // namespace

WordPieceTokenizer WordPieceTokenizer::from_tokenizer_json(const std::string& path) {
  return from_tokenizer_json_string(detail::read_tokenizer_file(path), path);
}

WordPieceTokenizer WordPieceTokenizer::from_tokenizer_json_string(std::string_view text, const std::string& name) {
  const json root = detail::parse_tokenizer_json(text, name);
  const json& model = detail::require(root, "", "model", name);
  const std::string type = detail::get_string(model, "model", "type", name);
  if (type != "WordPiece") detail::fail(name, "model.type", "is '" + type + "', not WordPiece");
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  WordPieceOptions& o = impl->opt;
  o.unk_token = detail::get_string(model, "model", "unk_token", name);
  o.continuing_subword_prefix = detail::get_string(model, "model", "continuing_subword_prefix", name);
  o.max_input_chars_per_word = detail::get_int(model, "model", "max_input_chars_per_word", 100, 1, INT32_MAX, name);
  read_bert_normalizer(root, name, o);
  const json& pre = detail::require(root, "", "pre_tokenizer", name);
  const std::string pre_type = detail::type_of(pre, "pre_tokenizer", name);
  if (pre_type != "BertPreTokenizer")
    detail::fail(name, "pre_tokenizer.type", "'" + pre_type + "' is not supported for WordPiece (attn reads BertPreTokenizer)");

  const json& vocab = detail::require(model, "model", "vocab", name);
  if (!vocab.is_object()) detail::fail(name, "model.vocab", "is not an object");
  const int64_t max_id = detail::max_vocab_id(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > max_id)
      detail::fail(name, "model.vocab." + token, "is not an id in [0, " + std::to_string(max_id) + "]");
    impl->set_token(id.get<int64_t>(), token);
  }
  if (impl->tokens.empty()) detail::fail(name, "model.vocab", "is empty");
  detail::read_added_tokens(root, name, impl->added);
  for (const detail::AddedToken& a : impl->added.tokens()) {
    if (a.id > max_id) detail::fail(name, "added_tokens", "id " + std::to_string(a.id) + " is far beyond the vocabulary");
    if (!detail::has_token_at(impl->tokens, impl->has_token, a.id))
      impl->set_token(a.id, a.content);
  }
  if (const auto pad = root.find("padding"); pad != root.end() && pad->is_object() && pad->contains("pad_token"))
    o.pad_token = detail::get_string(*pad, "padding", "pad_token", name);
  impl->finish();
  read_post_processor(root, name, impl->tmpl);
  for (const auto* ids : {&impl->tmpl.prefix, &impl->tmpl.suffix})
    for (int64_t id : *ids)
      if (id >= static_cast<int64_t>(impl->tokens.size()) || !impl->has_token[static_cast<size_t>(id)])
        detail::fail(name, "post_processor", "special id " + std::to_string(id) + " is not in the vocabulary");
  return WordPieceTokenizer(std::move(impl));
}

Encoding WordPieceTokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  const Impl& m = *impl_;
  const Template& t = m.tmpl;
  const bool add = options.add_special_tokens;
  const int64_t specials = add ? static_cast<int64_t>(t.prefix.size() + t.suffix.size()) : 0;
  if (options.max_length < 0 || (options.max_length > 0 && options.max_length < specials))
    throw TokenizerError(m.name + ": max_length " + std::to_string(options.max_length) + " leaves no room for the " +
                         std::to_string(specials) + " special tokens");
  Encoding e;
  if (add) e.ids = t.prefix;
  const size_t body_start = e.ids.size();
  m.encode_text(text, e.ids);
  if (options.max_length > 0) {
    const size_t body_max = static_cast<size_t>(options.max_length - specials);
    if (e.ids.size() - body_start > body_max) e.ids.resize(body_start + body_max);
  }
  const size_t body_end = e.ids.size();
  if (add) e.ids.insert(e.ids.end(), t.suffix.begin(), t.suffix.end());
  e.token_type_ids.assign(e.ids.size(), t.sequence_type);
  if (add) {
    std::copy(t.prefix_types.begin(), t.prefix_types.end(), e.token_type_ids.begin());
    std::copy(t.suffix_types.begin(), t.suffix_types.end(), e.token_type_ids.begin() + static_cast<std::ptrdiff_t>(body_end));
  }
  e.attention_mask.assign(e.ids.size(), 1);
  return e;
}

void WordPieceTokenizer::encode_pieces(std::string_view text, std::vector<int64_t>& out) const {
  impl_->encode_text(text, out);
}

std::vector<std::string> WordPieceTokenizer::tokenize(std::string_view text) const {
  std::vector<int64_t> ids;
  impl_->encode_text(text, ids);
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int64_t id : ids) out.push_back(impl_->tokens[static_cast<size_t>(id)]);
  return out;
}

namespace {

// The WordPiece decoder's cleanup (`tokenizers`' decoders::wordpiece::cleanup), applied per token.
std::string cleanup(std::string s) {
  static const std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
      {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
      out.append(s, pos, hit - pos);
      out.append(to);
    }
    out.append(s, pos);
    s = std::move(out);
  }
  return s;
}

}  // namespace

std::string WordPieceTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string out;
  bool first = true;
  for (int64_t id : ids) {
    if (!detail::has_token_at(m.tokens, m.has_token, id))
      throw TokenizerError(m.name + ": decode: id " + std::to_string(id) + " is not in the vocabulary");
    if (skip_special_tokens) {
      const detail::AddedToken* a = m.added.find_id(id);
      if (a && a->special) continue;
    }
    const std::string& t = m.tokens[static_cast<size_t>(id)];
    std::string piece;
    if (!first && t.starts_with(m.opt.continuing_subword_prefix)) {
      piece = t.substr(m.opt.continuing_subword_prefix.size());
    } else {
      piece = first ? t : " " + t;
    }
    first = false;
    out += cleanup(std::move(piece));
  }
  return out;
}

int64_t WordPieceTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->tokens.size()); }
int64_t WordPieceTokenizer::token_to_id(std::string_view token) const {
  if (const detail::AddedToken* a = impl_->added.find(token)) return a->id;
  return detail::lookup(impl_->word_start, token);
}
std::string WordPieceTokenizer::id_to_token(int64_t id) const {
  if (!detail::has_token_at(impl_->tokens, impl_->has_token, id))
    throw TokenizerError(impl_->name + ": id " + std::to_string(id) + " is not in the vocabulary");
  return impl_->tokens[static_cast<size_t>(id)];
}
int64_t WordPieceTokenizer::pad_id() const { return impl_->pad; }
int64_t WordPieceTokenizer::unk_id() const { return impl_->unk; }
int64_t WordPieceTokenizer::cls_id() const { return impl_->cls; }
int64_t WordPieceTokenizer::sep_id() const { return impl_->sep; }
int64_t WordPieceTokenizer::mask_id() const { return impl_->mask; }
const WordPieceOptions& WordPieceTokenizer::options() const { return impl_->opt; }

}  // namespace attn::text
