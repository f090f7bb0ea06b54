// bench/bench_translator.h — the translator the training-step benchmarks share (attn_bench.cc,
// dp_bench.cc): `attn train-translator`'s model (models/translator.h) at the paper's base width with 3 + 3
// layers: embeddings * sqrt(d), sinusoidal positions, post-LN nn::Transformer, output projection tied to
// the embedding (+ bias), dropout 0.1. torch_bench.py builds the same model from torch.nn (same count).
#pragma once
#include <cstdint>

#include "attn/models/translator.h"

namespace attn::bench {

inline models::TranslatorOptions bench_translator_options() {
  return {.vocab_size = 8000, .d_model = 512, .nhead = 8, .num_encoder_layers = 3, .num_decoder_layers = 3,
          .dim_feedforward = 2048, .dropout = 0.1, .max_len = 1024, .tie_output = true};
}
inline constexpr int64_t kSentences = 32, kSrcLen = 32, kTgtLen = 32;  // one batch: 32 x (32 + 32) tokens

}  // namespace attn::bench
