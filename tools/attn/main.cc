// attn — command-line tool. Subcommands are added by their features (train, translate, ...).
#include <CLI/CLI.hpp>
#include <iostream>

int main(int argc, char** argv) {
  CLI::App app{"attn: build, train and serve attention models from C++"};
  app.require_subcommand(1);
  auto* version = app.add_subcommand("version", "print the version");
  version->callback([] { std::cout << "attn 0.1.0\n"; });
  CLI11_PARSE(app, argc, argv);
  return 0;
}
