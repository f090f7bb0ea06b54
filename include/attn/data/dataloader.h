// attn/data/dataloader.h — batches from a Dataset: seeded per-epoch shuffle, background prefetch,
// and a resumable position, so a resumed run sees exactly the batches an uninterrupted run would.
//
//   attn::data::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 1});
//   for (int epoch = 0; epoch < 10; ++epoch)
//     for (const attn::data::Batch& b : loader) {   // b.data: (64, 1, 28, 28), b.target: (64)
//       ...                                          // loader.state() == {epoch, index of b + 1}
//     }                                              // finishing an epoch moves to {epoch + 1, 0}
//   ck.extra_json = ...loader.state()...;            // save;  on resume: loader.load_state(saved)
//
// Order: epoch e visits the samples in epoch_indices(e), a permutation drawn with Philox from
// (seed, e) when shuffling (identity otherwise); batch b is positions [b * batch_size, ...). A batch
// stacks examples along a new first dim. Batches depend only on (dataset, options, epoch, b), never
// on timing or the prefetch depth.
#pragma once
#include <cstdint>
#include <iterator>
#include <memory>
#include <vector>

#include "attn/data/dataset.h"

namespace attn::data {

struct DataLoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;
  bool drop_last = false;  // drop the last batch if it is smaller than batch_size
  uint64_t seed = 0;
  int prefetch = 2;        // batches prepared ahead by a background thread; 0: on the caller's thread
};

struct DataLoaderState {
  int64_t epoch = 0;
  int64_t batch = 0;  // batches of `epoch` already handed out
  bool operator==(const DataLoaderState&) const = default;
};

using Batch = Example;  // data: (B, ...), target: (B, ...) or undefined

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t size() const;  // batches per epoch
  const DataLoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }

  // Moves to the start of epoch `e`. Calling it with the current epoch keeps the position, so a
  // `loader.set_epoch(e)` at the top of each epoch does not undo load_state() on resume.
  void set_epoch(int64_t epoch);
  DataLoaderState state() const { return state_; }
  void load_state(DataLoaderState s);  // throws if out of range
  std::vector<int64_t> epoch_indices(int64_t epoch) const;  // sample order of an epoch
  Batch get_batch(int64_t epoch, int64_t batch) const;      // any batch, directly (no prefetch)

  class Iterator {
   public:
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::input_iterator_tag;
    const Batch& operator*() const { return current_; }
    const Batch* operator->() const { return &current_; }
    Iterator& operator++();
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return loader_ == nullptr; }

   private:
    friend class DataLoader;
    DataLoader* loader_ = nullptr;  // null once the epoch is over
    uint64_t run_id_ = 0;
    Batch current_;
  };
  // Iterates the rest of the current epoch, from state().batch. Starting a new iteration abandons
  // any earlier one.
  Iterator begin();
  std::default_sentinel_t end() { return {}; }

 private:
  struct Run;
  void stop_run();
  bool next(Iterator& it);  // false at the end of the epoch
  Batch make_batch(const std::vector<int64_t>& order, int64_t batch) const;

  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  DataLoaderState state_;
  std::unique_ptr<Run> run_;
  uint64_t run_counter_ = 0;
};

}  // namespace attn::data
