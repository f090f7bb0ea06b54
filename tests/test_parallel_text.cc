// Parallel corpora and token-count batching: padding layout, budgets, determinism, bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "attn/data/parallel_text.h"

namespace fs = std::filesystem;
using namespace attn;

namespace {
text::SentencePiece& tiny_spm() {
  static text::SentencePiece* sp = [] {
    fs::path dir = fs::temp_directory_path() / ("attn_pt_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    {
      std::ofstream f(dir / "c.txt");
      for (int i = 0; i < 500; ++i) f << "the light and the darkness " << i % 10 << " la luz y las tinieblas\n";
    }
    text::SentencePiece::train({.input_files = {(dir / "c.txt").string()}, .model_prefix = (dir / "m").string(),
                                .vocab_size = 40, .model_type = text::SentencePieceModel::Bpe});
    auto* p = new text::SentencePiece((dir / "m.model").string());
    fs::remove_all(dir);
    return p;
  }();
  return *sp;
}
}  // namespace

TEST(ParallelText, DropsEmptyAndLongPairsAndCounts) {
  std::vector<std::string> src = {"the light", "", "the darkness and the light and the light", "la", "  "};
  std::vector<std::string> tgt = {"la luz", "luz", "las tinieblas", "", "la"};
  auto c = data::ParallelCorpus::from_lines(src, tgt, tiny_spm(), {.max_len = 8});
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.dropped_empty, 3);
  EXPECT_EQ(c.dropped_long, 1);
  EXPECT_EQ(c.line, (std::vector<int64_t>{1}));
  EXPECT_THROW(data::ParallelCorpus::from_lines({"a"}, {}, tiny_spm()), std::invalid_argument);
  EXPECT_THROW(data::read_lines("/nonexistent/file.en"), std::runtime_error);
}

TEST(ParallelText, BatchesRespectTheTokenBudgetAndCoverTheCorpus) {
  std::vector<std::string> src, tgt;
  for (int i = 0; i < 300; ++i) {
    std::string s, t;
    for (int k = 0; k <= i % 17; ++k) s += "the light ", t += "la luz ";
    src.push_back(s), tgt.push_back(t);
  }
  auto c = data::ParallelCorpus::from_lines(src, tgt, tiny_spm());
  data::TokenBatcher tb(c, {.max_tokens = 400, .seed = 3, .bucket_size = 64});
  std::multiset<int64_t> seen;
  for (int64_t b = 0; b < tb.num_batches(0); ++b) {
    auto batch = tb.get(0, b);
    int64_t N = batch.src.size(0);
    EXPECT_TRUE(N == 1 || N * (batch.src.size(1) + batch.tgt_in.size(1)) <= 400);
    EXPECT_EQ(batch.tgt_in.shape(), batch.tgt_out.shape());
    auto ti = batch.tgt_in.to_vector<int64_t>(), to = batch.tgt_out.to_vector<int64_t>();
    int64_t T = batch.tgt_in.size(1);
    for (int64_t r = 0; r < N; ++r) {
      EXPECT_EQ(ti[size_t(r * T)], 2);  // BOS
      for (int64_t j = 0; j + 1 < T; ++j)
        if (to[size_t(r * T + j)] != 3 && to[size_t(r * T + j)] != 0) {
          EXPECT_EQ(ti[size_t(r * T + j + 1)], to[size_t(r * T + j)]);
        }
    }
    seen.insert(batch.indices.begin(), batch.indices.end());
  }
  EXPECT_EQ(int64_t(seen.size()), c.size());
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), seen.size());
  // deterministic per (seed, epoch); different epochs differ
  data::TokenBatcher again(c, {.max_tokens = 400, .seed = 3, .bucket_size = 64});
  EXPECT_EQ(again.get(0, 5).indices, tb.get(0, 5).indices);
  EXPECT_NE(tb.get(1, 0).indices, tb.get(0, 0).indices);
  EXPECT_THROW(tb.get(0, 100000), std::out_of_range);
}
