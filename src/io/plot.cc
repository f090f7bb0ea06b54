// src/io/plot.cc — training curves as a PNG, drawn with cairo (attn/io/plot.h).
#include "attn/io/plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "io/png_file.h"

namespace attn::io {
namespace {

// Distinguishable line colours (matplotlib's tab10 order).
const double kColours[][3] = {{0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173},
                              {0.839, 0.153, 0.157}, {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294},
                              {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498}};

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return !(lo <= hi); }
  void pad() {  // a flat or single-point range still gets a visible height
    if (empty()) lo = 0, hi = 1;
    if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  }
};

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

void draw_panel(cairo_t* cr, const CurvePanel& p, double x0, double y0, const CurvesOptions& o) {
  const double left = x0 + 60, right = x0 + o.panel_width - 15, top = y0 + 30, bottom = y0 + o.panel_height - 40;
  Range xr, yr;
  for (const auto& s : p.series)
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) xr.add(s.x[i]), yr.add(s.y[i]);
  xr.pad();
  yr.pad();
  auto px = [&](double x) { return left + (x - xr.lo) / (xr.hi - xr.lo) * (right - left); };
  auto py = [&](double y) { return bottom - (y - yr.lo) / (yr.hi - yr.lo) * (bottom - top); };

  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, left, top, right - left, bottom - top);
  cairo_stroke(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 13);
  cairo_move_to(cr, left, y0 + 20);
  cairo_show_text(cr, p.title.c_str());
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 10);
  auto text_at = [&](double x, double y, const std::string& s) {
    cairo_move_to(cr, x, y);
    cairo_show_text(cr, s.c_str());
  };
  text_at(x0 + 5, top + 10, fmt(yr.hi));
  text_at(x0 + 5, bottom, fmt(yr.lo));
  text_at(left, bottom + 15, fmt(xr.lo));
  text_at(right - 40, bottom + 15, fmt(xr.hi));
  text_at((left + right) / 2 - 10, bottom + 30, o.x_label);

  double legend_w = 0;  // a white box under the legend keeps it readable over the lines
  for (const auto& s : p.series) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, s.name.c_str(), &e);
    legend_w = std::max(legend_w, e.x_advance);
  }
  const double legend_x = right - legend_w - 30;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_rectangle(cr, legend_x - 4, top + 2, legend_w + 30, 14 * double(p.series.size()) + 4);
  cairo_fill(cr);
  for (size_t k = 0; k < p.series.size(); ++k) {
    const CurveSeries& s = p.series[k];
    const double* c = kColours[k % (sizeof kColours / sizeof kColours[0])];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_set_line_width(cr, 1.5);
    size_t points = 0;
    double last_x = 0, last_y = 0;
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      last_x = px(s.x[i]), last_y = py(s.y[i]);
      if (points++)
        cairo_line_to(cr, last_x, last_y);
      else
        cairo_move_to(cr, last_x, last_y);
    }
    cairo_stroke(cr);
    if (points == 1) {  // a lone point (one evaluation so far) as a dot
      cairo_arc(cr, last_x, last_y, 3.0, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    double ly = top + 14 + 14 * double(k);  // legend, top right
    cairo_rectangle(cr, legend_x, ly - 7, 12, 3);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(legend_x + 17, ly - 2, s.name);
  }
}

}  // namespace

void write_curves_png(const std::string& path, const std::vector<CurvePanel>& panels, const CurvesOptions& o) {
  if (panels.empty()) throw std::invalid_argument("write_curves_png(" + path + "): no panels");
  if (o.panel_width < 200 || o.panel_height < 150)
    throw std::invalid_argument("write_curves_png(" + path + "): panels must be at least 200 x 150 pixels");
  const int width = o.panel_width * int(panels.size()), height = o.panel_height;
  cairo_surface_t* surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(surf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  for (size_t i = 0; i < panels.size(); ++i) draw_panel(cr, panels[i], double(i) * o.panel_width, 0, o);
  cairo_destroy(cr);
  write_png_atomically(surf, path, "write_curves_png");
}

}  // namespace attn::io
