// tests/test_resume.cc — an interrupted and resumed training run ends bit-identical to an uninterrupted
// one (attn/train/classifier.h: model, optimizer, LR scheduler, RNG, data loader position, running sums).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "attn/attn.h"
#include "attn/io/checkpoint.h"
#include "attn/train/classifier.h"

using namespace attn;
namespace fs = std::filesystem;

namespace {

// 100 random 8x8 "images" in 4 classes; the label depends on the image so the model can learn.
std::shared_ptr<data::TensorDataset> synthetic(uint64_t seed, int64_t n = 100) {
  manual_seed(seed);
  Tensor x = randn({n, 1, 8, 8});  // (N, 1, 8, 8)
  std::vector<float> xs = x.to_vector<float>();
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {  // class = quadrant of the image with the largest sum
    float q[4] = {0, 0, 0, 0};
    for (int r = 0; r < 8; ++r)
      for (int c = 0; c < 8; ++c) q[(r / 4) * 2 + c / 4] += xs[size_t(i * 64 + r * 8 + c)];
    y[size_t(i)] = int64_t(std::max_element(q, q + 4) - q);
  }
  return std::make_shared<data::TensorDataset>(x, from_vector<int64_t>(y, {n}));
}

struct TrainRun {
  std::shared_ptr<nn::Module> model;
  std::shared_ptr<optim::Optimizer> opt;
  std::shared_ptr<optim::LRScheduler> sched;
  std::unique_ptr<train::ClassifierTrainer> trainer;
};

constexpr int64_t kEpochs = 3, kBatch = 16;  // 100 samples: 7 steps per epoch, the last one of 4 samples

// A small CNN with BatchNorm (buffers), Dropout (RNG) and a cosine schedule: everything that must be
// restored for an exact resume.
TrainRun make_run(const std::string& dir, uint64_t init_seed, train::TrainOptions extra) {
  TrainRun r;
  manual_seed(init_seed);
  r.model = train::make_cnn({.channels1 = 4, .channels2 = 8, .image_size = 8, .hidden = 16, .num_classes = 4,
                             .batch_norm = true, .dropout = 0.25});
  r.opt = std::make_shared<optim::AdamW>(r.model->parameters(), optim::AdamWOptions{.lr = 3e-3, .weight_decay = 0.01});
  r.sched = std::make_shared<optim::CosineAnnealingLR>(*r.opt, optim::CosineAnnealingLROptions{.T_max = kEpochs * 7});
  extra.epochs = kEpochs;
  extra.batch_size = kBatch;
  extra.eval_batch_size = 32;
  extra.seed = 7;
  extra.out_dir = dir;
  extra.progress = false;
  extra.verbose = false;
  extra.log_every = 3;
  auto ds = synthetic(123);
  r.trainer = std::make_unique<train::ClassifierTrainer>(r.model, r.opt, ds, synthetic(456, 40), extra, r.sched);
  return r;
}

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_test_resume_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p.string();
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

void expect_same_state(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b,
                       const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (auto& [k, v] : a) {
    auto it = b.find(k);
    ASSERT_NE(it, b.end()) << what << ": missing " << k;
    EXPECT_TRUE(bit_equal(v, it->second)) << what << ": " << k << " differs";
  }
}

void expect_same_history(const train::TrainResult& a, const train::TrainResult& b) {
  ASSERT_EQ(a.history.size(), b.history.size());
  for (size_t i = 0; i < a.history.size(); ++i) {
    EXPECT_EQ(a.history[i].train_loss, b.history[i].train_loss) << "epoch " << i + 1;
    EXPECT_EQ(a.history[i].train_accuracy, b.history[i].train_accuracy) << "epoch " << i + 1;
    EXPECT_EQ(a.history[i].test_loss, b.history[i].test_loss) << "epoch " << i + 1;
    EXPECT_EQ(a.history[i].test_accuracy, b.history[i].test_accuracy) << "epoch " << i + 1;
    EXPECT_EQ(a.history[i].lr, b.history[i].lr) << "epoch " << i + 1;
  }
}

// Uninterrupted reference run, shared by the tests.
struct Reference {
  train::TrainResult result;
  std::map<std::string, Tensor> model, opt;
  Reference() {
    std::string dir = temp_dir("reference");
    TrainRun r = make_run(dir, 1, {.checkpoint_every = 4});
    result = r.trainer->fit();
    for (auto& [k, v] : r.model->state_dict()) model[k] = v.clone();
    for (auto& [k, v] : r.opt->state_dict()) opt[k] = v.clone();
    fs::remove_all(dir);
  }
};
const Reference& reference() {
  static Reference ref;
  return ref;
}

}  // namespace

