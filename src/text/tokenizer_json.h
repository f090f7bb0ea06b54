// src/text/tokenizer_json.h — reading Hugging Face tokenizer files: whole-file reads and checked access to
// tokenizer.json's keys, every error a TokenizerError naming the file and the key. Internal to src/text.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "attn/text/tokenizer.h"
#include "text/added_tokens.h"

namespace attn::text::detail {

using nlohmann::json;

std::string read_tokenizer_file(const std::string& path);
// Parses JSON; a syntax error names `name` and the byte offset.
json parse_tokenizer_json(std::string_view text, const std::string& name);

[[noreturn]] void fail(const std::string& name, const std::string& key, const std::string& message);

// obj[key] for an object `obj` found at `path` ("model", "normalizer", ...); missing keys are errors.
const json& require(const json& obj, const std::string& path, const char* key, const std::string& name);
std::string get_string(const json& obj, const std::string& path, const char* key, const std::string& name);
// Absent or null keys give `fallback`.
bool get_bool(const json& obj, const std::string& path, const char* key, bool fallback, const std::string& name);
int64_t get_int(const json& obj, const std::string& path, const char* key, int64_t fallback, int64_t lo, int64_t hi,
                const std::string& name);
std::string type_of(const json& component, const std::string& path, const std::string& name);  // "" for null

// "added_tokens": [{"id", "content", "special", "lstrip", "rstrip", ...}, ...]
void read_added_tokens(const json& root, const std::string& name, AddedTokens& out);

// Largest id a vocabulary of `entries` tokens may use: ids must be dense-ish, so a hostile file cannot make
// the id table absurdly large.
inline int64_t max_vocab_id(size_t entries) { return 2 * static_cast<int64_t>(entries) + 1024; }

}  // namespace attn::text::detail
