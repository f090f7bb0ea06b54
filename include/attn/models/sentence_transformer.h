// attn/models/sentence_transformer.h — sentence-transformers' pipeline read from a model directory:
// modules.json lists Transformer (a BERT model), Pooling (1_Pooling/config.json: mean, CLS or max over
// the tokens the attention mask keeps) and optionally Normalize (unit L2 norm).
//
//   auto st = attn::models::SentenceTransformer::load(attn::models::default_minilm_dir());
//   Tensor emb = st.encode(ids, mask);   // ids, mask (N, S) int64 (the tokenizer's) -> (N, 384)
//   st.max_seq_length;                   // 256 for all-MiniLM-L6-v2 (sentence_bert_config.json)
#pragma once
#include <memory>
#include <string>

#include "attn/models/bert.h"

namespace attn::models {

enum class Pooling { Mean, CLS, Max, MeanSqrtLen };

// sentence-transformers' mean pooling: sum of the kept tokens' vectors / max(count, 1e-9).
// hidden (N, S, H), attention_mask (N, S) (1 = token) -> (N, H)
Tensor mean_pooling(const Tensor& hidden, const Tensor& attention_mask);

class SentenceTransformer {
 public:
  static SentenceTransformer load(const std::string& dir);
  // Sentence embeddings (N, D); differentiable (for fine-tuning) unless called under NoGradGuard.
  // Rows longer than max_seq_length are an error (the tokenizer truncates).
  Tensor encode(const Tensor& input_ids, const Tensor& attention_mask);

  std::shared_ptr<BertModel> model;
  Pooling pooling = Pooling::Mean;
  bool normalize = false;
  int64_t max_seq_length = 512;
  std::string dir;
};

}  // namespace attn::models
