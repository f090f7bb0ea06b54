// src/train/trainer.cc — the training loop shared by every job (attn/train/trainer.h).
#include "attn/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "attn/autocast.h"
#include "attn/dist/data_parallel.h"
#include "attn/io/checkpoint.h"
#include "attn/io/plot.h"
#include "attn/nn/utils.h"
#include "attn/random.h"

namespace attn::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kSchedulerPrefix = "lr_scheduler.";

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The handler only records the signal; the loop polls it after each step.
volatile std::sig_atomic_t g_pending_signal = 0;

extern "C" void record_signal(int sig) { g_pending_signal = sig; }

// Installs the handlers for SIGINT and SIGTERM for the lifetime of a fit() call. SA_RESETHAND puts
// back the default action once one arrived, so a second Ctrl-C ends the process at once.
class SignalGuard {
 public:
  explicit SignalGuard(bool enable) : active_(enable) {
    g_pending_signal = 0;
    if (!active_) return;
    struct sigaction sa = {};
    sa.sa_handler = record_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    if (!active_) return;
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

  // With ATTN_STOP_AFTER_FIRST_CHECKPOINT=1 the process stops itself (SIGSTOP) once its first checkpoint
  // is on disk, so a test can send SIGINT/SIGTERM at a known step, whatever the scheduler does.
  void checkpoint_written() {
    if (!active_ || stopped_once_) return;
    stopped_once_ = true;
    if (const char* v = std::getenv("ATTN_STOP_AFTER_FIRST_CHECKPOINT"); v && std::string(v) == "1") std::raise(SIGSTOP);
  }

 private:
  bool active_;
  bool stopped_once_ = false;
  struct sigaction old_int_ = {}, old_term_ = {};
};

json best_to_json(double best) { return std::isnan(best) ? json(nullptr) : json(best); }

double best_from_json(const json& extra) {
  const json* v = extra.contains("best") ? &extra.at("best") : extra.contains("best_bleu") ? &extra.at("best_bleu") : nullptr;
  if (!v || v->is_null()) return std::numeric_limits<double>::quiet_NaN();
  return v->get<double>();
}

}  // namespace

int64_t TrainingJob::shard_batch(int64_t /*epoch*/, int64_t local, int rank, int world_size) {
  return local * world_size + rank;
}

// ------------------------------------------------------------------------------- checkpoint files

Trainer::Trainer(TrainingJob& job, TrainerOptions options) : job_(job), options_(std::move(options)) {
  TrainerOptions& o = options_;
  // Under mpirun every Trainer job is data-parallel without being told.
  if (!o.communicator && o.world_size == 1 && dist::launched_by_mpi()) o.communicator = dist::world();
  if (o.communicator && o.communicator->size() > 1) {
    o.rank = o.communicator->rank();
    o.world_size = o.communicator->size();
  } else {
    o.communicator.reset();
  }
  if (const char* d = std::getenv("ATTN_DIST_DETERMINISTIC"); d && std::string(d) == "1") o.deterministic_reduction = true;
  auto fail = [](const std::string& what) { throw std::invalid_argument("Trainer: " + what); };
  if (o.max_epochs < 0 || o.max_steps < 0) fail("max_epochs and max_steps must be >= 0");
  if (o.grad_accum_steps < 1) fail("grad_accum_steps must be >= 1");
  if (o.clip_grad_norm < 0 || o.time_budget_s < 0) fail("clip_grad_norm and time_budget_s must be >= 0");
  if (o.eval_every < 0 || o.checkpoint_every < 0 || o.log_every < 0 || o.patience < 0)
    fail("eval_every, checkpoint_every, log_every and patience must be >= 0");
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
    fail("rank " + std::to_string(o.rank) + " is not in [0, world_size " + std::to_string(o.world_size) + ")");
  if (o.patience > 0 && o.best_metric.empty()) fail("patience needs a best_metric");
}

