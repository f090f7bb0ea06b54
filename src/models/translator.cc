// src/models/translator.cc — the Transformer translator and its incremental decoder (the library's
// decoder layers through their key/value-cache API, TransformerDecoderLayer::forward_step).
#include "attn/models/translator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "attn/autograd.h"
#include "attn/nn/int8_linear.h"
#include "attn/ops.h"

namespace attn::models {

std::string activation_name(nn::Activation a) {
  switch (a) {
    case nn::Activation::GELU: return "gelu";
    case nn::Activation::GELUTanh: return "gelu_new";  // Hugging Face's name for the tanh form
    case nn::Activation::SiLU: return "silu";
    case nn::Activation::ReLU: return "relu";
  }
  return "relu";
}

nn::Activation activation_from_name(const std::string& name, const std::string& what) {
  if (name == "relu") return nn::Activation::ReLU;
  if (name == "gelu") return nn::Activation::GELU;
  if (name == "silu" || name == "swish") return nn::Activation::SiLU;
  throw std::invalid_argument(what + ": unsupported activation \"" + name + "\" (relu, gelu, silu/swish)");
}

Translator::Translator(const TranslatorOptions& o) : options(o) {
  if (std::min({o.pad_id, o.bos_id, o.eos_id}) < 0 || o.vocab_size <= std::max({o.pad_id, o.bos_id, o.eos_id}))
    throw std::invalid_argument("Translator: the special ids (pad " + std::to_string(o.pad_id) + ", bos " +
                                std::to_string(o.bos_id) + ", eos " + std::to_string(o.eos_id) +
                                ") must be token ids in [0, vocab_size " + std::to_string(o.vocab_size) + ")");
  embedding = register_module("embedding", nn::Embedding({.num_embeddings = o.vocab_size, .embedding_dim = o.d_model,
                                                          .padding_idx = o.pad_id}));
  {
    NoGradGuard ng;  // N(0, d^-1/2) as for tied embeddings in the paper's reference implementation
    embedding->weight.normal_(0.0, 1.0 / std::sqrt(double(o.d_model)));
    embedding->weight.select(0, o.pad_id).zero_();
  }
  positional = register_module("positional", nn::PositionalEncoding({.d_model = o.d_model, .max_len = o.max_len,
                                                                     .dropout = o.dropout, .batch_first = true}));
  transformer = register_module("transformer", nn::Transformer({.d_model = o.d_model, .nhead = o.nhead,
                                                                .num_encoder_layers = o.num_encoder_layers,
                                                                .num_decoder_layers = o.num_decoder_layers,
                                                                .dim_feedforward = o.dim_feedforward, .dropout = o.dropout,
                                                                .activation = o.activation, .batch_first = true,
                                                                .norm_first = o.norm_first,
                                                                .final_norm = o.final_norm}));
  if (!o.tie_output) generator = register_module("generator", nn::Linear(o.d_model, o.vocab_size, false));
  output_bias = register_parameter("output_bias", zeros({o.vocab_size}));
  if (o.tie_output && o.starts_from_pad()) {  // (V, 1): 0 at pad's row
    std::vector<float> keep(size_t(o.vocab_size), 1.0f);
    keep[size_t(o.pad_id)] = 0.0f;
    pad_row_keep_ = register_buffer("pad_row_keep", from_vector(keep, {o.vocab_size, 1}), /*persistent=*/false);
  }
}

Tensor Translator::embed(const Tensor& tokens, int64_t start_pos) {
  Tensor e = mul(embedding->forward(tokens), std::sqrt(double(options.d_model)));  // (N, T, E)
  return positional->forward(e, start_pos);
}

Tensor Translator::encode(const Tensor& src) {
  return transformer->encoder->forward(embed(src), {.src_key_padding_mask = nn::padding_mask(src, options.pad_id)});
}

Tensor Translator::project(const Tensor& h) {
  if (output_int8 || (generator && generator->int8)) {  // int8 decoding (int8_translator.h)
    if (is_training()) throw std::logic_error("Translator: int8 weights are for inference (call eval())");
    return (output_int8 ? output_int8 : generator->int8)->linear(h, output_bias);
  }
  Tensor w = options.tie_output ? embedding->weight : generator->weight;
  // Marian: pad's row is the decoder's zero start embedding, so the tied output projection must not
  // train it (padding_idx already keeps the lookup's gradient off it); in eval the row is zero anyway
  if (pad_row_keep_.defined() && is_training()) w = mul(w, pad_row_keep_);
  return linear(h, w, output_bias);
}

Tensor Translator::decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& src) {
  int64_t T = tgt_in.size(1);
  Tensor h = transformer->decoder->forward(embed(tgt_in), memory,
                                           {.tgt_mask = nn::causal_mask(T, tgt_in.device()),
                                            .memory_key_padding_mask = nn::padding_mask(src, options.pad_id)});
  return project(h);
}

Tensor Translator::forward(const Tensor& src, const Tensor& tgt_in) { return decode(tgt_in, encode(src), src); }

