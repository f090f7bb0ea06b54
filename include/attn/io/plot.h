// attn/io/plot.h — line charts of training curves as a PNG (cairo), e.g. <run>/curves.png.
//
//   attn::io::CurvePanel loss{.title = "loss", .series = {{.name = "train/loss", .x = {50, 100}, .y = {2.1, 1.7}},
//                                                          {.name = "dev/loss", .x = {100}, .y = {1.9}}}};
//   attn::io::write_curves_png("runs/mt/curves.png", {loss}, {.x_label = "step"});
//
// Panels are drawn side by side, each with its own y range (from its data), a shared-looking x axis,
// min/max tick labels and a legend; a series with one point is drawn as a dot. Written atomically.
#pragma once
#include <string>
#include <vector>

namespace attn::io {

struct CurveSeries {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite points are skipped
};

struct CurvePanel {
  std::string title;
  std::vector<CurveSeries> series;
};

struct CurvesOptions {
  std::string x_label = {};
  int panel_width = 560, panel_height = 360;  // pixels
};

void write_curves_png(const std::string& path, const std::vector<CurvePanel>& panels, const CurvesOptions& o = {});

}  // namespace attn::io
