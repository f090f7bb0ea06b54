// tools/attn/lm_cmd.cc — the character language model: train-lm and generate.
//
//   python3 scripts/prepare_austen.py --out data/austen              # or: make data-austen
//   attn train-lm --cell lstm --out runs/lm-lstm --time-budget 600   # last stdout line: JSON with test_loss
//   attn train-lm --cell lstm --out runs/lm-lstm --time-budget 600   # again: resumes where it stopped
//   attn generate --model runs/lm-lstm --prompt "It is a truth" --length 300 --temperature 0.8 --seed 1
#include <omp.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "attn/train/language_model.h"
#include "commands.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::cli {
namespace {

struct LMCli {
  train::LMTrainOptions o;
  std::string data_dir = "data/austen";
  std::string cell = "lstm";
  int threads = 0;
  bool fresh = false;
  bool no_test = false;
};

void add_lm_options(CLI::App* cmd, LMCli& c) {
  cmd->add_option("--cell", c.cell, "recurrent module: lstm, gru or rnn (tanh)")
      ->check(CLI::IsMember({"lstm", "gru", "rnn"}))
      ->capture_default_str();
  cmd->add_option("--data-dir", c.data_dir, "train.txt, valid.txt, test.txt (scripts/prepare_austen.py)")
      ->capture_default_str();
  cmd->add_option("--out", c.o.out_dir, "run directory (resumed if it holds a checkpoint)")->capture_default_str();
  cmd->add_flag("--no-resume", c.fresh, "start over even if --out holds a checkpoint (default: resume)");
  cmd->add_option("--embedding", c.o.model.embedding_dim, "embedding size")->capture_default_str();
  cmd->add_option("--hidden", c.o.model.hidden_size, "hidden size of each recurrent layer")->capture_default_str();
  cmd->add_option("--layers", c.o.model.num_layers, "recurrent layers")->capture_default_str();
  cmd->add_option("--dropout", c.o.model.dropout, "dropout between recurrent layers")->capture_default_str();
  cmd->add_option("--train-fraction", c.o.train_fraction,
                 "train on this leading fraction of train.txt's characters, in (0, 1] (vocabulary from all of it)")
      ->capture_default_str();
  cmd->add_option("--batch-size", c.o.batch_size, "parallel streams of the training text")->capture_default_str();
  cmd->add_option("--seq-len", c.o.seq_len, "characters per truncated-BPTT chunk")->capture_default_str();
  cmd->add_option("--lr", c.o.lr, "Adam learning rate")->capture_default_str();
  cmd->add_option("--clip", c.o.clip_grad_norm, "clip gradients to this global norm (0: off)")->capture_default_str();
  cmd->add_option("--epochs", c.o.max_epochs, "epochs at most")->capture_default_str();
  cmd->add_option("--max-steps", c.o.max_steps, "stop at this step (0: no limit)")->capture_default_str();
  cmd->add_option("--time-budget", c.o.time_budget_s, "seconds for this invocation (0: no limit)")->capture_default_str();
  cmd->add_option("--eval-every", c.o.eval_every, "steps between validations and checkpoints")->capture_default_str();
  cmd->add_option("--eval-streams", c.o.eval_streams, "parallel streams when evaluating")->capture_default_str();
  cmd->add_option("--patience", c.o.patience, "early stopping: validations without improvement (0: never)")
      ->capture_default_str();
  cmd->add_option("--log-every", c.o.log_every, "steps between training metrics lines")->capture_default_str();
  cmd->add_option("--seed", c.o.seed, "seed of the initialisation")->capture_default_str();
  cmd->add_option("--threads", c.threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)")->capture_default_str();
  cmd->add_flag("--no-test", c.no_test, "skip the held-out test loss at the end");
  cmd->add_flag("!--no-progress", c.o.progress, "no progress bar");
}

train::LMTrainOptions resolve(const LMCli& c) {
  train::LMTrainOptions o = c.o;
  o.resume = !c.fresh;
  o.model.cell = train::recurrent_cell_from_string(c.cell);
  o.train_path = c.data_dir + "/train.txt";
  o.valid_path = c.data_dir + "/valid.txt";
  o.test_path = c.no_test ? "" : c.data_dir + "/test.txt";
  for (const std::string& f : {o.train_path, o.valid_path, o.test_path})
    if (!f.empty() && !fs::exists(f))
      throw std::runtime_error("missing " + f + ": prepare the Austen corpus with `python3 scripts/prepare_austen.py --out " +
                               c.data_dir + "` (or `make data-austen`), or pass --data-dir");
  return o;
}

json result_json(const train::LMTrainResult& r, const train::LMTrainOptions& o) {
  return {{"task", "char-lm"}, {"cell", train::to_string(o.model.cell)}, {"steps", r.steps},
          {"epochs_done", r.epochs_done}, {"valid_loss", r.valid_loss}, {"best_valid_loss", r.best_valid_loss},
          {"test_loss", r.test_loss < 0 ? json(nullptr) : json(r.test_loss)}, {"parameters", r.parameters},
          {"vocab_size", r.vocab_size}, {"seconds", r.seconds}, {"threads", omp_get_max_threads()},
          {"checkpoint", r.checkpoint}, {"best_checkpoint", r.best_checkpoint}, {"resumed", r.resumed},
          {"stopped_early", r.stopped_early}, {"interrupted", r.signal != 0}};
}

}  // namespace

