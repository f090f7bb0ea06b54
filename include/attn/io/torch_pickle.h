// attn/io/torch_pickle.h — read a torch.save file (zip + pickle, PyTorch >= 1.6) without executing code.
//
//   auto f = attn::io::TorchFile::open("pytorch_model.bin");   // mmap; throws on bad input
//   attn::Tensor w = f.get("encoder.layer.0.attention.self.query.weight");  // view when contiguous
//
// The pickle is run by a small VM that knows only the globals PyTorch's weights_only unpickler
// allows (tensor rebuilds, storage types, OrderedDict, ...); any other global is an error naming it,
// so a hostile file cannot run code. The object must be a (possibly nested under "state_dict" or
// "model") mapping from names to tensors. Tensors keep their stored dtype, except f16 (and int8/int16)
// which are widened (attn has no such dtypes); contiguous, aligned tensors are views of the map.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attn/tensor.h"

namespace attn::io {

class TorchFile {
 public:
  static TorchFile open(const std::string& path);  // memory-maps the file
  static TorchFile from_bytes(std::string bytes, const std::string& name = "<memory>");
  const std::string& path() const { return path_; }
  std::vector<std::string> keys() const;  // sorted
  bool contains(const std::string& key) const;
  Tensor get(const std::string& key) const;
  Shape shape(const std::string& key) const;

  struct Entry {                 // a tensor as the pickle describes it, checked against its storage
    std::string storage_dtype;   // "FloatStorage", ...
    Shape shape, strides;        // strides in elements
    int64_t storage_offset = 0;  // in elements
    size_t data_begin = 0;       // byte offset of the storage in the file
    size_t storage_numel = 0;
  };
  const std::map<std::string, Entry>& entries() const { return entries_; }

 private:
  std::string path_;
  std::shared_ptr<void> owner_;  // the mapping (or bytes)
  const uint8_t* base_ = nullptr;
  std::map<std::string, Entry> entries_;
};

}  // namespace attn::io
