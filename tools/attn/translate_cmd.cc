// tools/attn/translate_cmd.cc — translation: train-translator, translate, bleu, demo-translate.
//
//   attn train-translator --train data/bible/train --dev data/bible/dev --src en --tgt es --out runs/translate
//   attn translate --model runs/translate --beam 4 --no-repeat-ngram-size 4 < input.en > output.es
//   attn translate --model runs/translate --attention runs/translate/attention <<< "In the beginning God created."
//   attn bleu --hyp output.es --ref data/bible/test.es          # sacreBLEU-compatible BLEU and chrF
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "attn/autocast.h"
#include "attn/data/parallel_text.h"
#include "attn/eval/bleu.h"
#include "attn/models/int8_translator.h"
#include "attn/models/marian.h"
#include "attn/train/translation.h"
#include "commands.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::cli {
namespace {

struct TranslatorCli {
  std::string train = "data/bible/train", dev = "data/bible/dev", src = "en", tgt = "es";
  train::TranslationTrainOptions o;
  int64_t d_model = 256, heads = 4, layers = 3, ff = 1024;
  double dropout = 0.1;
  std::string activation = "relu";
  bool pre_ln = false;
  bool marian = false;
};

void add_train_options(CLI::App* cmd, TranslatorCli& c) {
  cmd->add_option("--train", c.train, "training files prefix: <prefix>.<src> and <prefix>.<tgt>")->capture_default_str();
  cmd->add_option("--dev", c.dev, "validation files prefix")->capture_default_str();
  cmd->add_option("--src", c.src, "source language suffix")->capture_default_str();
  cmd->add_option("--tgt", c.tgt, "target language suffix")->capture_default_str();
  cmd->add_option("--out", c.o.out_dir, "run directory (resumed if it holds a checkpoint)")->capture_default_str();
  cmd->add_option("--vocab-size", c.o.vocab_size, "joint SentencePiece vocabulary")->capture_default_str();
  cmd->add_option("--d-model", c.d_model, "model width")->capture_default_str();
  cmd->add_option("--heads", c.heads, "attention heads")->capture_default_str();
  cmd->add_option("--layers", c.layers, "encoder and decoder layers (each)")->capture_default_str();
  cmd->add_option("--ff", c.ff, "feed-forward width")->capture_default_str();
  cmd->add_option("--dropout", c.dropout, "dropout")->capture_default_str();
  cmd->add_option("--activation", c.activation, "relu or gelu")->check(CLI::IsMember({"relu", "gelu"}))->capture_default_str();
  cmd->add_flag("--pre-ln", c.pre_ln, "pre-LN layers (default post-LN, as in the paper)");
  cmd->add_flag("--marian", c.marian,
                "Marian's architecture, exportable with `attn export --format hf-marian`: post-LN stacks without "
                "nn.Transformer's final LayerNorms, decoding started from the pad token (its embedding stays zero)");
  cmd->add_option("--max-tokens", c.o.max_tokens, "padded tokens per batch")->capture_default_str();
  cmd->add_option("--max-len", c.o.max_len, "skip training pairs longer than this (tokens)")->capture_default_str();
  cmd->add_option("--lr-factor", c.o.lr_factor, "scale of the paper's warm-up schedule")->capture_default_str();
  cmd->add_option("--warmup", c.o.warmup_steps, "warm-up steps")->capture_default_str();
  cmd->add_option("--label-smoothing", c.o.label_smoothing, "label smoothing")->capture_default_str();
  cmd->add_option("--clip", c.o.clip_grad_norm, "clip gradients to this global norm (0: off)")->capture_default_str();
  cmd->add_option("--max-steps", c.o.max_steps, "stop at this step (0: no limit)")->capture_default_str();
  cmd->add_option("--time-budget", c.o.time_budget_s, "seconds of training in this invocation (0: no limit)")->capture_default_str();
  cmd->add_option("--eval-every", c.o.eval_every, "steps between validations and checkpoints")->capture_default_str();
  cmd->add_option("--eval-sentences", c.o.eval_sentences, "dev sentences decoded for BLEU")->capture_default_str();
  cmd->add_option("--patience", c.o.patience, "early stopping: validations without improvement")->capture_default_str();
  cmd->add_option("--seed", c.o.seed, "seed")->capture_default_str();
  cmd->add_option("--precision", c.o.precision,
                  "fp32, bf16 (autocast: bf16 GEMMs, fp32 master weights), or auto (bf16 where attn info shows a "
                  "native bf16 path); recorded in config.json, a resumed run keeps its own")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}))
      ->capture_default_str();
  cmd->add_flag("!--no-progress", c.o.progress, "no progress bar");
}

