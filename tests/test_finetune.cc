// `attn finetune`'s job (attn/train/finetune.h) on the tiny randomly initialised BERT fixture
// (tests/make_hf_model_fixtures.py) with a small WordPiece vocabulary: it learns a synthetic topic task in
// every mode, resumes bit-identically (full and LoRA), freezes what each mode freezes, and writes the
// LoRA adapters in peft's format.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "attn/io/checkpoint.h"
#include "attn/io/safetensors.h"
#include "attn/models/lora.h"
#include "attn/ops.h"
#include "attn/train/finetune.h"

using namespace attn;
namespace fs = std::filesystem;

namespace {

const std::string kBert = std::string(ATTN_FIXTURE_DIR) + "/hf_models/bert_tiny";  // vocab 64, 3 labels

// A temp dir with vocab.txt (ids < 64) and train / valid / test TSVs whose topic shows in the words.
fs::path corpus(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("attn_finetune_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::vector<std::vector<std::string>> topics = {{"ball", "goal", "team", "match", "score"},
                                                        {"code", "bug", "compile", "linux", "kernel"},
                                                        {"love", "heart", "kiss", "dear", "rose"}};
  const std::vector<std::string> filler = {"the", "a", "is", "of", "and", "to", "it", "was"};
  std::ofstream vocab(dir / "vocab.txt");
  vocab << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (const auto& t : topics)
    for (const auto& w : t) vocab << w << "\n";
  for (const auto& w : filler) vocab << w << "\n";
  vocab.close();
  const char* labels[] = {"sports", "computers", "love"};
  std::mt19937 rng(7);
  for (auto [file, n] : {std::pair{"train.tsv", 48}, std::pair{"valid.tsv", 12}, std::pair{"test.tsv", 12}}) {
    std::ofstream f(dir / file);
    for (int i = 0; i < n; ++i) {
      const int c = i % 3;
      f << labels[c] << "\t";
      for (int w = 0; w < 6; ++w) f << (w % 2 ? topics[size_t(c)][rng() % 5] : filler[rng() % 8]) << (w < 5 ? " " : "\n");
    }
  }
  return dir;
}

train::FinetuneOptions tiny_options(const fs::path& dir, const std::string& run, train::FinetuneMode mode) {
  return {.model_dir = kBert, .tokenizer_dir = dir.string(), .train_path = (dir / "train.tsv").string(),
          .valid_path = (dir / "valid.tsv").string(), .test_path = (dir / "test.tsv").string(),
          .out_dir = (dir / run).string(), .mode = mode, .max_len = 16, .batch_size = 8, .lr = 3e-3, .head_lr = 1e-2,
          .lora_r = 4, .lora_alpha = 8, .lora_dropout = 0.1, .max_epochs = 2, .eval_every = 4, .log_every = 0,
          .progress = false, .handle_signals = false};
}

void expect_same_checkpoints(const std::string& a, const std::string& b) {
  auto ma = io::load_checkpoint(a).model, mb = io::load_checkpoint(b).model;
  ASSERT_EQ(ma.size(), mb.size());
  for (const auto& [name, t] : ma) {
    std::vector<float> x = t.to_vector<float>(), y = mb.at(name).to_vector<float>();
    ASSERT_EQ(x.size(), y.size()) << name;
    EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float))) << name;
  }
}

TEST(Finetune, ResumeIsBitIdenticalInFullAndLoraModes) {
  fs::path dir = corpus("resume");
  for (auto mode : {train::FinetuneMode::Full, train::FinetuneMode::Lora}) {
    train::FinetuneOptions whole = tiny_options(dir, "whole", mode);  // 12 steps, epoch boundary at 6
    whole.resume = false;
    train::FinetuneResult a = train::finetune_classifier(whole);
    EXPECT_EQ(a.steps, 12);
    train::FinetuneOptions part = whole;
    part.out_dir = (dir / "part").string();
    part.stop_after_steps = 10;  // the last checkpoint is step 8 (epoch 1, batch 2)
    train::finetune_classifier(part);
    part.stop_after_steps = -1;
    part.resume = true;
    train::FinetuneResult b = train::finetune_classifier(part);
    EXPECT_TRUE(b.resumed);
    EXPECT_EQ(a.steps, b.steps);
    EXPECT_EQ(a.valid_loss, b.valid_loss);
    EXPECT_EQ(a.test_accuracy, b.test_accuracy);
    expect_same_checkpoints(whole.out_dir + "/checkpoint.safetensors", part.out_dir + "/checkpoint.safetensors");
    fs::remove_all(dir / "whole");
    fs::remove_all(dir / "part");
  }
  fs::remove_all(dir);
}

TEST(Finetune, EveryModeLearnsAndFreezesWhatItShould) {
  fs::path dir = corpus("modes");
  const auto base = io::load_safetensors(kBert + "/model.safetensors");
  const std::string query = "bert.encoder.layer.0.attention.self.query.weight";
  for (auto mode : {train::FinetuneMode::Full, train::FinetuneMode::Frozen, train::FinetuneMode::Lora}) {
    train::FinetuneOptions o = tiny_options(dir, "run", mode);
    o.max_epochs = 12;
    o.head_lr = 3e-2;
    o.eval_every = 0;
    o.resume = false;
    train::FinetuneResult r = train::finetune_classifier(o);
    SCOPED_TRACE(int(mode));
    // chance is 1/3; the topic words decide. A frozen random tiny encoder gives weak features (~0.58)
    EXPECT_GE(r.best_valid_accuracy, mode == train::FinetuneMode::Frozen ? 0.5 : 0.75);
    EXPECT_EQ(r.num_classes, 3);
    auto m = io::load_checkpoint(r.checkpoint).model;
    const bool same_query = max(abs(sub(m.at("bert.encoder.layers.0.self_attn.query.weight"), base.at(query)))).item() == 0.0;
    EXPECT_EQ(same_query, mode != train::FinetuneMode::Full);  // frozen and LoRA leave the encoder as loaded
    if (mode == train::FinetuneMode::Frozen) {
      EXPECT_EQ(r.trainable_parameters, 16 * 3 + 3);
    }
    if (mode == train::FinetuneMode::Lora) {
      EXPECT_EQ(r.trainable_parameters, 2 * 2 * (4 * 16 + 16 * 4) + 16 * 3 + 3);  // q, v of 2 layers + head
      // the adapters load onto the base in peft's format and give the run's model
      const auto f = io::SafeTensorsFile::open(r.adapter_dir + "/adapter_model.safetensors");
      EXPECT_TRUE(f.contains("base_model.model." + query.substr(0, query.size() - 7) + ".lora_B.weight"));
    }
    fs::remove_all(dir / "run");
  }
  fs::remove_all(dir);
}

TEST(Finetune, TokenizerModelMismatchAndBadModeAreClearErrors) {
  fs::path dir = corpus("bad");
  {
    std::ofstream v(dir / "vocab.txt", std::ios::app);
    for (int i = 0; i < 60; ++i) v << "word" << i << "\n";
  }
  std::ofstream(dir / "train.tsv", std::ios::app) << "love\tword59 rose\n";
  train::FinetuneOptions o = tiny_options(dir, "run", train::FinetuneMode::Full);
  try {
    train::finetune_classifier(o);
    ADD_FAILURE() << "an id past the model's vocabulary was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab_size 64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(train::finetune_mode_from_string("partial"), std::invalid_argument);
  fs::remove_all(dir);
}

}  // namespace
