// attn/io/progress.h — a one-line progress bar for training loops (tqdm-like), on stderr.
//
//   attn::io::ProgressBar bar(steps_per_epoch, {.desc = "epoch 1"});
//   for (int64_t i = 0; i < steps_per_epoch; ++i) {
//     ...
//     bar.update(1, {{"loss", running_loss}, {"acc", running_acc}});
//   }
//   bar.finish();   // final state + newline (also done by the destructor)
//
// On a terminal the line is redrawn in place with '\r' (at most every refresh_interval_s):
//   epoch 1  45%|#############                 | 450/1000 [00:12<00:15, 37.50 it/s] loss=0.3412 acc=0.912
// When the stream is not a terminal (a log file, CI), a plain line is printed every print_interval_s
// instead, plus one at finish().
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace attn::io {

struct ProgressBarOptions {
  std::string desc = {};            // printed first, e.g. "epoch 1"
  std::string unit = "it";          // rate shown as "<n> it/s" (or "s/it" when slower than 1/s)
  int bar_width = 30;               // characters between the '|'; 0: no bar
  double refresh_interval_s = 0.1;  // terminal: redraw at most this often
  double print_interval_s = 10.0;   // not a terminal: a line at most this often
  std::FILE* stream = nullptr;      // default stderr
  std::optional<bool> tty = {};     // default: isatty(stream)
  int64_t initial = 0;              // starting step (e.g. when resuming)
};

using ProgressStats = std::vector<std::pair<std::string, double>>;  // (name, value), in the order given

class ProgressBar {
 public:
  // total <= 0: unknown (no percentage, bar or ETA).
  explicit ProgressBar(int64_t total, ProgressBarOptions o = {});
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(int64_t n = 1);                          // advance by n steps
  void update(int64_t n, const ProgressStats& stats);  // advance and replace the running stats
  void set_step(int64_t step);                         // absolute position
  void set_postfix(const ProgressStats& stats);        // replace the running stats (shown after the rate)
  void finish();                                       // prints the final line and a newline; idempotent

  int64_t step() const { return step_; }
  int64_t total() const { return total_; }
  double elapsed() const;  // seconds since construction
  // The line for the current state at `elapsed_s` (no '\r', no newline).
  std::string format(double elapsed_s) const;

 private:
  void maybe_print(bool force);
  void print_line(double elapsed_s);
  int64_t total_, step_, initial_;
  ProgressBarOptions o_;
  ProgressStats stats_;
  bool tty_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_;
  double last_print_ = -1.0;  // elapsed seconds at the last print; < 0: never printed
  size_t last_len_ = 0;       // terminal: width of the previous line, to blank its tail
};

// "05:07", "1:02:03", "?" for non-finite or negative values.
std::string format_duration(double seconds);

}  // namespace attn::io
