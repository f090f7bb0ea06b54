// src/train/classifier.cc — the Fashion-MNIST models and the resumable classifier training loop.
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

// ----------------------------------------------------------------------------------------- trainer

// Everything a checkpoint must carry besides model/optimizer/scheduler tensors and the RNG.
struct ClassifierTrainer::State {
  int64_t step = 0;
  int64_t epoch = 0;            // the epoch in progress (0-based)
  data::DataLoaderState loader;  // position inside it
  double loss_sum = 0;          // running sums of the epoch in progress (sample-weighted)
  int64_t correct = 0, count = 0;
  double seconds = 0;           // wall time of earlier segments
  double epoch_seconds = 0;     // time already spent on the epoch in progress
  std::vector<EpochRecord> history;
};

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

constexpr const char* kSchedulerPrefix = "lr_scheduler.";

}  // namespace

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

void ClassifierTrainer::save(const State& s) const {
  io::Checkpoint ck;
  ck.model = model_->state_dict();
  ck.optimizer = optimizer_->state_dict();
  if (scheduler_)
    for (auto& [k, v] : scheduler_->state_dict()) ck.optimizer[kSchedulerPrefix + k] = v;
  ck.step = s.step;
  ck.rng = default_generator().state();
  json history = json::array();
  for (auto& r : s.history) history.push_back(record_to_json(r));
  json extra = {{"format", "attn.train.classifier/1"},
                {"epoch", s.epoch},
                {"loader", {{"epoch", s.loader.epoch}, {"batch", s.loader.batch}}},
                {"running", {{"loss_sum", s.loss_sum}, {"correct", s.correct}, {"count", s.count}}},
                {"seconds", s.seconds},
                {"epoch_seconds", s.epoch_seconds},
                {"batch_size", options_.batch_size},
                {"seed", options_.seed},
                {"history", history}};
  ck.extra_json = extra.dump();
  io::save_checkpoint(checkpoint_path(), ck);
}

bool ClassifierTrainer::load(State& s) {
  std::string path = checkpoint_path();
  if (!std::filesystem::exists(path)) return false;
  io::Checkpoint ck = io::load_checkpoint(path);
  json extra = json::parse(ck.extra_json);
  if (!extra.is_object() || extra.value("format", "") != "attn.train.classifier/1")
    throw std::runtime_error(path + ": not a classifier training checkpoint (extra.format is not attn.train.classifier/1)");
  int64_t bs = extra.at("batch_size").get<int64_t>();
  if (bs != options_.batch_size)
    throw std::runtime_error(path + ": checkpoint was written with batch_size " + std::to_string(bs) +
                             ", this run uses " + std::to_string(options_.batch_size) + "; resume needs the same");
  uint64_t seed = extra.at("seed").get<uint64_t>();
  if (seed != options_.seed)
    throw std::runtime_error(path + ": checkpoint was written with seed " + std::to_string(seed) + ", this run uses " +
                             std::to_string(options_.seed) + "; resume needs the same");
  model_->load_state_dict(ck.model);
  std::map<std::string, Tensor> opt_state, sched_state;
  const std::string prefix = kSchedulerPrefix;
  for (auto& [k, v] : ck.optimizer) {
    if (k.compare(0, prefix.size(), prefix) == 0)
      sched_state[k.substr(prefix.size())] = v;
    else
      opt_state[k] = v;
  }
  optimizer_->load_state_dict(opt_state);
  if (scheduler_) {
    if (sched_state.empty()) throw std::runtime_error(path + ": this run has an LR scheduler but the checkpoint has none");
    scheduler_->load_state_dict(sched_state);
  } else if (!sched_state.empty()) {
    throw std::runtime_error(path + ": the checkpoint has an LR scheduler state but this run has no scheduler");
  }
  default_generator().set_state(ck.rng);
  s.step = ck.step;
  s.epoch = extra.at("epoch").get<int64_t>();
  s.loader.epoch = extra.at("loader").at("epoch").get<int64_t>();
  s.loader.batch = extra.at("loader").at("batch").get<int64_t>();
  const json& run = extra.at("running");
  s.loss_sum = run.at("loss_sum").get<double>();
  s.correct = run.at("correct").get<int64_t>();
  s.count = run.at("count").get<int64_t>();
  s.seconds = extra.at("seconds").get<double>();
  s.epoch_seconds = extra.at("epoch_seconds").get<double>();
  s.history.clear();
  for (auto& r : extra.at("history")) s.history.push_back(record_from_json(r));
  return true;
}

