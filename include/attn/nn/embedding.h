// attn/nn/embedding.h — Embedding (torch.nn.Embedding): a lookup table of learned vectors.
//
//   auto emb = std::make_shared<nn::Embedding>(nn::EmbeddingOptions{.num_embeddings = 50257,
//                                                                    .embedding_dim = 768});
//   Tensor h = (*emb)(tokens);   // tokens: (B, T) int64 -> h: (B, T, 768)
//   // emb->weight: (50257, 768) ~ N(0, 1); the padding_idx row (if set) starts at zero and gets no grad
#pragma once
#include <optional>

#include "attn/nn/module.h"

namespace attn::nn {

struct EmbeddingOptions {
  int64_t num_embeddings = 0;
  int64_t embedding_dim = 0;
  std::optional<int64_t> padding_idx = {};  // negative counts from the end
};

class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingOptions& options);
  Embedding(int64_t num_embeddings, int64_t embedding_dim)
      : Embedding(EmbeddingOptions{.num_embeddings = num_embeddings, .embedding_dim = embedding_dim}) {}
  void reset_parameters();
  Tensor forward(const Tensor& indices) override;  // (*) int -> (*, embedding_dim)
  std::string extra_repr() const override;

  EmbeddingOptions options;
  Tensor weight;  // (num_embeddings, embedding_dim)
};

}  // namespace attn::nn
