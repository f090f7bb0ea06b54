// tests/test_language_model.cc — the train-lm job (learns a tiny repetitive text; resumes bit-exactly
// with the carried state mid-epoch) and sampling (deterministic per seed, top-k / top-p / temperature,
// clear errors for bad options and unknown prompt characters).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "attn/attn.h"
#include "attn/io/checkpoint.h"
#include "attn/train/language_model.h"

using namespace attn;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_lm_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// train/valid/test.txt of a repeated sentence in `dir`.
void write_corpus(const fs::path& dir, int repeats) {
  std::string sentence = "the cat sat on the mat. ", text;
  for (int i = 0; i < repeats; ++i) text += sentence;
  std::ofstream(dir / "train.txt") << text;
  std::ofstream(dir / "valid.txt") << text.substr(0, 600);
  std::ofstream(dir / "test.txt") << text.substr(24, 600);
}

train::LMTrainOptions tiny_options(const fs::path& data, const fs::path& out, train::RecurrentCell cell) {
  train::LMTrainOptions o;
  o.train_path = (data / "train.txt").string();
  o.valid_path = (data / "valid.txt").string();
  o.test_path = (data / "test.txt").string();
  o.out_dir = out.string();
  o.model = {.embedding_dim = 8, .hidden_size = 24, .num_layers = 2, .cell = cell};
  o.batch_size = 4;
  o.seq_len = 12;
  o.lr = 1e-2;
  o.eval_every = 4;
  o.eval_streams = 4;
  o.progress = false;
  o.handle_signals = false;
  o.log_every = 1;
  return o;
}

}  // namespace

TEST(LanguageModel, LearnsRepetitiveTextWithEveryCell) {
  fs::path dir = temp_dir("learn");
  write_corpus(dir, 60);  // 1440 characters, 11 distinct
  for (auto cell : {train::RecurrentCell::LSTM, train::RecurrentCell::GRU, train::RecurrentCell::RNN}) {
    train::LMTrainOptions o = tiny_options(dir, dir / ("run_" + train::to_string(cell)), cell);
    o.max_steps = 150;
    o.eval_every = 50;
    train::LMTrainResult r = train::train_language_model(o);
    EXPECT_EQ(r.steps, 150);
    EXPECT_EQ(r.vocab_size, 12);  // 11 characters + <unk>
    // uniform over 12 ids is ln 12 = 2.48; the sentence is nearly deterministic given some context
    EXPECT_LT(r.best_valid_loss, 0.35) << train::to_string(cell);
    EXPECT_LT(r.test_loss, 0.35) << train::to_string(cell);
    EXPECT_TRUE(fs::exists(dir / ("run_" + train::to_string(cell)) / "best.safetensors"));
    EXPECT_TRUE(fs::exists(dir / ("run_" + train::to_string(cell)) / "vocab.txt"));
  }
  fs::remove_all(dir);
}

TEST(LanguageModel, ResumeMidEpochIsBitIdentical) {
  fs::path dir = temp_dir("resume");
  write_corpus(dir, 15);  // 360 chars: 4 streams of 89 -> 7 chunks of 12 per epoch
  train::LMTrainOptions whole = tiny_options(dir, dir / "whole", train::RecurrentCell::LSTM);
  whole.max_steps = 12;  // crosses the epoch boundary at step 7
  train::LMTrainResult a = train::train_language_model(whole);

  train::LMTrainOptions part = tiny_options(dir, dir / "part", train::RecurrentCell::LSTM);
  part.max_steps = 12;
  part.stop_after_steps = 6;  // "crashes" after step 6; the last checkpoint is step 4 (mid-epoch)
  train::LMTrainResult crashed = train::train_language_model(part);
  EXPECT_EQ(crashed.steps, 6);
  io::Checkpoint mid = io::load_checkpoint((dir / "part" / "checkpoint.safetensors").string());
  ASSERT_EQ(mid.step, 4);
  EXPECT_NE(mid.extra_json.find("f32_hex"), std::string::npos);  // a carried state is saved
  part.stop_after_steps = -1;
  train::LMTrainResult b = train::train_language_model(part);
  EXPECT_TRUE(b.resumed);
  EXPECT_EQ(b.steps, 12);
  EXPECT_EQ(a.valid_loss, b.valid_loss);
  EXPECT_EQ(a.test_loss, b.test_loss);
  auto ma = io::load_checkpoint((dir / "whole" / "checkpoint.safetensors").string()).model;
  auto mb = io::load_checkpoint((dir / "part" / "checkpoint.safetensors").string()).model;
  ASSERT_EQ(ma.size(), mb.size());
  for (const auto& [name, t] : ma) {
    std::vector<float> x = t.to_vector<float>(), y = mb.at(name).to_vector<float>();
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float))) << name;
  }
  fs::remove_all(dir);
}

