// attn/train/trainer.h — the one training loop every job runs on.
//
//   class MyJob : public attn::train::TrainingJob {
//     nn::Module& model() override { return *model_; }
//     optim::Optimizer& optimizer() override { return *opt_; }
//     int64_t num_batches(int64_t epoch) override { return loader_.size(); }
//     StepLoss train_loss(int64_t epoch, int64_t batch) override {           // forward + loss, no backward
//       Batch b = loader_.get_batch(epoch, batch);
//       return {cross_entropy((*model_)(b.data), b.target), double(b.target.size(0))};
//     }
//     io::Scalars evaluate(int64_t step) override { return {{"dev/loss", dev_loss()}}; }
//   };
//   MyJob job(...);
//   attn::train::Trainer trainer(job, {.out_dir = "runs/my", .max_epochs = 3, .clip_grad_norm = 1.0,
//                                      .eval_every = 500, .best_metric = "dev/loss", .best_mode = BestMode::Min});
//   attn::train::TrainerResult r = trainer.fit();   // resumes from runs/my/checkpoint.safetensors if present
//
// One optimizer step: zero_grad; for each of grad_accum_steps batches, loss = job.train_loss() and
// (loss / k).backward() (k = batches in this step; no scaling for k = 1); options.reduce_gradients
// (multi-process all-reduce; none by default); clip_grad_norm_; lr_at(step) if given; optimizer step;
// scheduler step. After it: metrics every log_every steps, evaluation (every eval_every steps, at each
// epoch end if eval_at_epoch_end, and when the run stops for time or steps), the best checkpoint and
// early stopping on best_metric, and the last checkpoint (after each evaluation, every
// checkpoint_every steps, and at the end).
//
// out_dir holds checkpoint.safetensors (last) and best.safetensors, both written atomically;
// metrics.jsonl and a TensorBoard event file; curves.png (training loss, evaluation metrics),
// redrawn at each evaluation. A checkpoint holds the model, the optimizer, the LR scheduler (as
// "lr_scheduler.*" beside the optimizer's tensors), the step, the global RNG, the data position
// (epoch, batch), the best metric, the time spent and the job's own state, so a resumed run ends
// bit-identical to an uninterrupted one (same thread count).
//
// SIGINT / SIGTERM (handle_signals): the step in progress finishes, the last checkpoint is written
// and fit() returns with result.signal set; a second signal kills the process as usual.
//
// Data parallelism (docs/distributed.md): under `mpirun -np N` (or with options.communicator) every
// rank runs fit(). At the start the ranks check they run the same build, model and options (else all
// refuse), and rank 0's state (a fresh one or its checkpoint) is sent to the others. A job whose
// splits_batches() is true has every rank take its shard of every batch (rows shard().rows(n)): the
// global batch is the same whatever N, each rank's loss is scaled by its share of the batch's loss
// elements (StepLoss.weight, summed over the ranks) and the gradients are averaged by a
// dist::GradientReducer in buckets started while backward runs; a checkpoint does not depend on N.
// Other jobs' ranks take whole batches (num_batches / world_size each, job.shard_batch, strided).
// Only rank 0 writes files, metrics and the progress bar; the logged loss is the global batch's; stops
// (signal, time budget) and evaluation results are agreed on by all ranks. reduce_gradients (an extra
// hook; none by default) runs after the reduction and before clipping.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attn/dist/communicator.h"
#include "attn/io/checkpoint.h"
#include "attn/io/metrics.h"
#include "attn/io/progress.h"
#include "attn/nn/module.h"
#include "attn/optim/lr_scheduler.h"
#include "attn/optim/optimizer.h"

