// src/models/marian.cc — export of an attn translator run to a Hugging Face MarianMTModel directory and
// loading of one into attn (weights and configuration; the tokenizer is in marian_tokenizer.cc).
// transformers/models/marian/modeling_marian.py is the reference for the layout; the mapping:
//   embedding.weight                <-> model.shared.weight (encoder, decoder and lm_head tied to it)
//   output_bias (V)                 <-> final_logits_bias (1, V)
//   generator.weight                <-> lm_head.weight (untied output only)
//   ...layers.i.self_attn.in_proj_*  <-> ...layers.i.self_attn.{q,k,v}_proj.*  (decoder cross: encoder_attn)
//   norm1/norm2/norm3, linear1/2    <-> self_attn_layer_norm / (encoder_attn_layer_norm) / final_layer_norm, fc1/2
#include "attn/models/marian.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <tuple>

#include "attn/autograd.h"
#include "attn/io/checkpoint.h"
#include "attn/io/safetensors.h"
#include "attn/ops.h"
#include "io/json_file.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::models {

namespace {

// The model-dimension permutation: Marian's column j holds attn's column perm[j] (attn interleaves
// sin/cos of frequency i in columns 2i, 2i + 1; Marian puts the sin in column i and the cos in d/2 + i).
std::vector<int64_t> marian_from_attn_columns(int64_t d) {
  std::vector<int64_t> perm(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) perm[size_t(j)] = j < d / 2 ? 2 * j : 2 * (j - d / 2) + 1;
  return perm;
}

std::vector<int64_t> inverse(const std::vector<int64_t>& perm) {
  std::vector<int64_t> inv(perm.size());
  for (size_t j = 0; j < perm.size(); ++j) inv[size_t(perm[j])] = int64_t(j);
  return inv;
}

Tensor index(const std::vector<int64_t>& v) { return from_vector(v, {int64_t(v.size())}); }

// `w` with its axis `axis` gathered by `order` (axis < 0: unchanged), contiguous.
Tensor gather(const Tensor& w, int axis, const Tensor& order) {
  return axis < 0 ? w.contiguous().clone() : index_select(w, axis, order).contiguous();
}

// One tensor of a layer: attn's name, Hugging Face's name, and which axis is the model dimension.
struct LayerTensor {
  const char* attn;
  const char* hf;
  int model_axis;  // -1: none; 0: rows (also vectors over d); 1: columns
};

// Every tensor of a layer except the packed q/k/v projections (handled by attention_pairs).
std::vector<LayerTensor> layer_tensors(bool decoder) {
  std::vector<LayerTensor> t = {
      {"self_attn.out_proj.weight", "self_attn.out_proj.weight", 0},
      {"self_attn.out_proj.bias", "self_attn.out_proj.bias", 0},
      {"norm1.weight", "self_attn_layer_norm.weight", 0},
      {"norm1.bias", "self_attn_layer_norm.bias", 0},
      {"linear1.weight", "fc1.weight", 1},
      {"linear1.bias", "fc1.bias", -1},
      {"linear2.weight", "fc2.weight", 0},
      {"linear2.bias", "fc2.bias", 0},
  };
  if (decoder) {
    t.push_back({"multihead_attn.out_proj.weight", "encoder_attn.out_proj.weight", 0});
    t.push_back({"multihead_attn.out_proj.bias", "encoder_attn.out_proj.bias", 0});
    t.push_back({"norm2.weight", "encoder_attn_layer_norm.weight", 0});
    t.push_back({"norm2.bias", "encoder_attn_layer_norm.bias", 0});
    t.push_back({"norm3.weight", "final_layer_norm.weight", 0});
    t.push_back({"norm3.bias", "final_layer_norm.bias", 0});
  } else {
    t.push_back({"norm2.weight", "final_layer_norm.weight", 0});
    t.push_back({"norm2.bias", "final_layer_norm.bias", 0});
  }
  return t;
}

std::vector<std::pair<std::string, std::string>> attention_pairs(bool decoder) {
  std::vector<std::pair<std::string, std::string>> p = {{"self_attn", "self_attn"}};
  if (decoder) p.emplace_back("multihead_attn", "encoder_attn");
  return p;
}

// Applies fn(attn_prefix, hf_prefix, decoder) to every encoder and decoder layer.
template <typename Fn>
void for_each_layer(const TranslatorOptions& mo, Fn&& fn) {
  for (int64_t i = 0; i < mo.num_encoder_layers; ++i)
    fn("transformer.encoder.layers." + std::to_string(i) + ".", "model.encoder.layers." + std::to_string(i) + ".", false);
  for (int64_t i = 0; i < mo.num_decoder_layers; ++i)
    fn("transformer.decoder.layers." + std::to_string(i) + ".", "model.decoder.layers." + std::to_string(i) + ".", true);
}

// ---- export

// Why a run cannot be written as a MarianMTModel, or "" when it can.
std::string marian_incompatibility(const Translator& m) {
  const TranslatorOptions& o = m.options;
  if (o.norm_first) return "it is pre-LN (norm_first); Marian's layers are post-LN";
  if (o.final_norm) return "it has nn.Transformer's final LayerNorms after the encoder and decoder, which Marian lacks";
  if (!o.starts_from_pad())
    return "its decoder starts from bos_id " + std::to_string(o.bos_id) + ", not from the pad token " +
           std::to_string(o.pad_id) + " (Marian and CTranslate2 start from pad's zero embedding)";
  if (o.d_model % 2 != 0) return "d_model " + std::to_string(o.d_model) + " is odd";
  Tensor pad_row = m.embedding->weight.select(0, o.pad_id);
  if (max(abs(pad_row)).item() != 0.0) return "the pad token's embedding row is not zero";
  return "";
}

// Hugging Face id of each attn id: pad moves to the last id, the ids after it move down by one.
std::vector<int64_t> attn_ids_in_hf_order(int64_t V, int64_t pad) {
  std::vector<int64_t> order(static_cast<size_t>(V));  // order[hf_id] = attn id
  for (int64_t j = 0; j < V; ++j) order[size_t(j)] = j == V - 1 ? pad : (j < pad ? j : j + 1);
  return order;
}

std::map<std::string, Tensor> hf_state_dict(Translator& m, const std::vector<int64_t>& token_order) {
  NoGradGuard ng;
  const TranslatorOptions& mo = m.options;
  const Tensor cols = index(marian_from_attn_columns(mo.d_model)), rows = index(token_order);
  std::map<std::string, Tensor> sd = m.state_dict(), out;
  out["model.shared.weight"] = gather(gather(sd.at("embedding.weight"), 0, rows), 1, cols);
  out["final_logits_bias"] = gather(sd.at("output_bias"), 0, rows).view({1, mo.vocab_size});
  if (!mo.tie_output) out["lm_head.weight"] = gather(gather(sd.at("generator.weight"), 0, rows), 1, cols);
  for_each_layer(mo, [&](const std::string& a, const std::string& h, bool decoder) {
    for (const LayerTensor& t : layer_tensors(decoder)) out[h + t.hf] = gather(sd.at(a + t.attn), t.model_axis, cols);
    for (const auto& [aa, ha] : attention_pairs(decoder)) {
      std::vector<Tensor> w = chunk(sd.at(a + aa + ".in_proj_weight"), 3, 0), b = chunk(sd.at(a + aa + ".in_proj_bias"), 3, 0);
      const char* names[] = {"q_proj", "k_proj", "v_proj"};
      for (int k = 0; k < 3; ++k) {
        out[h + ha + "." + names[k] + ".weight"] = gather(w[size_t(k)], 1, cols);
        out[h + ha + "." + names[k] + ".bias"] = gather(b[size_t(k)], -1, cols);
      }
    }
  });
  return out;
}

json hf_config(const TranslatorOptions& mo, int64_t hf_eos, double dropout) {
  const int64_t pad = mo.vocab_size - 1;
  return {{"architectures", {"MarianMTModel"}}, {"model_type", "marian"}, {"vocab_size", mo.vocab_size},
          {"decoder_vocab_size", mo.vocab_size}, {"d_model", mo.d_model}, {"encoder_layers", mo.num_encoder_layers},
          {"decoder_layers", mo.num_decoder_layers}, {"encoder_attention_heads", mo.nhead},
          {"decoder_attention_heads", mo.nhead}, {"encoder_ffn_dim", mo.dim_feedforward},
          {"decoder_ffn_dim", mo.dim_feedforward},
          {"activation_function", mo.activation == nn::Activation::SiLU ? "swish" : activation_name(mo.activation)},
          {"max_position_embeddings", mo.max_len}, {"scale_embedding", true}, {"pad_token_id", pad},
          {"eos_token_id", hf_eos}, {"decoder_start_token_id", pad}, {"bos_token_id", nullptr},
          // attn does not force EOS at the length limit (an unfinished hypothesis stays unfinished)
          {"forced_eos_token_id", nullptr}, {"share_encoder_decoder_embeddings", true},
          {"tie_word_embeddings", mo.tie_output}, {"dropout", dropout}, {"attention_dropout", dropout},
          {"activation_dropout", dropout}, {"encoder_layerdrop", 0.0}, {"decoder_layerdrop", 0.0},
          {"init_std", 0.02}, {"is_encoder_decoder", true}, {"use_cache", true}, {"torch_dtype", "float32"}};
}

json hf_generation_config(const TranslatorOptions& mo, int64_t hf_eos) {
  const int64_t pad = mo.vocab_size - 1;
  // bad_words_ids + renormalize_logits: pad is never produced and the other tokens' log-probabilities are
  // renormalised, as attn's decoder (and CTranslate2, which drops pad's row) compute them
  return {{"decoder_start_token_id", pad}, {"pad_token_id", pad}, {"eos_token_id", hf_eos},
          {"forced_eos_token_id", nullptr}, {"bad_words_ids", {{pad}}}, {"renormalize_logits", true},
          {"max_length", mo.max_len}, {"num_beams", 4}, {"length_penalty", 1.0}};
}

// The run's SentencePiece model: config.json's "spm" (default spm.model).
std::string run_spm_path(const std::string& run_dir) {
  json cfg = io::read_json_file(run_dir + "/config.json");
  std::string name = "spm.model";
  if (cfg.contains("spm")) {
    if (!cfg["spm"].is_string()) throw std::runtime_error(run_dir + "/config.json: \"spm\" must be a string");
    name = cfg["spm"].get<std::string>();
  }
  return run_dir + "/" + name;
}

void write_json(const std::string& path, const json& j) { io::write_file_atomic(path, j.dump(2) + "\n"); }

}  // namespace

