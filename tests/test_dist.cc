// tests/test_dist.cc — data-parallel training over MPI: runs tests/dist_worker.cc under `mpirun -np 2`
// (and alone as the one-process reference, with the same single thread) and compares the checkpoints
// and logged losses. Also the gradient buckets and the single-process communicator in this process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "attn/attn.h"
#include "attn/dist/data_parallel.h"
#include "attn/io/checkpoint.h"
#include "dist_job.h"
#include "translation_corpus.h"

using namespace attn;
namespace fs = std::filesystem;

TEST(DataParallel, ReducerOnOneProcessKeepsGradientsAndBucketsBySize) {
  test::DistJob job({});
  std::vector<Tensor> params = job.model().parameters();  // (8, 4) (8) (2, 8) (2): 160 + 32 + 64 + 8 bytes
  dist::GradientReducer reducer(dist::local_communicator(), params, {.bucket_bytes = 72});
  EXPECT_EQ(reducer.num_buckets(), 3u);  // reverse order, up to 72 bytes: {(2), (2, 8)}, {(8)}, {(8, 4)}
  job.set_shard({0, 1});
  train::StepLoss l = job.train_loss(0, 0);
  reducer.arm();
  l.loss.backward();
  std::vector<std::vector<float>> before;
  for (auto& p : params) before.push_back(p.grad().to_vector<float>());
  reducer.finish();
  for (size_t i = 0; i < params.size(); ++i) EXPECT_EQ(params[i].grad().to_vector<float>(), before[i]) << i;
  EXPECT_EQ(reducer.stats().backward_launched, 3);  // every bucket started from the hooks, during backward
  EXPECT_EQ(reducer.stats().finish_launched, 0);
}

TEST(DataParallel, BatchShardsCoverTheBatch) {
  for (int n : {1, 2, 3, 7})
    for (int64_t rows : {0, 1, 5, 8}) {
      int64_t next = 0;
      for (int r = 0; r < n; ++r) {
        auto [first, last] = train::BatchShard{r, n}.rows(rows);
        EXPECT_EQ(first, next);
        EXPECT_LE(last - first, (rows + n - 1) / n);
        next = last;
      }
      EXPECT_EQ(next, rows);
    }
}

#ifdef ATTN_MPIEXEC

namespace {

struct WorkerRun {
  int status = -1;
  std::string output;
  double seconds = 0;
};

// `env` then `program` (under mpirun when np > 0, else alone), one thread per process. mpirun runs as root
// in CI containers, and over shared memory only (no network there).
WorkerRun run_worker(int np, const std::string& args, const std::string& env = "",
                     const std::string& program = ATTN_DIST_WORKER) {
  // The ranks run without LeakSanitizer (ASan build): Open MPI's components are dlopen'ed and dlclose'd by
  // MPI_Finalize with allocations they never free, which LSan then reports from "<unknown module>", where
  // no suppression by library name can reach them. Address and UB checks stay on.
  std::string cmd = env + " ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 OMP_NUM_THREADS=1 timeout -k 5 240 ";
  if (np > 0)
    cmd += std::string(ATTN_MPIEXEC) + " --allow-run-as-root --oversubscribe --mca btl self,vader "
           "--mca btl_vader_single_copy_mechanism none -np " + std::to_string(np) + " -x OMP_NUM_THREADS ";
  cmd += program + " " + args + " 2>&1";
  auto t0 = std::chrono::steady_clock::now();
  WorkerRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  r.status = ::pclose(p);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_dist_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p;
}

std::vector<double> logged(const fs::path& dir, const std::string& tag = "train/loss") {
  std::vector<double> out;
  std::ifstream f(dir / "metrics.jsonl");
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains(tag)) out.push_back(j.at(tag).get<double>());
  }
  return out;
}

// Largest |a - b| over the model tensors of two checkpoints (same keys required).
double max_param_diff(const fs::path& a, const fs::path& b) {
  io::Checkpoint ca = io::load_checkpoint((a / "checkpoint.safetensors").string());
  io::Checkpoint cb = io::load_checkpoint((b / "checkpoint.safetensors").string());
  EXPECT_EQ(ca.step, cb.step);
  EXPECT_EQ(ca.model.size(), cb.model.size());
  double worst = 0;
  for (auto& [k, t] : ca.model) {
    std::vector<float> x = t.to_vector<float>(), y = cb.model.at(k).to_vector<float>();
    EXPECT_EQ(x.size(), y.size()) << k;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) worst = std::max(worst, double(std::abs(x[i] - y[i])));
  }
  return worst;
}

#define EXPECT_RAN(run) EXPECT_EQ((run).status, 0) << (run).output

}  // namespace

TEST(DataParallelMpi, CollectivesOnEveryDtype) {
  WorkerRun r = run_worker(2, "selftest");
  EXPECT_RAN(r);
  EXPECT_NE(r.output.find("rank 1 of 2: self test ok (mpi)"), std::string::npos) << r.output;
}

TEST(DataParallelMpi, TwoProcessesEqualOneProcessOnTheSameGlobalBatch) {
  fs::path one = temp_dir("one"), two = temp_dir("two");
  EXPECT_RAN(run_worker(0, one.string() + " 6"));
  EXPECT_RAN(run_worker(2, two.string() + " 6"));  // uneven masks: the ranks' shards differ in weight
  std::vector<double> a = logged(one), b = logged(two);
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6 * std::abs(a[i])) << "step " << i + 1;
  EXPECT_LT(max_param_diff(one, two), 1e-5);
  EXPECT_GT(std::abs(a[0] - a[5]), 1e-3) << "the run did not train";
  fs::remove_all(one), fs::remove_all(two);
}

