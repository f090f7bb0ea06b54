// src/backend/cpu/source_stamp.h — where a derived copy of a tensor (a packed or reordered weight) was
// read from, so a cache can tell when to rebuild it: a changed storage, offset or version (the storage's
// counter, bumped by every in-place write such as an optimizer step or load_state_dict) means stale.
//
//   std::vector<SourceStamp> now{stamp(w), stamp(b)};
//   if (now != cached_stamps) { rebuild(); cached_stamps = now; }
#pragma once
#include <cstdint>

#include "attn/tensor.h"

namespace attn::cpu {

struct SourceStamp {
  const void* storage_data = nullptr;
  int64_t offset = 0;
  uint64_t version = 0;
  bool operator==(const SourceStamp&) const = default;
};

inline SourceStamp stamp(const Tensor& t) {
  return t.defined() ? SourceStamp{t.raw_data(), t.storage_offset(), t.version()} : SourceStamp{};
}

}  // namespace attn::cpu
