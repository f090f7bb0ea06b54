// attn/dist/data_parallel.h — the pieces of data-parallel training the Trainer runs on (attn/train/trainer.h):
// gradient buckets reduced while backward runs, rank 0's state sent to every rank, and the check that all
// ranks run the same thing.
//
//   auto comm = attn::dist::world();
//   attn::dist::GradientReducer reducer(comm, model.parameters(), {.bucket_bytes = 1 << 20});
//   reducer.arm();              // before the last backward of a step: its gradient hooks start the buckets
//   loss.backward();            // each bucket's all-reduce starts as soon as its last gradient is final
//   reducer.finish();           // starts the rest, waits; every .grad now holds the mean over the ranks
//   optimizer.step();
//
// Buckets hold the parameters in reverse registration order (backward produces the last layers' gradients
// first), up to bucket_bytes each, one dtype per bucket; they are started strictly in order so that every
// rank issues the same collectives in the same order. A parameter no rank gave a gradient gets a zero one.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attn/dist/communicator.h"
#include "attn/io/checkpoint.h"

namespace attn::dist {

struct GradientReducerOptions {
  size_t bucket_bytes = size_t(4) << 20;
  bool deterministic = false;  // Communicator's deterministic reduction: bit-identical on every rank and run
  bool overlap = true;         // false: every bucket starts in finish() (to measure what overlap hides)
};

struct GradientReducerStats {
  int64_t steps = 0;
  double bytes = 0;      // reduced per step, all buckets
  double wait_s = 0;     // inside finish(), all steps: the reduction time backward did not hide
  double backward_launched = 0;  // buckets started from hooks (during backward), all steps
  double finish_launched = 0;    // buckets started in finish()
};

class GradientReducer {
 public:
  GradientReducer(std::shared_ptr<Communicator> comm, std::vector<Tensor> params, GradientReducerOptions o = {});
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  void arm();     // the next backward ends the step's gradient accumulation
  void finish();  // all buckets reduced and written back to .grad (Average over the ranks)
  size_t num_buckets() const;
  const GradientReducerStats& stats() const;

 private:
  struct State;
  std::shared_ptr<State> state_;  // the hooks hold it weakly: they do nothing once the reducer is gone
};

// Rank `root`'s checkpoint (model, optimizer, step, RNG, extra JSON) copied to every rank: `ck` is read on
// root and replaced on the others.
void broadcast_checkpoint(Communicator& comm, io::Checkpoint& ck, int root = 0);

// Refuses to go on (std::runtime_error on every rank, naming the ranks and the part) unless every rank
// passed the same strings: e.g. {"parameters", "fc.weight (4, 2) float32 ..."}, {"options", ...}. The
// attn build (version and compile time of this library) is always compared too.
void check_same_on_all_ranks(Communicator& comm, std::vector<std::pair<std::string, std::string>> parts);

// Runs `fn` on rank 0 of world(), then on the other ranks: preparation that writes into a shared run
// directory (a tokenizer trained there) is done once, and the others read it. Just fn() on one process.
void rank0_first(const std::function<void()>& fn);

}  // namespace attn::dist
