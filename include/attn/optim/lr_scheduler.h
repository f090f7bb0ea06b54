// attn/optim/lr_scheduler.h — learning-rate schedules (torch.optim.lr_scheduler), closed form.
//
//   optim::AdamW opt(model->parameters(), {.lr = 6e-4});
//   optim::WarmupCosineLR sched(opt, {.warmup_steps = 100, .total_steps = 5000, .eta_min = 6e-5});
//   for (int64_t it = 0; it < 5000; ++it) { ...; opt.step(); sched.step(); }
//
//   // or composed, exactly like PyTorch's SequentialLR:
//   auto warm = std::make_shared<optim::LinearLR>(opt, optim::LinearLROptions{.start_factor = 0.01,
//                                                                             .total_iters = 100});
//   auto cos = std::make_shared<optim::CosineAnnealingLR>(opt, optim::CosineAnnealingLROptions{.T_max = 4900});
//   optim::SequentialLR sched2(opt, {warm, cos}, /*milestones=*/{100});
//
// Like PyTorch, constructing a scheduler records each group's current lr as its base lr and sets
// the lr for epoch 0; each step() advances one epoch. The lr of epoch t is a closed-form function of
// (t, base_lr), so state_dict() ("last_epoch", "base_lrs") is all a resume needs.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attn/optim/optimizer.h"

namespace attn::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  void step();  // next epoch: sets every group's lr
  int64_t last_epoch() const { return last_epoch_; }
  std::vector<double> get_last_lr() const { return last_lr_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  // The schedule itself: learning rate at `epoch` for a group whose base lr is `base_lr`.
  virtual double lr_at(int64_t epoch, double base_lr) const = 0;

  virtual std::map<std::string, Tensor> state_dict() const;  // "last_epoch" (int64), "base_lrs" (float64)
  virtual void load_state_dict(const std::map<std::string, Tensor>& state);  // also sets the lrs

 protected:
  explicit LRScheduler(Optimizer& optimizer);  // records base lrs; derived constructors call initialize()
  void initialize() { apply(0); }
  void apply(int64_t epoch);
  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  int64_t last_epoch_ = -1;
};

// lr = base_lr * factor(epoch)
class LambdaLR : public LRScheduler {
 public:
  LambdaLR(Optimizer& optimizer, std::function<double(int64_t epoch)> factor);
  double lr_at(int64_t epoch, double base_lr) const override { return base_lr * factor_(epoch); }

 private:
  std::function<double(int64_t)> factor_;
};

struct StepLROptions {
  int64_t step_size = 1;
  double gamma = 0.1;
};
// lr = base_lr * gamma ^ (epoch / step_size)
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, const StepLROptions& options);
  double lr_at(int64_t epoch, double base_lr) const override;
  StepLROptions options;
};

struct MultiStepLROptions {
  std::vector<int64_t> milestones;
  double gamma = 0.1;
};
// lr = base_lr * gamma ^ (number of milestones <= epoch)
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, const MultiStepLROptions& options);
  double lr_at(int64_t epoch, double base_lr) const override;
  MultiStepLROptions options;
};

// lr = base_lr * gamma ^ epoch
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma);
  double lr_at(int64_t epoch, double base_lr) const override;
  double gamma;
};

struct CosineAnnealingLROptions {
  int64_t T_max = 1;
  double eta_min = 0.0;
};
// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2   (periodic past T_max, like PyTorch)
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, const CosineAnnealingLROptions& options);
  double lr_at(int64_t epoch, double base_lr) const override;
  CosineAnnealingLROptions options;
};

struct LinearLROptions {
  double start_factor = 1.0 / 3.0;
  double end_factor = 1.0;
  int64_t total_iters = 5;
};
// lr = base_lr * (start + (end - start) * min(epoch, total_iters) / total_iters)   (torch LinearLR)
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, const LinearLROptions& options);
  double lr_at(int64_t epoch, double base_lr) const override;
  LinearLROptions options;
};

struct LinearWarmupOptions {
  int64_t warmup_steps = 1;
  double start_factor = 0.0;  // lr at epoch 0 is start_factor * base_lr
};
// Linear ramp from start_factor * base_lr (epoch 0) to base_lr (epoch warmup_steps), then constant.
class LinearWarmup : public LRScheduler {
 public:
  LinearWarmup(Optimizer& optimizer, const LinearWarmupOptions& options);
  double lr_at(int64_t epoch, double base_lr) const override;
  LinearWarmupOptions options;
};

struct WarmupCosineLROptions {
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;     // warmup included; lr stays at eta_min afterwards
  double eta_min = 0.0;
  double warmup_start_factor = 0.0;
};
// LinearWarmup for warmup_steps, then cosine from base_lr down to eta_min at total_steps. Equals
// SequentialLR(LinearLR(start, 1, W), CosineAnnealingLR(T_max = total - W, eta_min), {W}) up to total.
class WarmupCosineLR : public LRScheduler {
 public:
  WarmupCosineLR(Optimizer& optimizer, const WarmupCosineLROptions& options);
  double lr_at(int64_t epoch, double base_lr) const override;
  WarmupCosineLROptions options;
};

struct NoamLROptions {
  int64_t d_model = 512;
  int64_t warmup_steps = 4000;
};
// "Attention Is All You Need": lr = base_lr * d_model^-0.5 * min(s^-0.5, s * warmup^-1.5), s = epoch + 1.
// Set the optimizer's lr to the scale (1.0 for the paper; the Annotated Transformer uses 2.0).
class NoamLR : public LRScheduler {
 public:
  NoamLR(Optimizer& optimizer, const NoamLROptions& options);
  double lr_at(int64_t epoch, double base_lr) const override;
  NoamLROptions options;
};

// Runs schedulers[i] from milestones[i-1] on (its epoch restarts at 0), like torch SequentialLR.
// The base lrs are the first scheduler's (the optimizer's lrs before any scheduler touched them).
class SequentialLR : public LRScheduler {
 public:
  SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones);
  double lr_at(int64_t epoch, double base_lr) const override;

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

}  // namespace attn::optim
