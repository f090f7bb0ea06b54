// src/backend/cpu/side_prefetch.h — reads announced ahead (Backend::prefetch_hint), issued by the
// compute-bound packed products while they run, one cache line per step of their inner loop.
//
//   cpu::announce_side_prefetch({ref(cache.keys()), ref(cache.values())});  // before the step's products
//   SideWalk side = cpu::side_cursor().walk;                                 // in a kernel, per call
//   if (side.active()) _mm_prefetch(side.next(), _MM_HINT_T1);              // in its inner loop
//   cpu::side_cursor().walk = side;                                          // where it stopped
//
// Why: a decoding step's attention reads every key/value cache (up to 24 MB for the bench translator)
// right after products that stream 60 MB of weights through the L3, so the caches come from memory,
// while the products themselves use under half of its bandwidth. Prefetched during the products, they
// are read from L2/L3 (docs/benchmarks.md). A hint only: no result depends on it, and a prefetch of
// memory freed meanwhile is harmless (prefetches never fault).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"

namespace attn::cpu {

// `count` segments of `seg_bytes`, `stride` bytes apart from `base`.
struct SideRange {
  const char* base;
  int64_t seg_bytes, stride, count;
};

// Each ref's bytes as strided ranges, the index space of all but its last two dims split evenly over
// `threads` (the split of the one-query attention: (N, H) of (N, H, S, D) over the team): result[t]
// holds thread t's ranges, refs in order. The last two dims, where dense, form the segments.
std::vector<std::vector<SideRange>> side_prefetch_ranges(const std::vector<backend::TensorRef>& refs, int threads);

// Replaces what is announced (for the current team size); what the previous announcement left unread
// is dropped.
void announce_side_prefetch(const std::vector<backend::TensorRef>& refs);

// One thread's walk over its share of the announcement, 64 bytes at a time. Plain data and inline, so
// that a kernel keeps it in registers (a call in its inner loop would spill the accumulators).
struct SideWalk {
  const SideRange* r = nullptr;
  const SideRange* end = nullptr;
  int64_t seg = 0;
  const char* cur = nullptr;  // null: nothing left
  const char* seg_end = nullptr;

  bool active() const { return cur != nullptr; }
  const char* next() {
    const char* p = cur;
    cur += 64;
    if (cur >= seg_end) {
      if (++seg >= r->count) ++r, seg = 0;
      open();
    }
    return p;
  }
  void open() {
    while (r != end && (r->count <= 0 || r->seg_bytes <= 0)) ++r;
    cur = r == end ? nullptr : r->base + seg * r->stride;
    seg_end = cur ? cur + r->seg_bytes : nullptr;
  }
};

// The walk and the announcement it reads (kept alive while it is walked).
struct SideCursor {
  std::shared_ptr<const std::vector<std::vector<SideRange>>> announced;
  uint64_t generation = 0;
  SideWalk walk;
};

// The calling OpenMP thread's cursor, restarted on its share when a new announcement was made.
SideCursor& side_cursor();

}  // namespace attn::cpu