Trainer::~Trainer() = default;

std::string Trainer::checkpoint_path() const {
  return options_.out_dir.empty() ? std::string() : options_.out_dir + "/checkpoint.safetensors";
}
std::string Trainer::best_path() const {
  return options_.out_dir.empty() ? std::string() : options_.out_dir + "/best.safetensors";
}
std::string Trainer::plot_path() const {
  return options_.out_dir.empty() ? std::string() : options_.out_dir + "/curves.png";
}

int64_t Trainer::local_batches(int64_t epoch) {
  int64_t n = job_.num_batches(epoch);
  // Every rank takes as many steps: all batches (a shard of each) or a 1/world_size share of them.
  return options_.world_size == 1 || (options_.communicator && job_.splits_batches()) ? n : n / options_.world_size;
}

io::Checkpoint Trainer::make_checkpoint(const TrainerState& s) const {
  io::Checkpoint ck;
  ck.model = job_.model().state_dict();
  ck.optimizer = job_.optimizer().state_dict();
  if (optim::LRScheduler* sched = job_.scheduler())
    for (auto& [k, v] : sched->state_dict()) ck.optimizer[kSchedulerPrefix + k] = v;
  ck.step = s.step;
  ck.rng = default_generator().state();
  json extra = json::parse(job_.state_json());
  if (!extra.is_object()) throw std::logic_error("TrainingJob::state_json must return a JSON object");
  extra["epoch"] = s.epoch;
  extra["batch"] = s.batch;
  extra["best"] = best_to_json(s.best);
  extra["bad_evals"] = s.bad_evals;
  extra["train_seconds"] = s.train_seconds;
  extra["seconds"] = s.seconds;
  extra["precision"] = s.bf16 ? "bf16" : "fp32";
  ck.extra_json = extra.dump();
  return ck;
}

void Trainer::save(const std::string& path, const TrainerState& s) const { io::save_checkpoint(path, make_checkpoint(s)); }

// checkpoint.safetensors, if there is one.
std::optional<io::Checkpoint> Trainer::read_checkpoint() const {
  const std::string path = checkpoint_path();
  if (path.empty() || !fs::exists(path)) return std::nullopt;
  return io::load_checkpoint(path);
}

// Restores everything from a checkpoint (read from `path`, or sent by rank 0). Reads the keys of older
// checkpoints too ("loader.batch" of the classifier, "best_bleu" of the translator).
void Trainer::apply(const io::Checkpoint& ck, TrainerState& s, const std::string& path) {
  job_.load_state_json(ck.extra_json, path);  // the job's checks (same data, same batch size) come first
  try {
    json extra = json::parse(ck.extra_json);
    s.epoch = extra.at("epoch").get<int64_t>();
    s.batch = extra.contains("batch") ? extra.at("batch").get<int64_t>() : extra.at("loader").at("batch").get<int64_t>();
    s.best = best_from_json(extra);
    s.bad_evals = extra.value("bad_evals", int64_t(0));
    s.train_seconds = extra.value("train_seconds", 0.0);
    s.seconds = extra.value("seconds", 0.0);
    // a run repeats its steps bit for bit only in the precision it started with (older checkpoints: fp32)
    const std::string precision = extra.value("precision", std::string("fp32"));
    if (precision != "fp32" && precision != "bf16")
      throw std::runtime_error("\"precision\" is \"" + precision + "\", expected fp32 or bf16");
    if ((precision == "bf16") != s.bf16)
      std::fprintf(stderr, "resuming in %s, the precision of %s\n", precision.c_str(), path.c_str());
    s.bf16 = precision == "bf16";
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": bad training state in the checkpoint's attn.extra: " + e.what());
  }
  job_.model().load_state_dict(ck.model);
  std::map<std::string, Tensor> opt_state, sched_state;
  const std::string prefix = kSchedulerPrefix;
  for (auto& [k, v] : ck.optimizer) {
    if (k.compare(0, prefix.size(), prefix) == 0)
      sched_state[k.substr(prefix.size())] = v;
    else
      opt_state[k] = v;
  }
  job_.optimizer().load_state_dict(opt_state);
  if (optim::LRScheduler* sched = job_.scheduler()) {
    if (sched_state.empty()) throw std::runtime_error(path + ": this run has an LR scheduler but the checkpoint has none");
    sched->load_state_dict(sched_state);
  } else if (!sched_state.empty()) {
    throw std::runtime_error(path + ": the checkpoint has an LR scheduler state but this run has no scheduler");
  }
  default_generator().set_state(ck.rng);
  s.step = ck.step;
}

