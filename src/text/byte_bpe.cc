// src/text/byte_bpe.cc — GPT-2's byte-level BPE (see attn/text/byte_bpe.h for the steps).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "attn/text/byte_bpe.h"

#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <queue>
#include <shared_mutex>

#include "text/added_tokens.h"
#include "text/token_map.h"
#include "text/tokenizer_json.h"
#include "text/unicode_chars.h"

namespace attn::text {

using detail::json;

namespace {

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr size_t kCacheCapacity = 10000;  // as the `tokenizers` package: a full cache takes no new words
constexpr size_t kCacheMaxWordBytes = 256;

struct PcreCodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct PcreMatchDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

// GPT-2's pre-tokenisation regex, compiled once (UTF-8, Unicode properties, JIT when available).
// MATCH_INVALID_UTF: invalid UTF-8 never matches, and the gaps become pre-tokens of their own.
pcre2_code* gpt2_regex() {
  static const std::unique_ptr<pcre2_code, PcreCodeDeleter> code = [] {
    int err = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern), PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
    if (!c) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw TokenizerError(std::string("GPT-2 pre-tokenisation regex: PCRE2: ") + reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if the JIT is unavailable
    return std::unique_ptr<pcre2_code, PcreCodeDeleter>(c);
  }();
  return code.get();
}

// One BPE symbol of a word: a token id over a run of bytes, in a doubly linked list.
struct Symbol {
  int64_t id;
  int32_t prev, next;
  int32_t len;  // 0: merged into its left neighbour
};
struct Candidate {
  int32_t rank, pos;
  int64_t new_id;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

struct Scratch {
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::vector<int64_t> word_ids;
  std::unique_ptr<pcre2_match_data, PcreMatchDeleter> match{pcre2_match_data_create(1, nullptr)};
};
thread_local Scratch t_scratch;

enum class UnicodeForm { NFC, NFD, NFKC, NFKD };

}  // namespace

struct ByteLevelBPE::Impl {
  std::string name;
  ByteLevelBPEOptions opt;
  bool use_regex = true, ignore_merges = false, fuse_unk = false;
  std::vector<UnicodeForm> normalizers;
  std::vector<std::string> tokens;       // vocabulary strings by id
  std::vector<char> has_token;           // by id
  std::vector<std::string> token_bytes;  // the bytes each id decodes to
  detail::TokenMap vocab;                // vocabulary string -> id
  detail::TokenMap bytes_vocab;          // raw bytes -> id (ignore_merges)
  std::array<int64_t, 256> byte_id{};    // -1: the byte has no token
  struct Merge {
    int32_t rank;
    int64_t new_id;
  };
  std::unordered_map<uint64_t, Merge> merges;  // (left id << 32 | right id)
  detail::AddedTokens added;
  int64_t unk = -1, pad = -1, eos = -1;
  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int64_t>, detail::StringViewHash, std::equal_to<>> cache;

  void set_token(int64_t id, const std::string& token);
  void read_vocab(const json& vocab, const std::string& key);
  void read_merges_txt(std::string_view text, const std::string& merges_name);
  void add_specials_from_options();
  void add_merge(std::string_view left, std::string_view right, int32_t rank, const std::string& where);
  void finish();
  void bpe(std::string_view word, std::vector<int64_t>& out) const;
  void word(std::string_view bytes, std::vector<int64_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int64_t>& out) const;
  void encode_text(std::string_view text, std::vector<int64_t>& out) const;
};

const std::vector<std::string>& ByteLevelBPE::byte_to_unicode() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      detail::append_utf8(t[static_cast<size_t>(b)], printable ? char32_t(b) : char32_t(256 + next++));
    }
    return t;
  }();
  return table;
}

