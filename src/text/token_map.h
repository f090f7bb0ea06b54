// src/text/token_map.h — string -> id hash map looked up by string_view without allocating, and the id -> string
// table with holes that the WordPiece and byte-level BPE tokenizers keep. Internal to src/text.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace attn::text::detail {

struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

using TokenMap = std::unordered_map<std::string, int64_t, StringViewHash, std::equal_to<>>;

inline int64_t lookup(const TokenMap& map, std::string_view key) {
  const auto it = map.find(key);
  return it == map.end() ? -1 : it->second;
}

// id -> token string with holes: a tokenizer.json vocabulary may skip ids, so has_token[id] says which exist.
// Sets `id`, growing both tables as needed.
inline void set_token_at(std::vector<std::string>& tokens, std::vector<char>& has_token, int64_t id,
                         const std::string& token) {
  if (static_cast<size_t>(id) >= tokens.size()) {
    tokens.resize(static_cast<size_t>(id) + 1);
    has_token.resize(static_cast<size_t>(id) + 1, 0);
  }
  tokens[static_cast<size_t>(id)] = token;
  has_token[static_cast<size_t>(id)] = 1;
}

inline bool has_token_at(const std::vector<std::string>& tokens, const std::vector<char>& has_token, int64_t id) {
  return id >= 0 && id < static_cast<int64_t>(tokens.size()) && has_token[static_cast<size_t>(id)];
}

}  // namespace attn::text::detail
