// tests/dist_job.h — a tiny data-parallel training job shared by tests/test_dist.cc and the MPI worker
// (tests/dist_worker.cc): masked sequence regression with uneven masks, so that the ranks' shards of a
// batch hold different numbers of loss elements.
#pragma once
#include <algorithm>
#include <memory>

#include "attn/attn.h"
#include "attn/train/trainer.h"

namespace attn::test {

struct DistJobOptions {
  int64_t rows = 48;      // examples
  int64_t batch = 8;      // global batch size
  int64_t hidden = 8;
  bool uneven = true;     // masks of 1..T valid steps; false: every step valid (equal shard weights)
};

// y = f(x) on (rows, T=5, 4) -> (rows, T, 2), loss averaged over the valid steps of the batch.
class DistJob : public train::TrainingJob {
 public:
  explicit DistJob(DistJobOptions o) : o_(o) {
    manual_seed(5);
    x_ = randn({o.rows, 5, 4});
    y_ = sin(x_.narrow(2, 0, 2)) + 0.1 * randn({o.rows, 5, 2});
    std::vector<float> m(size_t(o.rows * 5), 1.0f);
    if (o.uneven)
      for (int64_t r = 0; r < o.rows; ++r)
        for (int64_t t = 1 + (r * 7) % 5; t < 5; ++t) m[size_t(r * 5 + t)] = 0.0f;
    mask_ = from_vector(m, {o.rows, 5, 1});
    model_ = std::make_shared<nn::Sequential>();
    model_->push_back(std::make_shared<nn::Linear>(4, o.hidden));
    model_->push_back(std::make_shared<nn::Tanh>());
    model_->push_back(std::make_shared<nn::Linear>(o.hidden, 2));
    opt_ = std::make_shared<optim::Adam>(model_->parameters(), optim::AdamOptions{.lr = 0.01});
  }
  nn::Module& model() override { return *model_; }
  optim::Optimizer& optimizer() override { return *opt_; }
  int64_t num_batches(int64_t) override { return o_.rows / o_.batch; }
  bool splits_batches() const override { return true; }
  train::StepLoss train_loss(int64_t, int64_t batch) override {
    auto [first, last] = shard().rows(o_.batch);
    if (first == last) return {Tensor(), 0.0};
    int64_t start = batch * o_.batch + first, n = last - first;
    Tensor x = x_.narrow(0, start, n), y = y_.narrow(0, start, n), m = mask_.narrow(0, start, n);
    Tensor err = ((*model_)(x) - y) * m;  // (n, 5, 2)
    double elements = m.sum().item() * 2;
    return {(err * err).sum() / elements, elements};
  }
  io::Scalars evaluate(int64_t) override {
    NoGradGuard g;
    Tensor err = ((*model_)(x_) - y_) * mask_;
    return {{"dev/loss", ((err * err).sum() / (mask_.sum() * 2)).item()}};
  }

 private:
  DistJobOptions o_;
  Tensor x_, y_, mask_;
  std::shared_ptr<nn::Sequential> model_;
  std::shared_ptr<optim::Adam> opt_;
};

}  // namespace attn::test
