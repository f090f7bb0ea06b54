// tests/test_train_golden.cc — the training jobs' loss sequences, bit for bit, against values recorded
// from the code before the jobs moved onto attn::train::Trainer (tests/fixtures/train_golden.json).
//
// Each job runs briefly with metrics on every step; the per-step "train/loss" values and the
// evaluation losses of metrics.jsonl (written by nlohmann::json with round-trip precision, so the
// doubles parse back exactly) must equal the recorded ones exactly. Results depend on the kernel ISA
// and the thread count (and the build's flags), so the fixture is keyed by "<build>/<isa>/<threads>"
// (e.g. "Release/avx512/2"); a host or build with no recording for its key skips (record one with ATTN_RECORD_TRAIN_GOLDEN=<path>, which writes the fixture instead).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/attn.h"
#include "attn/train/classifier.h"
#include "attn/train/translation.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/thread_budget.h"
#include "translation_corpus.h"

using namespace attn;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

// Build flavour (optimisation level and sanitizers change floating-point contraction), ISA, threads.
std::string host_key() {
  return std::string(ATTN_GOLDEN_BUILD) + "/" + cpu::isa_name(cpu::active_isa()) + "/" +
         std::to_string(cpu::partition_threads());  // the user's count, not the load-following team
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_golden_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p;
}

// Every value of each tag in metrics.jsonl, in order, as hex floats ("%a": exact, diff-friendly).
json read_series(const fs::path& jsonl, const std::vector<std::string>& tags) {
  json out = json::object();
  for (const auto& t : tags) out[t] = json::array();
  std::ifstream f(jsonl);
  EXPECT_TRUE(f.good()) << jsonl;
  std::string line;
  while (std::getline(f, line)) {
    json j = json::parse(line);
    for (const auto& t : tags)
      if (j.contains(t)) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%a", j.at(t).get<double>());
        out[t].push_back(buf);
      }
  }
  return out;
}

std::shared_ptr<const data::TensorDataset> first_n(bool train, int64_t n) {
  static const data::FashionMNIST train_split({.root = kFashionDir, .train = true, .normalize = true});
  static const data::FashionMNIST test_split({.root = kFashionDir, .train = false, .normalize = true});
  const data::FashionMNIST& ds = train ? train_split : test_split;
  return std::make_shared<data::TensorDataset>(ds.data().narrow(0, 0, n).clone(), ds.targets().narrow(0, 0, n).clone());
}

// The `attn train` job as tools/attn/train_cmd.cc sets it up (Adam, per-step cosine schedule), on the
// first `n_train` / `n_test` images.
json run_fashion(const std::string& model_name, int64_t n_train, int64_t n_test, int64_t batch, int64_t epochs) {
  fs::path dir = temp_dir("fashion_" + model_name);
  manual_seed(3);
  std::shared_ptr<nn::Module> model;
  if (model_name == "mlp")
    model = train::make_mlp({.dropout = 0.2});
  else
    model = train::make_cnn({});
  auto opt = std::make_shared<optim::Adam>(model->parameters(), optim::AdamOptions{.lr = 1e-3});
  auto train_set = first_n(true, n_train);
  int64_t per_epoch = (n_train + batch - 1) / batch;
  auto sched = std::make_shared<optim::CosineAnnealingLR>(
      *opt, optim::CosineAnnealingLROptions{.T_max = per_epoch * epochs, .eta_min = 0.0});
  train::ClassifierTrainer trainer(model, opt, train_set, first_n(false, n_test),
                                   {.epochs = epochs, .batch_size = batch, .seed = 3, .out_dir = dir.string(),
                                    .log_every = 1, .progress = false, .verbose = false},
                                   sched);
  train::TrainResult r = trainer.fit();
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.steps, per_epoch * epochs);
  json series = read_series(dir / "metrics.jsonl", {"train/loss", "test/loss", "test/accuracy"});
  fs::remove_all(dir);
  return series;
}

// The `attn train-translator` job on the synthetic corpus of tests/test_translation_train.cc.
json run_translator() {
  fs::path root = temp_dir("translator");
  fs::create_directories(root);
  test_corpus::write_word_corpus(root / "c", 400, 7);
  train::TranslationTrainOptions o = test_corpus::tiny_translator_options(root / "c", root / "c", root / "out");
  o.max_steps = 30;
  o.eval_every = 10;
  o.log_every = 1;
  train::TranslationTrainResult r = train::train_translator(o);
  EXPECT_EQ(r.steps, 30);
  json series = read_series(root / "out" / "metrics.jsonl", {"train/loss", "dev/loss"});
  fs::remove_all(root);
  return series;
}

json run_all() {
  json all = json::object();
  if (data::FashionMNIST::available(kFashionDir)) {
    all["fashion_mlp"] = run_fashion("mlp", 640, 200, 64, 2);
    all["fashion_cnn"] = run_fashion("cnn", 256, 100, 32, 1);
  }
  all["translator"] = run_translator();
  return all;
}

}  // namespace

TEST(TrainGolden, LossSequencesMatchTheRecordedOnes) {
  const char* record = std::getenv("ATTN_RECORD_TRAIN_GOLDEN");
  json got = run_all();
  const std::string key = host_key();
  if (record && *record) {
    json fixture = json::object();
    if (std::ifstream in(record); in.good()) fixture = json::parse(in);
    fixture[key] = got;
    std::ofstream(record) << fixture.dump(1) << "\n";
    GTEST_SKIP() << "recorded " << key << " into " << record;
  }
  std::ifstream in(std::string(ATTN_FIXTURE_DIR) + "/train_golden.json");
  ASSERT_TRUE(in.good()) << "missing fixture train_golden.json";
  json fixture = json::parse(in);
  if (!fixture.contains(key)) GTEST_SKIP() << "no recording for " << key << " (ISA/threads) in train_golden.json";
  const json& want = fixture.at(key);
  for (auto& [job, series] : want.items()) {
    if (!got.contains(job)) {
      ADD_FAILURE() << job << " did not run (Fashion-MNIST missing from " << kFashionDir << "?)";
      continue;
    }
    for (auto& [tag, values] : series.items()) {
      const json& g = got.at(job).at(tag);
      ASSERT_EQ(g.size(), values.size()) << job << " " << tag;
      EXPECT_GT(values.size(), 0u) << job << " " << tag;
      for (size_t i = 0; i < values.size(); ++i)
        EXPECT_EQ(g[i].get<std::string>(), values[i].get<std::string>()) << job << " " << tag << " #" << i;
    }
  }
}
