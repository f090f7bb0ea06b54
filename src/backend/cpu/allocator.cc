#include "backend/cpu/allocator.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace attn::cpu {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kMaxCached = size_t(4) << 30;  // never hold more than 4 GiB of unused blocks

// Buckets: multiples of 64 bytes up to 4 KiB, then 8 steps per power of two (<= 12.5% waste).
size_t bucket_size(size_t n) {
  if (n == 0) n = 1;
  if (n <= 4096) return (n + kAlign - 1) / kAlign * kAlign;
  size_t p = size_t(1) << (63 - __builtin_clzll(n));  // highest power of two <= n
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  size_t cached = 0, allocated = 0, peak = 0;
  ~Cache() {
    for (auto& [size, v] : free_blocks)
      for (void* p : v) std::free(p);
  }
};
Cache& cache() {
  static Cache* c = new Cache;  // leaked on purpose: storages may be freed during static destruction
  return *c;
}

}  // namespace

void* cached_alloc(size_t nbytes) {
  size_t b = bucket_size(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.allocated += b;
    c.peak = std::max(c.peak, c.allocated);
    auto it = c.free_blocks.find(b);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.cached -= b;
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, b);
  if (!p) {
    empty_cache();
    p = std::aligned_alloc(kAlign, b);
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
  c.allocated -= b;
  if (c.cached + b > kMaxCached) {
    std::free(p);
    return;
  }
  c.free_blocks[b].push_back(p);
  c.cached += b;
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [size, v] : c.free_blocks) {
    for (void* p : v) std::free(p);
    v.clear();
  }
  c.cached = 0;
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
