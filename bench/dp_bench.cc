// bench/dp_bench.cc — the translator's training step, data parallel: attn's side of bench/dp_run.py
// (make bench's transformer_train_step_dp2 lines).
//
//   attn_dp_bench                              # one process: the attn-1proc baseline
//   mpirun -np 2 attn_dp_bench                 # two ranks, each its own 32-sentence batch; rank 0 prints:
//   {"value":2890.1,"unit":"tokens/s","ranks":2,"median_s":1.42,"exposed_reduce_s":0.05,...}
//   ATTN_DP_OVERLAP=0 mpirun -np 2 attn_dp_bench   # every bucket reduced after backward (no overlap)
//
// value = tokens of all ranks per second (each rank: 32 x (32 + 32) tokens per step). exposed_reduce_s is
// the median time per step spent in GradientReducer::finish(), i.e. the reduction not hidden by backward.
// One thread per process unless --threads says otherwise; every rank runs the same number of steps.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/attn.h"
#include "attn/dist/data_parallel.h"
#include "bench_translator.h"
#include "bench_util.h"

using namespace attn;

int main(int argc, char** argv) {
  int threads = 1, steps = 5, warmup = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--steps") steps = std::atoi(argv[i + 1]);
    else if (a == "--warmup") warmup = std::atoi(argv[i + 1]);
    else return std::fprintf(stderr, "usage: %s [--threads N] [--steps N] [--warmup N]\n", argv[0]), 2;
  }
  omp_set_num_threads(threads);
  std::shared_ptr<dist::Communicator> comm = dist::world();
  const char* ov = std::getenv("ATTN_DP_OVERLAP");
  const bool overlap = !(ov && std::string(ov) == "0");
  manual_seed(0);  // the same initial model everywhere (the Trainer would broadcast rank 0's)
  auto model = std::make_shared<models::Translator>(bench::bench_translator_options());
  model->train();
  const int64_t V = model->options.vocab_size;
  manual_seed(uint64_t(1 + comm->rank()));  // each rank its own batch
  Tensor src = randint(4, V, {bench::kSentences, bench::kSrcLen});
  Tensor tgt_in = randint(4, V, {bench::kSentences, bench::kTgtLen});
  Tensor tgt_out = randint(4, V, {bench::kSentences, bench::kTgtLen});
  optim::Adam opt(model->parameters(), {.lr = 1e-4, .betas = {0.9, 0.98}, .eps = 1e-9});
  std::unique_ptr<dist::GradientReducer> reducer;
  if (comm->size() > 1)
    reducer = std::make_unique<dist::GradientReducer>(comm, model->parameters(), dist::GradientReducerOptions{.overlap = overlap});
  std::vector<double> step_s, exposed_s;
  for (int i = 0; i < warmup + steps; ++i) {
    double t0 = bench::now_s(), wait0 = reducer ? reducer->stats().wait_s : 0.0;
    Tensor logits = model->forward(src, tgt_in);  // (N, T, V)
    Tensor loss = cross_entropy(logits.flatten(0, 1), tgt_out.flatten(),
                                {.ignore_index = model->options.pad_id, .label_smoothing = 0.1});
    if (reducer) reducer->arm();
    loss.backward();
    if (reducer) reducer->finish();
    opt.step();
    opt.zero_grad();
    if (i < warmup) continue;
    step_s.push_back(bench::now_s() - t0);
    exposed_s.push_back(reducer ? reducer->stats().wait_s - wait0 : 0.0);
  }
  // The slowest rank sets the pace: rank 0 reports the median of the per-step maxima over the ranks.
  std::vector<double> mx(step_s.size());
  for (size_t i = 0; i < step_s.size(); ++i) {
    std::vector<uint64_t> us = comm->all_gather(uint64_t(step_s[i] * 1e9));
    mx[i] = double(*std::max_element(us.begin(), us.end())) * 1e-9;
  }
  auto median = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
  if (comm->rank() == 0) {
    const double tokens = double(comm->size() * (src.numel() + tgt_in.numel()));
    nlohmann::ordered_json j = {{"value", tokens / median(mx)},
                                {"unit", "tokens/s"},
                                {"ranks", comm->size()},
                                {"threads", threads},
                                {"median_s", median(mx)},
                                {"exposed_reduce_s", median(exposed_s)},
                                {"overlap", overlap},
                                {"reduce_bytes", reducer ? reducer->stats().bytes : 0.0},
                                {"buckets", reducer ? reducer->num_buckets() : 0},
                                {"parameters", model->num_parameters()},
                                {"peak_rss_mib", bench::peak_rss_mib()}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}
