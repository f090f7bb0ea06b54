// tests/translation_corpus.h — the synthetic word-for-word parallel corpus the translator tests train on.
//
//   test_corpus::write_word_corpus(dir / "train", 400, 7);   // dir/train.en, dir/train.es
//   auto o = test_corpus::tiny_translator_options(dir / "train", dir / "dev", dir / "out");
//   auto r = attn::train::train_translator(o);
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "attn/train/translation.h"

namespace test_corpus {

inline const char* const kEnglish[] = {"god", "light", "earth", "water", "day", "night", "man", "king", "house", "bread"};
inline const char* const kSpanish[] = {"dios", "luz", "tierra", "agua", "dia", "noche", "hombre", "rey", "casa", "pan"};

// `n` sentence pairs of 2-9 words drawn by an LCG from `seed`: <prefix>.en and its word-for-word
// translation <prefix>.es. English sentences in `exclude` are skipped (a held-out set); returns the
// English sentences written.
inline std::set<std::string> write_word_corpus(const std::filesystem::path& prefix, int n, uint32_t seed,
                                               const std::set<std::string>& exclude = {}) {
  std::ofstream fe(prefix.string() + ".en"), fs_(prefix.string() + ".es");
  std::set<std::string> written;
  uint32_t s = seed;
  for (int i = 0; i < n;) {
    int len = 2 + int((s = s * 1664525u + 1013904223u) >> 29);
    std::string a, b;
    for (int k = 0; k < len; ++k) {
      int w = int((s = s * 1664525u + 1013904223u) >> 28) % 10;
      a += std::string(k ? " " : "") + kEnglish[w];
      b += std::string(k ? " " : "") + kSpanish[w];
    }
    if (exclude.count(a)) continue;
    fe << a << "\n";
    fs_ << b << "\n";
    written.insert(a);
    ++i;
  }
  return written;
}

// A 1+1-layer d_model 32 translator with a 48-piece vocabulary: seconds per hundred steps.
inline attn::train::TranslationTrainOptions tiny_translator_options(const std::filesystem::path& train,
                                                                     const std::filesystem::path& dev,
                                                                     const std::filesystem::path& out) {
  attn::train::TranslationTrainOptions o;
  o.train_src = train.string() + ".en";
  o.train_tgt = train.string() + ".es";
  o.dev_src = dev.string() + ".en";
  o.dev_tgt = dev.string() + ".es";
  o.out_dir = out.string();
  o.vocab_size = 48;
  o.model = {.d_model = 32, .nhead = 4, .num_encoder_layers = 1, .num_decoder_layers = 1, .dim_feedforward = 64,
             .dropout = 0.1};
  o.max_tokens = 400;
  o.warmup_steps = 50;
  o.lr_factor = 0.3;
  o.eval_every = 1000;
  o.eval_sentences = 40;
  o.progress = false;
  return o;
}

}  // namespace test_corpus
