// src/data/dataloader.cc — DataLoader: Philox-seeded shuffles, gather-by-memcpy batches, prefetch thread.
#include "attn/data/dataloader.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "attn/autograd.h"
#include "attn/random.h"

namespace attn::data {
namespace {

// Uniform 64-bit words from Philox(key = seed, counter = epoch << 32 | block).
class PhiloxStream {
 public:
  PhiloxStream(uint64_t seed, uint64_t epoch) : seed_(seed), base_(epoch << 32) {}
  uint64_t next() {
    if (avail_ == 0) {
      Philox4 r = philox4x32(seed_, base_ + block_++);
      words_[0] = uint64_t(r.v[0]) << 32 | r.v[1];
      words_[1] = uint64_t(r.v[2]) << 32 | r.v[3];
      avail_ = 2;
    }
    return words_[2 - avail_--];
  }
  // Uniform in [0, bound), bound > 0 (Lemire's multiply-and-reject: unbiased).
  uint64_t below(uint64_t bound) {
    unsigned __int128 m = (unsigned __int128)next() * bound;
    uint64_t low = uint64_t(m);
    if (low < bound) {
      uint64_t threshold = (0 - bound) % bound;
      while (low < threshold) {
        m = (unsigned __int128)next() * bound;
        low = uint64_t(m);
      }
    }
    return uint64_t(m >> 64);
  }

 private:
  uint64_t seed_, base_, block_ = 0;
  uint64_t words_[2] = {0, 0};
  int avail_ = 0;
};

void check_epoch(int64_t epoch) {
  if (epoch < 0 || epoch >= (int64_t(1) << 32))
    throw std::out_of_range("DataLoader: epoch " + std::to_string(epoch) + " out of range [0, 2^32)");
}

// Copies rows `order[first, first + count)` of a contiguous (N, ...) tensor into a new (count, ...) one.
Tensor gather_rows(const Tensor& src, const std::vector<int64_t>& order, int64_t first, int64_t count) {
  Shape shape = src.shape();
  int64_t n = shape[0];
  shape[0] = count;
  Tensor out = empty(shape, {.dtype = src.dtype()});
  size_t row = n > 0 ? src.nbytes() / size_t(n) : 0;
  if (row == 0) return out;
  const char* s = static_cast<const char*>(src.raw_data());
  char* d = static_cast<char*>(out.raw_data());
  auto index = [&](int64_t i) { return order.empty() ? first + i : order[size_t(first + i)]; };
  for (int64_t i = 0; i < count;) {  // copy runs of consecutive rows with one memcpy
    int64_t start = index(i), len = 1;
    while (i + len < count && index(i + len) == start + len) ++len;
    std::memcpy(d + size_t(i) * row, s + size_t(start) * row, size_t(len) * row);
    i += len;
  }
  return out;
}

// Stacks tensors of equal shape and dtype along a new first dim.
Tensor stack_examples(const std::vector<Tensor>& xs, const std::vector<int64_t>& indices, const char* what) {
  const Tensor& first = xs[0];
  Shape shape = first.shape();
  shape.insert(shape.begin(), int64_t(xs.size()));
  Tensor out = empty(shape, {.dtype = first.dtype()});
  size_t each = first.nbytes();
  char* d = static_cast<char*>(out.raw_data());
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    if (x.shape() != first.shape() || x.dtype() != first.dtype())
      throw std::runtime_error(std::string("DataLoader: cannot stack ") + what + ": example " +
                               std::to_string(indices[i]) + " is " + shape_str(x.shape()) + " " + dtype_name(x.dtype()) +
                               ", example " + std::to_string(indices[0]) + " is " + shape_str(first.shape()) + " " +
                               dtype_name(first.dtype()));
    Tensor c = (x.device() == kCPU ? x : x.to(kCPU)).contiguous();
    if (each) std::memcpy(d + i * each, c.raw_data(), each);
  }
  return out;
}

}  // namespace

// One pass over (the rest of) an epoch, produced by a background thread into a bounded queue.
struct DataLoader::Run {
  std::vector<int64_t> order;
  int64_t next_batch = 0, end_batch = 0;  // for the synchronous mode (prefetch == 0)
  std::mutex mu;
  std::condition_variable not_full, not_empty;
  std::deque<Batch> queue;
  std::exception_ptr error;
  bool stop = false;
  std::thread worker;
};

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  if (!dataset_) throw std::invalid_argument("DataLoader: dataset is null");
  if (options_.batch_size < 1)
    throw std::invalid_argument("DataLoader: batch_size must be >= 1, got " + std::to_string(options_.batch_size));
  if (options_.prefetch < 0)
    throw std::invalid_argument("DataLoader: prefetch must be >= 0, got " + std::to_string(options_.prefetch));
}

DataLoader::~DataLoader() { stop_run(); }

