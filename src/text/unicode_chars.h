// src/text/unicode_chars.h — UTF-8 decoding with replacement and the Unicode character classes the
// Hugging Face tokenizers use (data from utf8proc). Internal to src/text.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace attn::text::detail {

constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes the code point at s[i] and advances i. An invalid sequence yields U+FFFD and advances over its
// maximal subpart (Unicode's recommended practice, as Python's errors="replace" and Rust's
// from_utf8_lossy); `valid` says which.
inline char32_t decode_utf8(const unsigned char* s, size_t n, size_t& i, bool& valid) {
  const unsigned char b0 = s[i];
  valid = true;
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int need = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  char32_t cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1, cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2, cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3, cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    ++i;
    valid = false;
    return kReplacementChar;
  }
  size_t j = i + 1;
  for (int k = 0; k < need; ++k, ++j) {
    if (j >= n || s[j] < lo || s[j] > hi) {
      i = j;  // the maximal subpart ends before the offending byte
      valid = false;
      return kReplacementChar;
    }
    cp = (cp << 6) | (s[j] & 0x3F);
    lo = 0x80, hi = 0xBF;
  }
  i = j;
  return cp;
}

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// `bytes` with each invalid sequence replaced by U+FFFD (see decode_utf8).
std::string utf8_lossy(std::string_view bytes);
bool is_valid_utf8(std::string_view bytes);

// Unicode White_Space (Rust's char::is_whitespace): \t..\r, U+0085 and the categories Zs, Zl, Zp.
bool is_whitespace(char32_t c);
// BERT's control characters: Cc, Cf, Co, Cs except \t \n \r (the `tokenizers` package keeps unassigned
// code points, Cn, which transformers' old Python BertTokenizer dropped).
bool is_control(char32_t c);
// BERT's punctuation: ASCII punctuation or Unicode P*.
bool is_punctuation(char32_t c);
// CJK Unified Ideographs blocks, as the `tokenizers` package lists them.
bool is_chinese_char(char32_t c);
bool is_nonspacing_mark(char32_t c);  // Mn
int combining_class(char32_t c);
// Canonical decomposition (NFD) of one code point, appended to `out`; code points in `out` from `from` on
// are then put in canonical order (stable sort of runs of non-zero combining class).
void append_nfd(char32_t c, std::u32string& out);
void canonical_reorder(std::u32string& s, size_t from);
char32_t to_lower(char32_t c);  // simple lower-case mapping (U+0130 is the caller's special case)

}  // namespace attn::text::detail
