// bench/attn_bench.cc — attn's side of `make bench` (bench/run.py runs it once per workload).
//
//   attn_bench --list                              # workload names, one per line
//   attn_bench gemm_2048 --threads 2               # prints one JSON object:
//   {"workload":"gemm_2048","value":215.3,"unit":"GFLOP/s","median_s":0.0798,"peak_rss_mib":61.2,...}
//
// Each workload builds its inputs, then `measure` runs warm-up iterations and reports the median
// time per iteration over several repeats. The PyTorch twin of every workload is in
// bench/torch_bench.py (same names, shapes and units). To add a workload: add a row to kWorkloads
// here, a function in torch_bench.py and a row in bench/run.py's WORKLOADS.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/attn.h"
#include "attn/train/classifier.h"
#include "bench_util.h"

using namespace attn;

namespace {

struct Result {
  double value = 0;  // throughput in `unit`
  std::string unit;
  bench::Timing timing;
};

// Training step of a classifier: forward, cross-entropy, backward, Adam.
Result train_step(const std::shared_ptr<nn::Module>& model, const Tensor& x, const Tensor& y) {
  optim::Adam opt(model->parameters(), {.lr = 1e-3});
  bench::Timing t = bench::measure([&] {
    Tensor loss = cross_entropy((*model)(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
  });
  return {1.0 / t.median_s, "steps/s", t};
}

// Forward + backward of a row-wise op on (64 * 128, 512); the gradient is a fixed random tensor.
Result fwd_bwd(const std::function<Tensor(const Tensor&)>& op, const std::vector<Tensor>& params = {}) {
  Tensor x = randn({64 * 128, 512}, {.requires_grad = true});  // (B * T, C)
  Tensor g = randn({64 * 128, 512});
  bench::Timing t = bench::measure([&] {
    x.set_grad(Tensor());
    for (auto p : params) p.set_grad(Tensor());
    Tensor y = op(x);
    y.backward(g);
  });
  return {1.0 / t.median_s, "it/s", t};
}

struct Workload {
  const char* name;
  std::function<Result()> run;
};

const std::vector<Workload> kWorkloads = {
    {"gemm_2048",
     [] {
       const int64_t n = 2048;
       Tensor a = randn({n, n}), b = randn({n, n});
       bench::Timing t = bench::measure([&] { (void)matmul(a, b); }, {.warmup = 2, .repeats = 7});
       return Result{2.0 * double(n) * double(n) * double(n) / t.median_s / 1e9, "GFLOP/s", t};
     }},
    {"mlp_train_step",
     [] {
       auto model = train::make_mlp();  // 784-512-256-10
       return train_step(model, randn({128, 1, 28, 28}), randint(0, 10, {128}));
     }},
    {"cnn_train_step",
     [] {
       auto model = train::make_cnn();
       return train_step(model, randn({64, 1, 28, 28}), randint(0, 10, {64}));
     }},
    {"softmax_fwd_bwd", [] { return fwd_bwd([](const Tensor& x) { return softmax(x, -1); }); }},
    {"layer_norm_fwd_bwd",
     [] {
       Tensor w = ones({512}, {.requires_grad = true}), b = zeros({512}, {.requires_grad = true});
       return fwd_bwd([w, b](const Tensor& x) { return layer_norm(x, {512}, w, b); }, {w, b});
     }},
    {"gelu_fwd_bwd", [] { return fwd_bwd([](const Tensor& x) { return gelu(x); }); }},
};

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s --list | <workload> [--threads N]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string name;
  int threads = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--list") {
      for (auto& w : kWorkloads) std::printf("%s\n", w.name);
      return 0;
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (!a.empty() && a[0] != '-' && name.empty()) {
      name = a;
    } else {
      return usage(argv[0]);
    }
  }
  if (name.empty()) return usage(argv[0]);
  for (auto& w : kWorkloads) {
    if (name != w.name) continue;
    if (threads > 0) omp_set_num_threads(threads);
    manual_seed(0);
    try {
      Result r = w.run();
      nlohmann::ordered_json j = {{"workload", name},
                                  {"value", r.value},
                                  {"unit", r.unit},
                                  {"median_s", r.timing.median_s},
                                  {"min_s", r.timing.min_s},
                                  {"max_s", r.timing.max_s},
                                  {"iters_per_repeat", r.timing.iters_per_repeat},
                                  {"repeats", r.timing.repeats},
                                  {"threads", omp_get_max_threads()},
                                  {"peak_rss_mib", bench::peak_rss_mib()}};
      std::printf("%s\n", j.dump().c_str());
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "attn_bench %s: %s\n", name.c_str(), e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "attn_bench: unknown workload '%s' (--list shows them)\n", name.c_str());
  return 2;
}
