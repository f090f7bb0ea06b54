// SentencePiece wrapper: train on a small generated corpus, round-trip, special ids, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "attn/text/sentencepiece.h"

namespace fs = std::filesystem;
using attn::text::SentencePiece;

TEST(SentencePiece, TrainEncodeDecodeRoundTrip) {
  fs::path dir = fs::temp_directory_path() / ("attn_spm_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "corpus.txt");
    const char* words[] = {"the", "light", "darkness", "waters", "God", "said", "earth", "heaven", "day", "night",
                           "luz", "tierra", "aguas", "Dios", "dijo", "cielos", "día", "noche", "y", "la"};
    for (int i = 0; i < 2000; ++i) {
      for (int j = 0; j < 8; ++j) f << words[(i * 7 + j * 3 + i / 13) % 20] << (j < 7 ? " " : "");
      f << "\n";
    }
  }
  SentencePiece::train({.input_files = {(dir / "corpus.txt").string()}, .model_prefix = (dir / "m").string(),
                        .vocab_size = 64});
  SentencePiece sp((dir / "m.model").string());
  EXPECT_EQ(sp.vocab_size(), 64);
  EXPECT_EQ(sp.pad_id(), 0);
  EXPECT_EQ(sp.unk_id(), 1);
  EXPECT_EQ(sp.bos_id(), 2);
  EXPECT_EQ(sp.eos_id(), 3);
  std::string text = "God said let there light y la luz";
  std::vector<int> ids = sp.encode(text);
  ASSERT_FALSE(ids.empty());
  for (int id : ids) EXPECT_TRUE(id >= 0 && id < 64);
  EXPECT_EQ(sp.decode(ids), text);
  std::vector<int> with_specials = ids;
  with_specials.insert(with_specials.begin(), sp.bos_id());
  with_specials.push_back(sp.eos_id());
  with_specials.push_back(sp.pad_id());
  EXPECT_EQ(sp.decode(with_specials), text);
  EXPECT_THROW(sp.decode({100000}), std::out_of_range);
  // characters never seen in training become <unk> (documented behaviour; byte_fallback avoids it)
  std::vector<int> unk = sp.encode("light %");
  EXPECT_NE(std::find(unk.begin(), unk.end(), sp.unk_id()), unk.end());
  SentencePiece copy = SentencePiece::from_serialized(sp.serialized());
  EXPECT_EQ(copy.encode(text), ids);
  fs::remove_all(dir);
}

TEST(SentencePiece, BadModelFilesAreClearErrors) {
  EXPECT_THROW(SentencePiece("/nonexistent/m.model"), std::runtime_error);
  EXPECT_THROW(SentencePiece::from_serialized("this is not a model proto"), std::runtime_error);
  std::string garbage(1000, '\xff');
  EXPECT_THROW(SentencePiece::from_serialized(garbage), std::runtime_error);
}
