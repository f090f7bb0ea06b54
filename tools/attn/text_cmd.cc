// tools/attn/text_cmd.cc — train-text: a topic classifier over Debian's fortunes (or any "<label>\t<tokens>" TSV).
//
//   python3 scripts/prepare_fortunes.py --out data/fortunes            # or: make data-fortunes
//   attn train-text --model cnn --out runs/text-cnn --epochs 10        # last stdout line: JSON with test_accuracy
//   attn train-text --model lstm --out runs/text-lstm --time-budget 300
//   attn train-text --model gru --epochs 50 --patience 5 --train-fraction 0.1   # early stopping, 10 % of the data
#include <omp.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "attn/train/text_classifier.h"
#include "commands.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::cli {
namespace {

struct TextCli {
  train::TextTrainOptions o;
  std::string data_dir = "data/fortunes";
  std::string model = "cnn";
  int threads = 0;
  bool fresh = false;
};

void add_text_options(CLI::App* cmd, TextCli& c) {
  cmd->add_option("--model", c.model, "cnn (Kim's Conv1d model), lstm or gru")
      ->check(CLI::IsMember({"cnn", "lstm", "gru"}))
      ->capture_default_str();
  cmd->add_option("--data-dir", c.data_dir, "train.tsv, valid.tsv, test.tsv (scripts/prepare_fortunes.py)")
      ->capture_default_str();
  cmd->add_option("--out", c.o.out_dir, "run directory (default runs/text-<model>; resumed if it holds a checkpoint)");
  cmd->add_flag("--no-resume", c.fresh, "start over even if --out holds a checkpoint (default: resume)");
  cmd->add_option("--embedding", c.o.embedding_dim, "embedding size")->capture_default_str();
  cmd->add_option("--hidden", c.o.hidden_size, "hidden size (lstm, gru)")->capture_default_str();
  cmd->add_option("--filters", c.o.num_filters, "filters per kernel width (cnn)")->capture_default_str();
  cmd->add_option("--widths", c.o.kernel_sizes, "kernel widths (cnn)")->capture_default_str();
  cmd->add_option("--dropout", c.o.dropout, "dropout before the classifier")->capture_default_str();
  cmd->add_option("--min-freq", c.o.min_freq, "vocabulary: words seen fewer times are <unk>")->capture_default_str();
  cmd->add_option("--max-len", c.o.max_len, "tokens kept per example")->capture_default_str();
  cmd->add_option("--batch-size", c.o.batch_size, "examples per step")->capture_default_str();
  cmd->add_option("--lr", c.o.lr, "Adam learning rate")->capture_default_str();
  cmd->add_option("--clip", c.o.clip_grad_norm, "clip gradients to this global norm (0: off)")->capture_default_str();
  cmd->add_option("--epochs", c.o.max_epochs, "epochs")->capture_default_str();
  cmd->add_option("--max-steps", c.o.max_steps, "stop at this step (0: no limit)")->capture_default_str();
  cmd->add_option("--time-budget", c.o.time_budget_s, "seconds for this invocation (0: no limit)")->capture_default_str();
  cmd->add_option("--eval-every", c.o.eval_every, "steps between validations (0: each epoch end)")->capture_default_str();
  cmd->add_option("--patience", c.o.patience, "early stopping: validations without a better accuracy (0: never)")
      ->capture_default_str();
  cmd->add_option("--train-fraction", c.o.train_fraction,
                  "train on the first floor(N * this) training examples (at least 1), vocabulary from them too; (0, 1]")
      ->capture_default_str();
  cmd->add_option("--log-every", c.o.log_every, "steps between training metrics lines")->capture_default_str();
  cmd->add_option("--seed", c.o.seed, "seed of the initialisation and the shuffle")->capture_default_str();
  cmd->add_option("--threads", c.threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)")->capture_default_str();
  cmd->add_flag("!--no-progress", c.o.progress, "no progress bar");
}

train::TextTrainOptions resolve(const TextCli& c) {
  train::TextTrainOptions o = c.o;
  o.resume = !c.fresh;
  o.model = train::text_model_from_string(c.model);
  if (o.out_dir.empty()) o.out_dir = "runs/text-" + c.model;
  o.train_path = c.data_dir + "/train.tsv";
  o.valid_path = c.data_dir + "/valid.tsv";
  o.test_path = c.data_dir + "/test.tsv";
  for (const std::string& f : {o.train_path, o.valid_path, o.test_path})
    if (!fs::exists(f))
      throw std::runtime_error("missing " + f + ": prepare the fortunes corpus with `python3 scripts/prepare_fortunes.py --out " +
                               c.data_dir + "` (or `make data-fortunes`), or pass --data-dir");
  return o;
}

}  // namespace

void add_text_commands(CLI::App& app) {
  auto c = std::make_shared<TextCli>();
  c->o.out_dir.clear();
  CLI::App* cmd = app.add_subcommand("train-text", "train a text classifier (Kim CNN, LSTM or GRU) on the fortunes "
                                                   "topics; resumable; last stdout line is JSON with test_accuracy");
  add_text_options(cmd, *c);
  cmd->callback([=] {
    if (c->threads > 0) omp_set_num_threads(c->threads);
    train::TextTrainOptions o = resolve(*c);
    train::TextTrainResult r = train::train_text_classifier(o);
    json j = {{"task", "text-classification"}, {"model", c->model}, {"steps", r.steps}, {"epochs_done", r.epochs_done},
              {"valid_accuracy", r.valid_accuracy}, {"valid_loss", r.valid_loss},
              {"best_valid_accuracy", r.best_valid_accuracy},
              {"test_accuracy", r.test_accuracy < 0 ? json(nullptr) : json(r.test_accuracy)},
              {"test_loss", r.test_loss < 0 ? json(nullptr) : json(r.test_loss)}, {"parameters", r.parameters},
              {"vocab_size", r.vocab_size}, {"num_classes", r.num_classes}, {"train_examples", r.train_examples},
              {"stopped_early", r.stopped_early}, {"seconds", r.seconds}, {"threads", omp_get_max_threads()}, {"checkpoint", r.checkpoint},
              {"best_checkpoint", r.best_checkpoint}, {"resumed", r.resumed}, {"interrupted", r.signal != 0}};
    std::cout << j.dump() << std::endl;
    if (r.signal) exit_code = 128 + r.signal;
  });
}

}  // namespace attn::cli
