// src/models/bert.cc — BERT from nn modules; HF's key names mapped onto them at load time.
#include "attn/models/bert.h"

#include <stdexcept>

#include "attn/autograd.h"
#include "attn/models/hf_model_dir.h"
#include "attn/nn/init.h"
#include "attn/ops.h"
#include "models/bert_fused.h"

namespace attn::models {

namespace {
[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::invalid_argument(where + ": " + what);
}

void check_ids(const Tensor& ids, const char* where) {
  if (!ids.defined() || ids.dim() != 2 || (ids.dtype() != kInt64 && ids.dtype() != kInt32))
    bad(where, "input_ids must be (N, S) int64, got " + (ids.defined() ? shape_str(ids.shape()) : "undefined"));
}
}  // namespace

// "bert-base-uncased"-sized defaults; every field checked against the model's own limits.
BertConfig BertConfig::from_file(const std::string& path) { return from_config(io::HFConfig::load(path)); }

BertConfig BertConfig::from_config(const io::HFConfig& c) {
  const std::string path = "'" + c.file() + "'";
  const std::string type = c.get_string("model_type", "bert");
  if (type != "bert") throw std::runtime_error(path + ": key 'model_type' = \"" + type + "\", expected \"bert\"");
  if (c.get_string("position_embedding_type", "absolute") != "absolute")
    throw std::runtime_error(path + ": key 'position_embedding_type': only \"absolute\" is supported");
  BertConfig b;
  constexpr int64_t kBig = int64_t(1) << 24;
  b.vocab_size = c.get_int("vocab_size", 1, kBig);
  b.hidden_size = c.get_int("hidden_size", 1, 1 << 16);
  b.num_hidden_layers = c.get_int("num_hidden_layers", 0, 1024);
  b.num_attention_heads = c.get_int("num_attention_heads", 1, b.hidden_size);
  if (b.hidden_size % b.num_attention_heads != 0)
    throw std::runtime_error(path + ": key 'hidden_size' = " + std::to_string(b.hidden_size) +
                             " is not a multiple of 'num_attention_heads' = " + std::to_string(b.num_attention_heads));
  b.intermediate_size = c.get_int("intermediate_size", 1, 1 << 20);
  b.max_position_embeddings = c.get_int("max_position_embeddings", 1, 1 << 20);
  b.type_vocab_size = c.get_int("type_vocab_size", 1, 1 << 16, 2);
  b.layer_norm_eps = c.get_float("layer_norm_eps", 0.0, 1.0, 1e-12);
  b.hidden_dropout_prob = c.get_float("hidden_dropout_prob", 0.0, 1.0, 0.1);
  b.attention_probs_dropout_prob = c.get_float("attention_probs_dropout_prob", 0.0, 1.0, 0.1);
  b.hidden_act = hf_activation(c, "hidden_act", "gelu");
  b.pad_token_id = c.get_int("pad_token_id", 0, b.vocab_size - 1, 0);
  // save_pretrained writes id2label (its size is num_labels), older configs num_labels
  const int64_t labels = config_entries(c, "id2label");
  b.num_labels = labels > 0 ? labels : c.get_int("num_labels", 1, 1 << 20, 2);
  // each field may be in range and the whole still absurd (a hostile config must not allocate terabytes)
  const double H = double(b.hidden_size), params = H * double(b.vocab_size + b.max_position_embeddings +
                                                              b.type_vocab_size) +
                                                   double(b.num_hidden_layers) * (4 * H * H + 2 * H * double(b.intermediate_size));
  if (params > 2e10)
    throw std::runtime_error(path + ": the config describes " + std::to_string(params) +
                             " parameters (more than 2e10): check vocab_size, hidden_size, num_hidden_layers, intermediate_size");
  return b;
}

// ---- embeddings
BertEmbeddings::BertEmbeddings(const BertConfig& c) {
  word_embeddings = register_module("word_embeddings", nn::Embedding({.num_embeddings = c.vocab_size,
                                                                       .embedding_dim = c.hidden_size,
                                                                       .padding_idx = c.pad_token_id}));
  position_embeddings = register_module("position_embeddings", nn::Embedding(c.max_position_embeddings, c.hidden_size));
  token_type_embeddings = register_module("token_type_embeddings", nn::Embedding(c.type_vocab_size, c.hidden_size));
  LayerNorm = register_module("LayerNorm", nn::LayerNorm({.normalized_shape = {c.hidden_size}, .eps = c.layer_norm_eps}));
  dropout = register_module("dropout", nn::Dropout(c.hidden_dropout_prob));
}

Tensor BertEmbeddings::forward(const Tensor& ids, const Tensor& token_type_ids) {
  check_ids(ids, "BertEmbeddings");
  const int64_t N = ids.size(0), S = ids.size(1);
  if (S > position_embeddings->options.num_embeddings)
    bad("BertEmbeddings", "sequence length " + std::to_string(S) + " exceeds max_position_embeddings " +
                              std::to_string(position_embeddings->options.num_embeddings));
  if (token_type_ids.defined() && token_type_ids.shape() != ids.shape())
    bad("BertEmbeddings", "token_type_ids " + shape_str(token_type_ids.shape()) + " must match input_ids " +
                              shape_str(ids.shape()));
  Tensor x = word_embeddings->forward(ids);                                             // (N, S, H)
  x = add(x, position_embeddings->forward(arange(S, {.dtype = kInt64, .device = ids.device()})).unsqueeze(0));
  Tensor types = token_type_ids.defined() ? token_type_ids : zeros({N, S}, {.dtype = kInt64, .device = ids.device()});
  x = add(x, token_type_embeddings->forward(types));
  return dropout->forward(LayerNorm->forward(x));
}

void BertEmbeddings::load(const nn::VarBuilder& vb) {
  nn::load_embedding(vb.pp("word_embeddings"), *word_embeddings);
  nn::load_embedding(vb.pp("position_embeddings"), *position_embeddings);
  nn::load_embedding(vb.pp("token_type_embeddings"), *token_type_embeddings);
  nn::load_layer_norm(vb.pp("LayerNorm"), *LayerNorm);
}

// ---- BertModel
BertModel::BertModel(const BertConfig& c, bool add_pooling_layer) : config(c) {
  embeddings = register_module("embeddings", BertEmbeddings(c));
  // BERT's block: post-LN, no dropout after the activation, its own attention-weights dropout
  nn::TransformerLayerOptions layer{.d_model = c.hidden_size, .nhead = c.num_attention_heads,
                                    .dim_feedforward = c.intermediate_size, .dropout = c.hidden_dropout_prob,
                                    .activation = c.hidden_act, .layer_norm_eps = c.layer_norm_eps,
                                    .batch_first = true, .norm_first = false, .bias = true,
                                    .packed_projections = false,
                                    .attention_dropout = c.attention_probs_dropout_prob,
                                    .activation_dropout = 0.0};
  encoder = register_module("encoder", nn::TransformerEncoder(layer, c.num_hidden_layers, /*final_norm=*/false));
  if (add_pooling_layer) pooler = register_module("pooler", nn::Linear(c.hidden_size, c.hidden_size));
}

BertOutput BertModel::forward(const Tensor& ids, const BertInputs& in) {
  check_ids(ids, "BertModel");
  nn::EncoderMasks masks;
  if (in.attention_mask.defined()) {
    if (in.attention_mask.shape() != ids.shape())
      bad("BertModel", "attention_mask " + shape_str(in.attention_mask.shape()) + " must match input_ids " +
                           shape_str(ids.shape()));
    masks.src_key_padding_mask = eq(in.attention_mask, 0.0);  // true at padding
  }
  const Tensor x = embeddings->forward(ids, in.token_type_ids);  // (N, S, H)
  Tensor h;
  if (fused_inference && FusedBertEncoder::applies(*encoder, x)) {
    if (!fused_) fused_ = std::make_shared<FusedBertEncoder>();
    h = fused_->forward(*encoder, x, masks.src_key_padding_mask);
  } else {
    h = encoder->forward(x, masks);
  }
  Tensor pooled = pooler ? tanh(pooler->forward(h.select(1, 0))) : Tensor();       // (N, H)
  return {h, pooled};
}

void BertModel::load(const nn::VarBuilder& vb) {
  embeddings->load(vb.pp("embeddings"));
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const nn::VarBuilder l = vb.pp("encoder").pp("layer").pp(i);
    auto layer = encoder->layers->at<nn::TransformerEncoderLayer>(i);
    const nn::VarBuilder self = l.pp("attention").pp("self");
    nn::load_linear(self.pp("query"), *layer->self_attn->query);
    nn::load_linear(self.pp("key"), *layer->self_attn->key);
    nn::load_linear(self.pp("value"), *layer->self_attn->value);
    nn::load_linear(l.pp("attention").pp("output").pp("dense"), *layer->self_attn->out_proj);
    nn::load_layer_norm(l.pp("attention").pp("output").pp("LayerNorm"), *layer->norm1);
    nn::load_linear(l.pp("intermediate").pp("dense"), *layer->linear1);
    nn::load_linear(l.pp("output").pp("dense"), *layer->linear2);
    nn::load_layer_norm(l.pp("output").pp("LayerNorm"), *layer->norm2);
  }
  if (pooler) nn::load_linear(vb.pp("pooler").pp("dense"), *pooler);
}

