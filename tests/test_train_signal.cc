// tests/test_train_signal.cc — Ctrl-C during training: the attn CLI, run as a child process, gets SIGINT
// (or SIGTERM) once its first checkpoint exists; it must finish the step, write a checkpoint of that
// step, print its JSON line with "interrupted": true and exit with 128 + the signal; `--resume` (the
// translator resumes by default) then ends bit-identical to an uninterrupted run.
//
// The child runs with ATTN_STOP_AFTER_FIRST_CHECKPOINT=1: it stops itself (SIGSTOP) right after its first
// checkpoint, the test sends the signal and continues it, so the signal lands at a known step. (Polling
// for the file raced: on a loaded host the short MLP run could end before the signal came.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attn/data/dataset.h"
#include "attn/io/checkpoint.h"
#include "translation_corpus.h"

#ifdef ATTN_CLI_PATH  // built without the CLI: nothing to run

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_signal_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Starts `attn args...` with stdout to `log` and stderr discarded; `extra_env` ("NAME=value") is added to
// the environment.
pid_t spawn(const std::vector<std::string>& args, const fs::path& log, std::vector<std::string> extra_env = {}) {
  std::vector<std::string> all = {ATTN_CLI_PATH};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) envp.push_back(*e);
  for (auto& e : extra_env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string log_path = log.string();
  pid_t pid = ::fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null = ::open("/dev/null", O_WRONLY);
    if (out < 0 || null < 0) ::_exit(126);
    ::dup2(out, 1);
    ::dup2(null, 2);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

int wait_exit_status(pid_t pid) {
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << "the child did not exit normally (killed by signal "
                                 << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << ")";
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Runs attn to completion; its last stdout line, parsed.
json run_to_end(const std::vector<std::string>& args, const fs::path& log) {
  pid_t pid = spawn(args, log);
  EXPECT_EQ(wait_exit_status(pid), 0) << "attn exited with an error; stdout in " << log;
  std::ifstream f(log);
  std::string line, last;
  while (std::getline(f, line))
    if (!line.empty()) last = line;
  return json::parse(last);
}

// Runs attn until it stops itself after its first checkpoint (`file`), sends `sig` and lets it go on;
// returns its exit status.
int run_and_interrupt(const std::vector<std::string>& args, const fs::path& log, const fs::path& file, int sig) {
  pid_t pid = spawn(args, log, {"ATTN_STOP_AFTER_FIRST_CHECKPOINT=1"});
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WUNTRACED), pid);
  if (!WIFSTOPPED(status)) {
    ADD_FAILURE() << "attn ended before stopping after its first checkpoint (exit status " << status << ")";
    return -1;
  }
  EXPECT_TRUE(fs::exists(file)) << "attn stopped before writing " << file;
  ::kill(pid, sig);
  ::kill(pid, SIGCONT);
  return wait_exit_status(pid);
}

json last_json_line(const fs::path& log) {
  std::ifstream f(log);
  std::string line, last;
  while (std::getline(f, line))
    if (!line.empty()) last = line;
  return json::parse(last);
}

void expect_same_model(const fs::path& a, const fs::path& b) {
  attn::io::Checkpoint ca = attn::io::load_checkpoint(a.string()), cb = attn::io::load_checkpoint(b.string());
  EXPECT_EQ(ca.step, cb.step);
  ASSERT_EQ(ca.model.size(), cb.model.size());
  for (auto& [k, t] : ca.model)
    EXPECT_EQ(t.to_vector<float>(), cb.model.at(k).to_vector<float>()) << k << " differs after the resume";
  EXPECT_EQ(ca.rng.offset, cb.rng.offset);
}

}  // namespace

