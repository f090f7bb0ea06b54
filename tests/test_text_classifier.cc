// tests/test_text_classifier.cc — the Kim text CNN and the packed recurrent classifier (shapes, padding
// that changes nothing), and the train-text job (learns a synthetic 2-class task, resumes bit-exactly,
// clear errors for bad data files).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "attn/attn.h"
#include "attn/io/checkpoint.h"
#include "attn/train/text_classifier.h"

using namespace attn;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_text_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// "<label>\t<tokens>": 6-14 filler words with "good" (label pos) or "bad" (label neg) at a random place.
void write_split(const fs::path& path, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  const char* filler[] = {"the", "a", "film", "was", "very", "plot", "actor", "and", "it", "quite"};
  std::ofstream f(path);
  for (int i = 0; i < n; ++i) {
    bool pos = rng() % 2 == 0;
    int len = 6 + int(rng() % 9), at = int(rng() % uint32_t(len));
    f << (pos ? "pos" : "neg") << "\t";
    for (int t = 0; t < len; ++t) f << (t ? " " : "") << (t == at ? (pos ? "good" : "bad") : filler[rng() % 10]);
    f << "\n";
  }
}

train::TextTrainOptions tiny_options(const fs::path& dir, const std::string& run, train::TextModel model) {
  train::TextTrainOptions o;
  o.train_path = (dir / "train.tsv").string();
  o.valid_path = (dir / "valid.tsv").string();
  o.test_path = (dir / "test.tsv").string();
  o.out_dir = (dir / run).string();
  o.model = model;
  o.embedding_dim = 16;
  o.hidden_size = 16;
  o.num_filters = 8;
  o.kernel_sizes = {2, 3};
  o.dropout = 0.2;
  o.min_freq = 1;
  o.batch_size = 16;
  o.lr = 1e-2;
  o.max_epochs = 3;
  o.progress = false;
  o.handle_signals = false;
  o.log_every = 1;
  return o;
}

fs::path synthetic_corpus(const std::string& name) {
  fs::path dir = temp_dir(name);
  write_split(dir / "train.tsv", 160, 1);
  write_split(dir / "valid.tsv", 60, 2);
  write_split(dir / "test.tsv", 60, 3);
  return dir;
}

}  // namespace

TEST(TextCNN, ShapesKeysAndShortInputs) {
  manual_seed(0);
  train::TextCNN cnn({.vocab_size = 20, .num_classes = 3, .embedding_dim = 6, .kernel_sizes = {2, 4}, .num_filters = 5});
  auto sd = cnn.state_dict();
  ASSERT_TRUE(sd.count("convs.1.weight"));
  EXPECT_EQ(sd.at("convs.1.weight").shape(), (Shape{5, 6, 4}));
  EXPECT_EQ(sd.at("fc.weight").shape(), (Shape{3, 10}));
  cnn.eval();
  Tensor ids = from_vector(std::vector<int64_t>{3, 4, 5, 6, 7, 8, 9, 10}, {2, 4});
  EXPECT_EQ(cnn.forward(ids).shape(), (Shape{2, 3}));
  // shorter than the widest kernel: padded with <pad> (index 0), same as padding by hand
  Tensor short_ids = from_vector(std::vector<int64_t>{3, 4}, {1, 2});
  Tensor padded = from_vector(std::vector<int64_t>{3, 4, 0, 0}, {1, 4});
  EXPECT_TRUE(allclose(cnn.forward(short_ids), cnn.forward(padded), 0, 0));
  EXPECT_THROW(cnn.forward(from_vector(std::vector<int64_t>{1, 2}, {2})), std::invalid_argument);
}

TEST(RecurrentTextClassifier, PaddingPastTheLengthChangesNothing) {
  for (auto cell : {train::RecurrentCell::LSTM, train::RecurrentCell::GRU}) {
    manual_seed(1);
    train::RecurrentTextClassifier m({.vocab_size = 30, .num_classes = 4, .embedding_dim = 5, .hidden_size = 7,
                                      .num_layers = 2, .cell = cell});
    m.eval();
    // row 0 has length 3, row 1 length 5; the junk after row 0's length must not matter
    Tensor a = from_vector(std::vector<int64_t>{4, 5, 6, 0, 0, 7, 8, 9, 10, 11}, {2, 5});
    Tensor b = from_vector(std::vector<int64_t>{4, 5, 6, 21, 22, 7, 8, 9, 10, 11}, {2, 5});
    Tensor la = m.forward(a, {3, 5}), lb = m.forward(b, {3, 5});
    EXPECT_TRUE(allclose(la, lb, 0, 0));
    Tensor alone = m.forward(from_vector(std::vector<int64_t>{4, 5, 6}, {1, 3}));
    EXPECT_TRUE(allclose(la.narrow(0, 0, 1), alone, 1e-6, 1e-6));
  }
  EXPECT_THROW(train::RecurrentTextClassifier({.vocab_size = 3, .num_classes = 2, .cell = train::RecurrentCell::RNN}),
               std::invalid_argument);
}

TEST(TextClassifierJob, LearnsSyntheticTaskWithEveryModel) {
  fs::path dir = synthetic_corpus("learn");
  for (auto model : {train::TextModel::CNN, train::TextModel::LSTM, train::TextModel::GRU}) {
    train::TextTrainOptions o = tiny_options(dir, "run" + std::to_string(int(model)), model);
    o.max_epochs = 6;
    train::TextTrainResult r = train::train_text_classifier(o);
    EXPECT_EQ(r.num_classes, 2);
    EXPECT_EQ(r.steps, 6 * 10);
    EXPECT_GT(r.best_valid_accuracy, 0.85) << int(model);  // chance is ~0.5
    EXPECT_GT(r.test_accuracy, 0.85) << int(model);
  }
  fs::remove_all(dir);
}

