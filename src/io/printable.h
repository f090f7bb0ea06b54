// src/io/printable.h — names from untrusted files (tensor keys, zip entries, pickle globals), escaped
// and clipped for error messages: printable("a\nb") == "a\\x0ab".
#pragma once
#include <cstdio>
#include <string>

namespace attn::io {

inline std::string printable(const std::string& s, size_t max_chars = 200) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_chars; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max_chars) out += "...";
  return out;
}

}  // namespace attn::io