namespace {

// The inverse of byte_to_unicode for one code point; -1 if it is not one of the 256.
int unicode_to_byte(char32_t c) {
  static const std::array<int16_t, 324> table = [] {
    std::array<int16_t, 324> t;
    t.fill(-1);
    const auto& fwd = ByteLevelBPE::byte_to_unicode();
    for (int b = 0; b < 256; ++b) {
      size_t i = 0;
      bool valid = true;
      const char32_t c = detail::decode_utf8(reinterpret_cast<const unsigned char*>(fwd[b].data()), fwd[b].size(), i, valid);
      t[c] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return c < table.size() ? table[c] : -1;
}

// The bytes a vocabulary string stands for; characters outside the byte alphabet stand for their own
// UTF-8 (as the ByteLevel decoder does). `exact` is false if there were any.
std::string vocab_string_to_bytes(std::string_view token, bool& exact) {
  std::string out;
  exact = true;
  const auto* s = reinterpret_cast<const unsigned char*>(token.data());
  for (size_t i = 0; i < token.size();) {
    const size_t start = i;
    bool valid = true;
    const char32_t c = detail::decode_utf8(s, token.size(), i, valid);
    const int b = valid ? unicode_to_byte(c) : -1;
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
    } else {
      out.append(token.substr(start, i - start));
      exact = false;
    }
  }
  return out;
}

}  // namespace

void ByteLevelBPE::Impl::set_token(int64_t id, const std::string& token) {
  detail::set_token_at(tokens, has_token, id, token);
  vocab[token] = id;
}

void ByteLevelBPE::Impl::add_merge(std::string_view left, std::string_view right, int32_t rank,
                                   const std::string& where) {
  const int64_t a = detail::lookup(vocab, left), b = detail::lookup(vocab, right);
  if (a < 0 || b < 0)
    throw TokenizerError(where + ": merge '" + std::string(left) + " " + std::string(right) + "': '" +
                         std::string(a < 0 ? left : right) + "' is not in the vocabulary");
  std::string joined(left);
  joined += right;
  const int64_t merged = detail::lookup(vocab, joined);
  if (merged < 0)
    throw TokenizerError(where + ": merge '" + std::string(left) + " " + std::string(right) + "': the result '" +
                         joined + "' is not in the vocabulary");
  merges[(static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b)] = {rank, merged};  // a later duplicate wins
}

// Decoding bytes, the byte -> id table and the specials, once the vocabulary is known.
void ByteLevelBPE::Impl::finish() {
  token_bytes.assign(tokens.size(), {});
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (!has_token[id]) continue;
    bool exact = true;
    token_bytes[id] = vocab_string_to_bytes(tokens[id], exact);
    if (exact && !added.find_id(static_cast<int64_t>(id))) bytes_vocab.emplace(token_bytes[id], static_cast<int64_t>(id));
  }
  const auto& b2u = byte_to_unicode();
  for (int b = 0; b < 256; ++b) byte_id[static_cast<size_t>(b)] = detail::lookup(vocab, b2u[static_cast<size_t>(b)]);
  eos = -1;
  if (const detail::AddedToken* a = added.find("<|endoftext|>")) eos = a->id;
  pad = opt.pad_token.empty() ? -1 : detail::lookup(vocab, opt.pad_token);
  if (!opt.pad_token.empty() && pad < 0)
    throw TokenizerError(name + ": the pad token '" + opt.pad_token + "' is not in the vocabulary");
}