TEST(TrainSignal, FashionSigintLeavesAResumableCheckpoint) {
  if (!attn::data::FashionMNIST::available(kFashionDir)) GTEST_SKIP() << "no Fashion-MNIST in " << kFashionDir;
  fs::path root = temp_dir("fashion");
  // 1,500 images in batches of 16: 94 steps per epoch, 6 epochs; the MLP with dropout (RNG state).
  const std::vector<std::string> common = {"train", "--model", "mlp", "--epochs", "6", "--dropout", "0.2",
                                           "--limit-train", "1500", "--limit-test", "200", "--batch-size", "16",
                                           "--checkpoint-every", "5", "--seed", "3", "--threads", "1",
                                           "--data-dir", kFashionDir, "--no-progress"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  json full = run_to_end(with({"--out", (root / "full").string()}), root / "full.log");
  ASSERT_TRUE(full.at("finished").get<bool>());

  fs::path part = root / "part";
  int status = run_and_interrupt(with({"--out", part.string()}), root / "part1.log", part / "checkpoint.safetensors", SIGINT);
  EXPECT_EQ(status, 128 + SIGINT);
  json stopped = last_json_line(root / "part1.log");
  EXPECT_TRUE(stopped.at("interrupted").get<bool>());
  EXPECT_FALSE(stopped.at("finished").get<bool>());
  int64_t steps = stopped.at("steps").get<int64_t>();
  EXPECT_GE(steps, 5);
  EXPECT_LT(steps, full.at("steps").get<int64_t>()) << "the signal came after the run ended: the test proves nothing";
  // the checkpoint holds the step the run stopped at, not only the last periodic one
  EXPECT_EQ(attn::io::load_checkpoint((part / "checkpoint.safetensors").string()).step, steps);

  json resumed = run_to_end(with({"--out", part.string(), "--resume"}), root / "part2.log");
  EXPECT_TRUE(resumed.at("resumed").get<bool>());
  EXPECT_TRUE(resumed.at("finished").get<bool>());
  EXPECT_FALSE(resumed.at("interrupted").get<bool>());
  for (const char* key : {"test_accuracy", "test_loss", "train_loss", "train_accuracy", "epochs", "steps"})
    EXPECT_EQ(full.at(key), resumed.at(key)) << key;
  expect_same_model(root / "full" / "checkpoint.safetensors", part / "checkpoint.safetensors");
  fs::remove_all(root);
}

TEST(TrainSignal, TranslatorSigtermLeavesAResumableCheckpoint) {
  fs::path root = temp_dir("translator");
  test_corpus::write_word_corpus(root / "c", 400, 7);
  const std::vector<std::string> common = {"train-translator", "--train", (root / "c").string(), "--dev",
                                           (root / "c").string(), "--vocab-size", "48", "--d-model", "32",
                                           "--heads", "4", "--layers", "1", "--ff", "64", "--max-tokens", "400",
                                           "--warmup", "50", "--lr-factor", "0.3", "--max-steps", "40",
                                           "--eval-every", "10", "--eval-sentences", "8", "--no-progress"};
  auto with = [&](const fs::path& out) {
    std::vector<std::string> a = common;
    a.insert(a.end(), {"--out", out.string()});
    return a;
  };
  json full = run_to_end(with(root / "full"), root / "full.log");
  EXPECT_EQ(full.at("steps").get<int64_t>(), 40);

  fs::path part = root / "part";
  int status = run_and_interrupt(with(part), root / "part1.log", part / "checkpoint.safetensors", SIGTERM);
  EXPECT_EQ(status, 128 + SIGTERM);
  json stopped = last_json_line(root / "part1.log");
  EXPECT_TRUE(stopped.at("interrupted").get<bool>());
  int64_t steps = stopped.at("steps").get<int64_t>();
  EXPECT_GE(steps, 10);
  EXPECT_LT(steps, 40) << "the signal came after the run ended: the test proves nothing";
  EXPECT_EQ(attn::io::load_checkpoint((part / "checkpoint.safetensors").string()).step, steps);

  json resumed = run_to_end(with(part), root / "part2.log");  // train-translator resumes by default
  EXPECT_EQ(resumed.at("steps").get<int64_t>(), 40);
  for (const char* key : {"dev_loss", "dev_bleu", "best_dev_bleu"}) EXPECT_EQ(full.at(key), resumed.at(key)) << key;
  expect_same_model(root / "full" / "checkpoint.safetensors", part / "checkpoint.safetensors");
  expect_same_model(root / "full" / "best.safetensors", part / "best.safetensors");
  fs::remove_all(root);
}
#endif  // ATTN_CLI_PATH
