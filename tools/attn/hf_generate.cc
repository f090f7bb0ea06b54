// tools/attn/hf_generate.cc — `attn generate` for Hugging Face GPT-2 directories (see hf_generate.h).
#include "hf_generate.h"

#include <filesystem>
#include <ostream>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/ops.h"
#include "attn/text/tokenizer.h"

namespace attn::cli {

bool is_hf_model_dir(const std::string& dir) { return std::filesystem::is_regular_file(std::filesystem::path(dir) / "config.json"); }

void generate_hf(const HFGenerateRequest& r, std::ostream& out) {
  auto model = models::GPT2LMHeadModel::from_pretrained(r.model_dir);  // a non-GPT-2 config.json: a clear error
  model->eval();
  const std::unique_ptr<text::Tokenizer> tok = text::load_tokenizer_dir(r.model_dir);
  std::vector<int64_t> prompt = tok->encode(r.prompt).ids;
  if (prompt.empty()) {  // transformers starts an empty prompt from BOS too
    if (model->config.bos_token_id < 0)
      throw std::invalid_argument(r.model_dir + "/config.json: the prompt is empty and 'bos_token_id' is not set");
    prompt.push_back(model->config.bos_token_id);
  }
  for (int64_t id : prompt)
    if (id >= model->config.vocab_size)
      throw std::runtime_error(r.model_dir + ": token id " + std::to_string(id) + " >= the model's vocab_size " +
                               std::to_string(model->config.vocab_size) + " (tokenizer and model do not match)");
  models::GenerationOptions o = r.options;
  o.eos_token_id = model->config.eos_token_id;
  const int64_t T = int64_t(prompt.size());
  const Tensor ids = model->generate(from_vector(prompt, {1, T}), o);  // (1, T + new)
  const std::vector<int64_t> all = ids.to_vector<int64_t>();
  const std::string text = tok->decode(all);  // special tokens (EOS) skipped, as transformers' decode
  if (r.format == "json")
    out << nlohmann::json{{"ids", all}, {"text", text}, {"new_tokens", int64_t(all.size()) - T}}.dump() << "\n";
  else
    out << text << "\n";
}

}  // namespace attn::cli