// BPE over one pre-token's bytes: the lowest-ranked adjacent pair merges first, leftmost on ties
// (the `tokenizers` package's Word::merge_all, which is O(n log n) also for hostile, huge words).
void ByteLevelBPE::Impl::bpe(std::string_view word, std::vector<int64_t>& out) const {
  Scratch& s = t_scratch;
  std::vector<Symbol>& sym = s.symbols;
  sym.clear();
  for (unsigned char byte : word) {
    int64_t id = byte_id[byte];
    if (id < 0) {
      if (unk < 0) continue;  // no token and no unknown token: the byte is dropped, as `tokenizers` does
      if (fuse_unk && !sym.empty() && sym.back().id == unk) {
        ++sym.back().len;
        continue;
      }
      id = unk;
    }
    const int32_t pos = static_cast<int32_t>(sym.size());
    sym.push_back({id, pos - 1, -1, 1});
    if (pos > 0) sym[static_cast<size_t>(pos) - 1].next = pos;
  }
  auto find_merge = [&](int64_t a, int64_t b) -> const Merge* {
    const auto it = merges.find((static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  std::vector<Candidate>& heap = s.heap;
  heap.clear();
  const auto cmp = std::greater<Candidate>();
  auto push = [&](int32_t pos) {
    const int32_t next = sym[static_cast<size_t>(pos)].next;
    if (next < 0) return;
    if (const Merge* m = find_merge(sym[static_cast<size_t>(pos)].id, sym[static_cast<size_t>(next)].id)) {
      heap.push_back({m->rank, pos, m->new_id});
      std::push_heap(heap.begin(), heap.end(), cmp);
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), cmp);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = sym[static_cast<size_t>(top.pos)];
    if (left.len == 0 || left.next < 0) continue;
    Symbol& right = sym[static_cast<size_t>(left.next)];
    const Merge* m = find_merge(left.id, right.id);
    if (!m || m->new_id != top.new_id) continue;  // the pair changed since it was queued
    left.id = top.new_id;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) sym[static_cast<size_t>(left.next)].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
  for (const Symbol& x : sym)
    if (x.len > 0) out.push_back(x.id);
}

// One pre-token: the vocabulary directly (ignore_merges), the cache, or BPE.
void ByteLevelBPE::Impl::word(std::string_view bytes, std::vector<int64_t>& out) const {
  if (ignore_merges) {
    const int64_t id = detail::lookup(bytes_vocab, bytes);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = bytes.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::shared_lock lock(cache_mutex);
    const auto it = cache.find(bytes);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  bpe(bytes, out);
  if (cacheable) {
    std::unique_lock lock(cache_mutex);
    if (cache.size() < kCacheCapacity)
      cache.emplace(std::string(bytes), std::vector<int64_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
  }
}

namespace {

std::string normalize(std::string_view text, const std::vector<UnicodeForm>& forms) {
  std::string s = detail::utf8_lossy(text);
  for (UnicodeForm f : forms) {
    int options = UTF8PROC_STABLE;
    if (f == UnicodeForm::NFC || f == UnicodeForm::NFKC) options |= UTF8PROC_COMPOSE;
    else options |= UTF8PROC_DECOMPOSE;
    if (f == UnicodeForm::NFKC || f == UnicodeForm::NFKD) options |= UTF8PROC_COMPAT;
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                            static_cast<utf8proc_ssize_t>(s.size()), &out,
                                            static_cast<utf8proc_option_t>(options));
    if (n < 0) throw TokenizerError(std::string("Unicode normalisation failed: ") + utf8proc_errmsg(n));
    s.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);
  }
  return s;
}

}  // namespace

// Normalisation, ByteLevel pre-tokenisation and BPE of text that holds no added token.
void ByteLevelBPE::Impl::encode_plain(std::string_view text, std::vector<int64_t>& out) const {
  std::string owned;
  if (!normalizers.empty()) {
    owned = normalize(text, normalizers);
    text = owned;
  }
  if (opt.add_prefix_space && !text.starts_with(' ')) {
    owned.insert(owned.begin(), ' ');
    if (normalizers.empty()) owned.append(text);
    text = owned;
  }
  if (!use_regex) {
    if (!text.empty()) word(text, out);
    return;
  }
  pcre2_match_data* md = t_scratch.match.get();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    const int rc = pcre2_match(gpt2_regex(), subject, text.size(), offset, 0, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      word(text.substr(offset), out);  // only invalid UTF-8 is left
      return;
    }
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw TokenizerError(name + ": GPT-2 pre-tokenisation: PCRE2: " + reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[0] > offset) word(text.substr(offset, ov[0] - offset), out);  // invalid UTF-8 before the match
    if (ov[1] <= ov[0]) {  // cannot happen with this pattern (no empty matches); guards against a loop
      word(text.substr(ov[0]), out);
      return;
    }
    word(text.substr(ov[0], ov[1] - ov[0]), out);
    offset = ov[1];
  }
}

void ByteLevelBPE::Impl::encode_text(std::string_view text, std::vector<int64_t>& out) const {
  added.split(text, [&](std::string_view plain) { encode_plain(plain, out); },
              [&](const detail::AddedToken& t) { out.push_back(t.id); });
}

ByteLevelBPE::ByteLevelBPE(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ByteLevelBPE::~ByteLevelBPE() = default;
ByteLevelBPE::ByteLevelBPE(ByteLevelBPE&&) noexcept = default;
ByteLevelBPE& ByteLevelBPE::operator=(ByteLevelBPE&&) noexcept = default;

// {"token": id, ...}; ids must be dense-ish (detail::max_vocab_id).
void ByteLevelBPE::Impl::read_vocab(const json& v, const std::string& key) {
  if (!v.is_object()) detail::fail(name, key, "is not an object of token: id");
  if (v.empty()) detail::fail(name, key, "is empty");
  const int64_t max_id = detail::max_vocab_id(v.size());
  for (const auto& [token, id] : v.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > max_id)
      detail::fail(name, (key == "(root)" ? "" : key + ".") + token, "is not an id in [0, " + std::to_string(max_id) + "]");
    set_token(id.get<int64_t>(), token);
  }
}

// merges.txt: an optional "#version" first line, then "left right" per line, rank = order.
void ByteLevelBPE::Impl::read_merges_txt(std::string_view text, const std::string& merges_name) {
  int32_t rank = 0;
  size_t pos = 0;
  for (int64_t line_no = 1; pos < text.size(); ++line_no) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos)
      throw TokenizerError(merges_name + ":" + std::to_string(line_no) + ": not a merge of two tokens 'left right'");
    add_merge(line.substr(0, space), line.substr(space + 1), rank++, merges_name + ":" + std::to_string(line_no));
  }
}

