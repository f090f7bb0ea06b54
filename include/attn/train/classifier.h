// attn/train/classifier.h — a resumable training loop for classifiers (the engine behind `attn train`).
//
//   attn::manual_seed(0);
//   auto model = attn::train::make_cnn({});                                  // (N, 1, 28, 28) -> (N, 10)
//   auto opt = std::make_shared<attn::optim::Adam>(model->parameters(), attn::optim::AdamOptions{.lr = 1e-3});
//   auto train = std::make_shared<attn::data::FashionMNIST>(attn::data::FashionMNISTOptions{.normalize = true});
//   auto test = std::make_shared<attn::data::FashionMNIST>(attn::data::FashionMNISTOptions{.train = false, .normalize = true});
//   attn::train::ClassifierTrainer trainer(model, opt, train, test,
//                                          {.epochs = 3, .batch_size = 128, .seed = 0, .out_dir = "runs/cnn"});
//   attn::train::TrainResult r = trainer.fit();     // r.test_accuracy, r.train_loss, r.seconds, ...
//
// The job runs on attn::train::Trainer (attn/train/trainer.h). With an out_dir, fit() writes
// <out_dir>/metrics.jsonl + a TensorBoard event file + curves.png, and saves
// <out_dir>/checkpoint.safetensors (atomically) after every epoch and every `checkpoint_every` steps.
// A checkpoint holds the model, the optimizer, the LR scheduler, the step, the global RNG state, the
// data loader position and the epoch's running sums, so fit() with `.resume = true` continues an
// interrupted run exactly: the final weights are bit-identical to an uninterrupted run's (same thread
// count; tests/test_resume.cc checks it).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attn/data/dataset.h"
#include "attn/nn/module.h"
#include "attn/optim/lr_scheduler.h"
#include "attn/optim/optimizer.h"

namespace attn::nn {
class Sequential;
}

namespace attn::train {

// ---- the Fashion-MNIST models (inputs (N, 1, 28, 28); outputs (N, 10) logits)

struct MlpOptions {
  int64_t in_features = 784;
  std::vector<int64_t> hidden = {512, 256};
  int64_t num_classes = 10;
  double dropout = 0.0;  // after each hidden ReLU; 0: no Dropout layers
};
// Flatten -> [Linear -> ReLU (-> Dropout)] per hidden size -> Linear.
std::shared_ptr<nn::Sequential> make_mlp(const MlpOptions& o = {});

struct CnnOptions {
  int64_t in_channels = 1;
  int64_t channels1 = 32, channels2 = 64;
  int64_t image_size = 28;  // square input; must be divisible by 4
  int64_t hidden = 128;
  int64_t num_classes = 10;
  bool batch_norm = false;  // BatchNorm2d after each conv (then the convs have no bias)
  double dropout = 0.0;     // before the last Linear; 0: no Dropout layer
};
// conv(1->32, 3x3, pad 1) -> ReLU -> maxpool 2 -> conv(32->64, 3x3, pad 1) -> ReLU -> maxpool 2 ->
// Flatten -> Linear(64*7*7 -> 128) -> ReLU -> Linear(128 -> 10).
std::shared_ptr<nn::Sequential> make_cnn(const CnnOptions& o = {});

// ---- the loop

struct TrainOptions {
  int64_t epochs = 1;
  int64_t batch_size = 128;
  int64_t eval_batch_size = 1000;
  uint64_t seed = 0;              // the data loader's shuffle seed (seed the model init yourself)
  std::string out_dir = {};       // empty: no checkpoints, no metrics files
  bool resume = false;            // continue from <out_dir>/checkpoint.safetensors if it exists
  int64_t checkpoint_every = 0;   // also checkpoint every N steps (0: only at the end of each epoch)
  int64_t stop_after_steps = -1;  // return early once this many steps are done in total (simulates an
                                  // interruption in tests; >= 0 enables it)
  int64_t log_every = 50;         // steps between train/loss metric lines
  bool progress = true;           // progress bar on stderr
  bool metrics = true;            // metrics.jsonl + TensorBoard (needs out_dir)
  bool verbose = true;            // one summary line per epoch on stdout
  int prefetch = 2;               // data loader prefetch depth
  bool handle_signals = true;     // SIGINT/SIGTERM: finish the step, checkpoint, return (result.signal)
  bool bf16 = false;              // training steps under attn::Autocast (TrainerOptions::bf16)
};

struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, train_accuracy = 0;  // running averages over the epoch
  double test_loss = 0, test_accuracy = 0;
  double lr = 0;       // at the end of the epoch
  double seconds = 0;  // wall time of the epoch (training + evaluation)
};

struct TrainResult {
  bool finished = false;  // false when stop_after_steps ended it early
  int64_t epochs = 0;     // completed epochs
  int64_t steps = 0;
  double train_loss = 0, train_accuracy = 0;  // of the last completed epoch
  double test_loss = 0, test_accuracy = 0;
  double seconds = 0;       // training wall time, summed over resumed segments
  std::string checkpoint;   // the last checkpoint written (empty without out_dir)
  bool resumed = false;     // whether fit() started from a checkpoint
  int signal = 0;           // SIGINT or SIGTERM that stopped it (the last checkpoint holds the step it ended on)
  std::vector<EpochRecord> history;
};

struct EvalResult {
  double loss = 0;      // mean cross-entropy
  double accuracy = 0;  // fraction in [0, 1]
  int64_t count = 0;
};

// Mean cross-entropy and accuracy of `model` (in eval mode, no grad) over `dataset`. The model's
// train/eval mode is restored afterwards.
EvalResult evaluate(nn::Module& model, const data::Dataset& dataset, int64_t batch_size = 1000);

class ClassifierTrainer {
 public:
  // `scheduler` (may be null) is stepped once per training step.
  ClassifierTrainer(std::shared_ptr<nn::Module> model, std::shared_ptr<optim::Optimizer> optimizer,
                    std::shared_ptr<const data::Dataset> train_set, std::shared_ptr<const data::Dataset> test_set,
                    TrainOptions options, std::shared_ptr<optim::LRScheduler> scheduler = nullptr);
  ~ClassifierTrainer();
  ClassifierTrainer(const ClassifierTrainer&) = delete;
  ClassifierTrainer& operator=(const ClassifierTrainer&) = delete;

  TrainResult fit();
  std::string checkpoint_path() const;  // <out_dir>/checkpoint.safetensors
  int64_t steps_per_epoch() const;

 private:
  std::shared_ptr<nn::Module> model_;
  std::shared_ptr<optim::Optimizer> optimizer_;
  std::shared_ptr<const data::Dataset> train_set_, test_set_;
  TrainOptions options_;
  std::shared_ptr<optim::LRScheduler> scheduler_;
};

}  // namespace attn::train
