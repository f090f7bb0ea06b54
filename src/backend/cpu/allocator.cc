#include "backend/cpu/allocator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>
#include <vector>

namespace attn::cpu {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kMaxCached = size_t(4) << 30;  // never hold more than 4 GiB of unused blocks
// Shapes that keep changing (beam search's shrinking batch, variable-length batches) would fill the cache
// with sizes never asked for again. So a request may take a cached block up to half as large again, and a
// miss first returns the least recently freed blocks until in-use plus cached memory fits this bound.
constexpr size_t kFootprintFloor = size_t(64) << 20;
size_t footprint_limit(size_t high_water) { return std::max(kFootprintFloor, high_water + high_water / 2); }
size_t largest_fit(size_t b) { return b + b / 2; }

// Large blocks are mapped and unmapped by us: freed into glibc's heap they would stay resident after the
// cache lets them go (the heap only shrinks from its top). Not under ASan, whose heap has the redzones.
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kMapFrom = SIZE_MAX;
#else
constexpr size_t kMapFrom = size_t(256) << 10;
#endif
// Blocks of 2 MiB and more start on a 2 MiB boundary and ask for transparent huge pages: a decoding step
// streams every weight once (60 MB for the bench translator), and with 4 KiB pages its products ran ~8 %
// slower (gemm_bench decode, docs/benchmarks.md).
constexpr size_t kHugePage = size_t(2) << 20;
void* map_huge_aligned(size_t b) {
  void* raw = mmap(nullptr, b + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw), aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
  if (aligned > start) munmap(raw, aligned - start);
  if (const size_t tail = start + kHugePage - aligned) munmap(reinterpret_cast<void*>(aligned + b), tail);
  void* p = reinterpret_cast<void*>(aligned);
  madvise(p, b, MADV_HUGEPAGE);  // a hint: where THP is off the block keeps 4 KiB pages
  return p;
}
void* system_alloc(size_t b) {
  if (b < kMapFrom) return std::aligned_alloc(kAlign, b);
  if (b >= kHugePage) return map_huge_aligned(b);
  void* p = mmap(nullptr, b, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
void system_free(void* p, size_t b) {
  if (b < kMapFrom)
    std::free(p);
  else
    munmap(p, b);
}

// Buckets: multiples of 64 bytes up to 4 KiB, then 8 steps per power of two (<= 12.5% waste).
size_t bucket_size(size_t n) {
  if (n == 0) n = 1;
  if (n <= 4096) return (n + kAlign - 1) / kAlign * kAlign;
  size_t p = size_t(1) << (63 - __builtin_clzll(n));  // highest power of two <= n
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}

struct FreeBlock {
  void* p;
  uint64_t seq;  // when it was freed
};

struct Cache {
  std::mutex mu;
  // Per bucket, oldest first: a hit takes the back (warmest), eviction the front. No empty queues.
  std::map<size_t, std::deque<FreeBlock>> free_blocks;
  std::map<uint64_t, size_t> by_age;           // seq -> bucket of every cached block
  std::unordered_map<void*, size_t> oversized;  // blocks in use from a larger bucket than their size's
  uint64_t next_seq = 0;
  size_t cached = 0, allocated = 0, peak = 0;
  size_t high_water = 0;  // peak in use since start or empty_cache; peak is reset by reset_peak_allocated_bytes

  ~Cache() {
    for (auto& [size, q] : free_blocks)
      for (const FreeBlock& f : q) system_free(f.p, size);
  }
  // Takes block f of bucket `it` out of the cache.
  void* take(std::map<size_t, std::deque<FreeBlock>>::iterator it, bool newest) {
    std::deque<FreeBlock>& q = it->second;
    const FreeBlock f = newest ? q.back() : q.front();
    newest ? q.pop_back() : q.pop_front();
    cached -= it->first;
    by_age.erase(f.seq);
    if (q.empty()) free_blocks.erase(it);
    return f.p;
  }
  void put(void* p, size_t b) {
    const uint64_t seq = next_seq++;
    free_blocks[b].push_back({p, seq});
    by_age.emplace(seq, b);
    cached += b;
  }
};
Cache& cache() {
  static Cache* c = new Cache;  // leaked on purpose: storages may be freed during static destruction
  return *c;
}

// Under the lock: a cached block for bucket b (accounted as in use), or nullptr after evicting the
// oldest blocks to make room for a new one of b bytes. Where a new block would take the footprint past
// its bound, a mapped block more than half as large again is cut to b (its tail in `trimmed`, to unmap)
// instead of evicting: beam search's shrinking batch asks for new sizes all the time. Not sooner: a
// training step asks for the same sizes at every step, and cutting one (its logits) remapped it each
// step (page faults in the steady state, 2-3 % of the translator's step in perf).
void* take_or_make_room(Cache& c, size_t b, std::vector<std::pair<void*, size_t>>& evicted,
                        std::pair<void*, size_t>& trimmed) {
  auto it = c.free_blocks.lower_bound(b);
  const bool fits = it != c.free_blocks.end() && it->first <= largest_fit(b);
  const size_t got = fits ? it->first : b;
  c.allocated += got;
  c.peak = std::max(c.peak, c.allocated);
  c.high_water = std::max(c.high_water, c.allocated);
  if (fits) {
    void* p = c.take(it, true);
    if (got != b) c.oversized.emplace(p, got);
    return p;
  }
  const size_t limit = footprint_limit(c.high_water);
  if (it != c.free_blocks.end() && b >= kMapFrom && c.allocated + c.cached > limit) {
    const size_t size = it->first;
    void* p = c.take(it, true);
    trimmed = {static_cast<char*>(p) + b, size - b};
    return p;
  }
  while (!c.by_age.empty() && c.allocated + c.cached > limit) {
    auto oldest = c.free_blocks.find(c.by_age.begin()->second);
    const size_t size = oldest->first;
    evicted.emplace_back(c.take(oldest, false), size);
  }
  return nullptr;
}

}  // namespace

void* cached_alloc(size_t nbytes) {
  const size_t b = bucket_size(nbytes);
  Cache& c = cache();
  std::vector<std::pair<void*, size_t>> evicted;
  std::pair<void*, size_t> trimmed{nullptr, 0};
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (void* p = take_or_make_room(c, b, evicted, trimmed)) {
      if (trimmed.first) munmap(trimmed.first, trimmed.second);
      return p;
    }
  }
  for (auto [p, size] : evicted) system_free(p, size);
  void* p = system_alloc(b);
  if (!p) {
    empty_cache();
    p = system_alloc(b);
  }
  if (!p) {
    std::lock_guard<std::mutex> lock(c.mu);
    c.allocated -= b;
    throw std::bad_alloc();
  }
  return p;
}

void cached_free(void* p, size_t nbytes) {
  if (!p) return;
  size_t b = bucket_size(nbytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.oversized.empty()) {
    auto it = c.oversized.find(p);
    if (it != c.oversized.end()) {
      b = it->second;
      c.oversized.erase(it);
    }
  }
  c.allocated -= b;
  if (c.cached + b > kMaxCached) {
    system_free(p, b);
    return;
  }
  c.put(p, b);
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [size, q] : c.free_blocks)
    for (const FreeBlock& f : q) system_free(f.p, size);
  c.free_blocks.clear();
  c.by_age.clear();
  c.cached = 0;
  c.high_water = c.allocated;  // the footprint bound starts afresh from what is in use now
}

size_t cached_bytes() {
  std::lock_guard<std::mutex> lock(cache().mu);
  return cache().cached;
}
size_t allocated_bytes() {
  std::lock_guard<std::mutex> lock(cache().mu);
  return cache().allocated;
}
size_t peak_allocated_bytes() {
  std::lock_guard<std::mutex> lock(cache().mu);
  return cache().peak;
}
void reset_peak_allocated_bytes() {
  std::lock_guard<std::mutex> lock(cache().mu);
  cache().peak = cache().allocated;
}

}  // namespace attn::cpu