// A bf16 run (every step under attn::Autocast) resumes bit-exactly in bf16 even when asked for fp32
// (config.json records the precision), and differs from the fp32 run (autocast is in effect).
TEST(LanguageModel, Bf16RunResumesBitIdenticallyInItsOwnPrecision) {
  fs::path dir = temp_dir("bf16");
  write_corpus(dir, 15);
  auto options = [&](const char* name, const char* precision) {
    train::LMTrainOptions o = tiny_options(dir, dir / name, train::RecurrentCell::LSTM);
    o.max_steps = 10;
    o.precision = precision;
    return o;
  };
  const train::LMTrainResult fp32 = train::train_language_model(options("fp32", "fp32"));
  const train::LMTrainResult whole = train::train_language_model(options("whole", "bf16"));
  EXPECT_EQ(whole.precision, "bf16");
  EXPECT_NE(whole.valid_loss, fp32.valid_loss);
  EXPECT_NEAR(whole.valid_loss, fp32.valid_loss, 0.05 * fp32.valid_loss);
  train::LMTrainOptions part = options("part", "bf16");
  part.stop_after_steps = 6;
  train::train_language_model(part);
  part.stop_after_steps = -1;
  part.precision = "fp32";  // the recorded bf16 wins
  const train::LMTrainResult resumed = train::train_language_model(part);
  EXPECT_TRUE(resumed.resumed);
  EXPECT_EQ(resumed.precision, "bf16");
  EXPECT_EQ(resumed.valid_loss, whole.valid_loss);
  auto ma = io::load_checkpoint((dir / "whole" / "checkpoint.safetensors").string()).model;
  auto mb = io::load_checkpoint((dir / "part" / "checkpoint.safetensors").string()).model;
  for (const auto& [name, t] : ma) {
    std::vector<float> x = t.to_vector<float>(), y = mb.at(name).to_vector<float>();
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float))) << name;
  }
  part.precision = "fp16";
  part.resume = false;
  EXPECT_THROW(train::train_language_model(part), std::invalid_argument);
  fs::remove_all(dir);
}

TEST(LanguageModel, ResumeRefusesOtherOptions) {
  fs::path dir = temp_dir("refuse");
  write_corpus(dir, 15);
  train::LMTrainOptions o = tiny_options(dir, dir / "run", train::RecurrentCell::GRU);
  o.max_steps = 4;
  train::train_language_model(o);
  o.max_steps = 8;
  o.seq_len = 10;
  EXPECT_THROW(train::train_language_model(o), std::runtime_error);  // seq_len differs from the checkpoint's
  o.seq_len = 12;
  o.model.hidden_size = 16;
  EXPECT_THROW(train::train_language_model(o), std::runtime_error);  // config.json differs
  o.batch_size = 400;
  o.resume = false;
  EXPECT_THROW(train::train_language_model(o), std::invalid_argument);  // text too short for the batch
  fs::remove_all(dir);
}

TEST(LanguageModel, TrainFractionTrainsOnAPrefixWithTheWholeVocabulary) {
  fs::path dir = temp_dir("fraction");
  write_corpus(dir, 15);
  std::ofstream(dir / "train.txt", std::ios::app) << "XYZ";  // 363 chars; X, Y, Z only in the second half
  train::LMTrainOptions o = tiny_options(dir, dir / "all", train::RecurrentCell::RNN);
  o.max_epochs = 1;
  train::LMTrainResult all = train::train_language_model(o);
  EXPECT_EQ(all.steps, 7);  // 4 streams of (363 - 1) / 4 = 90 chars: 7 chunks of 12
  EXPECT_EQ(all.vocab_size, 15);

  o.out_dir = (dir / "half").string();
  o.train_fraction = 0.5;
  train::LMTrainResult half = train::train_language_model(o);
  EXPECT_EQ(half.steps, 3);        // floor(363 * 0.5) = 181 chars: 4 streams of 45, 3 chunks of 12
  EXPECT_EQ(half.vocab_size, 15);  // the vocabulary still comes from the whole file

  o.out_dir = (dir / "all").string();
  EXPECT_THROW(train::train_language_model(o), std::runtime_error);  // resuming with another amount of text
  for (double bad : {0.0, -0.5, 1.5, std::nan("")}) {
    o.train_fraction = bad;
    EXPECT_THROW(train::train_language_model(o), std::invalid_argument) << bad;
  }
  fs::remove_all(dir);
}