TEST(Resume, ReferenceRunTrainsAndCheckpoints) {
  const Reference& ref = reference();
  EXPECT_TRUE(ref.result.finished);
  EXPECT_EQ(ref.result.epochs, kEpochs);
  EXPECT_EQ(ref.result.steps, kEpochs * 7);
  ASSERT_EQ(ref.result.history.size(), size_t(kEpochs));
  EXPECT_LT(ref.result.history.back().train_loss, ref.result.history.front().train_loss);
  // A different init seed gives different weights: equality in the tests below is not trivial.
  std::string dir = temp_dir("other_seed");
  TrainRun other = make_run(dir, 2, {});
  other.trainer->fit();
  EXPECT_FALSE(bit_equal(other.model->state_dict().at("0.weight"), ref.model.at("0.weight")));
  fs::remove_all(dir);
}

// Interrupted mid-epoch (step 10 of 21; last checkpoint at step 8 = batch 1 of epoch 2), resumed by a
// fresh process-like setup with a different init and a scrambled RNG.
TEST(Resume, MidEpochResumeIsBitIdentical) {
  std::string dir = temp_dir("mid_epoch");
  {
    TrainRun a = make_run(dir, 1, {.checkpoint_every = 4, .stop_after_steps = 10});
    train::TrainResult part = a.trainer->fit();
    EXPECT_FALSE(part.finished);
    EXPECT_EQ(part.steps, 10);
    ASSERT_TRUE(fs::exists(a.trainer->checkpoint_path()));
  }
  manual_seed(987654321);
  TrainRun b = make_run(dir, 99, {.resume = true, .checkpoint_every = 4});
  (void)randn({1000});  // the resumed run must not depend on the RNG state before fit()
  train::TrainResult res = b.trainer->fit();
  EXPECT_TRUE(res.resumed);
  EXPECT_TRUE(res.finished);
  EXPECT_EQ(res.steps, kEpochs * 7);
  expect_same_state(reference().model, b.model->state_dict(), "model");
  expect_same_state(reference().opt, b.opt->state_dict(), "optimizer");
  expect_same_history(reference().result, res);
  fs::remove_all(dir);
}

// Interrupted twice: once right after an epoch-end checkpoint, once mid-epoch.
TEST(Resume, EpochBoundaryAndRepeatedResume) {
  std::string dir = temp_dir("twice");
  {
    TrainRun a = make_run(dir, 1, {.stop_after_steps = 7});  // epoch 1 done and checkpointed
    EXPECT_FALSE(a.trainer->fit().finished);
  }
  {
    TrainRun b = make_run(dir, 5, {.resume = true, .checkpoint_every = 4, .stop_after_steps = 18});
    train::TrainResult part = b.trainer->fit();
    EXPECT_TRUE(part.resumed);
    EXPECT_EQ(part.steps, 18);
  }
  TrainRun c = make_run(dir, 6, {.resume = true, .checkpoint_every = 4});
  train::TrainResult res = c.trainer->fit();
  EXPECT_TRUE(res.finished);
  expect_same_state(reference().model, c.model->state_dict(), "model");
  expect_same_state(reference().opt, c.opt->state_dict(), "optimizer");
  expect_same_history(reference().result, res);
  // Resuming a finished run trains no further.
  TrainRun d = make_run(dir, 6, {.resume = true});
  train::TrainResult again = d.trainer->fit();
  EXPECT_EQ(again.steps, kEpochs * 7);
  expect_same_state(reference().model, d.model->state_dict(), "model after resuming a finished run");
  fs::remove_all(dir);
}