bool Trainer::load(TrainerState& s) {
  std::optional<io::Checkpoint> ck = read_checkpoint();
  if (ck) apply(*ck, s, checkpoint_path());
  return ck.has_value();
}

// ----------------------------------------------------------------------------------------- the loop

// The state of one fit() call.
struct Trainer::Run {
  Trainer& t;
  TrainingJob& job;
  const TrainerOptions& o;
  TrainerState s;
  TrainerResult r;
  std::vector<Tensor> params;
  SignalGuard signals;
  std::optional<io::MetricsWriter> metrics;
  std::unique_ptr<io::ProgressBar> bar;
  std::map<std::string, std::vector<std::pair<double, double>>> curves;  // tag -> (step, value)
  double t_start = now_s();
  double seconds_before = 0;                 // s.seconds at the start of this call
  double window_loss = 0, window_weight = 0;  // since the last metrics line
  int64_t saved_step = -1;                    // step of the last checkpoint written in this call
  int64_t start_step = 0;                     // s.step when this call started
  std::shared_ptr<dist::Communicator> comm;   // data-parallel ranks (null: one process)
  std::unique_ptr<dist::GradientReducer> reducer;
  bool split = false;                         // each rank takes a shard of every batch

  explicit Run(Trainer& trainer)
      : t(trainer), job(trainer.job_), o(trainer.options_), params(job.model().parameters()),
        signals(o.handle_signals), comm(o.communicator) {
    s.bf16 = o.bf16;
  }

  bool files() const { return t.io_rank() && !o.out_dir.empty(); }
  double elapsed() const { return now_s() - t_start; }

  // What must match on every rank (dist::check_same_on_all_ranks); throws on every rank alike.
  void check_ranks() {
    job.set_shard({o.rank, o.world_size});
    split = job.splits_batches();
    std::string shapes;
    for (auto& [name, p] : job.model().named_parameters())
      shapes += name + " " + shape_str(p.shape()) + " " + dtype_name(p.dtype()) + "; ";
    json opts = {o.max_epochs, o.max_steps, o.grad_accum_steps, o.clip_grad_norm, o.eval_every, o.eval_at_epoch_end,
                 o.best_metric, o.patience, o.checkpoint_every, o.log_every, o.deterministic_reduction,
                 o.bucket_bytes, split, job.num_batches(0), job.optimizer().num_param_groups(), o.bf16};
    dist::check_same_on_all_ranks(*comm, {{"model (parameter names, shapes, dtypes)", shapes},
                                          {"training options or data size", opts.dump()}});
  }

  // Rank 0's state (its checkpoint, or its fresh model and optimizer) on every rank; the gradient buckets.
  void start_distributed() {
    std::optional<io::Checkpoint> ck;
    if (t.io_rank() && o.resume && !o.out_dir.empty()) ck = t.read_checkpoint();
    std::string resumed = ck ? "1" : "0";
    comm->broadcast(resumed, 0);
    r.resumed = resumed == "1";
    if (!ck) ck = t.io_rank() ? t.make_checkpoint(s) : io::Checkpoint();
    dist::broadcast_checkpoint(*comm, *ck, 0);
    if (r.resumed || !t.io_rank()) t.apply(*ck, s, r.resumed ? t.checkpoint_path() : "rank 0's state");
    reducer = std::make_unique<dist::GradientReducer>(
        comm, params, dist::GradientReducerOptions{.bucket_bytes = o.bucket_bytes, .deterministic = o.deterministic_reduction});
  }