void export_hf_marian(const std::string& run_dir, const std::string& out_dir, const HfMarianExportOptions& o) {
  train::TranslationSession session = train::TranslationSession::load(run_dir, o.checkpoint);
  Translator& m = session.model();
  const TranslatorOptions& mo = m.options;
  if (std::string why = marian_incompatibility(m); !why.empty())
    throw std::runtime_error("export --format hf-marian: the model in " + run_dir + " cannot be written as a MarianMTModel: " +
                             why + "; train it with `attn train-translator --marian`");
  const std::string spm_path = run_spm_path(run_dir);
  text::SentencePiece sp(spm_path);
  if (sp.vocab_size() != mo.vocab_size)
    throw std::runtime_error(spm_path + " has " + std::to_string(sp.vocab_size()) + " pieces, the model " +
                             std::to_string(mo.vocab_size));
  const std::vector<int64_t> order = attn_ids_in_hf_order(mo.vocab_size, mo.pad_id);
  std::vector<int64_t> hf_id(order.size());
  for (size_t j = 0; j < order.size(); ++j) hf_id[size_t(order[j])] = int64_t(j);
  const std::string specials[][2] = {{"<pad>", "pad_id"}, {"</s>", "eos_id"}};
  const int64_t special_ids[] = {mo.pad_id, mo.eos_id};
  for (int k = 0; k < 2; ++k)
    if (sp.id_to_piece(int(special_ids[k])) != specials[k][0])
      throw std::runtime_error(spm_path + ": the piece of " + specials[k][1] + " " + std::to_string(special_ids[k]) + " is \"" +
                               sp.id_to_piece(int(special_ids[k])) + "\", MarianTokenizer expects \"" + specials[k][0] + "\"");
  if (sp.unk_id() < 0 || sp.id_to_piece(sp.unk_id()) != "<unk>")
    throw std::runtime_error(spm_path + ": MarianTokenizer needs an \"<unk>\" piece");

  fs::create_directories(out_dir);
  const int64_t hf_eos = hf_id[size_t(mo.eos_id)];
  io::save_safetensors(out_dir + "/model.safetensors", hf_state_dict(m, order), {{"format", "pt"}});
  write_json(out_dir + "/config.json", hf_config(mo, hf_eos, mo.dropout));
  write_json(out_dir + "/generation_config.json", hf_generation_config(mo, hf_eos));
  json vocab = json::object();
  for (int64_t a = 0; a < mo.vocab_size; ++a) vocab[sp.id_to_piece(int(a))] = hf_id[size_t(a)];
  write_json(out_dir + "/vocab.json", vocab);
  io::write_file_atomic(out_dir + "/source.spm", sp.serialized());
  io::write_file_atomic(out_dir + "/target.spm", sp.serialized());
  write_json(out_dir + "/tokenizer_config.json",
             {{"tokenizer_class", "MarianTokenizer"}, {"source_lang", o.source_lang}, {"target_lang", o.target_lang},
              {"unk_token", "<unk>"}, {"eos_token", "</s>"}, {"pad_token", "<pad>"}, {"separate_vocabs", false},
              {"model_max_length", mo.max_len}});
  write_json(out_dir + "/special_tokens_map.json", {{"unk_token", "<unk>"}, {"eos_token", "</s>"}, {"pad_token", "<pad>"}});
}