train::TranslationTrainOptions resolve(const TranslatorCli& c) {
  train::TranslationTrainOptions o = c.o;
  o.train_src = c.train + "." + c.src;
  o.train_tgt = c.train + "." + c.tgt;
  o.dev_src = c.dev + "." + c.src;
  o.dev_tgt = c.dev + "." + c.tgt;
  o.model.d_model = c.d_model;
  o.model.nhead = c.heads;
  o.model.num_encoder_layers = o.model.num_decoder_layers = c.layers;
  o.model.dim_feedforward = c.ff;
  o.model.dropout = c.dropout;
  o.model.activation = c.activation == "gelu" ? nn::Activation::GELU : nn::Activation::ReLU;
  o.model.norm_first = c.pre_ln;
  if (o.precision == "auto") o.precision = train::default_training_precision();
  if (c.marian) {
    if (c.pre_ln) throw std::invalid_argument("--marian and --pre-ln exclude each other: Marian's layers are post-LN");
    o.model.final_norm = false;
    o.model.bos_id = o.model.pad_id;
  }
  for (const std::string& f : {o.train_src, o.train_tgt, o.dev_src, o.dev_tgt})
    if (!fs::exists(f)) throw std::runtime_error("missing " + f + " (make demo prepares data/bible with scripts/prepare_bible.py)");
  return o;
}

json result_json(const train::TranslationTrainResult& r) {
  return {{"steps", r.steps}, {"dev_bleu", r.dev_bleu}, {"dev_chrf", r.dev_chrf}, {"dev_loss", r.dev_loss},
          {"best_dev_bleu", r.best_dev_bleu}, {"seconds", r.seconds}, {"checkpoint", r.checkpoint},
          {"best_checkpoint", r.best_checkpoint}, {"stopped_early", r.stopped_early}, {"interrupted", r.signal != 0}};
}

// Translates `src_path`, writes `out_path` and returns corpus BLEU/chrF against `ref_path`.
json evaluate_file(train::TranslationSession& s, const std::string& src_path, const std::string& ref_path,
                   const std::string& out_path, const train::TranslateOptions& to) {
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> src = data::read_lines(src_path), ref = data::read_lines(ref_path);
  std::vector<std::string> hyp = s.translate(src, to);
  std::ofstream f(out_path);
  for (auto& h : hyp) f << h << "\n";
  auto b = eval::corpus_bleu(hyp, {ref});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {{"bleu", b.score}, {"chrf", eval::corpus_chrf(hyp, {ref}).score}, {"signature", b.signature()},
          {"sentences", src.size()}, {"seconds", secs}, {"output", out_path}};
}


// attn translate: decoding options as in CTranslate2 / transformers; every value is checked by
// train::check_translate_options, so an absurd one is a one-line error naming the flag.
struct TranslateCli {
  std::string model_dir = "runs/translate", input, output, attention, checkpoint, early_stopping = "beam-full";
  std::string precision;  // "": the model's own (float32, or int8 for a directory of attn quantize)
  train::TranslateOptions o;
  bool greedy = false, show_scores = false, truncate_long = false, no_progress = false;
};

