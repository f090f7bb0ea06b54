// src/text/added_tokens.h — the added (special) tokens of a Hugging Face tokenizer, split out of the raw
// text before normalisation: leftmost-longest match, as the `tokenizers` package's AddedVocabulary.
// Internal to src/text.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace attn::text::detail {

struct AddedToken {
  std::string content;
  int64_t id = -1;
  bool special = true;
  bool lstrip = false, rstrip = false;  // the match also takes the (ASCII) whitespace on its left / right
};

class AddedTokens {
 public:
  void add(AddedToken token);  // a token with the same content replaces the earlier one
  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* find(std::string_view content) const;
  const AddedToken* find_id(int64_t id) const;

  // Calls on_text(std::string_view) for each run of ordinary text (possibly empty runs are skipped) and
  // on_token(const AddedToken&) for each match, in text order.
  template <class OnText, class OnToken>
  void split(std::string_view text, OnText&& on_text, OnToken&& on_token) const {
    if (tokens_.empty()) {
      if (!text.empty()) on_text(text);
      return;
    }
    size_t run_start = 0, i = 0;
    while (i < text.size()) {
      const AddedToken* hit = first_byte_[static_cast<unsigned char>(text[i])] ? match_at(text, i) : nullptr;
      if (!hit) {
        ++i;
        continue;
      }
      size_t left = i, right = i + hit->content.size();
      if (hit->lstrip)
        while (left > run_start && is_space(text[left - 1])) --left;
      if (hit->rstrip)
        while (right < text.size() && is_space(text[right])) ++right;
      if (left > run_start) on_text(text.substr(run_start, left - run_start));
      on_token(*hit);
      run_start = i = right;
    }
    if (run_start < text.size()) on_text(text.substr(run_start));
  }

 private:
  static bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
  const AddedToken* match_at(std::string_view text, size_t i) const;
  std::vector<AddedToken> tokens_;  // longest first: the first match at a position is the longest
  std::array<bool, 256> first_byte_{};
};

}  // namespace attn::text::detail