  // Sum over the ranks (fp64).
  std::vector<double> all_sum(const std::vector<double>& v) {
    Tensor b = from_vector(v, {int64_t(v.size())});
    comm->all_reduce(b, dist::ReduceOp::Sum, o.deterministic_reduction);
    return b.to_vector<double>();
  }

  void start() {
    if (files()) fs::create_directories(o.out_dir);
    if (comm) start_distributed();
    else if (o.resume && !o.out_dir.empty()) r.resumed = t.load(s);
    seconds_before = s.seconds;
    start_step = s.step;
    if (r.resumed) {
      r.checkpoint = t.checkpoint_path();
      job.on_resume(s, t.checkpoint_path());
    }
    if (files() && o.metrics) {
      if (o.plot) read_curves();
      metrics.emplace(io::MetricsWriterOptions{.log_dir = o.out_dir});
    }
    job.model().train();
  }

  // The curves of earlier invocations, from metrics.jsonl (lines past the resumed step are redone).
  void read_curves() {
    std::ifstream f(o.out_dir + "/metrics.jsonl");
    std::string line;
    while (std::getline(f, line)) {
      json j = json::parse(line, nullptr, false);
      if (!j.is_object() || !j.contains("step") || j.at("step").get<int64_t>() > s.step) continue;
      for (auto& [tag, v] : j.items())
        if (v.is_number() && tag != "step" && tag != "wall_time")
          curves[tag].emplace_back(double(j.at("step").get<int64_t>()), v.get<double>());
    }
  }

  void new_bar() {
    if (!o.progress || !t.io_rank()) return;
    char desc[64];  // "epoch 2/6", or "epoch 2" when steps or time end the run
    if (o.max_steps == 0 && o.time_budget_s == 0)
      std::snprintf(desc, sizeof desc, "epoch %lld/%lld", (long long)s.epoch + 1, (long long)o.max_epochs);
    else
      std::snprintf(desc, sizeof desc, "epoch %lld", (long long)s.epoch + 1);
    bar = std::make_unique<io::ProgressBar>(
        t.local_batches(s.epoch), io::ProgressBarOptions{.desc = desc, .unit = o.progress_unit, .initial = s.batch});
  }
  void end_bar() {
    if (bar) bar->finish();
    bar.reset();
  }