// ---- import

bool is_hf_marian_dir(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!fs::is_regular_file(path)) return false;
  std::ifstream f(path);
  json j = json::parse(f, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("model_type") && j["model_type"] == "marian";
}

namespace {

// config.json's value at `key` as T, or `fallback` when absent (std::nullopt: required); errors name both.
template <typename T>
T config_value(const json& cfg, const std::string& path, const std::string& key, std::optional<T> fallback = std::nullopt) {
  if (!cfg.contains(key) || cfg[key].is_null()) {
    if (fallback) return *fallback;
    throw std::runtime_error(path + ": missing key \"" + key + "\"");
  }
  try {
    return cfg[key].get<T>();
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": key \"" + key + "\": " + e.what());
  }
}

TranslatorOptions marian_options(const json& cfg, const std::string& path) {
  auto i64 = [&](const std::string& k, std::optional<int64_t> f = std::nullopt) { return config_value<int64_t>(cfg, path, k, f); };
  auto flag = [&](const std::string& k, bool f) { return config_value<bool>(cfg, path, k, f); };
  TranslatorOptions mo;
  mo.vocab_size = i64("vocab_size");
  mo.d_model = i64("d_model");
  mo.nhead = i64("encoder_attention_heads");
  mo.num_encoder_layers = i64("encoder_layers");
  mo.num_decoder_layers = i64("decoder_layers");
  mo.dim_feedforward = i64("encoder_ffn_dim");
  mo.dropout = 0.0;
  mo.activation = activation_from_name(config_value<std::string>(cfg, path, "activation_function", "gelu"),
                                       path + ": \"activation_function\"");
  mo.norm_first = false;
  mo.final_norm = false;
  mo.max_len = i64("max_position_embeddings", 1024);
  mo.tie_output = flag("tie_word_embeddings", true);
  mo.pad_id = i64("pad_token_id");
  mo.eos_id = i64("eos_token_id");
  mo.bos_id = i64("decoder_start_token_id", mo.pad_id);
  auto unsupported = [&](const std::string& what) { throw std::runtime_error(path + ": " + what + " is not supported"); };
  if (!flag("share_encoder_decoder_embeddings", true)) unsupported("\"share_encoder_decoder_embeddings\": false");
  if (i64("decoder_vocab_size", mo.vocab_size) != mo.vocab_size)
    unsupported("\"decoder_vocab_size\" " + std::to_string(i64("decoder_vocab_size")) + " != \"vocab_size\" " +
                std::to_string(mo.vocab_size));
  if (i64("decoder_attention_heads") != mo.nhead) unsupported("\"decoder_attention_heads\" != \"encoder_attention_heads\"");
  if (i64("decoder_ffn_dim") != mo.dim_feedforward) unsupported("\"decoder_ffn_dim\" != \"encoder_ffn_dim\"");
  if (!flag("scale_embedding", false)) unsupported("\"scale_embedding\": false (attn scales embeddings by sqrt(d_model))");
  if (mo.d_model <= 0 || mo.d_model % 2 != 0 || mo.vocab_size <= 0 || mo.nhead <= 0 || mo.d_model % mo.nhead != 0 ||
      mo.max_len <= 0 || mo.max_len > (int64_t(1) << 16) || mo.num_encoder_layers < 0 || mo.num_decoder_layers < 0)
    throw std::runtime_error(path + ": implausible sizes (d_model " + std::to_string(mo.d_model) + ", heads " +
                             std::to_string(mo.nhead) + ", vocab_size " + std::to_string(mo.vocab_size) +
                             ", max_position_embeddings " + std::to_string(mo.max_len) + ")");
  for (const auto& [name, id] : {std::pair<const char*, int64_t>{"pad_token_id", mo.pad_id}, {"eos_token_id", mo.eos_id},
                                 {"decoder_start_token_id", mo.bos_id}})
    if (id < 0 || id >= mo.vocab_size)
      throw std::runtime_error(path + ": \"" + name + "\" " + std::to_string(id) + " is outside the vocabulary of " +
                               std::to_string(mo.vocab_size));
  return mo;
}

