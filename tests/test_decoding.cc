// Decoding options against transformers' generate on a toy model both sides compute exactly
// (tests/make_decoding_fixtures.py -> tests/fixtures/decoding.json), plus sampling and bad options.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attn/eval/bleu.h"
#include "attn/io/safetensors.h"
#include "attn/models/decoding.h"
#include "attn/models/translator.h"
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
  // minimum lengths all 0 (translate's default) are no processor: the same hypotheses and scores as none
  TableDecoder c(3), d(3);
  auto zero = models::beam_search(c, {.beam_size = 3, .n_best = 3, .max_len = 12, .logits = {.min_lens = {0, 0, 0}}});
  auto none = models::beam_search(d, {.beam_size = 3, .n_best = 3, .max_len = 12});
  for (size_t s = 0; s < 3; ++s)
    for (size_t r = 0; r < 3; ++r) {
      EXPECT_EQ(zero[s][r].tokens, none[s][r].tokens) << s << " " << r;
      EXPECT_EQ(zero[s][r].score, none[s][r].score) << s << " " << r;
    }
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

// The options that stop beam search from looping, on a real (small) model that loops: the reversal
// translator of tests/fixtures/translator_small.safetensors, trained on 2-9 words, asked to reverse
// 10-16 (its golden greedy output already ends "9 9 9"). Prints repetition rate and BLEU against the
// true reversal per option; checks that no_repeat_ngram_size leaves no repeated n-gram and that the
// repetition penalty lowers the repetition rate.
TEST(Decoding, LoopStoppersOnTheReversalFixture) {
  auto file = io::SafeTensorsFile::open(std::string(ATTN_FIXTURE_DIR) + "/translator_small.safetensors");
  const json meta = json::parse(file.metadata().at("options"));
  models::Translator model({.vocab_size = meta["vocab_size"], .d_model = meta["d_model"], .nhead = meta["nhead"],
                            .num_encoder_layers = meta["num_layers"], .num_decoder_layers = meta["num_layers"],
                            .dim_feedforward = meta["dim_feedforward"], .dropout = 0.0, .max_len = meta["max_len"]});
  std::map<std::string, Tensor> state;
  for (const auto& k : file.keys())
    if (k != "src") state[k] = file.get(k);
  model.load_state_dict(state);
  model.eval();
  const int64_t N = 60, S = 17;  // sources of 10-16 words (ids 4..19) + EOS, padded with 0
  std::vector<int64_t> flat(size_t(N * S), 0);
  std::vector<std::string> refs;
  uint32_t lcg = 12345;
  auto next = [&] { return (lcg = lcg * 1664525u + 1013904223u) >> 8 & 0xffffff; };
  for (int64_t r = 0; r < N; ++r) {
    const int64_t len = 10 + int64_t(next() % 7);
    std::string ref;
    for (int64_t k = 0; k < len; ++k) flat[size_t(r * S + k)] = 4 + int64_t(next() % 16);
    flat[size_t(r * S + len)] = 3;
    for (int64_t k = len - 1; k >= 0; --k) ref += std::to_string(flat[size_t(r * S + k)]) + (k ? " " : "");
    refs.push_back(ref);
  }
  const Tensor src = from_vector(flat, {N, S});
  // share of outputs with a repeated n-gram, and BLEU against the reversal
  auto measure = [&](const models::BeamSearchOptions& o, int64_t n) {
    auto hyps = models::beam_search(*model.start_decoding(src), o);
    std::vector<std::string> out;
    int64_t repeating = 0;
    for (const auto& h : hyps) {
      const auto& t = h[0].tokens;
      std::set<std::vector<int64_t>> grams;
      bool rep = false;
      for (size_t i = 0; i + size_t(n) <= t.size(); ++i) rep |= !grams.insert({t.begin() + ptrdiff_t(i), t.begin() + ptrdiff_t(i) + n}).second;
      repeating += rep;
      std::string line;
      for (size_t i = 0; i < t.size(); ++i) line += std::to_string(t[i]) + (i + 1 < t.size() ? " " : "");
      out.push_back(line);
    }
    return std::pair<double, double>{double(repeating) / double(N), eval::corpus_bleu(out, {refs}).score};
  };
  struct Row { const char* name; models::BeamSearchOptions o; };
  const Row rows[] = {
      {"beam 4 (default)", {.beam_size = 4, .max_len = 24}},
      {"no_repeat_ngram_size 3", {.beam_size = 4, .max_len = 24, .logits = {.no_repeat_ngram_size = 3}}},
      {"no_repeat_ngram_size 2", {.beam_size = 4, .max_len = 24, .logits = {.no_repeat_ngram_size = 2}}},
      {"repetition_penalty 1.2", {.beam_size = 4, .max_len = 24, .logits = {.repetition_penalty = 1.2}}},
      {"length_penalty 0.6", {.beam_size = 4, .length_penalty = 0.6, .max_len = 24}},
      {"length_penalty 2.0", {.beam_size = 4, .length_penalty = 2.0, .max_len = 24}},
  };
  std::map<std::string, std::pair<double, double>> got;
  for (const Row& r : rows) {
    got[r.name] = measure(r.o, 3);
    std::printf("  %-24s repeated 3-gram in %5.1f%% of outputs, BLEU %5.2f\n", r.name, 100 * got[r.name].first,
                got[r.name].second);
  }
  EXPECT_GT(got["beam 4 (default)"].first, 0.0) << "the fixture no longer loops: the comparison says nothing";
  EXPECT_EQ(got["no_repeat_ngram_size 3"].first, 0.0);
  EXPECT_EQ(measure({.beam_size = 4, .max_len = 24, .logits = {.no_repeat_ngram_size = 2}}, 2).first, 0.0);
  EXPECT_LT(got["repetition_penalty 1.2"].first, got["beam 4 (default)"].first);
}

// Greedy's log-probabilities are the sums beam search of width 1 ranks by (length penalty 0).
TEST(Decoding, GreedyLogProbsEqualBeamOfOneScores) {
  TableDecoder a(3), b(3);
  std::vector<double> log_probs;
  auto g = models::greedy_decode(a, {.max_len = 12, .log_probs = &log_probs});
  auto h = models::beam_search(b, {.beam_size = 1, .length_penalty = 0.0, .max_len = 12});
  ASSERT_EQ(log_probs.size(), 3u);
  for (size_t s = 0; s < 3; ++s) {
    EXPECT_EQ(g[s], h[s][0].tokens);
    EXPECT_NEAR(log_probs[s], h[s][0].score, 1e-4);
    EXPECT_LT(log_probs[s], 0.0);
  }
  // with a processor (the logits path), the model's log-probability of the tokens chosen
  TableDecoder c(3);
  auto r = models::greedy_decode(c, {.max_len = 12, .logits = {.repetition_penalty = 1.8}, .log_probs = &log_probs});
  for (size_t s = 0; s < 3; ++s) {
    TableDecoder replay(3);
    double want = 0;
    std::vector<int64_t> last(3, 0);
    std::vector<int64_t> toks = r[s];
    if (toks.size() < 12) toks.push_back(1);  // EOS
    for (size_t t = 0; t < toks.size(); ++t) {
      std::vector<float> lp = replay.step(from_vector(last, {3})).to_vector<float>();
      want += lp[s * 16 + size_t(toks[t])];
      for (auto& l : last) l = toks[t];
    }
    EXPECT_NEAR(log_probs[s], want, 1e-4) << "sentence " << s;
  }
}
