// bench/bench_job.h — one workload of attn_bench, built and ready to time (shared by attn_bench.cc and
// the workload files beside it: rnn_workloads.h, hf_bench.cc).
//
//   attn::bench::Job job{.iteration = [] { step(); }, .units_per_iteration = 2048, .unit = "tokens/s"};
//   // attn_bench times job.iteration; throughput = units_per_iteration / seconds per iteration, in `unit`
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "bench_util.h"

namespace attn::bench {

struct Job {
  std::function<void()> iteration{};
  double units_per_iteration = 1;
  std::string unit{};
  MeasureOptions options{};
  std::function<double()> probe{};                                 // paired mode: reported per repeat
  std::function<void()> check{};                                   // after timing: throws if results are off
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // workload-specific fields
};

}  // namespace attn::bench
