// Attention heat maps: a valid PNG of the expected size whose cells have the colours of their values;
// bad arguments are clear errors.
#include <gtest/gtest.h>

#include <cairo.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
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

// The PNG read back (cairo's reader): its size and the centre pixel of every cell, which must have the
// viridis colour of value / max (matplotlib's viridis at 0, 1/4, 1/2, 3/4 and 1, 8 bits per channel).
TEST(Heatmap, CellsHaveTheColoursOfTheirValues) {
  std::string path = (std::filesystem::temp_directory_path() / "attn_heatmap_pixels.png").string();
  // 2 x 3, max 2: the scale is value / 2
  std::vector<float> w = {0.0f, 1.0f, 2.0f, 0.5f, 1.5f, 2.0f};
  const std::array<std::array<int, 3>, 6> want = {{{68, 1, 84},     // 0
                                                   {33, 145, 140},  // 1/2
                                                   {253, 231, 37},  // 1
                                                   {59, 81, 138},   // 1/4
                                                   {95, 200, 97},   // 3/4
                                                   {253, 231, 37}}};
  const int cell = 20;
  // no labels or title: the grid starts at (10, 10); auto_scale: 0..max
  attn::io::write_heatmap_png(path, w, 2, 3, {.cell = cell, .auto_scale = true});
  cairo_surface_t* img = cairo_image_surface_create_from_png(path.c_str());
  ASSERT_EQ(cairo_surface_status(img), CAIRO_STATUS_SUCCESS) << path;
  // width: 10 margin + 3 cells + 60 colour bar + 10; height: 10 + 2 cells + 10
  EXPECT_EQ(cairo_image_surface_get_width(img), 10 + 3 * cell + 60 + 10);
  EXPECT_EQ(cairo_image_surface_get_height(img), 10 + 2 * cell + 10);
  cairo_surface_flush(img);
  const unsigned char* data = cairo_image_surface_get_data(img);
  const int stride = cairo_image_surface_get_stride(img);
  auto pixel = [&](int x, int y) {  // ARGB32 / RGB24: one native-endian uint32 per pixel, 0xAARRGGBB
    uint32_t p;
    std::memcpy(&p, data + size_t(y) * stride + size_t(x) * 4, 4);
    return std::array<int, 3>{int(p >> 16 & 255), int(p >> 8 & 255), int(p & 255)};
  };
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) {
      auto got = pixel(10 + c * cell + cell / 2, 10 + r * cell + cell / 2);
      for (int k = 0; k < 3; ++k)
        EXPECT_LE(std::abs(got[k] - want[size_t(r * 3 + c)][size_t(k)]), 1)
            << "cell (" << r << ", " << c << ") channel " << k << ": got " << got[k];
    }
  EXPECT_EQ(pixel(3, 3), (std::array<int, 3>{255, 255, 255})) << "the margin is white";
  cairo_surface_destroy(img);
  std::filesystem::remove(path);
}

TEST(Heatmap, BadArguments) {
  EXPECT_THROW(attn::io::write_heatmap_png("/tmp/x.png", {1, 2, 3}, 2, 2), std::invalid_argument);
  EXPECT_THROW(attn::io::write_heatmap_png("/tmp/x.png", {1, 2, 3, 4}, 2, 2, {.row_labels = {"a"}}), std::invalid_argument);
  EXPECT_THROW(attn::io::write_heatmap_png("/nonexistent-dir/x.png", {1, 2, 3, 4}, 2, 2), std::runtime_error);
}

// The default scale is fixed at 0..1 (values above 1 clamp), so pictures of different maxima compare;
// axis titles and a title add room above and left of the grid.
TEST(Heatmap, FixedScaleByDefaultAndAxisTitles) {
  std::string path = (std::filesystem::temp_directory_path() / "attn_heatmap_fixed.png").string();
  std::vector<float> w = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 2.0f};
  const std::array<std::array<int, 3>, 6> want = {
      {{68, 1, 84}, {59, 81, 138}, {33, 145, 140}, {95, 200, 97}, {253, 231, 37}, {253, 231, 37}}};
  const int cell = 20;
  attn::io::write_heatmap_png(path, w, 2, 3, {.cell = cell});
  cairo_surface_t* img = cairo_image_surface_create_from_png(path.c_str());
  ASSERT_EQ(cairo_surface_status(img), CAIRO_STATUS_SUCCESS) << path;
  cairo_surface_flush(img);
  const unsigned char* data = cairo_image_surface_get_data(img);
  const int stride = cairo_image_surface_get_stride(img);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) {
      uint32_t p;
      std::memcpy(&p, data + size_t(10 + r * cell + cell / 2) * stride + size_t(10 + c * cell + cell / 2) * 4, 4);
      const std::array<int, 3> got = {int(p >> 16 & 255), int(p >> 8 & 255), int(p & 255)};
      for (int k = 0; k < 3; ++k) EXPECT_LE(std::abs(got[k] - want[size_t(r * 3 + c)][size_t(k)]), 1) << r << "," << c;
    }
  cairo_surface_destroy(img);
  attn::io::write_heatmap_png(path, w, 2, 3,
                              {.title = "decoder cross-attention, layer 1 of 1, head 1 of 1",
                               .row_title = "query: target token being produced",
                               .col_title = "key: source token attended to", .cell = cell});
  img = cairo_image_surface_create_from_png(path.c_str());
  ASSERT_EQ(cairo_surface_status(img), CAIRO_STATUS_SUCCESS) << path;
  EXPECT_GT(cairo_image_surface_get_height(img), 10 + 2 * cell + 10 + 20) << "room for the titles";
  EXPECT_GT(cairo_image_surface_get_width(img), 10 + 3 * cell + 60 + 10) << "room for the row title";
  cairo_surface_destroy(img);
  EXPECT_THROW(attn::io::write_heatmap_png(path, w, 2, 3, {.vmin = 1, .vmax = 1}), std::invalid_argument);
  std::filesystem::remove(path);
}
