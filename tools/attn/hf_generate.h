// tools/attn/hf_generate.h — `attn generate --model DIR` for a Hugging Face GPT-2 directory (config.json,
// weights, tokenizer.json or vocab.json + merges.txt); lm_cmd.cc calls it when DIR holds a config.json.
//
//   attn generate --model gpt2 --prompt "It is a truth" --length 40 --greedy
//   attn generate --model gpt2 --prompt "Once" --length 40 --temperature 0.8 --top-k 50 --top-p 0.95 --seed 1
//   attn generate --model gpt2 --prompt "Once" --greedy --format json   # {"ids":[...],"text":"...","new_tokens":n}
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

#include "attn/models/gpt2.h"

namespace attn::cli {

struct HFGenerateRequest {
  std::string model_dir;
  std::string prompt;
  models::GenerationOptions options;  // max_new_tokens, do_sample, temperature, top_k, top_p, ...
  std::string format = "text";        // text: prompt + continuation; json: ids, text, new_tokens
};

// Whether `dir` is a Hugging Face model directory (it has a config.json).
bool is_hf_model_dir(const std::string& dir);

// Tokenizes the prompt with the directory's tokenizer, generates (stopping at the config's EOS token),
// and writes the decoded text (special tokens skipped) or the JSON line to `out`.
void generate_hf(const HFGenerateRequest& request, std::ostream& out);

}  // namespace attn::cli