// The attn state dict from a MarianMTModel's tensors; every key and shape checked, errors name file and key.
std::map<std::string, Tensor> attn_state_dict(const io::SafeTensorsFile& f, const TranslatorOptions& mo) {
  const int64_t d = mo.d_model, V = mo.vocab_size, F = mo.dim_feedforward;
  auto need = [&](const std::vector<std::string>& keys, const Shape& shape) -> Tensor {
    for (const std::string& k : keys) {
      if (!f.contains(k)) continue;
      Tensor t = f.get(k);
      if (t.shape() != shape)
        throw std::runtime_error(f.path() + ": tensor \"" + k + "\" has shape " + shape_str(t.shape()) + ", config.json says " +
                                 shape_str(shape));
      return t.to(kFloat32);
    }
    throw std::runtime_error(f.path() + ": missing tensor \"" + keys.front() + "\"");
  };
  const Tensor cols = index(inverse(marian_from_attn_columns(d)));
  std::map<std::string, Tensor> sd;
  sd["embedding.weight"] =
      gather(need({"model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"}, {V, d}), 1, cols);
  sd["output_bias"] = f.contains("final_logits_bias") ? need({"final_logits_bias"}, {1, V}).reshape({V}).contiguous() : zeros({V});
  if (!mo.tie_output) sd["generator.weight"] = gather(need({"lm_head.weight"}, {V, d}), 1, cols);
  auto expected_shape = [&](const LayerTensor& t) -> Shape {
    std::string n = t.hf;
    if (n == "fc1.weight") return {F, d};
    if (n == "fc1.bias") return {F};
    if (n == "fc2.weight") return {d, F};
    if (n.find(".weight") != std::string::npos && n.find("out_proj") != std::string::npos) return {d, d};
    return {d};
  };
  for_each_layer(mo, [&](const std::string& a, const std::string& h, bool decoder) {
    for (const LayerTensor& t : layer_tensors(decoder))
      sd[a + t.attn] = gather(need({h + t.hf}, expected_shape(t)), t.model_axis, cols);
    for (const auto& [aa, ha] : attention_pairs(decoder)) {
      std::vector<Tensor> w, b;
      for (const char* p : {"q_proj", "k_proj", "v_proj"}) {
        w.push_back(gather(need({h + ha + "." + p + ".weight"}, {d, d}), 1, cols));
        b.push_back(need({h + ha + "." + p + ".bias"}, {d}));
      }
      sd[a + aa + ".in_proj_weight"] = cat(w, 0);
      sd[a + aa + ".in_proj_bias"] = cat(b, 0);
    }
  });
  return sd;
}

