// tests/test_allocator.cc — the CPU backend's caching allocator (src/backend/cpu/allocator.cc): aligned,
// reused, and bounded when the requested sizes keep changing (beam search's shrinking batch), where an
// exact-size cache grew to 7x the memory in use. Each gtest runs in its own process (ctest), so the
// allocator's high-water mark is this test's own.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "attn/attn.h"
#include "backend/cpu/allocator.h"

namespace {

using namespace attn::cpu;
constexpr size_t MiB = size_t(1) << 20;

TEST(CachingAllocator, BlocksAreAlignedWritableAndReused) {
  empty_cache();
  for (size_t n : {size_t(1), size_t(100), size_t(5000), 300 * size_t(1024), 3 * MiB}) {
    auto* p = static_cast<uint8_t*>(cached_alloc(n));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << n;
    std::memset(p, 0xab, n);
    EXPECT_EQ(p[n - 1], 0xab);
    cached_free(p, n);
    void* q = cached_alloc(n);  // the block just freed comes back
    EXPECT_EQ(q, p) << n;
    cached_free(q, n);
  }
}

TEST(CachingAllocator, SlightlySmallerRequestReusesALargerBlockAndReturnsItWhole) {
  empty_cache();
  const size_t before = allocated_bytes();
  void* big = cached_alloc(4 * MiB);
  const size_t big_bytes = allocated_bytes() - before;
  cached_free(big, 4 * MiB);
  void* smaller = cached_alloc(3 * MiB);  // within half as large again: the 4 MiB block
  EXPECT_EQ(smaller, big);
  EXPECT_EQ(allocated_bytes() - before, big_bytes);  // in use counts the whole block
  cached_free(smaller, 3 * MiB);
  EXPECT_EQ(allocated_bytes(), before);
  const size_t cached = cached_bytes();
  // A quarter of the block: too wasteful to hand out whole. With the footprint far below its bound
  // (64 MiB at least) the block is not cut either: its size may well be asked for again (a training
  // step's logits at every step), so a new block is made and the cached one stays.
  void* tiny = cached_alloc(1 * MiB);
  EXPECT_NE(tiny, big);
  EXPECT_EQ(cached_bytes(), cached);
  EXPECT_EQ(allocated_bytes() - before, 1 * MiB);
  std::memset(tiny, 0x5a, 1 * MiB);
  void* again = cached_alloc(4 * MiB);  // the cached block, whole
  EXPECT_EQ(again, big);
  std::memset(again, 0x5a, 4 * MiB);
  cached_free(tiny, 1 * MiB);
  cached_free(again, 4 * MiB);
}

// Past the footprint bound (1.5x the most ever in use, 64 MiB at least) a miss cuts a larger cached
// block to size (its pages already in memory) instead of evicting it and mapping a new one.
TEST(CachingAllocator, PastTheFootprintBoundALargerBlockIsCut) {
  empty_cache();
  const size_t before = allocated_bytes();
  void* x = cached_alloc(24 * MiB);
  cached_free(x, 24 * MiB);
  void* y = cached_alloc(40 * MiB);  // 40 in use + 24 cached: at the 64 MiB bound, still room
  EXPECT_NE(y, x);
  void* z = cached_alloc(4 * MiB);  // 44 + 24: past it
#if defined(__SANITIZE_ADDRESS__)
  EXPECT_NE(z, x);  // blocks come from the heap: the cached one is evicted
  EXPECT_EQ(cached_bytes(), 0u);
#else
  EXPECT_EQ(z, x);  // cut to 4 MiB, its tail unmapped
  EXPECT_EQ(cached_bytes(), 0u);
#endif
  EXPECT_EQ(allocated_bytes() - before, 44 * MiB);
  std::memset(z, 0x5a, 4 * MiB);
  cached_free(z, 4 * MiB);
  cached_free(y, 40 * MiB);
}

// A batch that shrinks one row at a time, again and again: every step frees blocks of sizes never asked
// for again. In-use plus cached memory stays within 1.5x the most ever in use (64 MiB at least).
TEST(CachingAllocator, ChangingSizesKeepTheFootprintBounded) {
  empty_cache();
  size_t high = allocated_bytes(), worst = 0;
  for (int round = 0; round < 4; ++round) {
    for (size_t rows = 128; rows >= 4; --rows) {
      std::vector<std::pair<void*, size_t>> step;
      for (size_t width : {32000, 4096, 1024 * 3 + 7}) {  // logits, feed-forward, projections
        const size_t n = rows * width * (8 + round) / 2;  // float32, a bit wider each round
        step.emplace_back(cached_alloc(n), n);
      }
      high = std::max(high, allocated_bytes());
      for (auto [p, n] : step) cached_free(p, n);
      worst = std::max(worst, allocated_bytes() + cached_bytes());
    }
  }
  EXPECT_LE(worst, std::max(64 * MiB, high + high / 2)) << "in use at most " << high;
  EXPECT_GT(cached_bytes(), 0u);  // the cache still works
  empty_cache();
  EXPECT_EQ(cached_bytes(), 0u);
}

// Module::to(dtype) hands each replaced storage back to the system as it goes: after converting a model
// to bf16 nothing of its float32 storages stays cached, so the process holds half the model, not 1.5x.
TEST(CachingAllocator, ModuleToHandsTheOldStoragesBack) {
  attn::nn::Linear a(2048, 1024);  // 8 MiB of weights
  a.register_module("b", attn::nn::Linear(1024, 1024));
  empty_cache();
  const size_t before = allocated_bytes();
  a.to(attn::kBFloat16);
  EXPECT_EQ(cached_bytes(), 0u);
  EXPECT_LE(allocated_bytes(), before - 6 * MiB) << "before " << before;
  EXPECT_EQ(a.weight.dtype(), attn::kBFloat16);
}

}  // namespace