// Registers attn translate's flags; returns --beam (which --greedy excludes, and --sample overrides unless given).
CLI::Option* add_translate_options(CLI::App* t, TranslateCli& cli) {
  TranslateCli* c = &cli;
  train::TranslateOptions& o = c->o;
  t->add_option("--model", c->model_dir, "run directory of train-translator, or a Hugging Face MarianMTModel directory")
      ->capture_default_str();
  t->add_option("--checkpoint", c->checkpoint,
                "checkpoint file (default: the run's best.safetensors; before the first validation has written it, "
                "checkpoint.safetensors, the latest step, with a note on stderr)");
  t->add_option("--input", c->input, "input file, one sentence per line (default stdin)");
  t->add_option("--output", c->output, "output file (default stdout); always one line per input line");
  t->add_option("--precision", c->precision,
                "fp32, bf16 (the model converted to bf16: bf16 weights and activations, float32 accumulation) or int8 "
                "(int8 weights and activations; a float32 model is quantised on loading); default: "
                "the model's own (int8 for a directory written by attn quantize)");
  CLI::Option* beam = t->add_option("--beam", o.beam_size, "beam size (1: greedy)")->capture_default_str();
  t->add_flag("--greedy", c->greedy, "argmax decoding, as in the lecture (the same as --beam 1)")->excludes(beam);
  t->add_option("--length-penalty", o.length_penalty, "beam score = sum log p / length^alpha (>= 0; 0: raw sum)")
      ->capture_default_str();
  t->add_option("--n-best", o.n_best, "hypotheses per sentence, tab-separated after their scores (<= --beam)")
      ->capture_default_str();
  t->add_option("--early-stopping", c->early_stopping,
                "when a sentence's beam search ends (transformers' early_stopping): beam-full (True: --beam "
                "hypotheses finished), heuristic (False), never")
      ->check(CLI::IsMember({"beam-full", "heuristic", "never"}))->capture_default_str();
  t->add_option("--max-len-a", o.max_len_a, "output tokens at most max-len-a * source tokens + max-len-b")->capture_default_str();
  t->add_option("--max-len-b", o.max_len_b, "see --max-len-a")->capture_default_str();
  t->add_option("--max-len", o.max_len, "output tokens at most this many (0: no cap beyond the model's positions)")
      ->capture_default_str();
  t->add_option("--min-len-a", o.min_len_a, "output tokens at least min-len-a * source tokens + --min-len")->capture_default_str();
  t->add_option("--min-len", o.min_len_b, "output tokens at least this many (plus min-len-a * source tokens)")
      ->capture_default_str();
  t->add_option("--no-repeat-ngram-size", o.no_repeat_ngram_size, "no n-gram of this size twice in an output (0: off)")
      ->capture_default_str();
  t->add_option("--repetition-penalty", o.repetition_penalty,
                "divide seen tokens' positive scores (multiply negative ones) by this (1: off)")->capture_default_str();
  t->add_flag("--sample", o.sample, "random sampling instead of argmax (implies --beam 1)");
  t->add_option("--temperature", o.sampling.temperature, "sampling: scores / temperature")->capture_default_str();
  t->add_option("--top-k", o.sampling.top_k, "sampling: only the k likeliest tokens (0: all)")->capture_default_str();
  t->add_option("--top-p", o.sampling.top_p, "sampling: only the likeliest tokens holding probability p, in (0, 1]")
      ->capture_default_str();
  t->add_option("--seed", o.sampling.seed, "sampling: seed (the same input, options and seed give the same output)")
      ->capture_default_str();
  t->add_option("--batch-size", o.batch_size, "sentences decoded together (sorted by length; output in input order)")
      ->capture_default_str();
  t->add_option("--batch-tokens", o.batch_tokens, "also at most this many padded source tokens per batch (0: off)")
      ->capture_default_str();
  t->add_flag("--truncate-long", c->truncate_long,
              "cut sources beyond the model's positions (default: translate them in pieces); a warning either way");
  t->add_flag("--scores", c->show_scores, "print the score before each hypothesis");
  t->add_flag("--no-progress", c->no_progress, "no progress bar (shown on stderr when there is more than one batch)");
  t->add_option("--attention", c->attention,
                "write attention heat maps (PNG) of the first non-empty line and its translation (the hypothesis "
                "printed, with these decoding options) into this directory: every layer and head and each "
                "layer's mean over heads");
  return beam;
}