// The options' special tokens become added tokens: their vocabulary id, or the next free id.
void ByteLevelBPE::Impl::add_specials_from_options() {
  for (const std::string& t : opt.special_tokens) {
    if (t.empty()) continue;
    int64_t id = detail::lookup(vocab, t);
    if (id < 0) {
      id = static_cast<int64_t>(tokens.size());
      set_token(id, t);
    }
    added.add({.content = t, .id = id, .special = true});
  }
}

ByteLevelBPE ByteLevelBPE::from_files(const std::string& vocab_json_path, const std::string& merges_txt_path,
                                      const ByteLevelBPEOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->name = vocab_json_path;
  impl->opt = options;
  impl->read_vocab(detail::parse_tokenizer_json(detail::read_tokenizer_file(vocab_json_path), vocab_json_path), "(root)");
  impl->read_merges_txt(detail::read_tokenizer_file(merges_txt_path), merges_txt_path);
  impl->add_specials_from_options();
  impl->finish();
  return ByteLevelBPE(std::move(impl));
}

ByteLevelBPE ByteLevelBPE::from_strings(std::string_view vocab_json, std::string_view merges_txt,
                                        const std::string& name, const ByteLevelBPEOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->name = name + " (vocab.json)";
  impl->opt = options;
  impl->read_vocab(detail::parse_tokenizer_json(vocab_json, impl->name), "(root)");
  impl->read_merges_txt(merges_txt, name + " (merges.txt)");
  impl->add_specials_from_options();
  impl->finish();
  return ByteLevelBPE(std::move(impl));
}

ByteLevelBPE ByteLevelBPE::from_tokenizer_json(const std::string& path) {
  return from_tokenizer_json_string(detail::read_tokenizer_file(path), path);
}