TEST(TextClassifierJob, ResumeIsBitIdentical) {
  fs::path dir = synthetic_corpus("resume");
  for (auto model : {train::TextModel::CNN, train::TextModel::GRU}) {
    train::TextTrainOptions whole = tiny_options(dir, "whole", model);
    whole.eval_every = 4;
    whole.max_epochs = 2;  // 20 steps, epoch boundary at 10
    whole.resume = false;
    train::TextTrainResult a = train::train_text_classifier(whole);
    train::TextTrainOptions part = whole;
    part.out_dir = (dir / "part").string();
    part.stop_after_steps = 14;  // the last checkpoint is step 12 (epoch 1, batch 2)
    train::train_text_classifier(part);
    part.stop_after_steps = -1;
    part.resume = true;
    train::TextTrainResult b = train::train_text_classifier(part);
    EXPECT_TRUE(b.resumed);
    EXPECT_EQ(a.steps, b.steps);
    EXPECT_EQ(a.valid_loss, b.valid_loss);
    EXPECT_EQ(a.test_accuracy, b.test_accuracy);
    auto ma = io::load_checkpoint(whole.out_dir + "/checkpoint.safetensors").model;
    auto mb = io::load_checkpoint(part.out_dir + "/checkpoint.safetensors").model;
    for (const auto& [name, t] : ma) {
      std::vector<float> x = t.to_vector<float>(), y = mb.at(name).to_vector<float>();
      ASSERT_EQ(x.size(), y.size());
      EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float))) << name;
    }
    fs::remove_all(dir / "whole");
    fs::remove_all(dir / "part");
  }
  fs::remove_all(dir);
}

// The valid/accuracy of each evaluation, in order, from out_dir/metrics.jsonl.
std::vector<double> valid_accuracies(const std::string& out_dir) {
  std::ifstream f(out_dir + "/metrics.jsonl");
  std::vector<double> acc;
  const std::string key = "\"valid/accuracy\":";
  for (std::string line; std::getline(f, line);)
    if (size_t at = line.find(key); at != std::string::npos) acc.push_back(std::stod(line.substr(at + key.size())));
  return acc;
}

TEST(TextClassifierJob, PatienceStopsAfterThatManyEvaluationsWithoutABetterAccuracy) {
  fs::path dir = synthetic_corpus("patience");
  train::TextTrainOptions o = tiny_options(dir, "run", train::TextModel::CNN);
  o.max_epochs = 40;
  o.patience = 2;
  train::TextTrainResult r = train::train_text_classifier(o);
  std::vector<double> acc = valid_accuracies(o.out_dir);
  ASSERT_TRUE(r.stopped_early);
  ASSERT_EQ(int64_t(acc.size()), r.epochs_done);  // one evaluation per epoch
  ASSERT_LT(r.epochs_done, o.max_epochs);
  EXPECT_EQ(r.steps, r.epochs_done * 10);
  // The best is the first maximum, exactly `patience` evaluations before the stop, none of which beat it.
  size_t best = size_t(std::max_element(acc.begin(), acc.end()) - acc.begin());
  EXPECT_EQ(best, acc.size() - 1 - size_t(o.patience));
  EXPECT_EQ(r.best_valid_accuracy, acc[best]);
  o.patience = -1;
  EXPECT_THROW(train::train_text_classifier(o), std::invalid_argument);
  fs::remove_all(dir);
}

TEST(TextClassifierJob, TrainFractionKeepsTheHeadOfTheTrainingFile) {
  fs::path dir = synthetic_corpus("fraction");
  train::TextTrainOptions o = tiny_options(dir, "run", train::TextModel::CNN);
  o.max_epochs = 1;
  o.train_fraction = 0.25;  // 40 of 160 examples: 3 batches of 16
  train::TextTrainResult r = train::train_text_classifier(o);
  EXPECT_EQ(r.train_examples, 40);
  EXPECT_EQ(r.steps, 3);
  o.train_fraction = 0.001;  // floor(0.16), but at least one example: one class only, so valid.tsv is refused
  o.out_dir = (dir / "tiny").string();
  try {
    train::train_text_classifier(o);
    ADD_FAILURE() << "a training subset without every class accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("is not one of the training labels"), std::string::npos) << e.what();
  }
  for (double bad : {0.0, -0.5, 1.5}) {
    o.train_fraction = bad;
    EXPECT_THROW(train::train_text_classifier(o), std::invalid_argument) << bad;
  }
  fs::remove_all(dir);
}

TEST(TextClassifierJob, BadDataIsAClearError) {
  fs::path dir = synthetic_corpus("bad");
  train::TextTrainOptions o = tiny_options(dir, "run", train::TextModel::CNN);
  std::ofstream(dir / "valid.tsv") << "pos\tgood film\nneutral\tthe plot\n";
  try {
    train::train_text_classifier(o);
    ADD_FAILURE() << "unknown label accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("neutral"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "valid.tsv") << "pos good film without a tab\n";
  try {
    train::train_text_classifier(o);
    ADD_FAILURE() << "line without a tab accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("valid.tsv:1"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}