TEST(LanguageModel, GenerateIsDeterministicAndChecksItsInput) {
  fs::path dir = temp_dir("generate");
  write_corpus(dir, 30);
  train::LMTrainOptions o = tiny_options(dir, dir / "run", train::RecurrentCell::LSTM);
  o.max_steps = 60;
  o.test_path.clear();
  train::train_language_model(o);
  train::LMSession s = train::LMSession::load((dir / "run").string());
  train::GenerateOptions g{.length = 40, .temperature = 0.8, .top_k = 5, .top_p = 0.95, .seed = 7};
  std::string first = s.generate("the ", g), second = s.generate("the ", g);
  EXPECT_EQ(first, second);
  EXPECT_EQ(first.size(), 44u);
  EXPECT_EQ(first.substr(0, 4), "the ");
  EXPECT_EQ(first.find("<unk>"), std::string::npos);
  // greedy-like sampling (top_k = 1) does not depend on the seed
  EXPECT_EQ(s.generate("the ", {.length = 30, .top_k = 1, .seed = 1}), s.generate("the ", {.length = 30, .top_k = 1, .seed = 2}));
  try {
    s.generate("the Dog", g);
    ADD_FAILURE() << "unknown prompt character accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("'D'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(s.generate("", g), std::invalid_argument);
  EXPECT_THROW(s.generate("the", {.temperature = 0}), std::invalid_argument);
  EXPECT_THROW(s.generate("the", {.temperature = -1}), std::invalid_argument);
  EXPECT_THROW(s.generate("the", {.top_k = -1}), std::invalid_argument);
  EXPECT_THROW(s.generate("the", {.top_p = 0}), std::invalid_argument);
  EXPECT_THROW(s.generate("the", {.top_p = 1.5}), std::invalid_argument);
  EXPECT_THROW(train::LMSession::load((dir / "nothing").string()), std::runtime_error);
  // the last checkpoint instead of the best one loads too
  EXPECT_NO_THROW(train::LMSession::load((dir / "run").string(), (dir / "run" / "checkpoint.safetensors").string()));
  fs::remove_all(dir);
}

TEST(LanguageModel, SampleLogitsFollowsTemperatureTopKTopP) {
  std::vector<float> logits = {std::log(0.1f), std::log(0.2f), std::log(0.3f), std::log(0.4f)};
  // uniform on a fine grid: the frequencies are the probabilities
  auto frequencies = [&](const train::GenerateOptions& o, const std::vector<int64_t>& excluded) {
    std::vector<double> f(4, 0);
    const int n = 10000;
    for (int i = 0; i < n; ++i) f[size_t(train::sample_logits(logits, o, (i + 0.5) / n, excluded))] += 1.0 / n;
    return f;
  };
  std::vector<double> p = frequencies({}, {});
  EXPECT_NEAR(p[0], 0.1, 1e-3);
  EXPECT_NEAR(p[3], 0.4, 1e-3);
  p = frequencies({.top_k = 2}, {});  // {3, 2} renormalised: 4/7, 3/7
  EXPECT_EQ(p[0] + p[1], 0.0);
  EXPECT_NEAR(p[3], 4.0 / 7, 1e-3);
  p = frequencies({.top_p = 0.65}, {});  // 0.4 + 0.3 >= 0.65: {3, 2}
  EXPECT_EQ(p[0] + p[1], 0.0);
  EXPECT_NEAR(p[2], 3.0 / 7, 1e-3);
  p = frequencies({.temperature = 0.5}, {});  // p^2 normalised: 16 / 30 for the last
  EXPECT_NEAR(p[3], 16.0 / 30, 1e-3);
  p = frequencies({}, {3});  // excluded never drawn
  EXPECT_EQ(p[3], 0.0);
  EXPECT_NEAR(p[2], 0.5, 1e-3);
  EXPECT_EQ(train::sample_logits(logits, {.top_p = 1e-6}, 0.99), 3);
}
