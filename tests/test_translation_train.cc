// The translation training loop on a tiny synthetic corpus: it learns (measured on a held-out dev set
// of sentences absent from training, and on exact translations), resumes bit-exactly, refuses a
// checkpoint of another architecture, and translates files with empty and unknown input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "attn/data/parallel_text.h"
#include "attn/io/checkpoint.h"
#include "attn/train/translation.h"
#include "translation_corpus.h"

namespace fs = std::filesystem;
using namespace attn;

namespace {

// 400 training pairs; 60 held-out dev pairs that never occur in training.
train::TranslationTrainOptions tiny_options(const fs::path& data, const fs::path& out) {
  return test_corpus::tiny_translator_options(data / "train", data / "dev", out);
}

}  // namespace

TEST(TranslationTrain, LearnsResumesExactlyAndTranslates) {
  fs::path root = fs::temp_directory_path() / ("attn_mt_" + std::to_string(::getpid()));
  fs::create_directories(root);
  std::set<std::string> seen = test_corpus::write_word_corpus(root / "train", 400, 7);
  test_corpus::write_word_corpus(root / "dev", 60, 2024, seen);

  // uninterrupted: 40 steps
  auto a = tiny_options(root, root / "a");
  a.max_steps = 40;
  auto ra = train::train_translator(a);
  EXPECT_EQ(ra.steps, 40);
  // interrupted at 20, resumed to 40
  auto b = tiny_options(root, root / "b");
  b.max_steps = 20;
  EXPECT_EQ(train::train_translator(b).steps, 20);
  b.max_steps = 40;
  auto rb = train::train_translator(b);
  EXPECT_EQ(rb.steps, 40);
  auto ca = io::load_checkpoint(ra.checkpoint), cb = io::load_checkpoint(rb.checkpoint);
  ASSERT_EQ(ca.model.size(), cb.model.size());
  for (auto& [k, t] : ca.model) {
    auto va = t.to_vector<float>(), vb = cb.model.at(k).to_vector<float>();
    ASSERT_EQ(va, vb) << "parameter " << k << " differs after resume";
  }
  EXPECT_EQ(ca.rng.offset, cb.rng.offset);

  // keep training: the held-out dev loss falls and BLEU rises on this easy task
  a.max_steps = 240;
  a.eval_every = 240;
  auto rc = train::train_translator(a);
  EXPECT_LT(rc.dev_loss, ra.dev_loss);
  EXPECT_GT(rc.dev_bleu, 30.0) << "held-out dev BLEU after 240 steps (42.5 when written)";

  auto session = train::TranslationSession::load(a.out_dir);
  auto out = session.translate({"god light", "", "king of bread %%%"}, {.beam_size = 3});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], "dios luz");
  EXPECT_EQ(out[1], "");
  // the held-out sentences, translated word for word
  std::vector<std::string> dev_src = data::read_lines((root / "dev.en").string());
  std::vector<std::string> dev_ref = data::read_lines((root / "dev.es").string());
  std::vector<std::string> dev_out = session.translate(dev_src, {.beam_size = 3});
  ASSERT_EQ(dev_out.size(), dev_ref.size());
  size_t exact = 0;
  for (size_t i = 0; i < dev_out.size(); ++i) exact += dev_out[i] == dev_ref[i];
  EXPECT_GE(exact, 20u) << "of 60 held-out sentences translated exactly after 240 steps (26 when written)";
  // an over-long sentence is cut to the model's positions (counted), not refused or crashed on
  std::string longline;
  for (int i = 0; i < 1100; ++i) longline += i % 2 ? "light " : "god ";  // > the 1024 positions
  auto long_out = session.translate({longline}, {.beam_size = 2, .max_len_a = 0.0, .max_len_b = 5});
  ASSERT_EQ(long_out.size(), 1u);
  EXPECT_EQ(session.truncated(), 1);
  auto files = session.write_attention_pictures("god light day", (root / "pics").string());
  EXPECT_EQ(files.size(), size_t(3 * (4 + 1)));  // (enc self, dec self, dec cross) x 1 layer x (4 heads + mean)
  for (auto& f : files) EXPECT_TRUE(fs::exists(f)) << f;

  // another architecture in the same directory is refused with a clear error
  auto bad = tiny_options(root, root / "a");
  bad.model.d_model = 64;
  bad.max_steps = 1;
  EXPECT_THROW(train::train_translator(bad), std::runtime_error);
  // a tokenizer from another run with a larger vocabulary than the model's is refused on load
  {
    nlohmann::json cfg = nlohmann::json::parse(std::ifstream(a.out_dir + "/config.json"));
    cfg["model"]["vocab_size"] = 5;
    std::ofstream(a.out_dir + "/config.json") << cfg.dump();
    try {
      train::TranslationSession::load(a.out_dir);
      ADD_FAILURE() << "a model vocabulary smaller than the tokenizer's was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("spm.model"), std::string::npos) << e.what();
    }
  }
  // a config.json that does not describe the checkpoint's model is refused before the model is built,
  // naming the config, the checkpoint and the value (no allocation of 10^8 layers or 10^12 rows)
  {
    const std::string config_path = a.out_dir + "/config.json";
    nlohmann::json cfg = nlohmann::json::parse(std::ifstream(config_path));
    cfg["model"]["vocab_size"] = int64_t(session.tokenizer().vocab_size());  // undo the case above
    std::ofstream(config_path) << cfg.dump();
    EXPECT_NO_THROW(train::TranslationSession::load(a.out_dir));
    struct Case {
      const char* key;
      nlohmann::json value;
      const char* message;
    };
    const Case cases[] = {{"num_encoder_layers", 100000000, "num_encoder_layers 100000000 against 1"},
                          {"num_decoder_layers", 0, "num_decoder_layers 0 against 1"},
                          {"vocab_size", int64_t(1) << 40, "vocab_size 1099511627776"},
                          {"d_model", 64, "d_model 64"},
                          {"dim_feedforward", int64_t(1) << 44, "dim_feedforward 17592186044416"},
                          // 2^43 positions x d_model 32: exactly the shape limit (2^48 elements), but
                          // 1 PiB of positional table, more than a 47-bit address space can map, so
                          // the allocation fails whatever the host's overcommit setting
                          {"max_len", int64_t(1) << 43, "does not fit in memory"},
                          {"max_len", int64_t(1) << 46, "is too large"},
                          {"nhead", 3, "embed_dim 32 must be a positive multiple of num_heads 3"},
                          {"pad_id", -1, "must be token ids in [0, vocab_size"}};
    for (const Case& c : cases) {
      nlohmann::json bad_cfg = cfg;
      bad_cfg["model"][c.key] = c.value;
      std::ofstream(config_path) << bad_cfg.dump();
      try {
        train::TranslationSession::load(a.out_dir);
        ADD_FAILURE() << c.key << " = " << c.value << " was accepted";
      } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(c.message), std::string::npos) << what;
        EXPECT_NE(what.find("config.json"), std::string::npos) << what;
      }
    }
    std::ofstream(config_path) << cfg.dump();
  }
  fs::remove_all(root);
}

