// src/text/token_map.h — string -> id hash map looked up by string_view without allocating.
// Internal to src/text.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

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

}  // namespace attn::text::detail
