// attn/data/idx.h — IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
//
//   attn::Tensor images = attn::data::read_idx("train-images-idx3-ubyte.gz");  // (60000, 28, 28) uint8
//   attn::Tensor labels = attn::data::read_idx("train-labels-idx1-ubyte.gz");  // (60000) uint8
//
// Layout: 2 zero bytes, a type byte, a dim-count byte, the dims as big-endian uint32, then the
// elements (big-endian) in row-major order, nothing after. Type byte -> result dtype:
//   0x08 u8 -> uint8;  0x09 i8, 0x0B i16, 0x0C i32 -> int32;  0x0D f32 -> float32;  0x0E f64 -> float64.
// gzip is recognised by its magic bytes, not the file name. Every inconsistency (truncated header or
// data, bad magic, unknown type, dim product overflow, extra bytes at the end, corrupt gzip) throws a
// std::runtime_error naming the file.
#pragma once
#include <cstddef>
#include <string>

#include "attn/tensor.h"

namespace attn::data {

Tensor read_idx(const std::string& path);
// The same parser over bytes in memory (plain or gzip); `name` is used in error messages.
Tensor parse_idx(const void* data, size_t size, const std::string& name = "<memory>");

}  // namespace attn::data
