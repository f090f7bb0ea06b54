// tests/test_trainer.cc — attn::train::Trainer's own features on a small regression job: gradient
// accumulation, the gradient-reduction hook and clipping order, the LR function, best checkpoint and
// early stopping, the time budget, per-rank sharding and rank-0-only files, and curves.png.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "attn/attn.h"
#include "attn/io/checkpoint.h"
#include "attn/train/trainer.h"

using namespace attn;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_trainer_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p;
}

// y = x A + noise, fitted by Linear(4, 2) with SGD; batch b of any epoch is rows [b*B, (b+1)*B) of x.
class RegressionJob : public train::TrainingJob {
 public:
  RegressionJob(int64_t rows, int64_t batch, std::vector<double> eval_losses = {})
      : batch_(batch), eval_losses_(std::move(eval_losses)) {
    manual_seed(11);
    x_ = randn({rows, 4});                            // (rows, 4)
    y_ = matmul(x_, randn({4, 2})) + 0.01 * randn({rows, 2});  // (rows, 2)
    model_ = std::make_shared<nn::Linear>(4, 2);
    opt_ = std::make_shared<optim::SGD>(model_->parameters(), optim::SGDOptions{.lr = 0.1});
  }
  nn::Module& model() override { return *model_; }
  optim::Optimizer& optimizer() override { return *opt_; }
  int64_t num_batches(int64_t) override { return x_.size(0) / batch_; }
  train::StepLoss train_loss(int64_t epoch, int64_t batch) override {
    requested.emplace_back(epoch, batch);
    Tensor xb = x_.narrow(0, batch * batch_, batch_), yb = y_.narrow(0, batch * batch_, batch_);
    return {mse_loss((*model_)(xb), yb), double(batch_)};
  }
  io::Scalars evaluate(int64_t step) override {
    ++evaluations;
    double v = eval_losses_.empty() ? mse_loss((*model_)(x_), y_).item() : eval_losses_.at(size_t(evaluations - 1));
    eval_steps.push_back(step);
    return {{"dev/loss", v}};
  }
  std::vector<float> weights() const { return model_->state_dict().at("weight").to_vector<float>(); }

  std::vector<std::pair<int64_t, int64_t>> requested;  // (epoch, global batch) in order
  std::vector<int64_t> eval_steps;
  int evaluations = 0;

 private:
  int64_t batch_;
  std::vector<double> eval_losses_;
  Tensor x_, y_;
  std::shared_ptr<nn::Linear> model_;
  std::shared_ptr<optim::SGD> opt_;
};

}  // namespace

TEST(Trainer, GradientAccumulationMatchesOneLargeBatch) {
  RegressionJob small(64, 8), large(64, 16);
  train::TrainerResult a = train::Trainer(small, {.max_epochs = 1, .grad_accum_steps = 2, .progress = false}).fit();
  train::TrainerResult b = train::Trainer(large, {.max_epochs = 1, .progress = false}).fit();
  EXPECT_EQ(a.state.step, 4);
  EXPECT_EQ(b.state.step, 4);
  EXPECT_EQ(small.requested.size(), 8u);
  std::vector<float> wa = small.weights(), wb = large.weights();
  for (size_t i = 0; i < wa.size(); ++i) EXPECT_NEAR(wa[i], wb[i], 1e-5) << i;
}

TEST(Trainer, ReductionHookRunsBeforeClippingAndLrFunctionIsApplied) {
  RegressionJob job(32, 8);
  std::vector<double> norms_seen;
  std::vector<double> lrs;
  auto grad_norm = [](const std::vector<Tensor>& ps) {
    double s = 0;
    for (auto& p : ps)
      for (float g : p.grad().to_vector<float>()) s += double(g) * g;
    return std::sqrt(s);
  };
  train::Trainer t(job, {.max_epochs = 1, .clip_grad_norm = 1e-3,
                         .lr_at = [](int64_t step) { return 0.01 * double(step); }, .progress = false,
                         .reduce_gradients = [&](const std::vector<Tensor>& ps) {
                           norms_seen.push_back(grad_norm(ps));
                           lrs.push_back(job.optimizer().get_lr(0));
                         }});
  t.fit();
  ASSERT_EQ(norms_seen.size(), 4u);  // once per optimizer step
  for (double n : norms_seen) EXPECT_GT(n, 1e-2) << "the hook saw clipped gradients";
  EXPECT_DOUBLE_EQ(job.optimizer().get_lr(0), 0.04);  // lr_at(4) set before the last step
  EXPECT_DOUBLE_EQ(lrs[1], 0.01);                     // before step 2 the lr of step 1 is still set
}