// A stored sinusoid table (older save_pretrained files keep it; transformers then uses it, not its own).
void load_positions(const io::SafeTensorsFile& f, Translator& m) {
  const char* keys[] = {"model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"};
  Tensor table;
  for (const char* k : keys) {
    if (!f.contains(k)) continue;
    Tensor t = f.get(k).to(kFloat32);
    if (t.dim() != 2 || t.size(0) < m.options.max_len || t.size(1) != m.options.d_model)
      throw std::runtime_error(f.path() + ": tensor \"" + std::string(k) + "\" has shape " + shape_str(t.shape()) +
                               ", expected at least (" + std::to_string(m.options.max_len) + ", " +
                               std::to_string(m.options.d_model) + ")");
    if (table.defined() && !allclose(table, t, 0.0, 0.0))
      throw std::runtime_error(f.path() + ": different encoder and decoder position tables are not supported");
    table = t;
  }
  if (!table.defined()) return;
  NoGradGuard ng;
  const Tensor cols = index(inverse(marian_from_attn_columns(m.options.d_model)));
  m.positional->pe.copy_(gather(table.narrow(0, 0, m.options.max_len), 1, cols));
}

}  // namespace

train::TranslationSession load_hf_marian(const std::string& dir) {
  const std::string config_path = dir + "/config.json", weights_path = dir + "/model.safetensors";
  const json cfg = io::read_json_file(config_path);
  TranslatorOptions mo = marian_options(cfg, config_path);
  if (!fs::is_regular_file(weights_path))
    throw std::runtime_error("missing " + weights_path +
                             (fs::exists(dir + "/pytorch_model.bin")
                                  ? " (only safetensors is read: save_pretrained(..., safe_serialization=True) writes it)"
                                  : ""));
  auto tokenizer = MarianTokenizer::load(dir);
  if (tokenizer->vocab_size() != mo.vocab_size)
    throw std::runtime_error(dir + "/vocab.json: ids up to " + std::to_string(tokenizer->vocab_size() - 1) +
                             " do not match \"vocab_size\" " + std::to_string(mo.vocab_size) + " in " + config_path);
  const std::tuple<const char*, int64_t, int> specials[] = {{"eos_token_id", mo.eos_id, tokenizer->eos_id()},
                                                            {"pad_token_id", mo.pad_id, tokenizer->pad_id()}};
  for (const auto& [key, id, vocab_id] : specials)
    if (id != vocab_id)
      throw std::runtime_error(config_path + ": \"" + key + "\" is " + std::to_string(id) + " but " + dir +
                               "/vocab.json gives that token id " + std::to_string(vocab_id) +
                               ": vocabulary and model do not match");
  io::SafeTensorsFile file = io::SafeTensorsFile::open(weights_path);
  std::map<std::string, Tensor> sd = attn_state_dict(file, mo);
  auto model = std::make_shared<Translator>(mo);
  model->load_state_dict(sd);
  load_positions(file, *model);
  model->eval();
  return train::TranslationSession(model, tokenizer);
}

}  // namespace attn::models