void add_translate_command(CLI::App& app) {
  auto c = std::make_shared<TranslateCli>();
  CLI::App* t = app.add_subcommand("translate", "translate lines from stdin or --input with a trained model");
  CLI::Option* beam = add_translate_options(t, *c);
  t->callback([c, beam] {
    train::TranslateOptions o = c->o;
    if (c->greedy || (o.sample && beam->count() == 0)) o.beam_size = 1;
    o.early_stopping = c->early_stopping == "never"       ? models::EarlyStopping::Never
                       : c->early_stopping == "heuristic" ? models::EarlyStopping::Heuristic
                                                          : models::EarlyStopping::WhenBeamFull;
    o.split_long = !c->truncate_long;
    train::check_translate_options(o);  // before loading anything
    if (!c->precision.empty() && c->precision != "fp32" && c->precision != "int8" && c->precision != "bf16")
      throw std::invalid_argument("--precision: \"" + c->precision + "\" is not one of fp32, bf16, int8");
    const bool marian = models::is_hf_marian_dir(c->model_dir);  // config.json with "model_type": "marian"
    if (marian && !c->checkpoint.empty())
      throw std::invalid_argument("--checkpoint: " + c->model_dir +
                                  " is a Hugging Face Marian directory (its weights are model.safetensors)");
    train::TranslationSession s =
        marian ? models::load_hf_marian(c->model_dir) : train::TranslationSession::load(c->model_dir, c->checkpoint);
    if (!s.checkpoint_note().empty()) std::cerr << "attn translate: note: " << s.checkpoint_note() << "\n";
    if (c->precision == "int8" && !models::is_int8(s.model())) models::quantize_translator_int8(s.model());
    if (c->precision == "bf16" && models::is_int8(s.model()))
      throw std::invalid_argument("--precision bf16: " + c->model_dir + " holds an int8 model (attn quantize)");
    if (c->precision == "fp32" && models::is_int8(s.model()))
      throw std::invalid_argument("--precision fp32: " + c->model_dir +
                                  " holds an int8 model (attn quantize); use the float32 run directory it came from");
    std::vector<std::string> lines;
    if (c->input.empty()) {
      std::string line;
      while (std::getline(std::cin, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(line);
      }
    } else {
      lines = data::read_lines(c->input);
    }
    o.progress = !c->no_progress && int64_t(lines.size()) > o.batch_size;
    // bf16: the model converted (model.to(torch.bfloat16) in PyTorch): half the weights' memory, no casts
    // while decoding; measured on the demo model, test BLEU as float32 and autocast (docs/translation.md)
    if (c->precision == "bf16") s.model().to(kBFloat16);
    auto nbest = s.translate_nbest(lines, o);
    for (const std::string& w : s.warnings()) std::cerr << "attn translate: warning: " << w << "\n";
    std::ofstream file;
    if (!c->output.empty()) {
      file.open(c->output);
      if (!file) throw std::runtime_error("cannot write " + c->output);
    }
    std::ostream& out = c->output.empty() ? std::cout : file;
    for (size_t i = 0; i < nbest.size(); ++i) {
      const auto& list = nbest[i];
      const bool blank = lines[i].find_first_not_of(" \t\r\n") == std::string::npos;  // an empty line, even in n-best
      for (size_t k = 0; k < list.size() && !blank; ++k) {
        if (c->show_scores || o.n_best > 1) out << list[k].second << "\t";
        out << list[k].first << (k + 1 < list.size() ? "\t" : "");
      }
      out << "\n";
    }
    if (!c->attention.empty()) {
      auto first = std::find_if(lines.begin(), lines.end(),
                                [](const std::string& l) { return l.find_first_not_of(" \t") != std::string::npos; });
      if (first == lines.end()) throw std::invalid_argument("--attention: no non-empty input line");
      auto files = s.write_attention_pictures(*first, c->attention, o);
      std::cerr << "attn translate: wrote " << files.size() << " attention pictures to " << c->attention << "\n";
    }
  });
}

}  // namespace