namespace attn::train {

// The loss of one batch, from TrainingJob::train_loss.
struct StepLoss {
  Tensor loss;         // () the batch's mean loss, to backpropagate
  double weight = 1;   // what it averages over (samples, tokens): weights the logged training loss
};

// Where a run is; restored from a checkpoint on resume.
struct TrainerState {
  int64_t step = 0;    // optimizer steps done
  int64_t epoch = 0;   // the epoch in progress (0-based)
  int64_t batch = 0;   // this rank's batches of `epoch` already trained on
  double best = std::numeric_limits<double>::quiet_NaN();  // best value of best_metric (NaN: none yet)
  int64_t bad_evals = 0;     // evaluations since the best one
  double train_seconds = 0;  // time inside training steps, all invocations
  double seconds = 0;        // wall time inside fit(), all invocations
  bool bf16 = false;         // steps under attn::Autocast: TrainerOptions::bf16, or the checkpoint's when resumed
};

// This rank's part of a batch when a job splits batches among data-parallel ranks.
struct BatchShard {
  int rank = 0, world_size = 1;
  // Rows [first, second) of a batch of n examples: contiguous, sizes differ by at most one (may be empty).
  std::pair<int64_t, int64_t> rows(int64_t n) const { return {n * rank / world_size, n * (rank + 1) / world_size}; }
};

// What a job supplies: its model, optimizer, data, loss and evaluation. Everything else is the Trainer's.
class TrainingJob {
 public:
  virtual ~TrainingJob() = default;
  virtual nn::Module& model() = 0;
  virtual optim::Optimizer& optimizer() = 0;
  virtual optim::LRScheduler* scheduler() { return nullptr; }  // stepped after each optimizer step

  // Batches in `epoch` over all ranks.
  virtual int64_t num_batches(int64_t epoch) = 0;
  // The global index of this rank's `local`-th batch of `epoch` (strided: local * world_size + rank).
  virtual int64_t shard_batch(int64_t epoch, int64_t local, int rank, int world_size);
  // True when train_loss computes the loss over shard().rows(n) of batch `batch` only (data parallelism);
  // an empty shard returns an undefined loss with weight 0.
  virtual bool splits_batches() const { return false; }
  const BatchShard& shard() const { return shard_; }
  void set_shard(BatchShard s) { shard_ = s; }
  // Forward and loss of batch `batch` of `epoch` (called in increasing order within an epoch; after a
  // resume it starts where the checkpoint left off). No backward.
  virtual StepLoss train_loss(int64_t epoch, int64_t batch) = 0;
  // After the optimizer step, once per batch of the step, with the loss as a host value.
  virtual void after_batch(const StepLoss& /*loss*/, double /*loss_value*/) {}
  // Extra scalars for the training metrics line (logged every log_every steps).
  virtual io::Scalars train_scalars() { return {}; }
  // The progress bar's stats; `window_loss` is the weighted training loss since the last metrics line.
  virtual io::ProgressStats progress_stats(double window_loss, int64_t step) {
    return {{"loss", window_loss}, {"step", double(step)}};
  }
  // Named metrics (e.g. {"dev/loss", ..}); the model is in train mode before and must be after.
  virtual io::Scalars evaluate(int64_t step) = 0;

  // The job's own checkpoint state: a JSON object (text) merged into the checkpoint's extra JSON
  // beside the Trainer's keys (epoch, batch, best, bad_evals, train_seconds, seconds), and given back
  // whole on resume (`path` for error messages).
  virtual std::string state_json() const { return "{}"; }
  virtual void load_state_json(const std::string& /*extra_json*/, const std::string& /*path*/) {}
  // Told once the Trainer restored `state` from a checkpoint.
  virtual void on_resume(const TrainerState& /*state*/, const std::string& /*path*/) {}

 private:
  BatchShard shard_;
};

// Units (tokens, characters) per second between two take() calls: a job's throughput for train_scalars.
class RateMeter {
 public:
  void add(double units) { units_ += units; }
  double take() {  // units per second since the last take (or construction), then starts over
    auto now = std::chrono::steady_clock::now();
    double rate = units_ / std::max(std::chrono::duration<double>(now - since_).count(), 1e-9);
    units_ = 0;
    since_ = now;
    return rate;
  }

