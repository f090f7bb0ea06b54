// src/train/classifier.cc — the Fashion-MNIST models and the classifier job on attn::train::Trainer.
#include "attn/train/classifier.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "attn/autograd.h"
#include "attn/data/dataloader.h"
#include "attn/io/checkpoint.h"
#include "attn/io/metrics.h"
#include "attn/io/progress.h"
#include "attn/nn/nn.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "attn/train/trainer.h"

namespace attn::train {

using json = nlohmann::json;

// ------------------------------------------------------------------------------------------ models

std::shared_ptr<nn::Sequential> make_mlp(const MlpOptions& o) {
  if (o.in_features <= 0 || o.num_classes <= 0)
    throw std::invalid_argument("make_mlp: in_features and num_classes must be positive");
  if (o.dropout < 0.0 || o.dropout >= 1.0)
    throw std::invalid_argument("make_mlp: dropout " + std::to_string(o.dropout) + " not in [0, 1)");
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(nn::Flatten());                  // (N, 1, 28, 28) -> (N, 784)
  int64_t in = o.in_features;
  for (int64_t h : o.hidden) {
    if (h <= 0) throw std::invalid_argument("make_mlp: hidden size " + std::to_string(h) + " must be positive");
    net->push_back(nn::Linear(in, h));            // (N, in) -> (N, h)
    net->push_back(nn::ReLU());
    if (o.dropout > 0.0) net->push_back(nn::Dropout(o.dropout));
    in = h;
  }
  net->push_back(nn::Linear(in, o.num_classes));  // (N, 10)
  return net;
}

std::shared_ptr<nn::Sequential> make_cnn(const CnnOptions& o) {
  if (o.image_size <= 0 || o.image_size % 4 != 0)
    throw std::invalid_argument("make_cnn: image_size " + std::to_string(o.image_size) + " must be a positive multiple of 4");
  if (o.dropout < 0.0 || o.dropout >= 1.0)
    throw std::invalid_argument("make_cnn: dropout " + std::to_string(o.dropout) + " not in [0, 1)");
  auto net = std::make_shared<nn::Sequential>();
  auto conv_block = [&](int64_t in, int64_t out) {  // (N, in, H, W) -> (N, out, H/2, W/2)
    net->push_back(nn::Conv2d({.in_channels = in, .out_channels = out, .kernel_size = 3, .padding = 1,
                               .bias = !o.batch_norm}));
    if (o.batch_norm) net->push_back(nn::BatchNorm2d(out));
    net->push_back(nn::ReLU());
    net->push_back(nn::MaxPool2d({.kernel_size = 2}));
  };
  conv_block(o.in_channels, o.channels1);  // (N, 32, 14, 14)
  conv_block(o.channels1, o.channels2);    // (N, 64, 7, 7)
  int64_t side = o.image_size / 4;
  net->push_back(nn::Flatten());           // (N, 3136)
  net->push_back(nn::Linear(o.channels2 * side * side, o.hidden));
  net->push_back(nn::ReLU());
  if (o.dropout > 0.0) net->push_back(nn::Dropout(o.dropout));
  net->push_back(nn::Linear(o.hidden, o.num_classes));  // (N, 10)
  return net;
}

// -------------------------------------------------------------------------------------- evaluation

namespace {

// Number of rows of `logits` (N, C) whose argmax equals `target` (N).
int64_t count_correct(const Tensor& logits, const Tensor& target) {
  std::vector<int64_t> pred = argmax(logits, 1).to_vector<int64_t>();
  std::vector<int64_t> y = target.to_vector<int64_t>();
  int64_t c = 0;
  for (size_t i = 0; i < pred.size(); ++i) c += pred[i] == y[i];
  return c;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

EvalResult evaluate(nn::Module& model, const data::Dataset& dataset, int64_t batch_size) {
  if (batch_size <= 0) throw std::invalid_argument("evaluate: batch_size must be positive");
  bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  // The loader only reads the dataset; wrap it without taking ownership.
  std::shared_ptr<const data::Dataset> view(&dataset, [](const data::Dataset*) {});
  data::DataLoader loader(view, {.batch_size = batch_size, .shuffle = false, .prefetch = 1});
  double loss_sum = 0;
  int64_t correct = 0, count = 0;
  for (const data::Batch& b : loader) {
    Tensor logits = model(b.data);  // (B, C)
    int64_t n = b.target.size(0);
    loss_sum += cross_entropy(logits, b.target, {.reduction = Reduction::Sum}).item();
    correct += count_correct(logits, b.target);
    count += n;
  }
  model.train(was_training);
  EvalResult r;
  r.count = count;
  r.loss = count ? loss_sum / double(count) : 0.0;
  r.accuracy = count ? double(correct) / double(count) : 0.0;
  return r;
}

// ------------------------------------------------------------------------------------- the job

namespace {

json record_to_json(const EpochRecord& r) {
  return {{"epoch", r.epoch},           {"train_loss", r.train_loss}, {"train_accuracy", r.train_accuracy},
          {"test_loss", r.test_loss},   {"test_accuracy", r.test_accuracy},
          {"lr", r.lr},                 {"seconds", r.seconds}};
}

EpochRecord record_from_json(const json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch").get<int64_t>();
  r.train_loss = j.at("train_loss").get<double>();
  r.train_accuracy = j.at("train_accuracy").get<double>();
  r.test_loss = j.at("test_loss").get<double>();
  r.test_accuracy = j.at("test_accuracy").get<double>();
  r.lr = j.at("lr").get<double>();
  r.seconds = j.at("seconds").get<double>();
  return r;
}

// Cross-entropy on shuffled batches, the running averages of the epoch, and an evaluation on the
// test set at each epoch end (recorded in the history and printed).
class ClassifierJob final : public TrainingJob {
 public:
  ClassifierJob(nn::Module& model, optim::Optimizer& opt, optim::LRScheduler* sched,
                std::shared_ptr<const data::Dataset> train_set, const data::Dataset* test_set, const TrainOptions& o)
      : model_(model), opt_(opt), sched_(sched), test_set_(test_set), o_(o),
        loader_(std::move(train_set), {.batch_size = o.batch_size, .shuffle = true, .drop_last = false,
                                       .seed = o.seed, .prefetch = o.prefetch}),
        epoch_start_(now_s()) {}

  nn::Module& model() override { return model_; }
  optim::Optimizer& optimizer() override { return opt_; }
  optim::LRScheduler* scheduler() override { return sched_; }
  int64_t num_batches(int64_t) override { return loader_.size(); }

  bool splits_batches() const override { return true; }

  StepLoss train_loss(int64_t epoch, int64_t batch) override {
    const data::Batch& b = fetch(epoch, batch);
    epoch_ = epoch;
    auto [first, last] = shard().rows(b.target.size(0));  // data parallel: this rank's rows (all on one process)
    if (first == last) return {Tensor(), 0.0};
    bool whole = last - first == b.target.size(0);
    logits_ = model_(whole ? b.data : b.data.narrow(0, first, last - first));  // (B, C)
    target_ = whole ? b.target : b.target.narrow(0, first, last - first);       // (B)
    return {cross_entropy(logits_, target_), double(target_.size(0))};
  }

  void after_batch(const StepLoss&, double loss) override {
    int64_t n = target_.size(0);
    loss_sum_ += loss * double(n);
    correct_ += count_correct(logits_.detach(), target_);
    count_ += n;
    logits_ = target_ = Tensor();
  }

  io::Scalars train_scalars() override {
    return {{"train/running_loss", running_loss()}, {"train/running_accuracy", running_accuracy()}};
  }
  io::ProgressStats progress_stats(double, int64_t) override {
    return {{"loss", running_loss()}, {"acc", running_accuracy()}};
  }

  io::Scalars evaluate(int64_t) override;

  std::string state_json() const override {
    json history = json::array();
    for (auto& r : history_) history.push_back(record_to_json(r));
    return json{{"format", "attn.train.classifier/2"},
                {"running", {{"loss_sum", loss_sum_}, {"correct", correct_}, {"count", count_}}},
                {"epoch_seconds", now_s() - epoch_start_},
                {"batch_size", o_.batch_size},
                {"seed", o_.seed},
                {"history", history}}
        .dump();
  }
  void load_state_json(const std::string& text, const std::string& path) override;

  const std::vector<EpochRecord>& history() const { return history_; }

 private:
  double running_loss() const { return count_ ? loss_sum_ / double(count_) : 0.0; }
  double running_accuracy() const { return count_ ? double(correct_) / double(count_) : 0.0; }

  // Batch `batch` of `epoch`: the next one of the running iteration, or a new iteration from there.
  const data::Batch& fetch(int64_t epoch, int64_t batch) {
    if (it_ && loader_.state() == data::DataLoaderState{epoch, batch}) {
      ++*it_;
    } else {
      loader_.load_state({epoch, batch});
      it_.emplace(loader_.begin());
    }
    if (*it_ == std::default_sentinel) throw std::logic_error("ClassifierJob: batch past the end of the epoch");
    return **it_;
  }

  nn::Module& model_;
  optim::Optimizer& opt_;
  optim::LRScheduler* sched_;
  const data::Dataset* test_set_;
  const TrainOptions& o_;
  data::DataLoader loader_;
  std::optional<data::DataLoader::Iterator> it_;
  Tensor logits_, target_;  // of the batch in the step
  int64_t epoch_ = 0;
  double loss_sum_ = 0;     // running sums of the epoch in progress (sample-weighted)
  int64_t correct_ = 0, count_ = 0;
  double epoch_start_;      // wall clock at the start of the epoch in progress
  std::vector<EpochRecord> history_;
};

io::Scalars ClassifierJob::evaluate(int64_t) {
  EpochRecord rec;
  rec.epoch = epoch_ + 1;
  rec.train_loss = running_loss();
  rec.train_accuracy = running_accuracy();
  if (test_set_) {
    EvalResult ev = train::evaluate(model_, *test_set_, o_.eval_batch_size);
    rec.test_loss = ev.loss;
    rec.test_accuracy = ev.accuracy;
  }
  rec.lr = opt_.get_lr(0);
  double t = now_s();
  rec.seconds = t - epoch_start_;
  epoch_start_ = t;
  history_.push_back(rec);
  loss_sum_ = 0;
  correct_ = count_ = 0;
  if (o_.verbose) {
    std::printf("epoch %lld/%lld  train_loss %.4f  train_acc %.2f%%  test_loss %.4f  test_acc %.2f%%  lr %.3g  %.1fs\n",
                (long long)rec.epoch, (long long)o_.epochs, rec.train_loss, 100 * rec.train_accuracy, rec.test_loss,
                100 * rec.test_accuracy, rec.lr, rec.seconds);
    std::fflush(stdout);
  }
  return {{"epoch/train_loss", rec.train_loss}, {"epoch/train_accuracy", rec.train_accuracy},
          {"test/loss", rec.test_loss},         {"test/accuracy", rec.test_accuracy},
          {"epoch/seconds", rec.seconds},       {"epoch", double(rec.epoch)}};
}

void ClassifierJob::load_state_json(const std::string& text, const std::string& path) {
  json extra = json::parse(text);
  const std::string format = extra.is_object() ? extra.value("format", "") : "";
  if (format != "attn.train.classifier/1" && format != "attn.train.classifier/2")
    throw std::runtime_error(path + ": not a classifier training checkpoint (extra.format is not attn.train.classifier/1 or /2)");
  int64_t bs = extra.at("batch_size").get<int64_t>();
  if (bs != o_.batch_size)
    throw std::runtime_error(path + ": checkpoint was written with batch_size " + std::to_string(bs) +
                             ", this run uses " + std::to_string(o_.batch_size) + "; resume needs the same");
  uint64_t seed = extra.at("seed").get<uint64_t>();
  if (seed != o_.seed)
    throw std::runtime_error(path + ": checkpoint was written with seed " + std::to_string(seed) + ", this run uses " +
                             std::to_string(o_.seed) + "; resume needs the same");
  const json& run = extra.at("running");
  loss_sum_ = run.at("loss_sum").get<double>();
  correct_ = run.at("correct").get<int64_t>();
  count_ = run.at("count").get<int64_t>();
  epoch_start_ = now_s() - extra.at("epoch_seconds").get<double>();
  history_.clear();
  for (auto& r : extra.at("history")) history_.push_back(record_from_json(r));
}

}  // namespace

// ----------------------------------------------------------------------------------------- trainer

ClassifierTrainer::ClassifierTrainer(std::shared_ptr<nn::Module> model, std::shared_ptr<optim::Optimizer> optimizer,
                                     std::shared_ptr<const data::Dataset> train_set,
                                     std::shared_ptr<const data::Dataset> test_set, TrainOptions options,
                                     std::shared_ptr<optim::LRScheduler> scheduler)
    : model_(std::move(model)), optimizer_(std::move(optimizer)), train_set_(std::move(train_set)),
      test_set_(std::move(test_set)), options_(std::move(options)), scheduler_(std::move(scheduler)) {
  if (!model_ || !optimizer_ || !train_set_)
    throw std::invalid_argument("ClassifierTrainer: model, optimizer and train_set are required");
  if (options_.epochs < 0) throw std::invalid_argument("ClassifierTrainer: epochs must be >= 0");
  if (options_.batch_size <= 0 || options_.eval_batch_size <= 0)
    throw std::invalid_argument("ClassifierTrainer: batch sizes must be positive");
  if (options_.checkpoint_every < 0) throw std::invalid_argument("ClassifierTrainer: checkpoint_every must be >= 0");
  if (options_.resume && options_.out_dir.empty())
    throw std::invalid_argument("ClassifierTrainer: resume needs an out_dir holding checkpoint.safetensors");
}

ClassifierTrainer::~ClassifierTrainer() = default;

std::string ClassifierTrainer::checkpoint_path() const {
  return options_.out_dir.empty() ? std::string() : options_.out_dir + "/checkpoint.safetensors";
}

int64_t ClassifierTrainer::steps_per_epoch() const {
  return (train_set_->size() + options_.batch_size - 1) / options_.batch_size;
}

TrainResult ClassifierTrainer::fit() {
  const TrainOptions& o = options_;
  ClassifierJob job(*model_, *optimizer_, scheduler_.get(), train_set_, test_set_.get(), o);
  Trainer trainer(job, {.out_dir = o.out_dir, .resume = o.resume, .max_epochs = o.epochs,
                        .eval_at_epoch_end = true, .eval_at_stop = false, .checkpoint_every = o.checkpoint_every,
                        .log_every = o.log_every, .stop_after_steps = o.stop_after_steps, .metrics = o.metrics,
                        .plot_metrics = {"test/accuracy", "epoch/train_accuracy"}, .progress = o.progress,
                        .handle_signals = o.handle_signals, .bf16 = o.bf16});
  TrainerResult tr = trainer.fit();
  TrainResult result;
  result.finished = tr.finished;
  result.resumed = tr.resumed;
  result.signal = tr.signal;
  result.steps = tr.state.step;
  result.history = job.history();
  result.epochs = int64_t(result.history.size());
  result.seconds = tr.state.seconds;
  result.checkpoint = tr.checkpoint;
  if (!result.history.empty()) {
    const EpochRecord& last = result.history.back();
    result.train_loss = last.train_loss;
    result.train_accuracy = last.train_accuracy;
    result.test_loss = last.test_loss;
    result.test_accuracy = last.test_accuracy;
  }
  return result;
}

}  // namespace attn::train