void add_translate_commands(CLI::App& app) {
  // ---- attn train-translator
  auto tc = std::make_shared<TranslatorCli>();
  CLI::App* tr = app.add_subcommand("train-translator", "train the Transformer translator on parallel text (resumable)");
  add_train_options(tr, *tc);
  tr->callback([=] {
    auto r = train::train_translator(resolve(*tc));
    std::cout << result_json(r).dump() << std::endl;
    if (r.signal) exit_code = 128 + r.signal;  // interrupted: the checkpoint holds the last step
  });

  // ---- attn translate
  add_translate_command(app);

  // ---- attn bleu
  auto hyp = std::make_shared<std::string>(), ref = std::make_shared<std::string>();
  CLI::App* b = app.add_subcommand("bleu", "corpus BLEU (sacreBLEU 13a) and chrF of a hypothesis file");
  b->add_option("--hyp", *hyp, "hypotheses, one per line")->required();
  b->add_option("--ref", *ref, "references, one per line")->required();
  b->callback([=] {
    auto h = data::read_lines(*hyp), r = data::read_lines(*ref);
    auto s = eval::corpus_bleu(h, {r});
    std::cout << s.signature() << "\n";
    std::cout << json{{"bleu", s.score}, {"chrf", eval::corpus_chrf(h, {r}).score}}.dump() << std::endl;
  });

  // ---- attn demo-translate
  auto dc = std::make_shared<TranslatorCli>();
  dc->o.time_budget_s = 540;
  dc->o.eval_every = 500;
  dc->o.eval_sentences = 200;
  dc->o.warmup_steps = 1000;  // short runs: reach the peak rate early (the recipe of the PyTorch comparison)
  dc->o.lr_factor = 1.0;
  auto test = std::make_shared<std::string>("data/bible/test");
  auto demo_beam = std::make_shared<int64_t>(4);
  CLI::App* d = app.add_subcommand("demo-translate",
                                   "train (or resume) the translator within a time budget, then report held-out BLEU");
  add_train_options(d, *dc);
  d->add_option("--test", *test, "held-out files prefix")->capture_default_str();
  d->add_option("--beam", *demo_beam, "beam size for the held-out evaluation")->capture_default_str();
  d->callback([=] {
    train::check_translate_options({.beam_size = *demo_beam});  // before the training, not after it
    auto o = resolve(*dc);
    auto r = train::train_translator(o);
    if (r.signal) {  // Ctrl-C: the checkpoint is written; skip the held-out evaluation
      std::cout << result_json(r).dump() << std::endl;
      exit_code = 128 + r.signal;
      return;
    }
    train::TranslationSession s = train::TranslationSession::load(o.out_dir);
    std::cerr << "translating the held-out " << *test << "." << dc->src << " (beam " << *demo_beam << ") ..." << std::endl;
    json ev = evaluate_file(s, *test + "." + dc->src, *test + "." + dc->tgt, o.out_dir + "/test.hyp." + dc->tgt,
                            {.beam_size = *demo_beam});
    auto src = data::read_lines(*test + "." + dc->src), ref = data::read_lines(*test + "." + dc->tgt);
    auto hyp = data::read_lines(o.out_dir + "/test.hyp." + dc->tgt);
    std::cout << "held-out " << ev["signature"].get<std::string>() << "  chrF " << ev["chrf"].get<double>() << "\n";
    for (size_t i = 0; i < std::min<size_t>(5, src.size()); i += 1) {
      size_t k = i * (src.size() / 5);
      std::cout << "  src: " << src[k] << "\n  ref: " << ref[k] << "\n  out: " << hyp[k] << "\n\n";
    }
    std::string pics = o.out_dir + "/attention";
    auto files = s.write_attention_pictures(src.empty() ? "In the beginning God created the heavens and the earth." : src[0], pics);
    std::cout << "attention pictures (" << files.size() << " PNG files): " << pics << "\n";
    json out = result_json(r);
    out["bleu"] = ev["bleu"];
    out["chrf"] = ev["chrf"];
    out["test_seconds"] = ev["seconds"];
    std::cout << out.dump() << std::endl;
  });
}

}  // namespace attn::cli