namespace {

UnicodeForm unicode_form(const std::string& type, const std::string& key, const std::string& name) {
  if (type == "NFC") return UnicodeForm::NFC;
  if (type == "NFD") return UnicodeForm::NFD;
  if (type == "NFKC") return UnicodeForm::NFKC;
  if (type == "NFKD") return UnicodeForm::NFKD;
  detail::fail(name, key, "'" + type + "' is not supported for byte-level BPE (attn reads null, NFC, NFD, NFKC, "
               "NFKD and a Sequence of them)");
}

std::vector<UnicodeForm> read_normalizer(const json& root, const std::string& name) {
  const auto it = root.find("normalizer");
  if (it == root.end() || it->is_null()) return {};
  const std::string type = detail::type_of(*it, "normalizer", name);
  if (type != "Sequence") return {unicode_form(type, "normalizer.type", name)};
  const json& list = detail::require(*it, "normalizer", "normalizers", name);
  if (!list.is_array()) detail::fail(name, "normalizer.normalizers", "is not an array");
  std::vector<UnicodeForm> forms;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string key = "normalizer.normalizers[" + std::to_string(i) + "]";
    forms.push_back(unicode_form(detail::type_of(list[i], key, name), key + ".type", name));
  }
  return forms;
}

// Options of the `tokenizers` BPE model that GPT-2-style byte-level BPE does not use must be off.
void check_unused_bpe_options(const json& model, const std::string& name) {
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() && !(dropout->is_number() && dropout->get<double>() == 0.0))
    detail::fail(name, "model.dropout", "BPE dropout is not supported (training-time randomness)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto v = model.find(key);
    if (v != model.end() && !v->is_null() && !(v->is_string() && v->get<std::string>().empty()))
      detail::fail(name, std::string("model.") + key, "is not supported with byte-level BPE");
  }
  if (detail::get_bool(model, "model", "byte_fallback", false, name))
    detail::fail(name, "model.byte_fallback", "is not supported with byte-level BPE");
}

}  // namespace

ByteLevelBPE ByteLevelBPE::from_tokenizer_json_string(std::string_view text, const std::string& name) {
  const json root = detail::parse_tokenizer_json(text, name);
  const json& model = detail::require(root, "", "model", name);
  const std::string type = detail::get_string(model, "model", "type", name);
  if (type != "BPE") detail::fail(name, "model.type", "is '" + type + "', not BPE");
  check_unused_bpe_options(model, name);
  const json& pre = detail::require(root, "", "pre_tokenizer", name);
  const std::string pre_type = detail::type_of(pre, "pre_tokenizer", name);
  if (pre_type != "ByteLevel")
    detail::fail(name, "pre_tokenizer.type", "'" + pre_type + "' is not supported (attn reads byte-level BPE: ByteLevel)");
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  impl->opt.special_tokens.clear();
  impl->opt.add_prefix_space = detail::get_bool(pre, "pre_tokenizer", "add_prefix_space", false, name);
  impl->use_regex = detail::get_bool(pre, "pre_tokenizer", "use_regex", true, name);
  impl->normalizers = read_normalizer(root, name);
  impl->ignore_merges = detail::get_bool(model, "model", "ignore_merges", false, name);
  impl->fuse_unk = detail::get_bool(model, "model", "fuse_unk", false, name);
  impl->read_vocab(detail::require(model, "model", "vocab", name), "model.vocab");
  detail::read_added_tokens(root, name, impl->added);
  const int64_t max_id = detail::max_vocab_id(impl->tokens.size());
  for (const detail::AddedToken& a : impl->added.tokens()) {
    if (a.id > max_id) detail::fail(name, "added_tokens", "id " + std::to_string(a.id) + " is far beyond the vocabulary");
    if (!detail::has_token_at(impl->tokens, impl->has_token, a.id))
      impl->set_token(a.id, a.content);
  }
  const auto unk = model.find("unk_token");
  if (unk != model.end() && !unk->is_null()) {
    const std::string u = detail::get_string(model, "model", "unk_token", name);
    impl->unk = detail::lookup(impl->vocab, u);
    if (impl->unk < 0) detail::fail(name, "model.unk_token", "'" + u + "' is not in the vocabulary");
  }
  const json& merges = detail::require(model, "model", "merges", name);
  if (!merges.is_array()) detail::fail(name, "model.merges", "is not an array");
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string key = name + ": key 'model.merges[" + std::to_string(i) + "]'";
    const json& m = merges[i];
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      impl->add_merge(m[0].get_ref<const std::string&>(), m[1].get_ref<const std::string&>(), static_cast<int32_t>(i), key);
      continue;
    }
    const std::string* s = m.is_string() ? &m.get_ref<const std::string&>() : nullptr;
    const size_t space = s ? s->find(' ') : std::string::npos;
    if (!s || space == std::string::npos || s->find(' ', space + 1) != std::string::npos)
      throw TokenizerError(key + ": not a merge \"left right\" or [left, right]");
    impl->add_merge(std::string_view(*s).substr(0, space), std::string_view(*s).substr(space + 1), static_cast<int32_t>(i), key);
  }
  if (const auto pad = root.find("padding"); pad != root.end() && pad->is_object() && pad->contains("pad_token"))
    impl->opt.pad_token = detail::get_string(*pad, "padding", "pad_token", name);
  impl->finish();
  return ByteLevelBPE(std::move(impl));
}

