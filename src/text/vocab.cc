// src/text/vocab.cc — character- and word-level vocabularies (attn/text/vocab.h).
#include "attn/text/vocab.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace attn::text {

// ------------------------------------------------------------------------------------------ UTF-8

size_t utf8_sequence_length(std::string_view s, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(pos);
  if (b0 < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) n = 2, cp = b0 & 0x1Fu;
  else if (b0 >= 0xE0 && b0 <= 0xEF) n = 3, cp = b0 & 0x0Fu;
  else if (b0 >= 0xF0 && b0 <= 0xF4) n = 4, cp = b0 & 0x07u;
  else return 0;  // a continuation byte, an overlong lead (C0, C1) or above U+10FFFF (F5..FF)
  if (pos + n > s.size()) return 0;
  for (size_t i = 1; i < n; ++i) {
    if ((byte(pos + i) & 0xC0u) != 0x80u) return 0;
    cp = (cp << 6) | (byte(pos + i) & 0x3Fu);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;  // overlong, too large
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;                                           // a UTF-16 surrogate
  return n;
}

namespace {

[[noreturn]] void throw_bad_utf8(std::string_view s, size_t pos, const std::string& source) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned>(static_cast<unsigned char>(s[pos])));
  throw std::runtime_error(source + ": invalid UTF-8 at byte offset " + std::to_string(pos) + " (byte " + hex + ")");
}

uint32_t decode_at(std::string_view s, size_t pos, size_t n) {
  const auto b = [&](size_t i) { return uint32_t(static_cast<unsigned char>(s[pos + i])); };
  if (n == 1) return b(0);
  if (n == 2) return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
  if (n == 3) return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
}

// Python's str.isspace() code points (what str.split() splits on).
bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Calls fn(token, byte offset) for every token of `text` at `level`.
template <typename Fn>
void for_each_token(std::string_view text, VocabLevel level, const std::string& source, Fn&& fn) {
  size_t word_start = std::string_view::npos;
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = utf8_sequence_length(text, pos);
    if (n == 0) throw_bad_utf8(text, pos, source);
    if (level == VocabLevel::Char) {
      fn(text.substr(pos, n), pos);
    } else if (is_space(decode_at(text, pos, n))) {
      if (word_start != std::string_view::npos) fn(text.substr(word_start, pos - word_start), word_start);
      word_start = std::string_view::npos;
    } else if (word_start == std::string_view::npos) {
      word_start = pos;
    }
    pos += n;
  }
  if (word_start != std::string_view::npos) fn(text.substr(word_start), word_start);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error(path + ": read error");
  return ss.str();
}

const char* level_name(VocabLevel l) { return l == VocabLevel::Char ? "char" : "word"; }

std::string escape(const std::string& t) {
  std::string out;
  for (unsigned char c : t) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == ' ') out += "\\s";  // visible, and safe from editors trimming trailing spaces
    else if (c < 0x20 || c == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", unsigned(c));
      out += hex;
    } else {
      out += char(c);
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void check_utf8(std::string_view text, const std::string& source) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = utf8_sequence_length(text, pos);
    if (n == 0) throw_bad_utf8(text, pos, source);
    pos += n;
  }
}

// ----------------------------------------------------------------------------------------- build

void Vocab::add(const std::string& token) {
  ids_.emplace(token, int64_t(tokens_.size()));
  tokens_.push_back(token);
}

namespace {

void count_tokens(std::string_view text, VocabLevel level, const std::string& source,
                  std::map<std::string, int64_t>& counts) {
  for_each_token(text, level, source, [&](std::string_view tok, size_t) { ++counts[std::string(tok)]; });
}

Vocab build_from_counts(const std::map<std::string, int64_t>& counts, const VocabOptions& o);

}  // namespace

Vocab Vocab::build(std::string_view text, const VocabOptions& o, const std::string& source) {
  std::map<std::string, int64_t> counts;
  count_tokens(text, o.level, source, counts);
  return build_from_counts(counts, o);
}

Vocab Vocab::build_from_files(const std::vector<std::string>& paths, const VocabOptions& o) {
  std::map<std::string, int64_t> counts;
  for (const std::string& p : paths) count_tokens(read_file(p), o.level, p, counts);
  return build_from_counts(counts, o);
}

