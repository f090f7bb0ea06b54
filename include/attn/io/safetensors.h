// attn/io/safetensors.h — read (memory-mapped, zero-copy) and write safetensors files.
//
//   auto file = attn::io::SafeTensorsFile::open("model.safetensors");    // mmap; throws on bad input
//   attn::Tensor w = file.get("encoder.layer.0.attention.self.query.weight");  // view into the map
//   attn::io::save_safetensors("out.safetensors", {{"w", w}}, {{"step", "10"}});  // atomic write
//
// Layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// optional "__metadata__" (string -> string), then the data buffer. Every field is validated:
// offsets inside the buffer, sizes matching dtype x shape, no overlaps; errors name file and key.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attn/tensor.h"

namespace attn::io {

class SafeTensorsFile {
 public:
  static SafeTensorsFile open(const std::string& path);  // memory-maps the file
  static SafeTensorsFile from_bytes(std::string bytes, const std::string& name = "<memory>");
  const std::string& path() const { return path_; }
  std::vector<std::string> keys() const;  // sorted
  bool contains(const std::string& key) const;
  Tensor get(const std::string& key) const;  // zero-copy view; bf16/f16 stay as stored (f16 -> f32 copy)
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  struct Entry {
    DType dtype;
    std::string dtype_name;  // as in the file: "F32", "BF16", ...
    Shape shape;
    size_t begin, end;       // byte offsets in the data buffer
  };
  const std::map<std::string, Entry>& entries() const { return entries_; }

 private:
  std::string path_;
  std::shared_ptr<void> owner_;  // keeps the mapping (or bytes) alive while tensors view it
  const uint8_t* data_ = nullptr;  // start of the data buffer
  size_t data_size_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

std::map<std::string, Tensor> load_safetensors(const std::string& path);
// Writes atomically (temp file in the same directory, fsync, rename).
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Atomic file write used by checkpoints too: temp file, fsync, rename, fsync of the directory.
void write_file_atomic(const std::string& path, const std::string& bytes);
// Streaming form: `produce` calls `write(data, n)` any number of times. If anything throws, the temp
// file is removed, the old file at `path` is left untouched and the exception propagates.
using ByteSink = std::function<void(const void* data, size_t n)>;
void write_file_atomic(const std::string& path, const std::function<void(const ByteSink& write)>& produce);

}  // namespace attn::io
