// src/io/heatmap.cc — PNG heat maps of attention weights, drawn with cairo.
#include "attn/io/heatmap.h"

#include <cairo.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "io/png_file.h"

namespace attn::io {
namespace {

// A few stops of the viridis colour map, linearly interpolated.
std::array<double, 3> viridis(double t) {
  static const double stops[][3] = {{0.267, 0.005, 0.329}, {0.283, 0.141, 0.458}, {0.254, 0.265, 0.530},
                                    {0.207, 0.372, 0.553}, {0.164, 0.471, 0.558}, {0.128, 0.567, 0.551},
                                    {0.135, 0.659, 0.518}, {0.267, 0.749, 0.441}, {0.478, 0.821, 0.318},
                                    {0.741, 0.873, 0.150}, {0.993, 0.906, 0.144}};
  t = std::clamp(t, 0.0, 1.0) * 10.0;
  int i = std::min(int(t), 9);
  double f = t - i;
  return {stops[i][0] + f * (stops[i + 1][0] - stops[i][0]), stops[i][1] + f * (stops[i + 1][1] - stops[i][1]),
          stops[i][2] + f * (stops[i + 1][2] - stops[i][2])};
}

double text_width(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

}  // namespace

void write_heatmap_png(const std::string& path, const std::vector<float>& w, int rows, int cols,
                       const HeatmapOptions& o) {
  if (rows <= 0 || cols <= 0 || int64_t(rows) * cols != int64_t(w.size()))
    throw std::invalid_argument("write_heatmap_png(" + path + "): " + std::to_string(w.size()) +
                                " weights do not fill a " + std::to_string(rows) + "x" + std::to_string(cols) + " grid");
  if ((!o.row_labels.empty() && int(o.row_labels.size()) != rows) ||
      (!o.col_labels.empty() && int(o.col_labels.size()) != cols))
    throw std::invalid_argument("write_heatmap_png(" + path + "): label counts do not match the grid");
  if (rows > 2048 || cols > 2048) throw std::invalid_argument("write_heatmap_png(" + path + "): grid too large");
  if (!o.auto_scale && !(std::isfinite(o.vmin) && std::isfinite(o.vmax) && o.vmin < o.vmax))
    throw std::invalid_argument("write_heatmap_png(" + path + "): the colour scale needs finite vmin < vmax");
  const int cell = std::max(4, o.cell);
  const double font = std::min(14.0, cell * 0.5);

  // measure labels
  cairo_surface_t* probe = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
  cairo_t* pc = cairo_create(probe);
  cairo_select_font_face(pc, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(pc, font);
  double left = 10, top = 10, text_w = 0;
  const double row_title_len = o.row_title.empty() ? 0 : text_width(pc, o.row_title);
  for (const auto& s : o.row_labels) left = std::max(left, text_width(pc, s) + 12);
  for (const auto& s : o.col_labels) top = std::max(top, text_width(pc, s) + 12);
  for (const std::string* s : {&o.title, &o.row_title, &o.col_title}) text_w = std::max(text_w, text_width(pc, *s) + 16);
  cairo_destroy(pc);
  cairo_surface_destroy(probe);
  const double title_h = o.title.empty() ? 0 : font * 2;
  const double col_title_h = o.col_title.empty() ? 0 : font * 1.8;
  const double row_title_w = o.row_title.empty() ? 0 : font * 1.8;
  left += row_title_w;
  const int legend = 60;
  int width = int(std::max(left + cols * cell + legend + 10, text_w));
  int height = int(title_h + col_title_h + top + rows * cell + 10);
  if (!o.row_title.empty()) height = std::max(height, int(title_h + col_title_h + top + row_title_len + 10));

  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, font);
  cairo_set_source_rgb(cr, 0, 0, 0);
  if (!o.title.empty()) {
    cairo_move_to(cr, 8, font * 1.4);
    cairo_show_text(cr, o.title.c_str());
  }
  if (!o.col_title.empty()) {  // above the column labels
    cairo_move_to(cr, left, title_h + font * 1.3);
    cairo_show_text(cr, o.col_title.c_str());
  }
  const double y0 = title_h + col_title_h + top;
  if (!o.row_title.empty()) {  // vertical, reading bottom to top, left of the row labels
    cairo_save(cr);
    cairo_move_to(cr, font * 1.3, y0 + text_width(cr, o.row_title));
    cairo_rotate(cr, -M_PI / 2);
    cairo_show_text(cr, o.row_title.c_str());
    cairo_restore(cr);
  }
  double lo = o.vmin, hi = o.vmax;
  if (o.auto_scale) {
    float vmax = 0;
    for (float v : w)
      if (std::isfinite(v)) vmax = std::max(vmax, v);
    lo = 0;
    hi = vmax <= 0 ? 1 : vmax;
  }
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      float v = w[size_t(r) * cols + c];
      auto rgb = viridis(std::isfinite(v) ? (v - lo) / (hi - lo) : 0.0);
      cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
      cairo_rectangle(cr, left + c * cell, y0 + r * cell, cell, cell);
      cairo_fill(cr);
    }
  cairo_set_source_rgb(cr, 0, 0, 0);
  for (int r = 0; r < int(o.row_labels.size()); ++r) {
    const std::string& s = o.row_labels[r];
    cairo_move_to(cr, left - 6 - text_width(cr, s), y0 + r * cell + cell * 0.5 + font * 0.35);
    cairo_show_text(cr, s.c_str());
  }
  for (int c = 0; c < int(o.col_labels.size()); ++c) {  // rotated column labels
    cairo_save(cr);
    cairo_move_to(cr, left + c * cell + cell * 0.5 + font * 0.35, y0 - 6);
    cairo_rotate(cr, -M_PI / 2);
    cairo_show_text(cr, o.col_labels[c].c_str());
    cairo_restore(cr);
  }
  // colour bar
  double bx = left + cols * cell + 15, bh = std::max(40, rows * cell);
  for (int i = 0; i < int(bh); ++i) {
    auto rgb = viridis(1.0 - i / bh);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_rectangle(cr, bx, y0 + i, 12, 1);
    cairo_fill(cr);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  char buf[32];
  cairo_set_font_size(cr, 10);
  std::snprintf(buf, sizeof buf, "%.2f", hi);
  cairo_move_to(cr, bx + 15, y0 + 10);
  cairo_show_text(cr, buf);
  std::snprintf(buf, sizeof buf, "%.2g", lo);
  cairo_move_to(cr, bx + 15, y0 + bh);
  cairo_show_text(cr, buf);
  cairo_destroy(cr);

  write_png_atomically(surf, path, "write_heatmap_png");
}

}  // namespace attn::io
