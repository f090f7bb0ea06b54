// src/io/png_file.cc — see png_file.h.
#include "io/png_file.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace attn::io {

void write_png_atomically(cairo_surface_t* surface, const std::string& path, const char* who) {
  const std::string tmp = path + ".tmp";
  cairo_status_t st = cairo_surface_write_to_png(surface, tmp.c_str());
  cairo_surface_destroy(surface);
  if (st != CAIRO_STATUS_SUCCESS) {
    std::remove(tmp.c_str());
    throw std::runtime_error(std::string(who) + ": cannot write " + path + ": " + cairo_status_to_string(st));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw std::runtime_error(std::string(who) + ": cannot rename " + tmp + " to " + path + ": " + ec.message());
}

}  // namespace attn::io
