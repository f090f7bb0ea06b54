// tools/attn/lm_cmd.cc — the character language model: train-lm and generate (which also runs GPT-2 directories).
//
//   python3 scripts/prepare_austen.py --out data/austen              # or: make data-austen
//   attn train-lm --cell lstm --out runs/lm-lstm --time-budget 600   # last stdout line: JSON with test_loss
//   attn train-lm --cell lstm --out runs/lm-lstm --time-budget 600   # again: resumes where it stopped
//   attn train-lm --out runs/lm-same --init-weights runs/torch-lm/init.safetensors --no-resume   # PyTorch's init
//   attn generate --model runs/lm-lstm --prompt "It is a truth" --length 300 --temperature 0.8 --seed 1
//   attn generate --model path/to/gpt2 --prompt "It is a truth" --length 40 --greedy   # Hugging Face GPT-2
#include <omp.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "attn/train/language_model.h"
#include "commands.h"
#include "hf_generate.h"

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
  cmd->add_option("--precision", c.o.precision,
                  "fp32, or bf16 (autocast: bf16 GEMMs, fp32 master weights); a resumed run keeps the precision of "
                  "its checkpoint")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--init-weights", c.o.init_weights,
                  "start from this safetensors state_dict (PyTorch names, e.g. bench/torch_char_lm.py --save-init); "
                  "a fresh run only: with a checkpoint in --out it needs --no-resume");
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
          {"stopped_early", r.stopped_early}, {"interrupted", r.signal != 0}, {"precision", r.precision}};
}

// `attn generate`: a train-lm run directory (characters, state carried) or a Hugging Face GPT-2 directory
// (byte-level BPE tokens, key/value cache; tools/attn/hf_generate.h), told apart by its config.json.
struct GenerateCli {
  std::string model_dir = "runs/lm";
  std::string checkpoint;
  std::string prompt = "It is a truth";
  train::GenerateOptions o;
  bool greedy = false;
  double repetition_penalty = 1.0;
  std::string format = "text";
  int threads = 0;
};

void run_generate(const GenerateCli& c) {
  if (c.threads > 0) omp_set_num_threads(c.threads);
  train::check_generate_options(c.o);  // before loading anything
  if (is_hf_model_dir(c.model_dir)) {
    models::GenerationOptions o{.max_new_tokens = c.o.length, .do_sample = !c.greedy, .temperature = c.o.temperature,
                                .top_k = c.o.top_k, .top_p = c.o.top_p, .repetition_penalty = c.repetition_penalty,
                                .seed = c.o.seed};
    HFGenerateRequest r{.model_dir = c.model_dir, .prompt = c.prompt, .options = o, .format = c.format};
    generate_hf(r, std::cout);
    return;
  }
  if (c.repetition_penalty != 1.0 || c.format != "text")
    throw std::invalid_argument("generate: --repetition-penalty and --format json need a Hugging Face GPT-2 --model "
                                "directory (" + c.model_dir + " has no config.json)");
  train::GenerateOptions o = c.o;
  if (c.greedy) o.top_k = 1;  // the most likely character each time
  train::LMSession s = train::LMSession::load(c.model_dir, c.checkpoint);
  std::cout << s.generate(c.prompt, o) << std::endl;
}

void add_generate_command(CLI::App& app) {
  auto c = std::make_shared<GenerateCli>();
  CLI::App* g = app.add_subcommand("generate", "continue a prompt: a train-lm model (characters, state carried) or a "
                                               "Hugging Face GPT-2 directory (tokens, key/value cache)");
  g->add_option("--model", c->model_dir, "run directory of train-lm, or a Hugging Face GPT-2 directory (config.json, "
                                         "weights, tokenizer.json or vocab.json + merges.txt)")
      ->capture_default_str();
  g->add_option("--checkpoint", c->checkpoint,
                "train-lm: checkpoint file (default: <model>/best.safetensors, the lowest validation loss; "
                "<model>/checkpoint.safetensors if there is no best)");
  g->add_option("--prompt", c->prompt, "text the sample continues (train-lm: every character must be in the vocabulary)")
      ->capture_default_str();
  g->add_option("--length,--max-new-tokens", c->o.length, "characters (train-lm) or tokens (GPT-2) to generate")
      ->capture_default_str();
  g->add_flag("--greedy", c->greedy, "the most likely next token each time (default: sample)");
  g->add_option("--temperature", c->o.temperature, "softmax temperature (> 0)")->capture_default_str();
  g->add_option("--top-k", c->o.top_k, "sample among the k most likely tokens (0: all)")->capture_default_str();
  g->add_option("--top-p", c->o.top_p, "nucleus sampling: the smallest set with this probability, in (0, 1]")
      ->capture_default_str();
  g->add_option("--repetition-penalty", c->repetition_penalty, "GPT-2: transformers' repetition penalty (1: off)")
      ->capture_default_str();
  g->add_option("--seed", c->o.seed, "sampling seed (same seed, same text)")->capture_default_str();
  g->add_option("--format", c->format, "GPT-2: text (prompt + continuation) or json ({\"ids\", \"text\", \"new_tokens\"})")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  g->add_option("--threads", c->threads, "OpenMP threads (0: default)")->capture_default_str();
  g->callback([c] { run_generate(*c); });
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

  add_generate_command(app);
}

}  // namespace attn::cli