// bf16 training (steps under attn::Autocast): the precision is recorded in config.json, a resumed run
// keeps it even when asked for another, and interrupted + resumed equals uninterrupted bit for bit.
TEST(TranslationTrain, Bf16RunResumesExactlyInItsPrecision) {
  fs::path root = fs::temp_directory_path() / ("attn_mt_bf16_" + std::to_string(::getpid()));
  fs::create_directories(root);
  std::set<std::string> seen = test_corpus::write_word_corpus(root / "train", 400, 7);
  test_corpus::write_word_corpus(root / "dev", 60, 2024, seen);
  auto a = tiny_options(root, root / "a");
  a.precision = "bf16";
  a.max_steps = 16;
  a.eval_every = 16;
  auto ra = train::train_translator(a);
  EXPECT_EQ(ra.precision, "bf16");
  auto b = a;
  b.out_dir = (root / "b").string();
  b.max_steps = 8;
  EXPECT_EQ(train::train_translator(b).steps, 8);
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(root / "b" / "config.json")).at("precision"), "bf16");
  b.max_steps = 16;
  b.precision = "fp32";  // the recorded precision wins on resume
  auto rb = train::train_translator(b);
  EXPECT_EQ(rb.precision, "bf16");
  EXPECT_EQ(rb.steps, 16);
  auto ca = io::load_checkpoint(ra.checkpoint), cb = io::load_checkpoint(rb.checkpoint);
  ASSERT_EQ(ca.model.size(), cb.model.size());
  for (auto& [k, t] : ca.model) {
    EXPECT_EQ(t.dtype(), kFloat32) << k;  // float32 master weights
    ASSERT_EQ(t.to_vector<float>(), cb.model.at(k).to_vector<float>()) << "parameter " << k << " differs after resume";
  }
  EXPECT_EQ(ca.rng.offset, cb.rng.offset);
  // the same steps in float32 give other weights: the bf16 steps really ran in bf16
  auto c = a;
  c.out_dir = (root / "c").string();
  c.precision = "fp32";
  auto cc = io::load_checkpoint(train::train_translator(c).checkpoint);
  bool differs = false;
  for (auto& [k, t] : ca.model) differs = differs || t.to_vector<float>() != cc.model.at(k).to_vector<float>();
  EXPECT_TRUE(differs);
  EXPECT_THROW(train::train_translator([&] { auto d = a; d.precision = "fp16"; return d; }()), std::invalid_argument);
  fs::remove_all(root);
}