// Each piece of restored state matters: resuming from the mid-epoch checkpoint with one piece dropped
// (optimizer moments, RNG state, loader position) ends differently, while the untouched checkpoint
// ends bit-identical. So the equality in the tests above can fail, and fails for a missing piece.
namespace {

enum class Drop { Nothing, OptimizerState, RngState, LoaderPosition };

std::map<std::string, Tensor> resume_after_dropping(Drop drop) {
  std::string dir = temp_dir("drop_" + std::to_string(int(drop)));
  {
    TrainRun a = make_run(dir, 1, {.checkpoint_every = 4, .stop_after_steps = 10});  // last checkpoint: step 8
    a.trainer->fit();
  }
  const std::string path = dir + "/checkpoint.safetensors";
  io::Checkpoint ck = io::load_checkpoint(path);
  if (drop == Drop::OptimizerState) {  // a fresh AdamW's state (no moments, step 0); the schedule stays
    TrainRun fresh = make_run(temp_dir("fresh"), 1, {});
    for (auto it = ck.optimizer.begin(); it != ck.optimizer.end();)
      it = it->first.rfind("lr_scheduler.", 0) == 0 ? std::next(it) : ck.optimizer.erase(it);
    for (auto& [k, v] : fresh.opt->state_dict()) ck.optimizer[k] = v;
  } else if (drop == Drop::RngState) {
    ck.rng = GeneratorState{};  // seed 0, nothing drawn
  } else if (drop == Drop::LoaderPosition) {  // back to the start of the epoch in progress
    nlohmann::json extra = nlohmann::json::parse(ck.extra_json);
    extra["batch"] = 0;
    extra["running"] = {{"loss_sum", 0.0}, {"correct", 0}, {"count", 0}};
    ck.extra_json = extra.dump();
  }
  io::save_checkpoint(path, ck);
  TrainRun b = make_run(dir, 99, {.resume = true, .checkpoint_every = 4});
  train::TrainResult res = b.trainer->fit();
  EXPECT_TRUE(res.resumed && res.finished);
  std::map<std::string, Tensor> state;
  for (auto& [k, v] : b.model->state_dict()) state[k] = v.clone();
  fs::remove_all(dir);
  return state;
}

bool same_state(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  for (auto& [k, v] : a)
    if (!b.count(k) || !bit_equal(v, b.at(k))) return false;
  return a.size() == b.size();
}

}  // namespace

TEST(Resume, UntouchedCheckpointResumesIdentically) {
  EXPECT_TRUE(same_state(reference().model, resume_after_dropping(Drop::Nothing)));
}
TEST(Resume, WithoutOptimizerStateTheRunDiffers) {
  EXPECT_FALSE(same_state(reference().model, resume_after_dropping(Drop::OptimizerState)));
}
TEST(Resume, WithoutRngStateTheRunDiffers) {
  EXPECT_FALSE(same_state(reference().model, resume_after_dropping(Drop::RngState)));
}
TEST(Resume, WithoutLoaderPositionTheRunDiffers) {
  EXPECT_FALSE(same_state(reference().model, resume_after_dropping(Drop::LoaderPosition)));
}

TEST(Resume, MismatchedBatchSizeIsRejected) {
  std::string dir = temp_dir("mismatch");
  {
    TrainRun a = make_run(dir, 1, {.stop_after_steps = 7});
    a.trainer->fit();
  }
  manual_seed(1);
  auto model = train::make_cnn({.channels1 = 4, .channels2 = 8, .image_size = 8, .hidden = 16, .num_classes = 4,
                                .batch_norm = true, .dropout = 0.25});
  auto opt = std::make_shared<optim::AdamW>(model->parameters(), optim::AdamWOptions{.lr = 3e-3});
  train::ClassifierTrainer t(model, opt, synthetic(123), nullptr,
                             {.epochs = 3, .batch_size = 8, .seed = 7, .out_dir = dir, .resume = true,
                              .progress = false, .verbose = false});
  try {
    t.fit();
    ADD_FAILURE() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("batch_size"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Resume, MetricsFilesAreWritten) {
  std::string dir = temp_dir("metrics");
  TrainRun a = make_run(dir, 1, {});
  a.trainer->fit();
  std::ifstream f(dir + "/metrics.jsonl");
  ASSERT_TRUE(f.good());
  std::string line;
  int lines = 0, epoch_lines = 0;
  while (std::getline(f, line)) {
    ++lines;
    if (line.find("\"test/accuracy\"") != std::string::npos) ++epoch_lines;
  }
  EXPECT_EQ(epoch_lines, kEpochs);
  EXPECT_EQ(lines, kEpochs + kEpochs * 7 / 3);  // epoch lines + a train line every 3 steps
  bool has_events = false;
  for (auto& e : fs::directory_iterator(dir))
    has_events |= e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_TRUE(has_events);
  fs::remove_all(dir);
}

TEST(Models, ShapesAndParameterCounts) {
  auto mlp = train::make_mlp();
  EXPECT_EQ(mlp->num_parameters(), 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10);
  auto cnn = train::make_cnn();
  EXPECT_EQ(cnn->num_parameters(), (32 * 9 + 32) + (64 * 32 * 9 + 64) + (3136 * 128 + 128) + (128 * 10 + 10));
  Tensor x = randn({2, 1, 28, 28});
  EXPECT_EQ(shape_str((*mlp)(x).shape()), "(2, 10)");
  EXPECT_EQ(shape_str((*cnn)(x).shape()), "(2, 10)");
  EXPECT_THROW(train::make_cnn({.image_size = 30}), std::invalid_argument);
}
