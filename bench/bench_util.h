// bench/bench_util.h — timing and memory helpers shared by the attn benchmark binaries.
//
//   attn::bench::Timing t = attn::bench::measure([&] { step(); }, {.warmup = 3, .repeats = 7});
//   double per_s = 1.0 / t.median_s;                 // iterations per second
//   double rss = attn::bench::peak_rss_mib();        // VmHWM of this process
#pragma once
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

namespace attn::bench {

struct MeasureOptions {
  int warmup = 3;                     // untimed calls first
  int repeats = 7;                    // timed repeats; the median is reported
  double min_repeat_seconds = 0.25;   // each repeat runs enough iterations to last about this long
  int64_t max_iters_per_repeat = 1 << 20;
};

struct Timing {
  double median_s = 0;  // seconds per iteration (median over repeats)
  double min_s = 0, max_s = 0;
  int64_t iters_per_repeat = 0;
  int repeats = 0;
};

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline Timing measure(const std::function<void()>& fn, const MeasureOptions& o = {}) {
  for (int i = 0; i < o.warmup; ++i) fn();
  // Calibrate: how many iterations make one repeat last min_repeat_seconds.
  double t0 = now_s();
  fn();
  double one = std::max(now_s() - t0, 1e-9);
  int64_t iters = std::clamp<int64_t>(int64_t(o.min_repeat_seconds / one), 1, o.max_iters_per_repeat);
  std::vector<double> per_iter;
  for (int r = 0; r < o.repeats; ++r) {
    double start = now_s();
    for (int64_t i = 0; i < iters; ++i) fn();
    per_iter.push_back((now_s() - start) / double(iters));
  }
  std::sort(per_iter.begin(), per_iter.end());
  Timing t;
  t.median_s = per_iter[per_iter.size() / 2];
  t.min_s = per_iter.front();
  t.max_s = per_iter.back();
  t.iters_per_repeat = iters;
  t.repeats = o.repeats;
  return t;
}

// Peak resident set size of this process (getrusage ru_maxrss, KiB on Linux) in MiB.
inline double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

}  // namespace attn::bench
