// bench/bench_job.h — one attn_bench workload, built and ready to time (attn_bench.cc's kWorkloads rows
// return one; bench/hf_bench.cc builds the Hugging Face model rows).
//
//   attn::bench::Job job{.iteration = [=] { step(); }, .units_per_iteration = 32, .unit = "tokens/s"};
//   attn::bench::Timing t = attn::bench::measure(job.iteration, job.options);   // bench_util.h
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "bench_util.h"

namespace attn::bench {

// `iteration` runs once; throughput = units_per_iteration / seconds per iteration, in `unit`.
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