Translator::AttentionMaps Translator::attention_maps(const Tensor& src, const Tensor& tgt_in) {
  if (src.dim() != 2 || tgt_in.dim() != 2 || src.size(0) != 1 || tgt_in.size(0) != 1)
    throw std::invalid_argument("Translator::attention_maps: expects one sentence pair, (1, S) and (1, T); got " +
                                shape_str(src.shape()) + " and " + shape_str(tgt_in.shape()));
  NoGradGuard ng;
  AttentionMaps maps;
  Tensor src_kpm = nn::padding_mask(src, options.pad_id);
  Tensor x = embed(src);
  for (const auto& l : *transformer->encoder->layers) {
    Tensor w;
    x = std::static_pointer_cast<nn::TransformerEncoderLayer>(l)->forward(x, {.src_key_padding_mask = src_kpm},
                                                                            {.self_attention = &w});
    maps.encoder_self.push_back(w.select(0, 0));
  }
  Tensor memory = transformer->encoder->norm ? transformer->encoder->norm->forward(x) : x;
  Tensor y = embed(tgt_in);
  for (const auto& l : *transformer->decoder->layers) {
    Tensor ws, wc;
    y = std::static_pointer_cast<nn::TransformerDecoderLayer>(l)->forward(
        y, memory, {.tgt_mask = nn::causal_mask(tgt_in.size(1), tgt_in.device()), .memory_key_padding_mask = src_kpm},
        {.self_attention = &ws, .cross_attention = &wc});
    maps.decoder_self.push_back(ws.select(0, 0));
    maps.decoder_cross.push_back(wc.select(0, 0));
  }
  return maps;
}

namespace {

// Incremental decoding on the library's layers: each decoder layer's forward_step with its own caches
// (self-attention keys/values grown one slot per step; the memory's keys/values projected once).
class TranslatorDecoder : public IncrementalDecoder {
 public:
  TranslatorDecoder(Translator& m, const Tensor& src) : m_(m) {
    NoGradGuard ng;
    Tensor memory = m.encode(src);  // (N, S, E)
    kpm_ = nn::padding_mask(src, m.options.pad_id);  // (N, S)
    for (const auto& l : *m.transformer->decoder->layers) {
      auto layer = std::static_pointer_cast<nn::TransformerDecoderLayer>(l);
      layers_.push_back(layer);
      caches_.push_back(layer->start_cache(memory));
    }
    rows_ = src.size(0);
    if (m.options.starts_from_pad()) {  // Marian: pad is the start symbol, never an output (-inf logit)
      std::vector<float> bias(size_t(m.options.vocab_size), 0.0f);
      bias[size_t(m.options.pad_id)] = -std::numeric_limits<float>::infinity();
      never_pad_ = from_vector(bias, {m.options.vocab_size});
    }
    sentence_.resize(size_t(rows_));
    for (int64_t r = 0; r < rows_; ++r) sentence_[size_t(r)] = r;
  }

  int64_t rows() const override { return rows_; }
  int64_t bos_id() const override { return m_.options.bos_id; }
  int64_t eos_id() const override { return m_.options.eos_id; }

  Tensor step(const Tensor& tokens) override { return log_softmax(step_logits(tokens), -1); }

  Tensor step_logits(const Tensor& tokens) override {
    NoGradGuard ng;
    if (step_ >= m_.options.max_len)
      throw std::out_of_range("Translator: decoding past max_len " + std::to_string(m_.options.max_len));
    Tensor x = m_.embed(tokens.view({rows_, 1}), step_);  // (rows, 1, E)
    for (size_t l = 0; l < layers_.size(); ++l)
      x = layers_[l]->forward_step(x, caches_[l], {.memory_key_padding_mask = kpm_});
    if (m_.transformer->decoder->norm) x = m_.transformer->decoder->norm->forward(x);
    ++step_;
    Tensor logits = m_.project(x.view({rows_, m_.options.d_model}));  // (rows, V)
    if (never_pad_.defined()) logits = add(logits, never_pad_);  // before any softmax or sampling
    return logits;
  }

  // Reorders the self-attention caches (whole buffers, capacity included: one copy) and, only when some
  // row now belongs to another source sentence, the cross-attention keys/values and the padding mask.
  // Beam search reorders beams within each sentence at every step, so that second part runs only for
  // the initial expansion.
  void select_rows(const std::vector<int64_t>& rows) override {
    NoGradGuard ng;
    std::vector<int64_t> sentence(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) {
      if (rows[r] < 0 || rows[r] >= rows_)
        throw std::out_of_range("Translator decoder: select_rows index " + std::to_string(rows[r]) + " outside 0.." +
                                std::to_string(rows_ - 1));
      sentence[r] = sentence_[size_t(rows[r])];
    }
    const bool same_sentences = sentence == sentence_;
    Tensor idx = from_vector(rows, {int64_t(rows.size())});
    for (auto& c : caches_) c.select_rows(idx, /*cross=*/!same_sentences);
    if (!same_sentences) kpm_ = index_select(kpm_, 0, idx);
    sentence_ = std::move(sentence);
    rows_ = int64_t(rows.size());
  }

 private:
  Translator& m_;
  std::vector<std::shared_ptr<nn::TransformerDecoderLayer>> layers_;
  std::vector<nn::DecoderLayerCache> caches_;  // one per decoder layer
  Tensor kpm_;  // (rows, S) true at source padding
  Tensor never_pad_;  // (V): -inf at pad when decoding starts from pad (Marian), else undefined
  std::vector<int64_t> sentence_;  // source sentence of each row (what the cross caches hold)
  int64_t rows_ = 0, step_ = 0;
};

}  // namespace

std::unique_ptr<IncrementalDecoder> Translator::start_decoding(const Tensor& src) {
  if (src.dim() != 2) throw std::invalid_argument("Translator::start_decoding: src must be (N, S), got " + shape_str(src.shape()));
  if (is_training()) throw std::logic_error("Translator::start_decoding: call eval() first (dropout would make steps random)");
  return std::make_unique<TranslatorDecoder>(*this, src);
}

}  // namespace attn::models
