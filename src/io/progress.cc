// src/io/progress.cc — one-line progress bar (see include/attn/io/progress.h).
#include "attn/io/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace attn::io {
namespace {

std::string printf_str(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = int64_t(seconds);
  char buf[48];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%lld:%02d:%02d", (long long)(s / 3600), int(s / 60 % 60), int(s % 60));
  else
    std::snprintf(buf, sizeof(buf), "%02d:%02d", int(s / 60), int(s % 60));
  return buf;
}

ProgressBar::ProgressBar(int64_t total, ProgressBarOptions o)
    : total_(total), step_(o.initial), initial_(o.initial), o_(std::move(o)),
      start_(std::chrono::steady_clock::now()) {
  if (o_.bar_width < 0) throw std::invalid_argument("ProgressBar: bar_width < 0");
  if (!o_.stream) o_.stream = stderr;
  tty_ = o_.tty ? *o_.tty : bool(isatty(fileno(o_.stream)));
}

ProgressBar::~ProgressBar() {
  try {
    finish();
  } catch (...) {
  }
}

double ProgressBar::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::update(int64_t n) {
  step_ += n;
  maybe_print(false);
}

void ProgressBar::update(int64_t n, const ProgressStats& stats) {
  stats_ = stats;
  update(n);
}

void ProgressBar::set_step(int64_t step) {
  step_ = step;
  maybe_print(false);
}

void ProgressBar::set_postfix(const ProgressStats& stats) { stats_ = stats; }

std::string ProgressBar::format(double elapsed_s) const {
  std::string line = o_.desc;
  if (!line.empty()) line += ' ';
  if (total_ > 0) {
    double frac = std::clamp(double(step_) / double(total_), 0.0, 1.0);
    line += printf_str("%3.0f%%", std::floor(frac * 100.0));
    if (o_.bar_width > 0) {
      auto filled = int(frac * o_.bar_width);
      line += '|';
      line.append(size_t(filled), '#');
      line.append(size_t(o_.bar_width - filled), ' ');
      line += '|';
    }
    line += ' ' + std::to_string(step_) + '/' + std::to_string(total_);
  } else {
    line += std::to_string(step_);
  }
  double done = double(step_ - initial_);
  double rate = elapsed_s > 0 && done > 0 ? done / elapsed_s : 0.0;
  line += " [" + format_duration(elapsed_s);
  if (total_ > 0) line += '<' + (rate > 0 ? format_duration(double(total_ - std::min(step_, total_)) / rate) : "?");
  if (rate >= 1.0) line += ", " + printf_str("%.2f", rate) + ' ' + o_.unit + "/s]";
  else if (rate > 0) line += ", " + printf_str("%.2f", 1.0 / rate) + " s/" + o_.unit + ']';
  else line += ", ? " + o_.unit + "/s]";
  for (const auto& [name, value] : stats_) line += ' ' + name + '=' + printf_str("%.4g", value);
  return line;
}

void ProgressBar::print_line(double elapsed_s) {
  std::string line = format(elapsed_s);
  if (tty_) {
    size_t len = line.size();
    if (len < last_len_) line.append(last_len_ - len, ' ');  // blank the tail of a longer previous line
    last_len_ = len;
    std::fprintf(o_.stream, "\r%s", line.c_str());
  } else {
    std::fprintf(o_.stream, "%s\n", line.c_str());
  }
  std::fflush(o_.stream);
  last_print_ = elapsed_s;
}

void ProgressBar::maybe_print(bool force) {
  if (finished_) return;
  double t = elapsed();
  bool due;
  if (tty_)
    due = last_print_ < 0 || t - last_print_ >= o_.refresh_interval_s || (total_ > 0 && step_ >= total_);
  else
    due = t - std::max(last_print_, 0.0) >= o_.print_interval_s;
  if (force || due) print_line(t);
}

void ProgressBar::finish() {
  if (finished_) return;
  maybe_print(true);
  finished_ = true;
  if (tty_) {
    std::fputc('\n', o_.stream);
    std::fflush(o_.stream);
  }
}

}  // namespace attn::io
