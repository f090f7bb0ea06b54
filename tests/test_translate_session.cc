// TranslationSession as attn translate uses it, on a tiny trained run: one output line per input line
// (empty, invalid UTF-8 and over-long lines included, with line-numbered warnings), batching by
// tokens in input order, n-best lists, the decoding options, attention pictures of the chosen
// hypothesis, and load's clear errors about config.json and the checkpoint it picks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <set>
#include <sstream>

#include "attn/data/parallel_text.h"
#include "attn/train/translation.h"
#include "translation_corpus.h"

namespace fs = std::filesystem;
using namespace attn;

namespace {

// A run directory trained for a few steps (about a second).
fs::path tiny_run(const std::string& name, int64_t steps) {
  fs::path root = fs::temp_directory_path() / ("attn_ts_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  std::set<std::string> seen = test_corpus::write_word_corpus(root / "train", 400, 7);
  test_corpus::write_word_corpus(root / "dev", 30, 2024, seen);
  auto o = test_corpus::tiny_translator_options(root / "train", root / "dev", root / "run");
  o.max_steps = steps;
  o.eval_every = steps;
  o.eval_sentences = 10;
  train::train_translator(o);
  return root;
}

bool contains(const std::vector<std::string>& messages, const std::string& part) {
  for (const auto& m : messages)
    if (m.find(part) != std::string::npos) return true;
  return false;
}

std::string load_error(const fs::path& run) {
  try {
    train::TranslationSession::load(run.string());
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(TranslateSession, DecodingOptionsAndOddInputs) {
  fs::path root = tiny_run("opts", 60);
  auto s = train::TranslationSession::load((root / "run").string());
  EXPECT_EQ(s.checkpoint_note(), "");
  std::string longline;
  for (int i = 0; i < 1100; ++i) longline += i % 2 ? "light " : "god ";  // beyond the 1024 positions
  const std::vector<std::string> lines = {"god light", "", "  ", "king \xff\xfe bread", longline, "water day night"};
  auto out = s.translate(lines, {.beam_size = 2, .max_len_a = 0.0, .max_len_b = 6});
  ASSERT_EQ(out.size(), lines.size()) << "one output per input line";
  EXPECT_EQ(out[1], "");
  EXPECT_EQ(out[2], "");
  EXPECT_FALSE(out[3].empty()) << "invalid bytes are dropped, the rest is translated";
  EXPECT_TRUE(contains(s.warnings(), "line 4: invalid UTF-8 at byte offset 5")) << ::testing::PrintToString(s.warnings());
  EXPECT_TRUE(contains(s.warnings(), "line 5: 1100 tokens, more than the model's")) << ::testing::PrintToString(s.warnings());
  EXPECT_TRUE(contains(s.warnings(), "translated in 2 pieces")) << ::testing::PrintToString(s.warnings());
  EXPECT_EQ(s.warnings().size(), 2u);
  auto cut = s.translate({longline}, {.beam_size = 1, .max_len_a = 0.0, .max_len_b = 6, .split_long = false});
  EXPECT_TRUE(contains(s.warnings(), "line 1: 1100 tokens, more than the model's 1023: truncated"));

  // batches by tokens and by sentences give every line its own translation, in input order
  std::vector<std::string> dev = data::read_lines((root / "dev.en").string());
  auto by_sentences = s.translate(dev, {.beam_size = 1, .batch_size = 32});
  auto by_tokens = s.translate(dev, {.beam_size = 1, .batch_size = 32, .batch_tokens = 24});
  auto alone = s.translate(dev, {.beam_size = 1, .batch_size = 1});
  EXPECT_EQ(by_sentences, alone);
  EXPECT_EQ(by_tokens, alone);

  // n-best lists: n entries, best first, the first one what translate prints
  auto nbest = s.translate_nbest({"god light day", "king"}, {.beam_size = 4, .n_best = 3});
  auto best = s.translate({"god light day", "king"}, {.beam_size = 4});
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_EQ(nbest[i].size(), 3u);
    EXPECT_EQ(nbest[i][0].first, best[i]);
    EXPECT_GE(nbest[i][0].second, nbest[i][1].second);
    EXPECT_GE(nbest[i][1].second, nbest[i][2].second);
    EXPECT_LT(nbest[i][0].second, 0.0) << "a length-normalised log-probability";
  }
  // no_repeat_ngram_size 1: no word twice; min length: at least that many words
  for (const std::string& t : s.translate({"god god god god god god"}, {.beam_size = 3, .no_repeat_ngram_size = 1})) {
    std::istringstream words(t);
    std::set<std::string> seen;
    for (std::string w; words >> w;) EXPECT_TRUE(seen.insert(w).second) << "repeated \"" << w << "\" in " << t;
  }
  auto longer = s.translate({"god"}, {.beam_size = 2, .min_len_b = 6})[0];
  EXPECT_GE(std::count(longer.begin(), longer.end(), ' ') + 1, 3) << longer;  // 6 pieces, whole words or parts
  // sampling: seeded, and only with beam 1
  train::TranslateOptions so{.beam_size = 1, .sample = true, .sampling = {.temperature = 2.0, .seed = 11}};
  EXPECT_EQ(s.translate(dev, so), s.translate(dev, so));
  so.beam_size = 4;
  EXPECT_THROW(s.translate(dev, so), std::invalid_argument);

  // attention pictures of the hypothesis beam search chose: every head and each layer's mean
  auto files = s.write_attention_pictures("god light day", (root / "pics").string(), {.beam_size = 4});
  EXPECT_EQ(files.size(), size_t(3 * (4 + 1)));
  for (const char* name : {"decoder_cross_layer1_head1.png", "decoder_cross_layer1_mean.png", "encoder_self_layer1_head4.png"})
    EXPECT_TRUE(fs::exists(root / "pics" / name)) << name;
  fs::remove_all(root);
}

TEST(TranslateSession, LoadNamesConfigProblems) {
  fs::path root = tiny_run("load", 10);
  const fs::path run = root / "run", config = run / "config.json";
  const nlohmann::json good = nlohmann::json::parse(std::ifstream(config));
  auto write_config = [&](const nlohmann::json& j) { std::ofstream(config) << j.dump(); };
  // config.json's "spm" names the tokenizer file
  fs::rename(run / "spm.model", run / "tok.model");
  EXPECT_NE(load_error(run).find("\"spm\" names"), std::string::npos) << load_error(run);
  auto renamed = good;
  renamed["spm"] = "tok.model";
  write_config(renamed);
  EXPECT_EQ(load_error(run), "no error");
  fs::rename(run / "tok.model", run / "spm.model");
  // a wrongly typed value, a missing key, an unknown activation: each named
  auto typed = good;
  typed["model"]["d_model"] = "32";
  write_config(typed);
  EXPECT_NE(load_error(run).find("\"d_model\" must be an integer, got \"32\""), std::string::npos) << load_error(run);
  auto missing = good;
  missing["model"].erase("nhead");
  write_config(missing);
  EXPECT_NE(load_error(run).find("\"nhead\" is missing"), std::string::npos) << load_error(run);
  auto activation = good;
  activation["model"]["activation"] = "tanh";
  write_config(activation);
  EXPECT_NE(load_error(run).find("tanh"), std::string::npos) << load_error(run);
  write_config(good);
  // without best.safetensors the latest checkpoint is used, and said
  ASSERT_TRUE(fs::exists(run / "best.safetensors"));
  fs::remove(run / "best.safetensors");
  auto s = train::TranslationSession::load(run.string());
  EXPECT_NE(s.checkpoint_note().find("no best.safetensors"), std::string::npos) << s.checkpoint_note();
  fs::remove(run / "checkpoint.safetensors");
  EXPECT_NE(load_error(run).find("neither best.safetensors nor checkpoint.safetensors"), std::string::npos);
  // absurd options are refused before anything is decoded
  EXPECT_THROW(train::check_translate_options({.beam_size = 0}), std::invalid_argument);
  EXPECT_THROW(train::check_translate_options({.length_penalty = -1}), std::invalid_argument);
  EXPECT_THROW(train::check_translate_options({.max_len_b = -1}), std::invalid_argument);
  EXPECT_THROW(train::check_translate_options({.batch_size = 0}), std::invalid_argument);
  EXPECT_THROW(train::check_translate_options({.beam_size = 1, .sample = true, .sampling = {.top_p = 1.5}}),
               std::invalid_argument);
  fs::remove_all(root);
}
