// BLEU and chrF equal sacreBLEU's on fixture outputs (tests/make_bleu_fixtures.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "attn/eval/bleu.h"

using nlohmann::json;

static json load_bleu_fixture() {
  std::ifstream f(std::string(ATTN_FIXTURE_DIR) + "/bleu.json");
  EXPECT_TRUE(f.good());
  return json::parse(f);
}

TEST(Bleu, Tokenize13aMatchesSacreBleu) {
  json fx = load_bleu_fixture();
  for (auto& t : fx["tokenize_13a"]) {
    std::string in = t["in"];
    // sacreBLEU tokenises after rstrip(); the fixture's "out" was produced the same way
    std::string s = in;
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.pop_back();
    EXPECT_EQ(attn::eval::tokenize_13a(s), t["out"].get<std::string>()) << "input: " << in;
  }
}

TEST(Bleu, CorpusBleuAndChrfMatchSacreBleu) {
  json fx = load_bleu_fixture();
  for (auto& c : fx["cases"]) {
    auto hyps = c["hyps"].get<std::vector<std::string>>();
    auto refs = c["refs"].get<std::vector<std::vector<std::string>>>();
    attn::eval::BleuScore b = attn::eval::corpus_bleu(hyps, refs);
    EXPECT_NEAR(b.score, c["bleu"].get<double>(), 1e-9) << c["name"] << " " << b.signature();
    EXPECT_NEAR(attn::eval::corpus_chrf(hyps, refs).score, c["chrf"].get<double>(), 1e-9) << c["name"];
    if (c.contains("sys_len")) {
      EXPECT_EQ(b.sys_len, c["sys_len"].get<int64_t>()) << c["name"];
      EXPECT_EQ(b.ref_len, c["ref_len"].get<int64_t>()) << c["name"];
      for (int n = 0; n < 4; ++n) {
        EXPECT_EQ(b.correct[n], c["counts"][n].get<int64_t>()) << c["name"] << " order " << n + 1;
        EXPECT_EQ(b.total[n], c["totals"][n].get<int64_t>()) << c["name"] << " order " << n + 1;
      }
    }
  }
}

TEST(Bleu, MismatchedStreamsAreAClearError) {
  EXPECT_THROW(attn::eval::corpus_bleu({"a", "b"}, {{"a"}}), std::invalid_argument);
  EXPECT_THROW(attn::eval::corpus_chrf({"a"}, {}), std::invalid_argument);
}
