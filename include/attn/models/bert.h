// attn/models/bert.h — the BERT family of Hugging Face transformers (BertModel, BertForSequenceClassification),
// built from nn::Embedding, nn::LayerNorm and nn::TransformerEncoderLayer (post-LN, GELU, separate
// query/key/value projections), loaded from a model directory as saved by save_pretrained.
//
//   auto bert = attn::models::BertModel::from_pretrained(dir);           // config.json + model.safetensors
//   bert->eval();
//   auto [hidden, pooled] = bert->forward(ids, {.attention_mask = mask});  // ids, mask (N, S) int64
//   // hidden (N, S, H): last_hidden_state; pooled (N, H): tanh(dense(hidden[:, 0]))
//   auto clf = attn::models::BertForSequenceClassification::from_pretrained(dir);  // "bert." + "classifier."
//   Tensor logits = clf->forward(ids, {.attention_mask = mask});         // (N, num_labels)
//   bert->fused_inference = false;      // eval + NoGradGuard runs fused matmuls unless turned off
//   clf->hf_parameters();   // (checkpoint key, parameter): "bert.encoder.layer.0.attention.self.query.weight", ...
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attn/models/hf_model_dir.h"
#include "attn/nn/embedding.h"
#include "attn/nn/linear.h"
#include "attn/nn/normalization.h"
#include "attn/nn/transformer.h"
#include "attn/nn/var_builder.h"

namespace attn::models {

class FusedBertEncoder;  // src/models/bert_fused.h

struct BertConfig {
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double layer_norm_eps = 1e-12;
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  nn::Activation hidden_act = nn::Activation::GELU;  // "gelu" (erf), "gelu_new" (tanh), "relu"
  int64_t pad_token_id = 0;
  int64_t num_labels = 2;  // the classification head (id2label's size when present)
  // config.json, checked (missing or absurd fields name the file and key); absolute positions only.
  static BertConfig from_file(const std::string& path);
  static BertConfig from_config(const io::HFConfig& config);  // the same checks on an already parsed config
};

struct BertInputs {
  Tensor attention_mask = {};  // (N, S): 1 at tokens, 0 at padding; all ones when undefined
  Tensor token_type_ids = {};  // (N, S) int64; zeros when undefined
};

struct BertOutput {
  Tensor last_hidden_state;  // (N, S, H)
  Tensor pooler_output;      // (N, H); undefined without the pooler
};

// word + position + token-type embeddings, LayerNorm, dropout.
class BertEmbeddings : public nn::Module {
 public:
  explicit BertEmbeddings(const BertConfig& c);
  Tensor forward(const Tensor& input_ids, const Tensor& token_type_ids);  // (N, S) -> (N, S, H)
  Tensor forward(const Tensor& input_ids) override { return forward(input_ids, {}); }
  void load(const nn::VarBuilder& vb);
  std::shared_ptr<nn::Embedding> word_embeddings, position_embeddings, token_type_embeddings;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  std::shared_ptr<nn::Dropout> dropout;
};

class BertModel : public nn::Module {
 public:
  explicit BertModel(const BertConfig& config, bool add_pooling_layer = true);
  static std::shared_ptr<BertModel> from_pretrained(const std::string& dir, bool add_pooling_layer = true);
  BertOutput forward(const Tensor& input_ids, const BertInputs& inputs);
  Tensor forward(const Tensor& input_ids) override { return forward(input_ids, {}).last_hidden_state; }
  // Fills every parameter from HF's keys under vb ("embeddings.…", "encoder.layer.<i>.…", "pooler.dense.…").
  void load(const nn::VarBuilder& vb);

  BertConfig config;
  std::shared_ptr<BertEmbeddings> embeddings;
  std::shared_ptr<nn::TransformerEncoder> encoder;  // layers: post-LN TransformerEncoderLayer
  std::shared_ptr<nn::Linear> pooler;               // null without the pooling layer
  // Inference (eval, no grad, float32 CPU) runs the encoder on fused, pre-packed oneDNN matmuls (one
  // [q|k|v] GEMM; bias, GELU and residual in the GEMMs' epilogues); false runs the modules.
  bool fused_inference = true;

 private:
  std::shared_ptr<FusedBertEncoder> fused_;  // its packed weights, made on first use
};

class BertForSequenceClassification : public nn::Module {
 public:
  explicit BertForSequenceClassification(const BertConfig& config);
  static std::shared_ptr<BertForSequenceClassification> from_pretrained(const std::string& dir);
  Tensor forward(const Tensor& input_ids, const BertInputs& inputs);  // logits (N, num_labels)
  Tensor forward(const Tensor& input_ids) override { return forward(input_ids, {}); }
  // "bert.…" and "classifier.…"; a bare BertModel checkpoint loads the encoder and leaves the head as
  // initialised (reported in the returned report's missing keys, not thrown).
  nn::VarBuilderReport load(const nn::VarBuilder& vb);
  // Each parameter with its Hugging Face key (set by load / from_pretrained).
  const std::vector<nn::VarBuilder::Loaded>& hf_parameters() const { return hf_parameters_; }

  std::shared_ptr<BertModel> bert;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Linear> classifier;

 private:
  std::vector<nn::VarBuilder::Loaded> hf_parameters_;
};

// The one finish() every BERT load uses: ignores the non-parameter buffers HF saves (position_ids).
nn::VarBuilderReport finish_bert_load(const nn::VarBuilder& vb, bool strict);

}  // namespace attn::models
