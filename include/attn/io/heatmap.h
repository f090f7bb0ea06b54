// attn/io/heatmap.h — attention weights as a PNG heat map with tokens as axis labels (cairo).
//
//   // weights: (rows, cols) row-major, e.g. one head's softmax(QK^T/sqrt(d)) for one sentence
//   attn::io::write_heatmap_png("runs/attn/enc_l0_h0.png", weights, rows, cols,
//                               {.row_labels = tgt_tokens, .col_labels = src_tokens,
//                                .title = "encoder layer 0 head 0"});
#pragma once
#include <string>
#include <vector>

namespace attn::io {

struct HeatmapOptions {
  std::vector<std::string> row_labels = {};  // queries (y axis), top to bottom
  std::vector<std::string> col_labels = {};  // keys (x axis), left to right
  std::string title = {};
  int cell = 28;                        // pixels per cell
};

// Values are drawn on a 0..max scale (viridis-like colours). Written atomically.
void write_heatmap_png(const std::string& path, const std::vector<float>& weights, int rows, int cols,
                       const HeatmapOptions& o = {});

}  // namespace attn::io
