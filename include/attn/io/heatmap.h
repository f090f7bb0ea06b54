// attn/io/heatmap.h — attention weights as a PNG heat map with tokens as axis labels (cairo).
//
//   // weights: (rows, cols) row-major, e.g. one head's softmax(QK^T/sqrt(d)) for one sentence
//   attn::io::write_heatmap_png("runs/attn/cross_l1_h1.png", weights, rows, cols,
//                               {.row_labels = tgt_tokens, .col_labels = src_tokens,
//                                .title = "decoder cross-attention, layer 1 of 3, head 1 of 4",
//                                .row_title = "query: target token being produced",
//                                .col_title = "key: source token attended to"});
#pragma once
#include <string>
#include <vector>

namespace attn::io {

struct HeatmapOptions {
  std::vector<std::string> row_labels = {};  // queries (y axis), top to bottom
  std::vector<std::string> col_labels = {};  // keys (x axis), left to right
  std::string title = {};
  std::string row_title = {};           // what the rows are, written vertically left of the grid
  std::string col_title = {};           // what the columns are, written above the grid
  int cell = 28;                        // pixels per cell
  // Colour scale: fixed [vmin, vmax] by default (attention weights are probabilities, and one scale
  // lets pictures be compared); auto_scale: 0..the largest value of this picture.
  double vmin = 0.0, vmax = 1.0;
  bool auto_scale = false;
};

// Values are drawn with viridis-like colours, clamped to the scale (printed on the colour bar).
// Written atomically.
void write_heatmap_png(const std::string& path, const std::vector<float>& weights, int rows, int cols,
                       const HeatmapOptions& o = {});

}  // namespace attn::io
