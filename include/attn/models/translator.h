// attn/models/translator.h — the encoder-decoder Transformer translator of "Attention Is All You
// Need": shared source/target embeddings scaled by sqrt(d_model), sinusoidal positions, nn::Transformer,
// and a final Linear + log-softmax tied to the embeddings.
//
//   models::Translator model({.vocab_size = 8000, .d_model = 512, .nhead = 8});
//   Tensor logits = model.forward(src, tgt_in);             // src (N, S), tgt_in (N, T) -> (N, T, V)
//   Tensor loss = cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), {.ignore_index = 0, .label_smoothing = 0.1});
//   model.eval();
//   auto dec = model.start_decoding(src);                   // key/value cache, one step per token
//   auto hyps = models::beam_search(*dec, {.beam_size = 5});
#pragma once
#include <memory>
#include <string>

#include "attn/models/decoding.h"
#include "attn/nn/embedding.h"
#include "attn/nn/transformer.h"

namespace attn::models {

struct TranslatorOptions {
  int64_t vocab_size = 8000;  // joint vocabulary for source and target
  int64_t d_model = 512;
  int64_t nhead = 8;
  int64_t num_encoder_layers = 3;
  int64_t num_decoder_layers = 3;
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  nn::Activation activation = nn::Activation::ReLU;
  bool norm_first = false;     // post-LN as in the paper
  int64_t max_len = 1024;      // longest sequence the positional table covers
  bool tie_output = true;      // output projection shares the embedding matrix
  // nn.Transformer's final LayerNorm after each stack; false: the paper's and Marian's post-LN stacks
  bool final_norm = true;
  // bos_id is the decoder's start token. bos_id == pad_id is Marian's convention: decoding starts from
  // the pad row of the embedding (kept zero by padding_idx) and the decoder never produces pad.
  int64_t pad_id = 0, bos_id = 2, eos_id = 3;
  bool starts_from_pad() const { return bos_id == pad_id; }
};

// "relu", "gelu", "silu" (accepted also as "swish", Marian's name) <-> nn::Activation; an unknown name
// throws, naming `what` (e.g. the file and key it came from).
std::string activation_name(nn::Activation a);
nn::Activation activation_from_name(const std::string& name, const std::string& what);

class Translator : public nn::Module {
 public:
  explicit Translator(const TranslatorOptions& options);

  Tensor embed(const Tensor& tokens, int64_t start_pos = 0);                 // (N, T) -> (N, T, E)
  Tensor encode(const Tensor& src);                                          // (N, S) -> memory (N, S, E)
  Tensor decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& src);  // -> logits (N, T, V)
  Tensor forward(const Tensor& src, const Tensor& tgt_in);                   // logits (N, T, V)
  Tensor project(const Tensor& h);                                           // (.., E) -> logits (.., V)

  // Per-layer, per-head attention weights for one sentence pair (src (1, S), tgt_in (1, T)), as in the
  // lecture's pictures: encoder self-attention (H, S, S), decoder self- (H, T, T) and cross-attention (H, T, S).
  struct AttentionMaps {
    std::vector<Tensor> encoder_self, decoder_self, decoder_cross;
  };
  AttentionMaps attention_maps(const Tensor& src, const Tensor& tgt_in);

  // Incremental decoding with a key/value cache (eval mode; equals full recomputation).
  std::unique_ptr<IncrementalDecoder> start_decoding(const Tensor& src);

  TranslatorOptions options;
  std::shared_ptr<nn::Embedding> embedding;        // "embedding.weight" (V, E)
  std::shared_ptr<nn::PositionalEncoding> positional;
  std::shared_ptr<nn::Transformer> transformer;    // batch_first
  std::shared_ptr<nn::Linear> generator;           // only when !tie_output
  Tensor output_bias;                              // (V), "output_bias"
  // The tied output projection as int8 (int8_translator.h); project() uses it when set.
  std::shared_ptr<const nn::Int8Matrix> output_int8;

 private:
  Tensor pad_row_keep_;  // (V, 1), 0 at pad: Marian-style models (tied, decoding from pad) only
};

}  // namespace attn::models
