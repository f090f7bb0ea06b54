// tools/attn/export_cmd.cc — attn export: a trained translator run as a Hugging Face MarianMTModel
// directory (loadable by transformers; convertible by CTranslate2's ct2-transformers-converter);
// attn quantize: the same run as an int8 model directory (attn/train/quantize_run.h).
//
//   attn train-translator --marian --out runs/translate ...      # Marian's architecture (see --help)
//   attn export --format hf-marian --model runs/translate --out runs/translate-hf
//   attn translate --model runs/translate-hf < input.en           # a Marian directory runs in attn too
//   attn quantize --model runs/translate --out runs/translate-int8
//   attn translate --model runs/translate-int8 < input.en         # int8 decoding
#include <iostream>
#include <stdexcept>

#include "attn/models/marian.h"
#include "attn/train/quantize_run.h"
#include "commands.h"

namespace attn::cli {

void add_export_commands(CLI::App& app) {
  auto format = std::make_shared<std::string>("hf-marian"), model = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto opts = std::make_shared<models::HfMarianExportOptions>();
  CLI::App* e = app.add_subcommand("export", "write a trained translator in another framework's format");
  e->add_option("--format", *format, "hf-marian: a Hugging Face MarianMTModel directory")
      ->check(CLI::IsMember({"hf-marian"}))
      ->capture_default_str();
  e->add_option("--model", *model, "run directory of train-translator (trained with --marian)")->required();
  e->add_option("--checkpoint", opts->checkpoint, "checkpoint file (default: best.safetensors of the run, else checkpoint.safetensors)");
  e->add_option("--out", *out, "output directory")->required();
  e->add_option("--source-lang", opts->source_lang, "source language code (tokenizer_config.json)")->capture_default_str();
  e->add_option("--target-lang", opts->target_lang, "target language code (tokenizer_config.json)")->capture_default_str();
  // The callback owns every bound option: CLI11 writes through references to them while parsing.
  e->callback([=] {
    if (*format != "hf-marian") throw std::invalid_argument("attn export: unknown --format " + *format);
    models::export_hf_marian(*model, *out, *opts);
    std::cerr << "attn export: wrote a MarianMTModel directory to " << *out << "\n";
  });

  auto q_model = std::make_shared<std::string>(), q_out = std::make_shared<std::string>();
  auto q_checkpoint = std::make_shared<std::string>();
  CLI::App* q = app.add_subcommand("quantize", "write a trained translator's int8 model (for attn translate --model)");
  q->add_option("--model", *q_model, "run directory of train-translator")->required();
  q->add_option("--checkpoint", *q_checkpoint, "checkpoint file (default: best.safetensors of the run, else checkpoint.safetensors)");
  q->add_option("--out", *q_out, "output directory: config.json, the SentencePiece model, model.int8.safetensors")->required();
  q->callback([=] {
    const std::string weights = train::quantize_run_dir(*q_model, *q_out, *q_checkpoint);
    std::cerr << "attn quantize: wrote " << weights << " (int8 weights per output channel, int8 activations)\n";
  });
}

}  // namespace attn::cli