  // One optimizer step over up to grad_accum_steps batches of the epoch in progress.
  void step() {
    double t0 = now_s();
    optim::Optimizer& opt = job.optimizer();
    opt.zero_grad();
    int64_t k = std::min(o.grad_accum_steps, t.local_batches(s.epoch) - s.batch);
    std::vector<StepLoss> losses;
    std::vector<double> totals;  // split: each batch's loss elements over all ranks
    for (int64_t i = 0; i < k; ++i, ++s.batch) {
      int64_t global = o.world_size == 1 || split ? s.batch : job.shard_batch(s.epoch, s.batch, o.rank, o.world_size);
      StepLoss l;
      {
        Autocast mixed(kBFloat16, s.bf16);  // the forward and the loss; backward and optimizer step outside
        l = job.train_loss(s.epoch, global);
      }
      // This rank's share of the batch's loss elements, times N: the average over the ranks of the
      // scaled gradients is the gradient of the whole batch's mean loss.
      double factor = 1;
      if (split) {
        totals.push_back(all_sum({l.weight})[0]);
        factor = totals.back() > 0 ? l.weight * double(o.world_size) / totals.back() : 0.0;
      }
      if (reducer && i == k - 1) reducer->arm();
      if (l.loss.defined() && factor != 0) {
        Tensor scaled = factor == 1 ? l.loss : l.loss * factor;
        (k == 1 ? scaled : scaled / double(k)).backward();
      }
      losses.push_back(std::move(l));
    }
    ++s.step;
    if (reducer) reducer->finish();
    if (o.reduce_gradients) o.reduce_gradients(params);
    if (o.clip_grad_norm > 0) nn::utils::clip_grad_norm_(params, o.clip_grad_norm);
    if (o.lr_at) opt.set_lr(o.lr_at(s.step));
    opt.step();
    if (optim::LRScheduler* sched = job.scheduler()) sched->step();
    std::vector<double> values, weights;
    for (const StepLoss& l : losses) {
      values.push_back(l.loss.defined() ? l.loss.item<double>() : 0.0);
      weights.push_back(l.weight);
    }
    if (split) {  // the whole batch's loss: sum over the ranks of loss x elements, / all elements
      std::vector<double> sums;
      for (size_t i = 0; i < values.size(); ++i) sums.push_back(values[i] * weights[i]);
      sums = all_sum(sums);
      for (size_t i = 0; i < values.size(); ++i) values[i] = totals[i] > 0 ? sums[i] / totals[i] : 0.0, weights[i] = totals[i];
    }
    for (size_t i = 0; i < losses.size(); ++i) {
      window_loss += values[i] * weights[i];
      window_weight += weights[i];
      job.after_batch(losses[i], values[i]);
    }
    s.train_seconds += now_s() - t0;
    if (bar) bar->update(k, job.progress_stats(window_weight > 0 ? window_loss / window_weight : 0.0, s.step));
  }

  void log_train() {
    io::Scalars sc = {{"train/loss", window_weight > 0 ? window_loss / window_weight : 0.0},
                      {"train/lr", job.optimizer().get_lr(0)},
                      {"train/seconds", s.train_seconds}};
    for (auto& kv : job.train_scalars()) sc.push_back(kv);
    window_loss = window_weight = 0;
    if (metrics) metrics->log(s.step, sc);
    curves["train/loss"].emplace_back(double(s.step), sc[0].second);
  }

  void draw_curves() {
    io::CurvePanel losses{.title = "loss", .series = {}}, others{.title = "evaluation", .series = {}};
    for (auto& [tag, pts] : curves) {
      bool is_loss = tag.find("loss") != std::string::npos;
      bool wanted = tag == o.best_metric || std::find(o.plot_metrics.begin(), o.plot_metrics.end(), tag) != o.plot_metrics.end();
      if (!is_loss && !wanted) continue;
      io::CurveSeries c{.name = tag, .x = {}, .y = {}};
      for (auto& [x, y] : pts) c.x.push_back(x), c.y.push_back(y);
      (is_loss ? losses : others).series.push_back(std::move(c));
    }
    std::vector<io::CurvePanel> panels = {losses};
    if (!others.series.empty()) panels.push_back(others);
    io::write_curves_png(t.plot_path(), panels, {.x_label = "step"});
  }

  void evaluate() {
    end_bar();
    io::Scalars m = job.evaluate(s.step);
    if (comm) {  // rank 0's metrics decide for every rank (best checkpoint, early stopping)
      std::string text = json(m).dump();
      comm->broadcast(text, 0);
      m = json::parse(text).get<io::Scalars>();
    }
    r.last_eval = m;
    if (metrics) {
      io::Scalars line = m;
      line.emplace_back("train/seconds", s.train_seconds);
      metrics->log(s.step, line);
      for (auto& [tag, v] : m) curves[tag].emplace_back(double(s.step), v);
      if (o.plot) draw_curves();
    }
    if (o.best_metric.empty()) return;
    auto it = std::find_if(m.begin(), m.end(), [&](const auto& kv) { return kv.first == o.best_metric; });
    if (it == m.end()) throw std::runtime_error("Trainer: the job's evaluation has no metric '" + o.best_metric + "'");
    double v = it->second;
    bool better = std::isnan(s.best) || (o.best_mode == BestMode::Max ? v > s.best : v < s.best);
    if (better) {
      s.best = v;
      s.bad_evals = 0;
      save_to(t.best_path());
      if (files()) r.best_checkpoint = t.best_path();
    } else if (++s.bad_evals >= o.patience && o.patience > 0) {
      r.stopped_early = true;
    }
  }

