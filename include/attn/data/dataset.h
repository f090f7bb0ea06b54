// attn/data/dataset.h — map-style datasets (torch.utils.data.Dataset / TensorDataset) and Fashion-MNIST.
//
//   auto train = std::make_shared<attn::data::FashionMNIST>(attn::data::FashionMNISTOptions{.normalize = true});
//   attn::data::Example ex = train->get(0);       // ex.data: (1, 28, 28) float32, ex.target: () int64
//   attn::data::TensorDataset ds(x, y);            // x: (N, ...), y: (N, ...); get(i) = {x[i], y[i]}
//
// get() may be called from the DataLoader's prefetch thread: implementations must allow get() to run
// concurrently with the caller's own work (read-only access is enough).
#pragma once
#include <cstdint>
#include <string>

#include "attn/tensor.h"

namespace attn::data {

struct Example {
  Tensor data;
  Tensor target;  // may be undefined (unlabelled data)
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;  // 0 <= index < size()
};

// Slices the first dim of `data` (and of `target`, if defined). Both are made contiguous once; the
// DataLoader gathers rows of these tensors directly (no per-example tensors), which is why get() is
// final: to transform examples, wrap the dataset in another Dataset instead of overriding get().
class TensorDataset : public Dataset {
 public:
  TensorDataset() = default;
  explicit TensorDataset(Tensor data, Tensor target = {});
  int64_t size() const final { return data_.defined() ? data_.size(0) : 0; }
  Example get(int64_t index) const final;  // views: data[index], target[index]; negative counts from the end
  const Tensor& data() const { return data_; }
  const Tensor& targets() const { return target_; }

 protected:
  Tensor data_, target_;
};

struct FashionMNISTOptions {
  std::string root = "/usr/share/datasets/fashion-mnist";  // holds {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
  bool train = true;                                       // false: the 10,000-image test split
  bool normalize = false;  // (x - 0.2860) / 0.3530 instead of plain [0, 1]
};

// data: (N, 1, 28, 28) float32 in [0, 1] (or normalised); targets: (N) int64 in [0, 10).
class FashionMNIST : public TensorDataset {
 public:
  static constexpr double kMean = 0.2860, kStd = 0.3530;
  static constexpr const char* kClassNames[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  explicit FashionMNIST(const FashionMNISTOptions& options = {});
  // Whether the four files exist under `root`.
  static bool available(const std::string& root = FashionMNISTOptions{}.root);
};

}  // namespace attn::data
