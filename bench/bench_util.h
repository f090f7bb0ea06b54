// bench/bench_util.h — timing and memory helpers shared by the attn benchmark binaries.
//
//   attn::bench::Timing t = attn::bench::measure([&] { step(); }, {.warmup = 3, .repeats = 7});
//   double per_s = 1.0 / t.median_s;                 // iterations per second
//   double rss = attn::bench::peak_rss_mib();        // VmHWM of this process
//   double now = attn::bench::current_rss_mib();     // VmRSS now (the baseline, taken at start-up)
//
// Paired mode (bench/run.py): `serve` warms up, picks the iterations per repeat, prints
// {"ready":true,...} and then times one repeat for every "run" line on stdin, printing
// {"s": seconds per iteration [, "probe": probe()]}, until "quit". run.py alternates the repeats of
// attn and PyTorch, so a slow minute of a shared host slows both sides of a pair alike.
#pragma once
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
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

// Runs the warm-up calls, then returns how many iterations make one repeat last min_repeat_seconds.
inline int64_t warm_up_and_calibrate(const std::function<void()>& fn, const MeasureOptions& o) {
  for (int i = 0; i < o.warmup; ++i) fn();
  double t0 = now_s();
  fn();
  double one = std::max(now_s() - t0, 1e-9);
  return std::clamp<int64_t>(int64_t(o.min_repeat_seconds / one), 1, o.max_iters_per_repeat);
}

// Seconds per iteration of one repeat of `iters` iterations.
inline double time_repeat(const std::function<void()>& fn, int64_t iters) {
  double start = now_s();
  for (int64_t i = 0; i < iters; ++i) fn();
  return (now_s() - start) / double(iters);
}

inline Timing measure(const std::function<void()>& fn, const MeasureOptions& o = {}) {
  const int64_t iters = warm_up_and_calibrate(fn, o);
  std::vector<double> per_iter;
  for (int r = 0; r < o.repeats; ++r) per_iter.push_back(time_repeat(fn, iters));
  std::sort(per_iter.begin(), per_iter.end());
  Timing t;
  t.median_s = per_iter[per_iter.size() / 2];
  t.min_s = per_iter.front();
  t.max_s = per_iter.back();
  t.iters_per_repeat = iters;
  t.repeats = o.repeats;
  return t;
}

// The paired-mode loop (see the top of this file). `probe`, when set, runs just before each repeat
// and its value is reported beside it (gemm_2048: the FMA ceiling at that moment). Returns at "quit".
inline void serve(const std::function<void()>& fn, const MeasureOptions& o, const std::function<double()>& probe = {}) {
  const int64_t iters = warm_up_and_calibrate(fn, o);
  std::printf("{\"ready\":true,\"iters_per_repeat\":%lld}\n", static_cast<long long>(iters));
  std::fflush(stdout);
  for (std::string line; std::getline(std::cin, line) && line != "quit";) {
    if (line != "run") {
      std::printf("{\"error\":\"unknown command\"}\n");
    } else {
      const double p = probe ? probe() : 0.0;
      const double s = time_repeat(fn, iters);
      if (probe)
        std::printf("{\"s\":%.9g,\"probe\":%.9g}\n", s, p);
      else
        std::printf("{\"s\":%.9g}\n", s);
    }
    std::fflush(stdout);
  }
}

// Peak resident set size of this process (getrusage ru_maxrss, KiB on Linux) in MiB.
inline double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;
}

// Resident set size of this process now (VmRSS of /proc/self/status) in MiB; 0 where /proc is missing.
inline double current_rss_mib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0.0;
  char line[256];
  long long kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmRSS: %lld kB", &kib) == 1) break;
  std::fclose(f);
  return double(kib) / 1024.0;
}

}  // namespace attn::bench