  void save_to(const std::string& path) {
    if (!files()) return;
    TrainerState snap = s;
    snap.seconds = seconds_before + elapsed();
    t.save(path, snap);
  }
  void save_last() {
    if (!files()) return;
    save_to(t.checkpoint_path());
    r.checkpoint = t.checkpoint_path();
    saved_step = s.step;
    signals.checkpoint_written();
  }

  // The checks after a step; true when the run stops here.
  bool after_step() {
    if (o.log_every > 0 && s.step % o.log_every == 0) log_train();
    const bool epoch_end = s.batch >= t.local_batches(s.epoch);
    r.out_of_time = o.time_budget_s > 0 && elapsed() >= o.time_budget_s;
    if (comm)  // and agree on the time budget before deciding to evaluate (a collective)
      for (uint64_t v : comm->all_gather(uint64_t(r.out_of_time))) r.out_of_time = r.out_of_time || v != 0;
    r.out_of_steps = o.max_steps > 0 && s.step >= o.max_steps;
    const bool eval = (o.eval_every > 0 && s.step % o.eval_every == 0) || (epoch_end && o.eval_at_epoch_end) ||
                      (o.eval_at_stop && (r.out_of_time || r.out_of_steps));
    if (epoch_end) end_bar();
    if (eval) evaluate();
    if (epoch_end) next_epoch();
    if (g_pending_signal) r.signal = int(g_pending_signal);
    if (comm)  // the ranks stop together: any rank's signal stops all
      for (uint64_t v : comm->all_gather(uint64_t(r.signal))) r.signal = std::max(r.signal, int(v));
    const bool stop = r.out_of_time || r.out_of_steps || r.stopped_early || r.signal != 0;
    if (eval || stop || (o.checkpoint_every > 0 && s.step % o.checkpoint_every == 0)) save_last();
    if (!stop && !bar) new_bar();
    return stop;
  }

  void next_epoch() {
    ++s.epoch;
    s.batch = 0;
    ++r.epochs_done;
  }

  TrainerResult run() {
    start();
    for (;;) {
      if (s.epoch >= o.max_epochs) {
        r.finished = true;
        break;
      }
      if (s.batch >= t.local_batches(s.epoch)) {  // a checkpoint taken at the end of an epoch
        next_epoch();
        continue;
      }
      if (o.stop_after_steps >= 0 && s.step >= o.stop_after_steps) {
        r.crashed_on_purpose = true;
        return finish();
      }
      if (!bar) new_bar();
      step();
      if (after_step()) break;
    }
    // Unsaved progress, or a run that never checkpointed, ends with a checkpoint.
    if (saved_step != s.step && (s.step != start_step || (files() && !fs::exists(t.checkpoint_path())))) save_last();
    return finish();
  }

  TrainerResult finish() {
    end_bar();
    if (metrics) metrics->close();
    s.seconds = seconds_before + elapsed();
    r.state = s;
    r.seconds = elapsed();
    return r;
  }
};

TrainerResult Trainer::fit() {
  Run run(*this);
  if (!run.comm) return run.run();
  run.check_ranks();  // a refusal is the same on every rank: an exception, not an abort
  try {
    return run.run();
  } catch (const std::exception& e) {  // the other ranks would wait for this one until their deadline
    run.comm->abort(std::string("training failed: ") + e.what());
    throw;  // not reached: abort ends the process
  }
}

}  // namespace attn::train
