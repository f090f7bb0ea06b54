// src/train/accuracy_trainer_options.h — the Trainer settings train-text and `attn finetune` share: evaluate at
// each epoch end (and every eval_every steps), keep the weights with the best valid/accuracy, plot valid/loss.
// Internal to src/train.
//
//   Trainer trainer(job, accuracy_trainer_options(o, elapsed()));  // o: TextTrainOptions or FinetuneOptions
#pragma once
#include <algorithm>

#include "attn/train/trainer.h"

namespace attn::train {

// `seconds_used`: what reading and encoding the data took, spent from o.time_budget_s (0: no budget).
template <typename Options>
TrainerOptions accuracy_trainer_options(const Options& o, double seconds_used) {
  return {.out_dir = o.out_dir, .resume = o.resume, .max_epochs = o.max_epochs, .max_steps = o.max_steps,
          .time_budget_s = o.time_budget_s > 0 ? std::max(1e-9, o.time_budget_s - seconds_used) : 0.0,
          .clip_grad_norm = o.clip_grad_norm, .eval_every = o.eval_every, .eval_at_epoch_end = true,
          .best_metric = "valid/accuracy", .best_mode = BestMode::Max, .log_every = o.log_every,
          .stop_after_steps = o.stop_after_steps, .plot_metrics = {"valid/loss"},
          .progress = o.progress, .progress_unit = "batch", .handle_signals = o.handle_signals};
}

}  // namespace attn::train
