// src/backend/cpu/side_prefetch.cc — see side_prefetch.h.
#include "backend/cpu/side_prefetch.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "attn/dtype.h"

namespace attn::cpu {

namespace {

std::mutex g_mu;
std::shared_ptr<const std::vector<std::vector<SideRange>>> g_announced;
std::atomic<uint64_t> g_generation{0};

// Appends the segments [o0, o1) of `r` (row-major over its dims [0, inner_from); the dims from
// inner_from on are one dense segment of seg_bytes). Segments a uniform stride apart merge.
void outer_ranges(const backend::TensorRef& r, size_t inner_from, int64_t seg_bytes, int64_t o0, int64_t o1,
                  std::vector<SideRange>& out) {
  const int64_t es = int64_t(element_size(r.dtype));
  const char* base = static_cast<const char*>(r.data);
  for (int64_t o = o0; o < o1; ++o) {
    int64_t rest = o, off = 0;
    for (size_t d = inner_from; d-- > 0;) {
      off += (rest % r.shape[d]) * r.strides[d];
      rest /= r.shape[d];
    }
    const char* p = base + off * es;
    if (!out.empty() && out.back().seg_bytes == seg_bytes) {
      SideRange& last = out.back();
      if (last.count == 1) last.stride = p - last.base;  // two segments: any distance is a stride
      if (last.base + last.count * last.stride == p) {
        ++last.count;
        continue;
      }
    }
    out.push_back({p, seg_bytes, 0, 1});
  }
}

}  // namespace

std::vector<std::vector<SideRange>> side_prefetch_ranges(const std::vector<backend::TensorRef>& refs, int threads) {
  threads = std::max(1, threads);
  std::vector<std::vector<SideRange>> out(static_cast<size_t>(threads));
  for (const backend::TensorRef& r : refs) {
    if (r.data == nullptr || r.numel() == 0) continue;
    // the innermost dims that are dense (each stride the product of the sizes inside it), at most the
    // last two, form a segment; the dims outside are split over the threads
    const size_t rank = r.shape.size(), last_two = rank >= 2 ? rank - 2 : 0;
    size_t inner_from = rank;
    int64_t dense = 1;
    while (inner_from > last_two && (r.shape[inner_from - 1] == 1 || r.strides[inner_from - 1] == dense)) {
      dense *= r.shape[inner_from - 1];
      --inner_from;
    }
    int64_t outer = 1, mid = 1;  // mid: the segments inside one outer index (last two dims not dense)
    for (size_t d = 0; d < last_two; ++d) outer *= r.shape[d];
    for (size_t d = last_two; d < inner_from; ++d) mid *= r.shape[d];
    const int64_t seg_bytes = dense * int64_t(element_size(r.dtype));
    for (int t = 0; t < threads; ++t)
      outer_ranges(r, inner_from, seg_bytes, t * outer / threads * mid, (t + 1) * outer / threads * mid,
                   out[size_t(t)]);
  }
  return out;
}

void announce_side_prefetch(const std::vector<backend::TensorRef>& refs) {
  auto a = std::make_shared<const std::vector<std::vector<SideRange>>>(side_prefetch_ranges(refs, omp_get_max_threads()));
  const std::lock_guard lock(g_mu);
  g_announced = std::move(a);
  g_generation.fetch_add(1, std::memory_order_release);
}

SideCursor& side_cursor() {
  thread_local SideCursor cursor;
  const uint64_t g = g_generation.load(std::memory_order_acquire);
  if (cursor.generation != g) {
    {
      const std::lock_guard lock(g_mu);
      cursor.announced = g_announced;
    }
    cursor.generation = g;
    cursor.walk = SideWalk{};
    const int t = omp_get_thread_num();
    if (cursor.announced && t >= 0 && size_t(t) < cursor.announced->size()) {
      const std::vector<SideRange>& mine = (*cursor.announced)[size_t(t)];
      cursor.walk.r = mine.data(), cursor.walk.end = mine.data() + mine.size();
      cursor.walk.open();
    }
  }
  return cursor;
}

}  // namespace attn::cpu
