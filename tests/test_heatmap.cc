// Attention heat maps: a valid PNG of the expected size; bad arguments are clear errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "attn/io/heatmap.h"

TEST(Heatmap, WritesAPng) {
  std::string path = (std::filesystem::temp_directory_path() / "attn_heatmap_test.png").string();
  std::vector<float> w = {0.7f, 0.2f, 0.1f, 0.1f, 0.8f, 0.1f};
  attn::io::write_heatmap_png(path, w, 2, 3, {.row_labels = {"la", "luz"}, .col_labels = {"the", "light", "</s>"},
                                              .title = "cross-attention layer 0 head 0"});
  std::ifstream f(path, std::ios::binary);
  ASSERT_TRUE(f.good());
  char sig[8];
  f.read(sig, 8);
  EXPECT_EQ(std::string(sig, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_GT(std::filesystem::file_size(path), 200u);
  std::filesystem::remove(path);
}

TEST(Heatmap, BadArguments) {
  EXPECT_THROW(attn::io::write_heatmap_png("/tmp/x.png", {1, 2, 3}, 2, 2), std::invalid_argument);
  EXPECT_THROW(attn::io::write_heatmap_png("/tmp/x.png", {1, 2, 3, 4}, 2, 2, {.row_labels = {"a"}}), std::invalid_argument);
  EXPECT_THROW(attn::io::write_heatmap_png("/nonexistent-dir/x.png", {1, 2, 3, 4}, 2, 2), std::runtime_error);
}