TEST(DataParallelMpi, DeterministicModeIsBitIdenticalToOneProcess) {
  // Equal shards; one process accumulates the two halves of each batch, which is what two ranks add.
  fs::path one = temp_dir("det1"), two = temp_dir("det2");
  EXPECT_RAN(run_worker(0, one.string() + " 5 uneven=0 batch=4 accum=2"));
  EXPECT_RAN(run_worker(2, two.string() + " 5 uneven=0 batch=8", "ATTN_DIST_DETERMINISTIC=1"));
  EXPECT_EQ(max_param_diff(one, two), 0.0);
  fs::remove_all(one), fs::remove_all(two);
}

TEST(DataParallelMpi, ResumesOnAnotherProcessCount) {
  fs::path ref = temp_dir("ref"), a = temp_dir("2to1"), b = temp_dir("1to2");
  EXPECT_RAN(run_worker(0, ref.string() + " 6"));
  EXPECT_RAN(run_worker(2, a.string() + " 3"));
  EXPECT_RAN(run_worker(0, a.string() + " 6"));
  EXPECT_RAN(run_worker(0, b.string() + " 3"));
  EXPECT_RAN(run_worker(2, b.string() + " 6"));
  EXPECT_LT(max_param_diff(ref, a), 1e-5);
  EXPECT_LT(max_param_diff(ref, b), 1e-5);
  fs::remove_all(ref), fs::remove_all(a), fs::remove_all(b);
}

TEST(DataParallelMpi, AKilledRankEndsTheJobAndTheCheckpointStaysResumable) {
  fs::path dir = temp_dir("kill");
  WorkerRun r = run_worker(2, dir.string() + " 6 kill_rank=1 kill_batch=3", "ATTN_DIST_TIMEOUT=30");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(r.seconds, 60);
  EXPECT_NE(r.output.find("rank 1"), std::string::npos) << "the message does not name the dead rank:\n" << r.output;
  io::Checkpoint ck = io::load_checkpoint((dir / "checkpoint.safetensors").string());
  EXPECT_GE(ck.step, 2);
  EXPECT_RAN(run_worker(0, dir.string() + " 6"));
  EXPECT_EQ(io::load_checkpoint((dir / "checkpoint.safetensors").string()).step, 6);
  fs::remove_all(dir);
}

TEST(DataParallelMpi, AHungRankEndsTheJobAtTheDeadline) {
  fs::path dir = temp_dir("hang");
  WorkerRun r = run_worker(2, dir.string() + " 6 hang_rank=1 hang_batch=2", "ATTN_DIST_TIMEOUT=2");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(r.seconds, 60);
  EXPECT_NE(r.output.find("rank 0 of 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("got no answer from the other ranks in 2 s"), std::string::npos) << r.output;
  fs::remove_all(dir);
}

TEST(DataParallelMpi, RanksWithAnotherModelRefuseToTrain) {
  fs::path dir = temp_dir("mismatch");
  WorkerRun r = run_worker(2, dir.string() + " 6 hidden_rank1=9");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("data-parallel training refused: rank 1 has another model"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "checkpoint.safetensors"));
  fs::remove_all(dir);
}

#ifdef ATTN_CLI_PATH
TEST(DataParallelMpi, TranslatorCliTrainsOnTwoProcessesAsOnOne) {
  fs::path root = temp_dir("cli");
  fs::create_directories(root);
  std::set<std::string> seen = test_corpus::write_word_corpus(root / "train", 200, 7);
  test_corpus::write_word_corpus(root / "dev", 20, 2024, seen);
  std::string args = "train-translator --train " + (root / "train").string() + " --dev " + (root / "dev").string() +
                     " --vocab-size 40 --d-model 32 --heads 2 --layers 1 --ff 64 --dropout 0 --max-tokens 300"
                     " --warmup 10 --max-steps 6 --eval-every 6 --eval-sentences 5 --no-progress --out ";
  WorkerRun one = run_worker(0, args + (root / "one").string(), "", ATTN_CLI_PATH);
  WorkerRun two = run_worker(2, args + (root / "two").string(), "", ATTN_CLI_PATH);
  ASSERT_EQ(one.status, 0) << one.output;
  ASSERT_EQ(two.status, 0) << two.output;
  size_t results = 0;  // rank 0 alone prints the result line
  for (size_t at = two.output.find("\"steps\":6"); at != std::string::npos; at = two.output.find("\"steps\":6", at + 1))
    ++results;
  EXPECT_EQ(results, 1u) << two.output;
  // Losses, not weights: the attention key biases get a gradient that is zero but for rounding, which
  // Adam (eps 1e-9) turns into full steps of either sign; they change no attention weight.
  for (const char* tag : {"dev/loss", "dev/chrf"}) {
    std::vector<double> a = logged(root / "one", tag), b = logged(root / "two", tag);
    ASSERT_EQ(a.size(), b.size()) << tag;
    ASSERT_FALSE(a.empty()) << tag;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * std::abs(a[i])) << tag << " " << i;
  }
  fs::remove_all(root);
}
#endif

#endif  // ATTN_MPIEXEC
