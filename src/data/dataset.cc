// src/data/dataset.cc — TensorDataset and the Fashion-MNIST loader.
#include "attn/data/dataset.h"

#include <sys/stat.h>

#include <stdexcept>
#include <thread>

#include "attn/data/idx.h"

namespace attn::data {

TensorDataset::TensorDataset(Tensor data, Tensor target) {
  if (!data.defined()) throw std::invalid_argument("TensorDataset: data tensor is undefined");
  if (data.dim() == 0) throw std::invalid_argument("TensorDataset: data must have a first (sample) dim, got a 0-d tensor");
  if (target.defined()) {
    if (target.dim() == 0) throw std::invalid_argument("TensorDataset: target must have a first (sample) dim, got a 0-d tensor");
    if (target.size(0) != data.size(0))
      throw std::invalid_argument("TensorDataset: data " + shape_str(data.shape()) + " and target " +
                                  shape_str(target.shape()) + " differ in the first dim");
  }
  if (data.device() != kCPU) data = data.to(kCPU);
  if (target.defined() && target.device() != kCPU) target = target.to(kCPU);
  data_ = data.detach().contiguous();
  if (target.defined()) target_ = target.detach().contiguous();
}

Example TensorDataset::get(int64_t index) const {
  int64_t n = size();
  if (index < -n || index >= n)
    throw std::out_of_range("TensorDataset::get: index " + std::to_string(index) + " out of range for size " +
                            std::to_string(n));
  if (index < 0) index += n;
  return {data_.select(0, index), target_.defined() ? target_.select(0, index) : Tensor()};
}

namespace {

std::string split_file(const std::string& root, bool train, bool images) {
  return root + "/" + (train ? "train" : "t10k") + (images ? "-images-idx3-ubyte.gz" : "-labels-idx1-ubyte.gz");
}

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

bool FashionMNIST::available(const std::string& root) {
  for (bool train : {true, false})
    for (bool images : {true, false})
      if (!is_file(split_file(root, train, images))) return false;
  return true;
}

FashionMNIST::FashionMNIST(const FashionMNISTOptions& o) {
  std::string images_path = split_file(o.root, o.train, true), labels_path = split_file(o.root, o.train, false);
  Tensor labels_u8;
  std::exception_ptr label_error;
  std::thread label_thread([&] {  // small file: read it while the images inflate
    try {
      labels_u8 = read_idx(labels_path);
    } catch (...) {
      label_error = std::current_exception();
    }
  });
  Tensor images_u8;
  try {
    images_u8 = read_idx(images_path);
  } catch (...) {
    label_thread.join();
    throw;
  }
  label_thread.join();
  if (label_error) std::rethrow_exception(label_error);

  if (images_u8.dtype() != kUInt8 || images_u8.dim() != 3 || images_u8.size(1) != 28 || images_u8.size(2) != 28)
    throw std::runtime_error("FashionMNIST: '" + images_path + "' should hold (N, 28, 28) uint8 images, got " +
                             shape_str(images_u8.shape()) + " " + dtype_name(images_u8.dtype()));
  if (labels_u8.dtype() != kUInt8 || labels_u8.dim() != 1)
    throw std::runtime_error("FashionMNIST: '" + labels_path + "' should hold (N) uint8 labels, got " +
                             shape_str(labels_u8.shape()) + " " + dtype_name(labels_u8.dtype()));
  int64_t n = images_u8.size(0);
  if (labels_u8.size(0) != n)
    throw std::runtime_error("FashionMNIST: " + std::to_string(n) + " images in '" + images_path + "' but " +
                             std::to_string(labels_u8.size(0)) + " labels in '" + labels_path + "'");

  // uint8 -> float32 through a 256-entry table: (v / 255 - mean) / std, or v / 255.
  float table[256];
  for (int v = 0; v < 256; ++v) {
    double x = v / 255.0;
    table[v] = float(o.normalize ? (x - kMean) / kStd : x);
  }
  data_ = empty({n, 1, 28, 28}, {.dtype = kFloat32});
  const uint8_t* src = static_cast<const uint8_t*>(images_u8.raw_data());
  float* dst = static_cast<float*>(data_.raw_data());
  for (int64_t i = 0, total = n * 28 * 28; i < total; ++i) dst[i] = table[src[i]];

  target_ = empty({n}, {.dtype = kInt64});
  const uint8_t* lab = static_cast<const uint8_t*>(labels_u8.raw_data());
  int64_t* tgt = static_cast<int64_t*>(target_.raw_data());
  for (int64_t i = 0; i < n; ++i) {
    if (lab[i] >= 10)
      throw std::runtime_error("FashionMNIST: '" + labels_path + "' label " + std::to_string(i) + " is " +
                               std::to_string(lab[i]) + ", expected 0..9");
    tgt[i] = lab[i];
  }
}

}  // namespace attn::data