void add_lm_commands(CLI::App& app) {
  auto c = std::make_shared<LMCli>();
  c->o.out_dir = "runs/lm";
  CLI::App* tr = app.add_subcommand("train-lm", "train a character language model (LSTM, GRU or RNN) on the Austen "
                                                "corpus; resumable; last stdout line is JSON with the test loss");
  add_lm_options(tr, *c);
  tr->callback([=] {
    if (c->threads > 0) omp_set_num_threads(c->threads);
    train::LMTrainOptions o = resolve(*c);
    train::LMTrainResult r = train::train_language_model(o);
    std::cout << result_json(r, o).dump() << std::endl;
    if (r.signal) exit_code = 128 + r.signal;  // interrupted: the checkpoint holds the last step
  });

  auto model_dir = std::make_shared<std::string>("runs/lm");
  auto checkpoint = std::make_shared<std::string>();
  auto prompt = std::make_shared<std::string>("It is a truth");
  auto go = std::make_shared<train::GenerateOptions>();
  auto threads = std::make_shared<int>(0);
  CLI::App* g = app.add_subcommand("generate", "sample text from a train-lm model, one character at a time with the "
                                               "state carried");
  g->add_option("--model", *model_dir, "run directory of train-lm")->capture_default_str();
  g->add_option("--checkpoint", *checkpoint,
                "checkpoint file (default: <model>/best.safetensors, the lowest validation loss; "
                "<model>/checkpoint.safetensors if there is no best)");
  g->add_option("--prompt", *prompt, "text the sample continues (every character must be in the vocabulary)")
      ->capture_default_str();
  g->add_option("--length", go->length, "characters to sample")->capture_default_str();
  g->add_option("--temperature", go->temperature, "softmax temperature (> 0)")->capture_default_str();
  g->add_option("--top-k", go->top_k, "sample among the k most likely characters (0: all)")->capture_default_str();
  g->add_option("--top-p", go->top_p, "nucleus sampling: the smallest set with this probability, in (0, 1]")
      ->capture_default_str();
  g->add_option("--seed", go->seed, "sampling seed (same seed, same text)")->capture_default_str();
  g->add_option("--threads", *threads, "OpenMP threads (0: default)")->capture_default_str();
  g->callback([=] {
    if (*threads > 0) omp_set_num_threads(*threads);
    train::check_generate_options(*go);  // before loading anything
    train::LMSession s = train::LMSession::load(*model_dir, *checkpoint);
    std::cout << s.generate(*prompt, *go) << std::endl;
  });
}

}  // namespace attn::cli