nn::VarBuilderReport finish_bert_load(const nn::VarBuilder& vb, bool strict) {
  return vb.finish({.strict = strict, .ignore = {"position_ids"}});
}

std::shared_ptr<BertModel> BertModel::from_pretrained(const std::string& dir, bool add_pooling_layer) {
  const auto ck = open_hf_checkpoint(dir);
  auto model = std::make_shared<BertModel>(BertConfig::from_config(ck->config()), add_pooling_layer);
  nn::VarBuilder vb(hf_weights(ck));
  // a BertFor* checkpoint keeps the encoder under "bert."; its heads are not this model's
  const bool prefixed = vb.contains("bert.embeddings.word_embeddings.weight");
  model->load(prefixed ? vb.pp("bert") : vb);
  finish_bert_load(vb, /*strict=*/!prefixed && add_pooling_layer);
  return model;
}

// ---- sequence classification
BertForSequenceClassification::BertForSequenceClassification(const BertConfig& c) {
  bert = register_module("bert", BertModel(c, true));
  dropout = register_module("dropout", nn::Dropout(c.hidden_dropout_prob));
  classifier = register_module("classifier", nn::Linear(c.hidden_size, c.num_labels));
}

Tensor BertForSequenceClassification::forward(const Tensor& ids, const BertInputs& in) {
  return classifier->forward(dropout->forward(bert->forward(ids, in).pooler_output));
}

nn::VarBuilderReport BertForSequenceClassification::load(const nn::VarBuilder& vb) {
  const bool prefixed = vb.contains("bert.embeddings.word_embeddings.weight");
  bert->load(prefixed ? vb.pp("bert") : vb);
  const bool head = vb.contains("classifier.weight");
  if (head) nn::load_linear(vb.pp("classifier"), *classifier);
  hf_parameters_ = vb.loaded();
  if (!head) {  // a bare encoder: the head stays as initialised, like transformers' "newly initialized" warning
    nn::VarBuilderReport r = finish_bert_load(vb, /*strict=*/false);
    r.missing.push_back(vb.key("classifier.weight"));
    r.missing.push_back(vb.key("classifier.bias"));
    return r;
  }
  return finish_bert_load(vb, /*strict=*/true);
}

std::shared_ptr<BertForSequenceClassification> BertForSequenceClassification::from_pretrained(const std::string& dir) {
  const auto ck = open_hf_checkpoint(dir);
  auto model = std::make_shared<BertForSequenceClassification>(BertConfig::from_config(ck->config()));
  model->load(nn::VarBuilder(hf_weights(ck)));
  return model;
}

}  // namespace attn::models