int64_t DataLoader::size() const {
  int64_t n = dataset_->size(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::set_epoch(int64_t epoch) {
  check_epoch(epoch);
  if (epoch == state_.epoch) return;
  stop_run();
  state_ = {epoch, 0};
}

void DataLoader::load_state(DataLoaderState s) {
  check_epoch(s.epoch);
  if (s.batch < 0 || s.batch > size())
    throw std::out_of_range("DataLoader::load_state: batch " + std::to_string(s.batch) + " out of range [0, " +
                            std::to_string(size()) + "]");
  stop_run();
  state_ = s;
}

std::vector<int64_t> DataLoader::epoch_indices(int64_t epoch) const {
  check_epoch(epoch);
  int64_t n = dataset_->size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  if (options_.shuffle) {
    PhiloxStream rng(options_.seed, uint64_t(epoch));
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[rng.below(uint64_t(i) + 1)]);
  }
  return order;
}

Batch DataLoader::make_batch(const std::vector<int64_t>& order, int64_t batch) const {
  int64_t n = dataset_->size(), bs = options_.batch_size;
  int64_t first = batch * bs, count = std::min(bs, n - first);
  NoGradGuard no_grad;
  if (auto* td = dynamic_cast<const TensorDataset*>(dataset_.get())) {  // fast path: gather rows
    Batch b;
    b.data = gather_rows(td->data(), order, first, count);
    if (td->targets().defined()) b.target = gather_rows(td->targets(), order, first, count);
    return b;
  }
  std::vector<Tensor> data, target;
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < count; ++i) {
    int64_t idx = order.empty() ? first + i : order[size_t(first + i)];
    Example ex = dataset_->get(idx);
    if (!ex.data.defined()) throw std::runtime_error("DataLoader: example " + std::to_string(idx) + " has no data");
    if (i > 0 && ex.target.defined() != !target.empty())
      throw std::runtime_error("DataLoader: example " + std::to_string(idx) + " has " +
                               (ex.target.defined() ? "a" : "no") + " target, unlike example " +
                               std::to_string(indices[0]));
    indices.push_back(idx);
    data.push_back(std::move(ex.data));
    if (ex.target.defined()) target.push_back(std::move(ex.target));
  }
  Batch b;
  b.data = stack_examples(data, indices, "data");
  if (!target.empty()) b.target = stack_examples(target, indices, "targets");
  return b;
}

Batch DataLoader::get_batch(int64_t epoch, int64_t batch) const {
  if (batch < 0 || batch >= size())
    throw std::out_of_range("DataLoader::get_batch: batch " + std::to_string(batch) + " out of range [0, " +
                            std::to_string(size()) + ")");
  std::vector<int64_t> order;
  if (options_.shuffle) order = epoch_indices(epoch);
  else check_epoch(epoch);
  return make_batch(order, batch);
}

void DataLoader::stop_run() {
  if (!run_) return;
  {
    std::lock_guard<std::mutex> lock(run_->mu);
    run_->stop = true;
  }
  run_->not_full.notify_all();
  if (run_->worker.joinable()) run_->worker.join();
  run_.reset();
}

DataLoader::Iterator DataLoader::begin() {
  stop_run();
  int64_t nb = size();
  if (state_.batch >= nb) {  // the previous epoch was fully handed out
    check_epoch(state_.epoch + 1);
    state_ = {state_.epoch + 1, 0};
  }
  Iterator it;
  if (nb == 0) return it;
  run_ = std::make_unique<Run>();
  Run* run = run_.get();
  if (options_.shuffle) run->order = epoch_indices(state_.epoch);
  run->next_batch = state_.batch;
  run->end_batch = nb;
  if (options_.prefetch > 0) {
    size_t cap = size_t(options_.prefetch);
    run->worker = std::thread([this, run, cap] {
      try {
        for (int64_t b = run->next_batch; b < run->end_batch; ++b) {
          Batch batch = make_batch(run->order, b);
          std::unique_lock<std::mutex> lock(run->mu);
          run->not_full.wait(lock, [&] { return run->stop || run->queue.size() < cap; });
          if (run->stop) return;
          run->queue.push_back(std::move(batch));
          lock.unlock();
          run->not_empty.notify_one();
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(run->mu);
        run->error = std::current_exception();
      }
      run->not_empty.notify_one();
    });
  }
  it.loader_ = this;
  it.run_id_ = ++run_counter_;
  if (!next(it)) it.loader_ = nullptr;
  return it;
}

bool DataLoader::next(Iterator& it) {
  if (!run_ || it.run_id_ != run_counter_)
    throw std::logic_error("DataLoader: this iteration was abandoned (begin(), set_epoch or load_state was called)");
  if (state_.batch >= run_->end_batch) {  // epoch done
    stop_run();
    state_ = {state_.epoch + 1, 0};
    it.current_ = {};
    return false;
  }
  Run* run = run_.get();
  if (options_.prefetch == 0) {
    it.current_ = make_batch(run->order, state_.batch);
  } else {
    std::unique_lock<std::mutex> lock(run->mu);
    run->not_empty.wait(lock, [&] { return !run->queue.empty() || run->error; });
    if (run->queue.empty()) {
      std::exception_ptr e = run->error;
      lock.unlock();
      stop_run();
      std::rethrow_exception(e);
    }
    it.current_ = std::move(run->queue.front());
    run->queue.pop_front();
    lock.unlock();
    run->not_full.notify_one();
  }
  ++state_.batch;
  return true;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  if (loader_ && !loader_->next(*this)) loader_ = nullptr;
  return *this;
}

}  // namespace attn::data
