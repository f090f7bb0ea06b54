// tests/test_side_prefetch.cc — the reads a layer announces ahead (backend/cpu/side_prefetch.h): the
// ranges cover exactly the announced bytes, split over the threads as the one-query attention splits
// (N, H); a thread's walk visits each 64-byte step of its ranges once, in order; a new announcement
// restarts the walk; and the products that consume it give the same bits as without.
#include <gtest/gtest.h>
#include <omp.h>

#include <map>
#include <set>

#include "attn/attn.h"
#include "backend/backend.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/packed_linear.h"
#include "backend/cpu/side_prefetch.h"

using namespace attn;

namespace {

// The byte addresses each thread's ranges cover, one entry per byte (segments walked fully).
std::vector<std::multiset<const char*>> covered(const std::vector<std::vector<cpu::SideRange>>& ranges) {
  std::vector<std::multiset<const char*>> out(ranges.size());
  for (size_t t = 0; t < ranges.size(); ++t)
    for (const cpu::SideRange& r : ranges[t])
      for (int64_t s = 0; s < r.count; ++s)
        for (int64_t b = 0; b < r.seg_bytes; ++b) out[t].insert(r.base + s * r.stride + b);
  return out;
}

// The bytes of the elements of `t` whose flat index over all but the last two dims is in [o0, o1).
std::multiset<const char*> bytes_of(const Tensor& t, int64_t o0, int64_t o1) {
  std::multiset<const char*> out;
  const backend::TensorRef r = backend::ref(t);
  const size_t rank = r.shape.size();
  const int64_t inner = rank >= 2 ? r.shape[rank - 2] * r.shape[rank - 1] : (rank ? r.shape[0] : 1);
  const int64_t total = r.numel();
  for (int64_t i = 0; i < total; ++i) {
    if (i / inner < o0 || i / inner >= o1) continue;
    int64_t rest = i, off = 0;
    for (size_t d = rank; d-- > 0;) off += (rest % r.shape[d]) * r.strides[d], rest /= r.shape[d];
    const char* p = static_cast<const char*>(r.data) + off * 4;
    for (int b = 0; b < 4; ++b) out.insert(p + b);
  }
  return out;
}

}  // namespace

TEST(SidePrefetch, RangesCoverTheBytesSplitLikeTheAttention) {
  const Tensor cache = zeros({4, 3, 8, 16});       // (N, H, capacity, D)
  const Tensor filled = cache.narrow(2, 0, 5);     // slots [0, 5): segments with gaps
  const Tensor dense = zeros({4, 3, 6, 16});       // the memory's keys: one dense block
  const Tensor strided = zeros({4, 3, 16, 6}).transpose(2, 3);  // last dim not unit-stride
  for (const int threads : {1, 2, 3, 5}) {
    for (const Tensor& t : {filled, dense, strided}) {
      const auto ranges = cpu::side_prefetch_ranges({backend::ref(t)}, threads);
      ASSERT_EQ(ranges.size(), size_t(threads));
      const auto got = covered(ranges);
      for (int th = 0; th < threads; ++th)
        EXPECT_EQ(got[size_t(th)], bytes_of(t, th * 12 / threads, (th + 1) * 12 / threads))
            << "thread " << th << " of " << threads << ", shape " << shape_str(t.shape());
    }
  }
  // a view with dense segments merges into one strided range per thread
  const auto two = cpu::side_prefetch_ranges({backend::ref(filled)}, 2);
  ASSERT_EQ(two[0].size(), 1u);
  EXPECT_EQ(two[0][0].seg_bytes, 5 * 16 * 4);
  EXPECT_EQ(two[0][0].stride, 8 * 16 * 4);
  EXPECT_EQ(two[0][0].count, 6);
  // several refs: in order, each split the same way; empty and undefined refs add nothing
  const auto both = cpu::side_prefetch_ranges({backend::ref(filled), backend::ref(dense), backend::TensorRef{}}, 2);
  ASSERT_EQ(both[1].size(), 2u);
  EXPECT_EQ(both[1][0].base, static_cast<const char*>(filled.raw_data()) + 6 * 8 * 16 * 4);
  EXPECT_EQ(both[1][1].base, static_cast<const char*>(dense.raw_data()) + 6 * 6 * 16 * 4);
}

TEST(SidePrefetch, WalkVisitsEachStepOnceInOrderAndRestartsOnANewAnnouncement) {
  const Tensor cache = zeros({2, 2, 8, 32});
  const Tensor filled = cache.narrow(2, 0, 3);  // segments of 3 * 128 bytes, 1024 apart
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu::announce_side_prefetch({backend::ref(filled)});
  cpu::SideWalk w = cpu::side_cursor().walk;
  std::vector<const char*> seen;
  while (w.active()) seen.push_back(w.next());
  const char* base = static_cast<const char*>(cache.raw_data());
  std::vector<const char*> want;
  for (int nh = 0; nh < 4; ++nh)
    for (int b = 0; b < 3 * 128; b += 64) want.push_back(base + nh * 1024 + b);
  EXPECT_EQ(seen, want);
  cpu::side_cursor().walk = w;  // exhausted: stays so until the next announcement
  EXPECT_FALSE(cpu::side_cursor().walk.active());
  cpu::announce_side_prefetch({backend::ref(filled)});
  EXPECT_TRUE(cpu::side_cursor().walk.active());
  EXPECT_EQ(cpu::side_cursor().walk.cur, base);
  cpu::announce_side_prefetch({});
  EXPECT_FALSE(cpu::side_cursor().walk.active());
  omp_set_num_threads(before);
}

// The hint changes no result: each ISA's packed product with a walk to consume (the tiles that also
// prefetch announced lines, some of them running out of lines midway) equals the product without.
TEST(SidePrefetch, ProductsWithAWalkToConsumeGiveTheSameBits) {
  struct IsaGuard {
    ~IsaGuard() { cpu::reset_isa(); }
  } restore;
  NoGradGuard ng;
  manual_seed(5);
  const Tensor side = zeros({2, 4, 40, 64});
  const int before = omp_get_max_threads();
  for (cpu::Isa isa : {cpu::Isa::Avx2, cpu::Isa::Avx512}) {
    if (!cpu::set_isa_for_testing(isa)) continue;
    for (const int64_t m : {1, 3, 8, 32})
      for (const int64_t lines : {int64_t(1), int64_t(40)}) {  // the walk ends within the first tile, or lasts
        const Tensor x = randn({m, 96}), w = randn({200, 96}), b = randn({200});
        ASSERT_TRUE(cpu::packed_linear_applies(x, w));
        omp_set_num_threads(1);
        cpu::announce_side_prefetch({});
        const std::vector<float> plain = linear(x, w, b).to_vector<float>();
        cpu::announce_side_prefetch({backend::ref(side.narrow(2, 0, lines))});
        ASSERT_TRUE(cpu::side_cursor().walk.active());
        const std::vector<float> with = linear(x, w, b).to_vector<float>();
        omp_set_num_threads(before);
        EXPECT_EQ(with, plain) << cpu::isa_name(isa) << " m " << m << " lines " << lines;
      }
  }
  cpu::announce_side_prefetch({});
}
