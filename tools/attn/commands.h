// tools/attn/commands.h — the attn CLI's subcommands (each file registers one or two).
//
//   CLI::App app{"attn"};
//   attn::cli::add_train_commands(app);   // attn train, attn demo
//   attn::cli::add_info_commands(app);    // attn version, attn info
#pragma once
#include <CLI/CLI.hpp>

namespace attn::cli {

void add_train_commands(CLI::App& app);
void add_info_commands(CLI::App& app);
void add_translate_commands(CLI::App& app);  // train-translator, translate, bleu, demo-translate
void add_lm_commands(CLI::App& app);         // train-lm, generate
void add_text_commands(CLI::App& app);       // train-text
void add_embed_commands(CLI::App& app);      // embed, similarity (sentence-transformers directories)
void add_export_commands(CLI::App& app);     // export
void add_finetune_commands(CLI::App& app);   // finetune (BERT / MiniLM classifier: full, frozen, LoRA)
void add_plot_commands(CLI::App& app);       // plot (a metric of several runs' metrics.jsonl in one PNG)

// The exit code a subcommand's callback asks for (set when a command fails in an expected way).
extern int exit_code;

}  // namespace attn::cli
