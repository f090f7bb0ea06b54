// attn/optim/optim.h — all of attn::optim: SGD, Adam, AdamW and the LR schedulers.
//
//   optim::AdamW opt(model->parameters(), {.lr = 3e-4});
//   optim::WarmupCosineLR sched(opt, {.warmup_steps = 100, .total_steps = 2000});
#pragma once
#include "attn/optim/adam.h"
#include "attn/optim/lr_scheduler.h"
#include "attn/optim/optimizer.h"
#include "attn/optim/sgd.h"
