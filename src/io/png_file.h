// src/io/png_file.h — writes a cairo image surface to a PNG file atomically (a temporary beside the
// file, then rename), for the pictures of heatmap.cc and plot.cc. Takes ownership of the surface.
//
//   cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
//   ... draw ...
//   io::write_png_atomically(surf, "runs/x/curves.png", "write_curves_png");   // throws naming the file
#pragma once
#include <cairo.h>

#include <string>

namespace attn::io {

void write_png_atomically(cairo_surface_t* surface, const std::string& path, const char* who);

}  // namespace attn::io
