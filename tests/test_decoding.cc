// Decoding options against transformers' generate on a toy model both sides compute exactly
// (tests/make_decoding_fixtures.py -> tests/fixtures/decoding.json), plus sampling and bad options.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attn/models/decoding.h"
#include "attn/ops.h"

using namespace attn;
using nlohmann::json;

namespace {

const json& fixture() {
  static const json j = [] {
    std::ifstream f(std::string(ATTN_FIXTURE_DIR) + "/decoding.json");
    if (!f) throw std::runtime_error("missing tests/fixtures/decoding.json (tests/make_decoding_fixtures.py)");
    return json::parse(f);
  }();
  return j;
}

std::vector<float> row_of(const json& table, int64_t r) { return table.at(size_t(r)).get<std::vector<float>>(); }

// The fixture's toy model: logits = ((R[sentence] + W1[last]) + W2[before]) + U[step], in float32.
class TableDecoder : public models::IncrementalDecoder {
 public:
  explicit TableDecoder(int64_t sentences) {
    const json& fx = fixture();
    V_ = fx["vocab"];
    for (int64_t s = 0; s < sentences; ++s) rows_.push_back({s, {}});
  }
  int64_t rows() const override { return int64_t(rows_.size()); }
  int64_t bos_id() const override { return fixture()["bos"]; }
  int64_t eos_id() const override { return fixture()["eos"]; }
  Tensor step(const Tensor& tokens) override { return log_softmax(step_logits(tokens), -1); }
  Tensor step_logits(const Tensor& tokens) override {
    const json& fx = fixture();
    std::vector<int64_t> t = tokens.to_vector<int64_t>();
    std::vector<float> out;
    for (size_t r = 0; r < rows_.size(); ++r) {
      auto& [sentence, prefix] = rows_[r];
      prefix.push_back(t[r]);
      const int64_t len = int64_t(prefix.size());
      auto R = row_of(fx["R"], sentence), W1 = row_of(fx["W1"], prefix.back()),
           W2 = row_of(fx["W2"], len >= 2 ? prefix[size_t(len - 2)] : V_), U = row_of(fx["U"], len - 1);
      for (int64_t v = 0; v < V_; ++v) out.push_back(((R[size_t(v)] + W1[size_t(v)]) + W2[size_t(v)]) + U[size_t(v)]);
    }
    return from_vector(out, {rows(), V_});
  }
  void select_rows(const std::vector<int64_t>& rows) override {
    std::vector<std::pair<int64_t, std::vector<int64_t>>> next;
    for (int64_t r : rows) next.push_back(rows_[size_t(r)]);
    rows_ = std::move(next);
  }

 private:
  int64_t V_ = 0;
  std::vector<std::pair<int64_t, std::vector<int64_t>>> rows_;  // (sentence, BOS + tokens fed so far)
};

models::LogitsOptions logits_options(const json& o) {
  return {.repetition_penalty = o.value("repetition_penalty", 1.0),
          .no_repeat_ngram_size = o.value("no_repeat_ngram_size", int64_t(0)),
          .min_len = o.value("min_new_tokens", int64_t(0))};
}

models::EarlyStopping early_stopping(const json& o) {
  const json& e = o.at("early_stopping");
  if (e.is_string()) return models::EarlyStopping::Never;
  return e.get<bool>() ? models::EarlyStopping::WhenBeamFull : models::EarlyStopping::Heuristic;
}

}  // namespace

