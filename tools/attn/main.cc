// attn — command-line tool: train and demo (train_cmd.cc), version and info (info_cmd.cc).
//
//   attn train --model cnn --epochs 4 --out runs/cnn     # Fashion-MNIST; last stdout line is JSON
//   attn train --model cnn --out runs/cnn --resume       # continue from runs/cnn/checkpoint.safetensors
//   attn demo                                            # the default demo job
//   attn info                                            # CPU features, threads, library versions
//   mpirun -np 4 attn train-translator ...               # data parallel on 4 processes (docs/distributed.md)
#include <cstdio>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>

#include "attn/dist/communicator.h"
#include "commands.h"

namespace attn::cli {
int exit_code = 0;
}

int main(int argc, char** argv) {
  CLI::App app{"attn: build, train and serve attention models from C++"};
  app.require_subcommand(1);
  attn::cli::add_train_commands(app);
  attn::cli::add_info_commands(app);
  attn::cli::add_translate_commands(app);
  attn::cli::add_lm_commands(app);
  attn::cli::add_text_commands(app);
  attn::cli::add_embed_commands(app);
  attn::cli::add_export_commands(app);
  attn::cli::add_finetune_commands(app);
  attn::cli::add_plot_commands(app);
  if (argc >= 2 && argv[1][0] != '-') {  // CLI11 would say only "A subcommand is required"
    std::string commands;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      commands += (commands.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::cerr << "attn: error: unknown command \"" << argv[1] << "\"; the commands are: " << commands
                << " (attn --help describes them)\n";
      return 2;
    }
  }
  try {
    // Under mpirun every rank runs the command (a Trainer job trains data-parallel, docs/distributed.md);
    // rank 0 alone prints the result on stdout. Errors still reach stderr from every rank.
    if (attn::dist::launched_by_mpi() && attn::dist::world()->rank() != 0 && !std::freopen("/dev/null", "w", stdout))
      throw std::runtime_error("cannot silence stdout on this rank");
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "attn: error: " << e.what() << "\n";
    return 1;
  }
  return attn::cli::exit_code;
}
