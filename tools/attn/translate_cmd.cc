// tools/attn/translate_cmd.cc — translation: train-translator, translate, bleu, demo-translate.
//
//   attn train-translator --train data/bible/train --dev data/bible/dev --src en --tgt es --out runs/translate
//   attn translate --model runs/translate --beam 5 < input.en > output.es
//   attn translate --model runs/translate --attention runs/translate/attention <<< "In the beginning God created."
//   attn bleu --hyp output.es --ref data/bible/test.es          # sacreBLEU-compatible BLEU and chrF
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "attn/data/parallel_text.h"
#include "attn/eval/bleu.h"
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
  auto model_dir = std::make_shared<std::string>("runs/translate");
  auto input = std::make_shared<std::string>(), output = std::make_shared<std::string>();
  auto attention = std::make_shared<std::string>(), checkpoint = std::make_shared<std::string>();
  auto topt = std::make_shared<train::TranslateOptions>();
  auto greedy = std::make_shared<bool>(false), show_scores = std::make_shared<bool>(false);
  CLI::App* t = app.add_subcommand("translate", "translate lines from stdin or --input with a trained model");
  t->add_option("--model", *model_dir, "run directory of train-translator, or a Hugging Face MarianMTModel directory")
      ->capture_default_str();
  t->add_option("--checkpoint", *checkpoint, "checkpoint file (default: best.safetensors of the run)");
  t->add_option("--input", *input, "input file (default stdin)");
  t->add_option("--output", *output, "output file (default stdout)");
  t->add_option("--beam", topt->beam_size, "beam size (1 = greedy)")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_flag("--greedy", *greedy, "argmax decoding, as in the lecture");
  t->add_option("--length-penalty", topt->length_penalty, "score = log p / len^alpha")->capture_default_str();
  t->add_option("--n-best", topt->n_best, "hypotheses per sentence (tab-separated with scores)")->capture_default_str();
  t->add_option("--batch-size", topt->batch_size, "sentences decoded together")->capture_default_str();
  t->add_flag("--scores", *show_scores, "print the score before each hypothesis");
  t->add_option("--attention", *attention, "write attention heat maps (PNG) of the first sentence into this directory");
  t->callback([=] {
    const bool marian = models::is_hf_marian_dir(*model_dir);  // config.json with "model_type": "marian"
    if (marian && !checkpoint->empty())
      throw std::invalid_argument("--checkpoint: " + *model_dir + " is a Hugging Face Marian directory (its weights are model.safetensors)");
    train::TranslationSession s = marian ? models::load_hf_marian(*model_dir) : train::TranslationSession::load(*model_dir, *checkpoint);
    std::vector<std::string> lines;
    if (input->empty()) {
      std::string line;
      while (std::getline(std::cin, line)) lines.push_back(line);
    } else {
      lines = data::read_lines(*input);
    }
    train::TranslateOptions o = *topt;
    if (*greedy) o.beam_size = 1;
    if (o.n_best > o.beam_size) throw std::invalid_argument("--n-best must not exceed --beam");
    auto nbest = s.translate_nbest(lines, o);
    std::ofstream file;
    if (!output->empty()) {
      file.open(*output);
      if (!file) throw std::runtime_error("cannot write " + *output);
    }
    std::ostream& out = output->empty() ? std::cout : file;
    for (auto& list : nbest) {
      for (size_t k = 0; k < list.size(); ++k) {
        if (*show_scores || o.n_best > 1) out << list[k].second << "\t";
        out << list[k].first << (k + 1 < list.size() ? "\t" : "");
      }
      out << "\n";
    }
    if (s.truncated() > 0) std::cerr << "attn translate: " << s.truncated() << " over-long input lines were truncated\n";
    if (!attention->empty()) {
      std::string first;
      for (auto& l : lines)
        if (l.find_first_not_of(" \t") != std::string::npos) {
          first = l;
          break;
        }
      if (first.empty()) throw std::invalid_argument("--attention: no non-empty input line");
      auto files = s.write_attention_pictures(first, *attention);
      std::cerr << "attn translate: wrote " << files.size() << " attention pictures to " << *attention << "\n";
    }
  });

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