TEST(Trainer, BestCheckpointEarlyStoppingAndCurves) {
  fs::path dir = temp_dir("best");
  RegressionJob job(32, 4, {0.9, 0.5, 0.6, 0.7, 0.8, 0.1});
  train::TrainerResult r = train::Trainer(job, {.out_dir = dir.string(), .max_epochs = 10, .eval_every = 2,
                                                .best_metric = "dev/loss", .best_mode = train::BestMode::Min,
                                                .patience = 3, .progress = false})
                               .fit();
  EXPECT_TRUE(r.stopped_early);
  EXPECT_EQ(job.evaluations, 5);  // best at the 2nd; 3 worse ones after it
  EXPECT_EQ(r.state.step, 10);
  EXPECT_EQ(r.state.best, 0.5);
  EXPECT_EQ(io::load_checkpoint((dir / "best.safetensors").string()).step, 4);
  EXPECT_EQ(io::load_checkpoint((dir / "checkpoint.safetensors").string()).step, 10);
  std::ifstream png(dir / "curves.png", std::ios::binary);
  char sig[8] = {};
  png.read(sig, 8);
  EXPECT_EQ(std::memcmp(sig, "\x89PNG\r\n\x1a\n", 8), 0) << "curves.png is not a PNG";
  fs::remove_all(dir);
}

TEST(Trainer, TimeBudgetStopsWithACheckpointAndResumeContinues) {
  fs::path dir = temp_dir("budget");
  RegressionJob a(32, 4);
  train::TrainerResult r = train::Trainer(a, {.out_dir = dir.string(), .max_epochs = 1000, .time_budget_s = 1e-9,
                                              .eval_at_stop = false, .progress = false})
                               .fit();
  EXPECT_TRUE(r.out_of_time);
  EXPECT_EQ(r.state.step, 1);
  EXPECT_EQ(io::load_checkpoint((dir / "checkpoint.safetensors").string()).step, 1);
  RegressionJob b(32, 4);
  train::TrainerResult r2 = train::Trainer(b, {.out_dir = dir.string(), .max_epochs = 2, .progress = false}).fit();
  EXPECT_TRUE(r2.resumed && r2.finished);
  EXPECT_EQ(r2.state.step, 16);
  EXPECT_EQ(b.requested.front(), std::make_pair(int64_t(0), int64_t(1)));  // continues at batch 1
  fs::remove_all(dir);
}

// bf16: every step's forward and loss under attn::Autocast (the Linear in bf16), recorded in the checkpoint;
// a run resumed without asking for bf16 keeps it and ends bit-identical to the uninterrupted bf16 run.
TEST(Trainer, Bf16StepsAreRecordedAndKeptOnResume) {
  const fs::path whole_dir = temp_dir("bf16_whole"), part_dir = temp_dir("bf16_part");
  RegressionJob fp32(32, 4), whole(32, 4), part(32, 4), rest(32, 4);
  train::Trainer(fp32, {.max_epochs = 2, .progress = false}).fit();
  const train::TrainerResult w =
      train::Trainer(whole, {.out_dir = whole_dir.string(), .max_epochs = 2, .progress = false, .bf16 = true}).fit();
  EXPECT_TRUE(w.state.bf16);
  EXPECT_NE(whole.weights(), fp32.weights());  // the steps did run in bf16
  train::Trainer(part, {.out_dir = part_dir.string(), .max_epochs = 2, .checkpoint_every = 5,
                        .stop_after_steps = 7, .progress = false, .bf16 = true})
      .fit();
  const train::TrainerResult r =
      train::Trainer(rest, {.out_dir = part_dir.string(), .max_epochs = 2, .progress = false}).fit();
  EXPECT_TRUE(r.resumed);
  EXPECT_TRUE(r.state.bf16);
  const std::vector<float> a = whole.weights(), b = rest.weights();
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  EXPECT_NE(io::load_checkpoint((part_dir / "checkpoint.safetensors").string()).extra_json.find("\"precision\":\"bf16\""),
            std::string::npos);
  fs::remove_all(whole_dir);
  fs::remove_all(part_dir);
}

TEST(Trainer, RanksTakeTheirShardAndOnlyRankZeroWritesFiles) {
  fs::path dir = temp_dir("ranks");
  RegressionJob job(40, 4);  // 10 batches: 5 per rank
  train::TrainerResult r = train::Trainer(job, {.out_dir = dir.string(), .max_epochs = 1, .eval_every = 2,
                                                .progress = false, .rank = 1, .world_size = 2})
                               .fit();
  EXPECT_EQ(r.state.step, 5);
  std::vector<std::pair<int64_t, int64_t>> want = {{0, 1}, {0, 3}, {0, 5}, {0, 7}, {0, 9}};
  EXPECT_EQ(job.requested, want);
  EXPECT_FALSE(fs::exists(dir)) << "rank 1 wrote into the run directory";
  EXPECT_THROW(train::Trainer(job, {.rank = 2, .world_size = 2}), std::invalid_argument);
}