namespace {

Vocab build_from_counts(const std::map<std::string, int64_t>& counts, const VocabOptions& o) {
  if (o.min_freq < 1) throw std::invalid_argument("Vocab: min_freq must be >= 1, got " + std::to_string(o.min_freq));
  if (o.max_size != -1 && o.max_size < int64_t(o.specials.size()))
    throw std::invalid_argument("Vocab: max_size " + std::to_string(o.max_size) + " leaves no room for the " +
                                std::to_string(o.specials.size()) + " specials");
  if (!o.unk_token.empty() && std::find(o.specials.begin(), o.specials.end(), o.unk_token) == o.specials.end())
    throw std::invalid_argument("Vocab: unk_token '" + o.unk_token + "' is not one of the specials");
  std::string text = "attn-vocab 1\nlevel=" + std::string(level_name(o.level)) +
                     "\nspecials=" + std::to_string(o.specials.size()) + "\nunk=" + escape(o.unk_token) + "\n";
  std::vector<std::pair<std::string, int64_t>> ranked;
  for (const auto& [tok, n] : counts)
    if (n >= o.min_freq && std::find(o.specials.begin(), o.specials.end(), tok) == o.specials.end())
      ranked.emplace_back(tok, n);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  size_t keep = ranked.size();
  if (o.max_size != -1) keep = std::min(keep, size_t(o.max_size) - o.specials.size());
  std::string body;
  for (const std::string& s : o.specials) body += escape(s) + "\n";
  for (size_t i = 0; i < keep; ++i) body += escape(ranked[i].first) + "\n";
  text += "size=" + std::to_string(o.specials.size() + keep) + "\n" + body;
  // One path to a vocabulary: the parser checks specials, duplicates and the unknown token.
  try {
    return Vocab::parse(text, "Vocab::build");
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(std::string("Vocab options: ") + e.what());
  }
}

}  // namespace

// ----------------------------------------------------------------------------------- save / load

std::string Vocab::serialize() const {
  std::string s = "attn-vocab 1\nlevel=" + std::string(level_name(level_)) + "\nspecials=" +
                  std::to_string(num_specials_) + "\nunk=" + (unk_id_ >= 0 ? escape(tokens_[size_t(unk_id_)]) : "") +
                  "\nsize=" + std::to_string(tokens_.size()) + "\n";
  for (const std::string& t : tokens_) s += escape(t) + "\n";
  return s;
}

void Vocab::save(const std::string& path) const {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(path + ": cannot open " + tmp + " for writing");
    const std::string s = serialize();
    out.write(s.data(), std::streamsize(s.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw std::runtime_error(path + ": write error");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": cannot rename the temporary file into place: " + ec.message());
  }
}

Vocab Vocab::load(const std::string& path) { return parse(read_file(path), path); }

// ---------------------------------------------------------------------------------------- parsing

namespace {

[[noreturn]] void parse_error(const std::string& name, size_t line, const std::string& what) {
  throw std::runtime_error(name + ":" + std::to_string(line) + ": " + what);
}

// "key=value" -> value; errors name the line.
std::string_view field(std::string_view line, std::string_view key, const std::string& name, size_t lineno) {
  if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != '=')
    parse_error(name, lineno, "expected '" + std::string(key) + "=...', got '" + std::string(line.substr(0, 60)) + "'");
  return line.substr(key.size() + 1);
}

int64_t count_field(std::string_view line, std::string_view key, const std::string& name, size_t lineno) {
  std::string_view v = field(line, key, name, lineno);
  if (v.empty() || v.size() > 12 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    parse_error(name, lineno, std::string(key) + " must be a non-negative integer below 10^12, got '" +
                                  std::string(v.substr(0, 40)) + "'");
  return std::stoll(std::string(v));
}

std::string unescape(std::string_view s, const std::string& name, size_t lineno) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    const std::string col = " at column " + std::to_string(i + 1);
    if (i + 1 >= s.size()) parse_error(name, lineno, "a lone backslash" + col);
    const char e = s[++i];
    if (e == '\\') out += '\\';
    else if (e == 'n') out += '\n';
    else if (e == 't') out += '\t';
    else if (e == 'r') out += '\r';
    else if (e == 's') out += ' ';
    else if (e == 'x') {
      const int hi = i + 2 < s.size() ? hex_value(s[i + 1]) : -1, lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) parse_error(name, lineno, "\\x needs two hex digits" + col);
      out += char(hi * 16 + lo);
      i += 2;
    } else {
      parse_error(name, lineno, std::string("unknown escape '\\") + e + "'" + col);
    }
  }
  return out;
}

// The lines of `content` (without "\n"); the last one may lack its "\n".
std::vector<std::string_view> split_lines(std::string_view content) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == std::string_view::npos) end = content.size();
    lines.push_back(content.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

void check_line_bytes(std::string_view line, size_t offset, const std::string& name, size_t lineno) {
  for (size_t i = 0; i < line.size();) {
    const unsigned char c = static_cast<unsigned char>(line[i]);
    if (c < 0x20 || c == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", unsigned(c));
      parse_error(name, lineno, std::string("raw control byte ") + hex + " at column " + std::to_string(i + 1) +
                                    " (tokens escape them; is this a Windows CRLF file?)");
    }
    const size_t n = utf8_sequence_length(line, i);
    if (n == 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", unsigned(c));
      parse_error(name, lineno, "invalid UTF-8 at byte offset " + std::to_string(offset + i) + " (byte " + hex + ")");
    }
    i += n;
  }
}

void check_token(const std::string& tok, bool special, VocabLevel level, const std::string& name, size_t lineno) {
  if (tok.empty()) parse_error(name, lineno, "empty token");
  check_utf8(tok, name + ":" + std::to_string(lineno) + ": token");
  if (special) return;
  if (level == VocabLevel::Char && utf8_sequence_length(tok, 0) != tok.size())
    parse_error(name, lineno, "a char-level token must be one code point, got '" + escape(tok) + "'");
  if (level == VocabLevel::Word) {
    for (size_t i = 0; i < tok.size();) {
      const size_t n = utf8_sequence_length(tok, i);
      if (is_space(decode_at(tok, i, n)))
        parse_error(name, lineno, "a word-level token cannot contain whitespace, got '" + escape(tok) + "'");
      i += n;
    }
  }
}

}  // namespace