Encoding ByteLevelBPE::encode(std::string_view text, const EncodeOptions& options) const {
  if (options.max_length < 0) throw TokenizerError(impl_->name + ": max_length must be >= 0");
  Encoding e;
  impl_->encode_text(text, e.ids);
  if (options.max_length > 0 && static_cast<int64_t>(e.ids.size()) > options.max_length)
    e.ids.resize(static_cast<size_t>(options.max_length));
  e.token_type_ids.assign(e.ids.size(), 0);
  e.attention_mask.assign(e.ids.size(), 1);
  return e;
}

void ByteLevelBPE::encode_ids(std::string_view text, std::vector<int64_t>& out) const { impl_->encode_text(text, out); }

std::vector<std::string> ByteLevelBPE::tokenize(std::string_view text) const {
  std::vector<int64_t> ids;
  impl_->encode_text(text, ids);
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int64_t id : ids) out.push_back(impl_->tokens[static_cast<size_t>(id)]);
  return out;
}

std::string ByteLevelBPE::decode_bytes(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string out;
  for (int64_t id : ids) {
    if (!detail::has_token_at(m.tokens, m.has_token, id))
      throw TokenizerError(m.name + ": decode: id " + std::to_string(id) + " is not in the vocabulary");
    if (skip_special_tokens) {
      const detail::AddedToken* a = m.added.find_id(id);
      if (a && a->special) continue;
    }
    out += m.token_bytes[static_cast<size_t>(id)];
  }
  return out;
}

std::string ByteLevelBPE::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  return detail::utf8_lossy(decode_bytes(ids, skip_special_tokens));
}

int64_t ByteLevelBPE::vocab_size() const { return static_cast<int64_t>(impl_->tokens.size()); }
int64_t ByteLevelBPE::token_to_id(std::string_view token) const { return detail::lookup(impl_->vocab, token); }
std::string ByteLevelBPE::id_to_token(int64_t id) const {
  if (!detail::has_token_at(impl_->tokens, impl_->has_token, id))
    throw TokenizerError(impl_->name + ": id " + std::to_string(id) + " is not in the vocabulary");
  return impl_->tokens[static_cast<size_t>(id)];
}
int64_t ByteLevelBPE::pad_id() const { return impl_->pad; }
int64_t ByteLevelBPE::eos_id() const { return impl_->eos; }

}  // namespace attn::text
