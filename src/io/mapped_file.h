// src/io/mapped_file.h — map a whole file read-only-in-effect (private, copy-on-write) for the readers.
//
//   MappedFile m = map_file("model.safetensors", "safetensors file");  // errors: "safetensors file '...': ..."
//   parse(m.data, m.size);  // m.owner keeps the mapping alive (tensors viewing it hold a copy)
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace attn::io {

struct MappedFile {
  std::shared_ptr<void> owner;  // unmaps when the last holder goes
  const uint8_t* data = nullptr;
  size_t size = 0;
};

// Private writable mapping: in-place writes to a loaded tensor stay in memory (copy-on-write).
// An empty file maps to size 0 (data non-null, nothing to read).
MappedFile map_file(const std::string& path, const std::string& what);

}  // namespace attn::io