Vocab Vocab::parse(std::string_view content, const std::string& name) {
  const std::vector<std::string_view> lines = split_lines(content);
  size_t offset = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    check_line_bytes(lines[i], offset, name, i + 1);
    offset += lines[i].size() + 1;
  }
  auto line = [&](size_t lineno, const char* what) -> std::string_view {
    if (lineno > lines.size()) parse_error(name, lineno, std::string("the file ends before the ") + what + " line");
    return lines[lineno - 1];
  };
  if (line(1, "header") != "attn-vocab 1")
    parse_error(name, 1, "not an attn vocabulary file (expected 'attn-vocab 1')");
  Vocab v;
  const std::string_view level = field(line(2, "level"), "level", name, 2);
  if (level == "char") v.level_ = VocabLevel::Char;
  else if (level == "word") v.level_ = VocabLevel::Word;
  else parse_error(name, 2, "level must be 'char' or 'word', got '" + std::string(level.substr(0, 40)) + "'");
  const int64_t specials = count_field(line(3, "specials"), "specials", name, 3);
  const std::string_view unk_line = line(4, "unk");
  const std::string unk_token = unk_line == "unk=" ? std::string() : unescape(field(unk_line, "unk", name, 4), name, 4);
  const int64_t size = count_field(line(5, "size"), "size", name, 5);
  if (specials > size)
    parse_error(name, 3, "specials=" + std::to_string(specials) + " exceeds size=" + std::to_string(size));
  if (int64_t(lines.size()) - 5 < size)
    parse_error(name, lines.size() + 1, "the file ends after " + std::to_string(lines.size() - 5) + " of " +
                                            std::to_string(size) + " tokens");
  if (int64_t(lines.size()) - 5 > size)
    parse_error(name, size_t(size) + 6, "more token lines than size=" + std::to_string(size));
  v.num_specials_ = specials;
  for (int64_t i = 0; i < size; ++i) {
    const size_t lineno = size_t(i) + 6;
    std::string tok = unescape(lines[lineno - 1], name, lineno);
    check_token(tok, i < specials, v.level_, name, lineno);
    if (auto it = v.ids_.find(tok); it != v.ids_.end())
      parse_error(name, lineno,
                  "duplicate token '" + escape(tok) + "' (also on line " + std::to_string(it->second + 6) + ")");
    v.add(tok);
  }
  if (!unk_token.empty()) {
    auto it = v.ids_.find(unk_token);
    if (it == v.ids_.end())
      parse_error(name, 4, "the unknown token '" + escape(unk_token) + "' is not in the vocabulary");
    v.unk_id_ = it->second;
  }
  return v;
}

// ------------------------------------------------------------------------------- encode / decode

std::vector<std::string> Vocab::split(std::string_view text, const std::string& source) const {
  std::vector<std::string> out;
  for_each_token(text, level_, source, [&](std::string_view t, size_t) { out.emplace_back(t); });
  return out;
}

std::vector<int64_t> Vocab::lookup(std::string_view text, const std::string& source, bool strict) const {
  std::vector<int64_t> ids;
  for_each_token(text, level_, source, [&](std::string_view t, size_t pos) {
    auto it = ids_.find(std::string(t));
    if (it != ids_.end()) {
      ids.push_back(it->second);
    } else if (!strict && unk_id_ >= 0) {
      ids.push_back(unk_id_);
    } else {
      throw std::runtime_error(source + ": " + (level_ == VocabLevel::Char ? "character" : "word") + " '" +
                               escape(std::string(t)) + "' at byte offset " + std::to_string(pos) +
                               " is not in the vocabulary" + (unk_id_ < 0 ? " (which has no unknown token)" : ""));
    }
  });
  return ids;
}

std::vector<int64_t> Vocab::encode(std::string_view text, const std::string& source) const {
  return lookup(text, source, false);
}

std::vector<int64_t> Vocab::encode_strict(std::string_view text, const std::string& source) const {
  return lookup(text, source, true);
}

int64_t Vocab::id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

const std::string& Vocab::token(int64_t id) const {
  if (id < 0 || id >= size())
    throw std::out_of_range("Vocab: id " + std::to_string(id) + " is outside [0, " + std::to_string(size()) + ")");
  return tokens_[size_t(id)];
}

std::string Vocab::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (level_ == VocabLevel::Word && i > 0) out += ' ';
    out += token(ids[i]);
  }
  return out;
}

}  // namespace attn::text