// Every case: all sentences decoded together by attn, each alone by transformers; same tokens, scores.
TEST(Decoding, MatchesTransformersGenerate) {
  const json& fx = fixture();
  const int64_t sentences = int64_t(fx["R"].size());
  for (const json& c : fx["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const json& o = c["options"];
    const int64_t max_len = o.value("max_new_tokens", fx["steps"].get<int64_t>());
    const json& want = c["want"];
    TableDecoder dec(sentences);
    if (o.value("num_beams", 1) == 1) {
      auto got = models::greedy_decode(dec, {.max_len = max_len, .logits = logits_options(o)});
      for (int64_t s = 0; s < sentences; ++s)
        EXPECT_EQ(got[size_t(s)], want[size_t(s)][0]["tokens"].get<std::vector<int64_t>>()) << "sentence " << s;
      continue;
    }
    const int64_t n_best = o.value("num_return_sequences", 1);
    auto got = models::beam_search(dec, {.beam_size = o["num_beams"], .length_penalty = o["length_penalty"],
                                         .n_best = n_best, .max_len = max_len, .logits = logits_options(o),
                                         .early_stopping = early_stopping(o)});
    for (int64_t s = 0; s < sentences; ++s) {
      ASSERT_EQ(int64_t(got[size_t(s)].size()), n_best) << "sentence " << s;
      for (int64_t k = 0; k < n_best; ++k) {
        const json& w = want[size_t(s)][size_t(k)];
        EXPECT_EQ(got[size_t(s)][size_t(k)].tokens, w["tokens"].get<std::vector<int64_t>>()) << "sentence " << s << " hyp " << k;
        EXPECT_NEAR(got[size_t(s)][size_t(k)].score, w["score"].get<double>(), 1e-4) << "sentence " << s << " hyp " << k;
      }
    }
  }
}

TEST(Decoding, SamplingWarpersMatchTransformers) {
  const json& fx = fixture();
  const std::map<std::string, models::SamplingOptions> options = {
      {"temperature", {.temperature = 0.7}}, {"top_k", {.top_k = 5}}, {"top_p", {.top_p = 0.8}},
      {"all", {.temperature = 1.3, .top_k = 6, .top_p = 0.6}}};
  for (const json& c : fx["warps"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    for (size_t r = 0; r < fx["warp_rows"].size(); ++r) {
      std::vector<float> x = fx["warp_rows"][r].get<std::vector<float>>();
      models::warp_for_sampling(x.data(), int64_t(x.size()), options.at(c["name"]));
      for (size_t v = 0; v < x.size(); ++v) {
        const json& w = c["out"][r][v];
        if (w.is_null())
          EXPECT_EQ(x[v], -INFINITY) << "row " << r << " token " << v;
        else
          EXPECT_NEAR(x[v], w.get<double>(), 1e-5) << "row " << r << " token " << v;
      }
    }
  }
}

TEST(Decoding, SamplingIsSeededAndFollowsTheWarpedDistribution) {
  auto sample = [](models::SamplingOptions so) {
    TableDecoder dec(3);
    return models::greedy_decode(dec, {.max_len = 12, .sample = true, .sampling = so});
  };
  EXPECT_EQ(sample({.seed = 3}), sample({.seed = 3}));
  EXPECT_NE(sample({.seed = 3}), sample({.seed = 4}));
  TableDecoder greedy_dec(3);
  EXPECT_EQ(sample({.top_k = 1, .seed = 9}), models::greedy_decode(greedy_dec, {.max_len = 12}));  // top-1 is argmax
  // the first token's frequencies over many seeds follow softmax(logits / T) of sentence 0
  const double T = 1.5;
  TableDecoder probe(1);
  std::vector<float> logits = probe.step_logits(from_vector<int64_t>({0}, {1})).to_vector<float>();
  double mx = *std::max_element(logits.begin(), logits.end()), z = 0;
  for (float l : logits) z += std::exp((l - mx) / T);
  std::vector<double> count(logits.size(), 0);
  const int draws = 3000;
  for (int k = 0; k < draws; ++k) {
    TableDecoder d(1);
    auto out = models::greedy_decode(d, {.max_len = 1, .sample = true, .sampling = {.temperature = T, .seed = uint64_t(k)}});
    count[out[0].empty() ? size_t(fixture()["eos"].get<int64_t>()) : size_t(out[0][0])] += 1;
  }
  for (size_t v = 0; v < logits.size(); ++v) {
    double p = std::exp((logits[v] - mx) / T) / z;
    EXPECT_NEAR(count[v] / draws, p, 4 * std::sqrt(p * (1 - p) / draws) + 1e-3) << "token " << v;
  }
}

TEST(Decoding, PerSentenceLengthLimits) {
  TableDecoder a(3), b(3);
  auto g = models::greedy_decode(a, {.max_len = 12, .max_lens = {2, 12, 3}, .logits = {.min_lens = {0, 9, 0}}});
  EXPECT_LE(g[0].size(), 2u);
  EXPECT_GE(g[1].size(), 9u);
  EXPECT_LE(g[2].size(), 3u);
  auto h = models::beam_search(b, {.beam_size = 3, .max_len = 12, .max_lens = {2, 12, 3}, .logits = {.min_lens = {0, 9, 0}}});
  EXPECT_LE(h[0][0].tokens.size(), 2u);
  EXPECT_GE(h[1][0].tokens.size(), 9u);
  EXPECT_LE(h[2][0].tokens.size(), 3u);
}

TEST(Decoding, AbsurdOptionsAreClearErrors) {
  auto beam_error = [](models::BeamSearchOptions o) {
    TableDecoder d(1);
    try {
      models::beam_search(d, o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(beam_error({.beam_size = 0}).find("beam_size must be >= 1, got 0"), std::string::npos);
  EXPECT_NE(beam_error({.length_penalty = NAN}).find("length_penalty"), std::string::npos);
  EXPECT_NE(beam_error({.length_penalty = INFINITY}).find("length_penalty"), std::string::npos);
  EXPECT_NE(beam_error({.logits = {.repetition_penalty = 0}}).find("repetition_penalty"), std::string::npos);
  EXPECT_NE(beam_error({.logits = {.no_repeat_ngram_size = -1}}).find("no_repeat_ngram_size"), std::string::npos);
  EXPECT_NE(beam_error({.logits = {.min_len = -2}}).find("min_len"), std::string::npos);
  EXPECT_NE(beam_error({.max_lens = {1, 2}}).find("max_lens has 2 entries for 1 sentences"), std::string::npos);
  EXPECT_THROW(models::check_sampling_options({.top_p = 1.5}), std::invalid_argument);
  EXPECT_THROW(models::check_sampling_options({.top_p = 0}), std::invalid_argument);
  EXPECT_THROW(models::check_sampling_options({.temperature = 0}), std::invalid_argument);
  EXPECT_THROW(models::check_sampling_options({.top_k = -1}), std::invalid_argument);
}
