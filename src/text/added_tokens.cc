// src/text/added_tokens.cc — see added_tokens.h.
#include "text/added_tokens.h"

#include <algorithm>

namespace attn::text::detail {

void AddedTokens::add(AddedToken token) {
  if (token.content.empty()) return;  // an empty token would match everywhere; HF ignores it too
  std::erase_if(tokens_, [&](const AddedToken& t) { return t.content == token.content; });
  tokens_.push_back(std::move(token));
  std::stable_sort(tokens_.begin(), tokens_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  first_byte_ = {};
  for (const AddedToken& t : tokens_) first_byte_[static_cast<unsigned char>(t.content[0])] = true;
}

const AddedToken* AddedTokens::find(std::string_view content) const {
  for (const AddedToken& t : tokens_)
    if (t.content == content) return &t;
  return nullptr;
}

const AddedToken* AddedTokens::find_id(int64_t id) const {
  for (const AddedToken& t : tokens_)
    if (t.id == id) return &t;
  return nullptr;
}

const AddedToken* AddedTokens::match_at(std::string_view text, size_t i) const {
  const std::string_view rest = text.substr(i);
  for (const AddedToken& t : tokens_)
    if (rest.starts_with(t.content)) return &t;
  return nullptr;
}

}  // namespace attn::text::detail