TrainResult ClassifierTrainer::fit() {
  const TrainOptions& o = options_;
  TrainResult result;
  State s;
  if (!o.out_dir.empty()) std::filesystem::create_directories(o.out_dir);
  if (o.resume) result.resumed = load(s);
  if (result.resumed) result.checkpoint = checkpoint_path();

  data::DataLoader loader(train_set_, {.batch_size = o.batch_size, .shuffle = true, .drop_last = false,
                                       .seed = o.seed, .prefetch = o.prefetch});
  if (result.resumed) loader.load_state(s.loader);

  std::optional<io::MetricsWriter> metrics;
  if (o.metrics && !o.out_dir.empty()) metrics.emplace(io::MetricsWriterOptions{.log_dir = o.out_dir});

  const int64_t per_epoch = loader.size();
  const double t_start = now_s();
  double epoch_start = t_start - s.epoch_seconds;
  auto total_seconds = [&] { return s.seconds + (now_s() - t_start); };
  auto fill_result = [&] {
    result.steps = s.step;
    result.epochs = int64_t(s.history.size());
    result.history = s.history;
    result.seconds = total_seconds();
    if (!s.history.empty()) {
      const EpochRecord& last = s.history.back();
      result.train_loss = last.train_loss;
      result.train_accuracy = last.train_accuracy;
      result.test_loss = last.test_loss;
      result.test_accuracy = last.test_accuracy;
    }
  };
  // Snapshot for a checkpoint: timings are stored relative to this segment's start.
  auto checkpoint = [&] {
    if (o.out_dir.empty()) return;
    State snap = s;
    double t = now_s();
    snap.seconds = s.seconds + (t - t_start);
    snap.epoch_seconds = t - epoch_start;
    snap.loader = loader.state();
    save(snap);
    result.checkpoint = checkpoint_path();
  };

  model_->train();
  for (; s.epoch < o.epochs; ++s.epoch) {
    loader.set_epoch(s.epoch);  // keeps the position restored by load_state on resume
    std::optional<io::ProgressBar> bar;
    if (o.progress)
      bar.emplace(per_epoch, io::ProgressBarOptions{
                                 .desc = "epoch " + std::to_string(s.epoch + 1) + "/" + std::to_string(o.epochs),
                                 .unit = "step",
                                 .initial = loader.state().batch});
    for (const data::Batch& b : loader) {
      if (o.stop_after_steps >= 0 && s.step >= o.stop_after_steps) {
        fill_result();
        return result;  // "interrupted": nothing after the last checkpoint is saved
      }
      Tensor logits = (*model_)(b.data);               // (B, C)
      Tensor loss = cross_entropy(logits, b.target);  // ()
      optimizer_->zero_grad();
      loss.backward();
      optimizer_->step();
      if (scheduler_) scheduler_->step();
      ++s.step;

      int64_t n = b.target.size(0);
      double l = loss.item();
      s.loss_sum += l * double(n);
      s.correct += count_correct(logits.detach(), b.target);
      s.count += n;
      double run_loss = s.loss_sum / double(s.count), run_acc = double(s.correct) / double(s.count);
      if (bar) bar->update(1, {{"loss", run_loss}, {"acc", run_acc}});
      if (metrics && o.log_every > 0 && s.step % o.log_every == 0)
        metrics->log(s.step, {{"train/loss", l}, {"train/running_loss", run_loss}, {"train/running_accuracy", run_acc},
                              {"train/lr", optimizer_->get_lr(0)}});
      if (o.checkpoint_every > 0 && s.step % o.checkpoint_every == 0) checkpoint();
    }
    if (bar) bar->finish();

    EpochRecord rec;
    rec.epoch = s.epoch + 1;
    rec.train_loss = s.count ? s.loss_sum / double(s.count) : 0.0;
    rec.train_accuracy = s.count ? double(s.correct) / double(s.count) : 0.0;
    if (test_set_) {
      EvalResult ev = evaluate(*model_, *test_set_, o.eval_batch_size);
      rec.test_loss = ev.loss;
      rec.test_accuracy = ev.accuracy;
    }
    rec.lr = optimizer_->get_lr(0);
    double t = now_s();
    rec.seconds = t - epoch_start;
    epoch_start = t;
    s.history.push_back(rec);
    s.loss_sum = 0;
    s.correct = s.count = 0;
    if (metrics)
      metrics->log(s.step, {{"epoch/train_loss", rec.train_loss}, {"epoch/train_accuracy", rec.train_accuracy},
                            {"test/loss", rec.test_loss}, {"test/accuracy", rec.test_accuracy},
                            {"epoch/seconds", rec.seconds}, {"epoch", double(rec.epoch)}});
    if (o.verbose) {
      std::printf("epoch %lld/%lld  train_loss %.4f  train_acc %.2f%%  test_loss %.4f  test_acc %.2f%%  lr %.3g  %.1fs\n",
                  (long long)rec.epoch, (long long)o.epochs, rec.train_loss, 100 * rec.train_accuracy, rec.test_loss,
                  100 * rec.test_accuracy, rec.lr, rec.seconds);
      std::fflush(stdout);
    }
    // The epoch is done: the checkpoint resumes at the start of the next one.
    State next = s;
    next.epoch = s.epoch + 1;
    std::swap(s, next);
    checkpoint();
    std::swap(s, next);
  }
  result.finished = true;
  fill_result();
  return result;
}

}  // namespace attn::train