 private:
  double units_ = 0;
  std::chrono::steady_clock::time_point since_ = std::chrono::steady_clock::now();
};

enum class BestMode { Max, Min };

struct TrainerOptions {
  std::string out_dir = {};        // empty: no files at all
  bool resume = true;              // continue from <out_dir>/checkpoint.safetensors if it exists
  int64_t max_epochs = 1;
  int64_t max_steps = 0;           // 0: no limit
  double time_budget_s = 0;        // wall time of this fit() call; 0: no limit
  int64_t grad_accum_steps = 1;    // batches per optimizer step
  double clip_grad_norm = 0;       // max total L2 norm of the gradients; 0: off
  std::function<double(int64_t step)> lr_at = {};  // lr for 1-based optimizer step `step`; empty: fixed / scheduler
  int64_t eval_every = 0;          // steps between evaluations; 0: none by step count
  bool eval_at_epoch_end = false;
  bool eval_at_stop = true;        // evaluate when max_steps or the time budget stops the run
  std::string best_metric = {};    // evaluation metric for best.safetensors and early stopping; empty: none
  BestMode best_mode = BestMode::Max;
  int64_t patience = 0;            // stop after this many evaluations without a better best_metric; 0: never
  int64_t checkpoint_every = 0;    // also write the last checkpoint every N steps; 0: only at evaluations/end
  int64_t log_every = 50;          // steps between training metrics lines; 0: none
  int64_t stop_after_steps = -1;   // >= 0: return once this many steps are done, writing nothing (tests
                                   // simulate a crash with it)
  bool metrics = true;             // metrics.jsonl + TensorBoard (needs out_dir)
  bool plot = true;                // curves.png at each evaluation (needs out_dir and metrics)
  std::vector<std::string> plot_metrics = {};  // evaluation tags drawn beside the losses (best_metric always is)
  bool progress = true;            // progress bar on stderr
  std::string progress_unit = "step";
  bool handle_signals = true;      // SIGINT/SIGTERM: finish the step, checkpoint, return
  bool bf16 = false;               // each train_loss under attn::Autocast: bf16 compute, float32 master
                                   // weights, gradients and optimizer (the one place a job's precision is
                                   // set); recorded in the checkpoint, and a resumed run keeps its own
  int rank = 0, world_size = 1;    // this process among world_size data-parallel ones
  // Called after backward and before clipping with the parameters, e.g. to all-reduce their .grad.
  std::function<void(const std::vector<Tensor>& params)> reduce_gradients = {};
  // Data-parallel ranks; null: dist::world() when launched by mpirun (else one process). Overrides rank
  // and world_size when it has more than one rank.
  std::shared_ptr<dist::Communicator> communicator = {};
  bool deterministic_reduction = false;  // bit-identical reductions (also $ATTN_DIST_DETERMINISTIC=1)
  size_t bucket_bytes = size_t(4) << 20;  // gradient bucket size
};

struct TrainerResult {
  TrainerState state;          // at the end
  bool resumed = false;        // started from a checkpoint
  bool finished = false;       // ran all max_epochs
  bool stopped_early = false;  // patience ran out
  bool out_of_time = false, out_of_steps = false;
  bool crashed_on_purpose = false;  // stop_after_steps ended it
  int signal = 0;              // SIGINT / SIGTERM that stopped it (0: none)
  int64_t epochs_done = 0;     // epochs completed in this call
  io::Scalars last_eval;       // metrics of the last evaluation in this call
  double seconds = 0;          // this call
  std::string checkpoint, best_checkpoint;  // written files ("" if none)
};

class Trainer {
 public:
  Trainer(TrainingJob& job, TrainerOptions options);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  TrainerResult fit();
  std::string checkpoint_path() const;  // <out_dir>/checkpoint.safetensors ("" without out_dir)
  std::string best_path() const;        // <out_dir>/best.safetensors
  std::string plot_path() const;        // <out_dir>/curves.png
  const TrainerOptions& options() const { return options_; }
  int64_t local_batches(int64_t epoch);  // this rank's batches in `epoch`

 private:
  struct Run;
  bool load(TrainerState& s);
  void save(const std::string& path, const TrainerState& s) const;
  bool io_rank() const { return options_.rank == 0; }
  std::optional<io::Checkpoint> read_checkpoint() const;
  void apply(const io::Checkpoint& ck, TrainerState& s, const std::string& path);
  io::Checkpoint make_checkpoint(const TrainerState& s) const;

  TrainingJob& job_;
  TrainerOptions options_;
};

}  // namespace attn::train
