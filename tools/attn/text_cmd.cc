#include "commands.h"
namespace attn::cli {
void add_text_commands(CLI::App&) {}
}
