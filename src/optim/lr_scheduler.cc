// src/optim/lr_scheduler.cc — closed-form learning-rate schedules.
#include "attn/optim/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace attn::optim {

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) {
  for (size_t g = 0; g < optimizer.num_param_groups(); ++g) base_lrs_.push_back(optimizer.get_lr(g));
}

void LRScheduler::apply(int64_t epoch) {
  last_epoch_ = epoch;
  last_lr_.clear();
  for (size_t g = 0; g < base_lrs_.size(); ++g) {
    double lr = lr_at(epoch, base_lrs_[g]);
    optimizer_.set_lr(lr, g);
    last_lr_.push_back(lr);
  }
}

void LRScheduler::step() { apply(last_epoch_ + 1); }

std::map<std::string, Tensor> LRScheduler::state_dict() const {
  return {{"last_epoch", scalar_tensor(double(last_epoch_), {.dtype = kInt64})},
          {"base_lrs", from_vector<double>(base_lrs_, {int64_t(base_lrs_.size())})}};
}

void LRScheduler::load_state_dict(const std::map<std::string, Tensor>& state) {
  auto get = [&](const char* key) -> const Tensor& {
    auto it = state.find(key);
    if (it == state.end() || !it->second.defined())
      throw std::invalid_argument(std::string("LRScheduler::load_state_dict: missing key \"") + key + "\"");
    return it->second;
  };
  std::vector<double> base = get("base_lrs").to_vector<double>();
  if (base.size() != base_lrs_.size())
    throw std::invalid_argument("LRScheduler::load_state_dict: \"base_lrs\" has " + std::to_string(base.size()) +
                                " values, the optimizer has " + std::to_string(base_lrs_.size()) + " groups");
  base_lrs_ = base;
  apply(int64_t(get("last_epoch").item()));
}

// ------------------------------------------------------------------------------------- schedules

LambdaLR::LambdaLR(Optimizer& o, std::function<double(int64_t)> factor) : LRScheduler(o), factor_(std::move(factor)) {
  if (!factor_) throw std::invalid_argument("LambdaLR: empty factor function");
  initialize();
}

StepLR::StepLR(Optimizer& o, const StepLROptions& opt) : LRScheduler(o), options(opt) {
  if (opt.step_size <= 0) throw std::invalid_argument("StepLR: step_size must be positive");
  initialize();
}
double StepLR::lr_at(int64_t e, double base) const {
  return base * std::pow(options.gamma, double(e / options.step_size));
}

MultiStepLR::MultiStepLR(Optimizer& o, const MultiStepLROptions& opt) : LRScheduler(o), options(opt) {
  std::sort(options.milestones.begin(), options.milestones.end());
  initialize();
}
double MultiStepLR::lr_at(int64_t e, double base) const {
  auto n = std::upper_bound(options.milestones.begin(), options.milestones.end(), e) - options.milestones.begin();
  return base * std::pow(options.gamma, double(n));
}

ExponentialLR::ExponentialLR(Optimizer& o, double g) : LRScheduler(o), gamma(g) { initialize(); }
double ExponentialLR::lr_at(int64_t e, double base) const { return base * std::pow(gamma, double(e)); }

CosineAnnealingLR::CosineAnnealingLR(Optimizer& o, const CosineAnnealingLROptions& opt) : LRScheduler(o), options(opt) {
  if (opt.T_max <= 0) throw std::invalid_argument("CosineAnnealingLR: T_max must be positive");
  initialize();
}
double CosineAnnealingLR::lr_at(int64_t e, double base) const {
  return options.eta_min +
         (base - options.eta_min) * (1.0 + std::cos(std::numbers::pi * double(e) / double(options.T_max))) / 2.0;
}

