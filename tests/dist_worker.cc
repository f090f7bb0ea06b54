// tests/dist_worker.cc — one rank of the data-parallel tests (tests/test_dist.cc runs it under
// `mpirun -np N`, or alone as the one-process reference): trains tests/dist_job.h with the Trainer.
//
//   attn_dist_worker OUT_DIR MAX_STEPS [batch=8] [uneven=1] [accum=1] [hidden=8] [hidden_rank1=H]
//                    [kill_rank=R kill_batch=B] [hang_rank=R hang_batch=B]
//   attn_dist_worker selftest      (the communicator's collectives)
// Writes OUT_DIR/checkpoint.safetensors and metrics.jsonl (rank 0); exits 1 with the error on stderr.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include "attn/dist/communicator.h"
#include "dist_job.h"

using namespace attn;

namespace {

// Kills its own process (SIGKILL, as the OOM killer or a lost node would) or hangs at a chosen batch.
class FaultyJob : public test::DistJob {
 public:
  FaultyJob(test::DistJobOptions o, int rank, int64_t batch, bool hang)
      : DistJob(o), rank_(rank), batch_(batch), hang_(hang) {}
  train::StepLoss train_loss(int64_t epoch, int64_t batch) override {
    if (shard().rank == rank_ && calls_++ == batch_) {
      if (!hang_) std::raise(SIGKILL);
      for (;;) pause();  // a rank stuck outside MPI: the others' deadline ends the job
    }
    return DistJob::train_loss(epoch, batch);
  }

 private:
  int rank_;
  int64_t batch_, calls_ = 0;
  bool hang_;
};

// The communicator's collectives on every dtype: throws on a wrong result.
void self_test() {
  auto comm = dist::world();
  const int r = comm->rank(), n = comm->size();
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) throw std::runtime_error("self test: " + what + " on rank " + std::to_string(r));
  };
  for (bool det : {false, true}) {
    Tensor f = full({1000}, double(r + 1)), d = full({3}, 0.25 * (r + 1), {.dtype = kFloat64});
    Tensor b = full({517}, double(r + 1), {.dtype = kBFloat16});
    comm->all_reduce(f, dist::ReduceOp::Sum, det);
    comm->all_reduce(d, dist::ReduceOp::Average, det);
    auto req = comm->all_reduce_async(b, dist::ReduceOp::Sum, det);
    comm->progress();
    req->wait();
    const double sum = n * (n + 1) / 2.0;
    for (float v : f.to_vector<float>()) expect(v == float(sum), "fp32 sum");
    for (double v : d.to_vector<double>()) expect(v == 0.25 * sum / n, "fp64 average");
    for (float v : b.to_vector<float>()) expect(v == float(sum), "bf16 sum");
  }
  Tensor t = full({4, 3}, double(r));
  comm->broadcast(t, n - 1);
  for (float v : t.to_vector<float>()) expect(v == float(n - 1), "broadcast");
  std::string text = r == 0 ? std::string(100000, 'x') : "";
  comm->broadcast(text, 0);
  expect(text == std::string(100000, 'x'), "string broadcast");
  std::vector<uint64_t> all = comm->all_gather(uint64_t(10 + r));
  for (int i = 0; i < n; ++i) expect(all[size_t(i)] == uint64_t(10 + i), "all_gather");
  comm->barrier();
  std::fprintf(stderr, "rank %d of %d: self test ok (%s)\n", r, n, comm->backend().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "selftest") {
    try {
      self_test();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
    return 0;
  }
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR MAX_STEPS [key=value ...]\n", argv[0]);
    return 2;
  }
  std::map<std::string, std::string> kv;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    size_t eq = a.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "bad argument '%s' (want key=value)\n", argv[i]);
      return 2;
    }
    kv[a.substr(0, eq)] = a.substr(eq + 1);
  }
  auto get = [&](const std::string& k, int64_t def) { return kv.count(k) ? std::stoll(kv[k]) : def; };
  try {
    int rank = dist::world()->rank();
    test::DistJobOptions o{.batch = get("batch", 8), .hidden = get("hidden", 8), .uneven = get("uneven", 1) != 0};
    if (rank == 1 && kv.count("hidden_rank1")) o.hidden = get("hidden_rank1", 8);  // a mismatched rank
    bool hang = kv.count("hang_rank") > 0;
    FaultyJob job(o, int(get(hang ? "hang_rank" : "kill_rank", -1)), get(hang ? "hang_batch" : "kill_batch", -1), hang);
    train::Trainer trainer(job, {.out_dir = argv[1], .max_epochs = 100, .max_steps = std::atoll(argv[2]),
                                 .grad_accum_steps = get("accum", 1), .eval_at_stop = false, .checkpoint_every = 1,
                                 .log_every = 1, .plot = false, .progress = false,
                                 .bucket_bytes = 64});  // several buckets even for this tiny model
    train::TrainerResult r = trainer.fit();
    std::fprintf(stderr, "rank %d of %d: %lld steps\n", rank, dist::world()->size(), (long long)r.state.step);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