LinearLR::LinearLR(Optimizer& o, const LinearLROptions& opt) : LRScheduler(o), options(opt) {
  if (opt.total_iters <= 0) throw std::invalid_argument("LinearLR: total_iters must be positive");
  if (opt.start_factor < 0 || opt.start_factor > 1 || opt.end_factor < 0 || opt.end_factor > 1)
    throw std::invalid_argument("LinearLR: start_factor and end_factor must be in [0, 1]");
  initialize();
}
double LinearLR::lr_at(int64_t e, double base) const {
  double t = double(std::min(e, options.total_iters)) / double(options.total_iters);
  return base * (options.start_factor + (options.end_factor - options.start_factor) * t);
}

LinearWarmup::LinearWarmup(Optimizer& o, const LinearWarmupOptions& opt) : LRScheduler(o), options(opt) {
  if (opt.warmup_steps <= 0) throw std::invalid_argument("LinearWarmup: warmup_steps must be positive");
  initialize();
}
double LinearWarmup::lr_at(int64_t e, double base) const {
  double t = double(std::min(e, options.warmup_steps)) / double(options.warmup_steps);
  return base * (options.start_factor + (1.0 - options.start_factor) * t);
}

WarmupCosineLR::WarmupCosineLR(Optimizer& o, const WarmupCosineLROptions& opt) : LRScheduler(o), options(opt) {
  if (opt.warmup_steps < 0 || opt.total_steps <= opt.warmup_steps)
    throw std::invalid_argument("WarmupCosineLR: need 0 <= warmup_steps < total_steps, got " +
                                std::to_string(opt.warmup_steps) + " and " + std::to_string(opt.total_steps));
  initialize();
}
double WarmupCosineLR::lr_at(int64_t e, double base) const {
  const auto& o = options;
  if (e < o.warmup_steps)
    return base * (o.warmup_start_factor + (1.0 - o.warmup_start_factor) * double(e) / double(o.warmup_steps));
  double span = double(o.total_steps - o.warmup_steps);
  double t = std::min(double(e - o.warmup_steps), span);
  return o.eta_min + (base - o.eta_min) * (1.0 + std::cos(std::numbers::pi * t / span)) / 2.0;
}

NoamLR::NoamLR(Optimizer& o, const NoamLROptions& opt) : LRScheduler(o), options(opt) {
  if (opt.d_model <= 0 || opt.warmup_steps <= 0)
    throw std::invalid_argument("NoamLR: d_model and warmup_steps must be positive");
  initialize();
}
double NoamLR::lr_at(int64_t e, double base) const {
  double s = double(e + 1);
  return base * std::pow(double(options.d_model), -0.5) *
         std::min(std::pow(s, -0.5), s * std::pow(double(options.warmup_steps), -1.5));
}

SequentialLR::SequentialLR(Optimizer& o, std::vector<std::shared_ptr<LRScheduler>> schedulers,
                           std::vector<int64_t> milestones)
    : LRScheduler(o), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  if (schedulers_.empty()) throw std::invalid_argument("SequentialLR: needs at least one scheduler");
  if (milestones_.size() != schedulers_.size() - 1)
    throw std::invalid_argument("SequentialLR: expected " + std::to_string(schedulers_.size() - 1) +
                                " milestones for " + std::to_string(schedulers_.size()) + " schedulers, got " +
                                std::to_string(milestones_.size()));
  for (auto& s : schedulers_)
    if (!s) throw std::invalid_argument("SequentialLR: null scheduler");
  for (size_t i = 1; i < milestones_.size(); ++i)
    if (milestones_[i] <= milestones_[i - 1]) throw std::invalid_argument("SequentialLR: milestones must increase");
  base_lrs_ = schedulers_[0]->base_lrs();
  initialize();
}

double SequentialLR::lr_at(int64_t e, double base) const {
  size_t i = size_t(std::upper_bound(milestones_.begin(), milestones_.end(), e) - milestones_.begin());
  int64_t start = i == 0 ? 0 : milestones_[i - 1];
  return schedulers_[i]->lr_at(e - start, base);
}

}  // namespace attn::optim
