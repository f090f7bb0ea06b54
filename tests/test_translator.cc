// Translator: KV-cache decoding equals full recomputation; beam search equals brute-force search on
// tiny models; greedy equals beam size 1; greedy and beam outputs of a fixed trained checkpoint equal the
// recorded ones (and PyTorch's greedy); bad input is a clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/models/translator.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "backend/cpu/dispatch.h"
#include "small_translator.h"

using namespace attn;
using models::Hypothesis;

namespace {

models::TranslatorOptions tiny(int64_t vocab) {
  return {.vocab_size = vocab, .d_model = 16, .nhead = 4, .num_encoder_layers = 2, .num_decoder_layers = 2,
          .dim_feedforward = 24, .dropout = 0.0, .max_len = 64};
}

Tensor src_batch() {  // (2, 5), second sentence padded
  return from_vector<int64_t>({5, 6, 7, 8, 3, 9, 4, 3, 0, 0}, {2, 5});
}

// Sum of log p(y_t | y_<t, x) for every prefix of `tokens` (BOS prepended), by full recomputation.
double sequence_log_prob(models::Translator& m, const Tensor& src_row, const std::vector<int64_t>& tokens) {
  std::vector<int64_t> in = {m.options.bos_id};
  in.insert(in.end(), tokens.begin(), tokens.end() - 1);
  Tensor logp = log_softmax(m.forward(src_row, from_vector(in, {1, int64_t(in.size())})), -1);  // (1, T, V)
  std::vector<float> lp = logp.to_vector<float>();
  int64_t V = logp.size(2);
  double s = 0;
  for (size_t t = 0; t < tokens.size(); ++t) s += lp[t * V + tokens[t]];
  return s;
}

}  // namespace

// 48 steps: the self-attention caches start with 16 slots and grow at steps 16 and 32 (the copy of the
// filled part is checked), and a row selection at step 24 (beams reordered and duplicated) reorders them.
TEST(Translator, KvCacheEqualsFullRecomputation) {
  for (bool norm_first : {false, true}) {
    manual_seed(3);
    auto o = tiny(13);
    o.norm_first = norm_first;
    models::Translator m(o);
    m.eval();
    NoGradGuard ng;
    const int64_t steps = 48;
    Tensor src = src_batch();
    Tensor tgt = randint(4, 13, {2, steps});  // teacher-forced tokens, BOS first
    tgt.select(1, 0).fill_(double(m.options.bos_id));
    Tensor full = log_softmax(m.forward(src, tgt), -1);  // (2, steps, V)
    auto dec = m.start_decoding(src);
    Tensor rows = from_vector<int64_t>({0, 1}, {2});  // original row of each decoder row
    for (int64_t t = 0; t < steps; ++t) {
      if (t == 24) {
        dec->select_rows({1, 0, 1});
        rows = from_vector<int64_t>({1, 0, 1}, {3});
      }
      Tensor step = dec->step(index_select(tgt.select(1, t), 0, rows).contiguous());  // (rows, V)
      Tensor want = index_select(full.select(1, t), 0, rows);
      EXPECT_TRUE(allclose(step, want, 1e-4, 1e-5)) << "step " << t << " norm_first " << norm_first;
    }
  }
}

TEST(Translator, RowSelectionFollowsBeams) {
  manual_seed(4);
  models::Translator m(tiny(13));
  m.eval();
  NoGradGuard ng;
  Tensor src = src_batch();
  auto a = m.start_decoding(src);
  auto b = m.start_decoding(src.select(0, 1).unsqueeze(0));
  a->step(from_vector<int64_t>({2, 2}, {2}));
  b->step(from_vector<int64_t>({2}, {1}));
  a->select_rows({1, 1, 1});
  Tensor la = a->step(from_vector<int64_t>({7, 7, 7}, {3}));
  Tensor lb = b->step(from_vector<int64_t>({7}, {1}));
  for (int64_t r = 0; r < 3; ++r) EXPECT_TRUE(allclose(la.select(0, r), lb.select(0, 0), 1e-5, 1e-6));
}

// A toy model whose next-token distribution depends on the whole prefix (hashing), to test the search.
class ToyDecoder : public models::IncrementalDecoder {
 public:
  explicit ToyDecoder(int64_t n) : prefixes_(n) {}
  int64_t rows() const override { return int64_t(prefixes_.size()); }
  int64_t bos_id() const override { return 0; }
  int64_t eos_id() const override { return 1; }
  static std::vector<float> dist(const std::vector<int64_t>& prefix) {  // log-probs over V = 5
    uint64_t h = 1469598103934665603ull;
    for (int64_t t : prefix) h = (h ^ uint64_t(t + 1)) * 1099511628211ull;
    std::vector<double> z(5);
    double mx = -1e9;
    for (int v = 0; v < 5; ++v) {
      h = h * 6364136223846793005ull + 1442695040888963407ull;
      z[v] = double(h >> 40) / double(1 << 24) * 4.0;
      if (v == 0) z[v] = -30;  // BOS is never generated
      mx = std::max(mx, z[v]);
    }
    double s = 0;
    for (double x : z) s += std::exp(x - mx);
    std::vector<float> out(5);
    for (int v = 0; v < 5; ++v) out[v] = float(z[v] - mx - std::log(s));
    return out;
  }
  Tensor step(const Tensor& tokens) override {
    std::vector<int64_t> t = tokens.to_vector<int64_t>();
    std::vector<float> out;
    for (size_t r = 0; r < prefixes_.size(); ++r) {
      prefixes_[r].push_back(t[r]);
      auto d = dist(prefixes_[r]);
      out.insert(out.end(), d.begin(), d.end());
    }
    return from_vector(out, {rows(), 5});
  }
  void select_rows(const std::vector<int64_t>& rows) override {
    std::vector<std::vector<int64_t>> p;
    for (int64_t r : rows) p.push_back(prefixes_[r]);
    prefixes_ = p;
  }
  std::vector<std::vector<int64_t>> prefixes_;
};

// Exhaustive search over all sequences up to max_len, scored like beam_search.
static Hypothesis brute_force(const std::function<double(const std::vector<int64_t>&, bool)>& score_of, int64_t V,
                              int64_t eos, int64_t bos, int64_t max_len, double alpha) {
  Hypothesis best;
  best.score = -std::numeric_limits<double>::infinity();
  std::function<void(std::vector<int64_t>&)> rec = [&](std::vector<int64_t>& toks) {
    for (int64_t v = 0; v < V; ++v) {
      if (v == bos) continue;
      toks.push_back(v);
      bool finished = v == eos;
      if (finished || int64_t(toks.size()) == max_len) {
        double lp = score_of(toks, finished);
        int64_t len = int64_t(toks.size());
        double s = alpha == 0 ? lp : lp / std::pow(double(len), alpha);
        if (s > best.score) {
          best.score = s;
          best.log_prob = lp;
          best.finished = finished;
          best.tokens.assign(toks.begin(), toks.end() - (finished ? 1 : 0));
        }
      } else {
        rec(toks);
      }
      toks.pop_back();
    }
  };
  std::vector<int64_t> toks;
  rec(toks);
  return best;
}

TEST(BeamSearch, EqualsBruteForceOnAToyModel) {
  for (double alpha : {0.0, 1.0}) {
    const int64_t max_len = 4;
    auto score_of = [](const std::vector<int64_t>& toks, bool) {
      std::vector<int64_t> prefix = {0};
      double s = 0;
      for (int64_t t : toks) {
        s += ToyDecoder::dist(prefix)[t];
        prefix.push_back(t);
      }
      return s;
    };
    Hypothesis want = brute_force(score_of, 5, 1, 0, max_len, alpha);
    ToyDecoder dec(2);
    auto got = models::beam_search(dec, {.beam_size = 256, .length_penalty = alpha, .n_best = 1, .max_len = max_len});
    ASSERT_EQ(got.size(), 2u);
    for (auto& g : got) {
      EXPECT_EQ(g[0].tokens, want.tokens) << "alpha " << alpha;
      EXPECT_NEAR(g[0].score, want.score, 1e-5);
    }
    // a narrow beam never beats the exhaustive optimum
    ToyDecoder narrow(1);
    auto n = models::beam_search(narrow, {.beam_size = 2, .length_penalty = alpha, .max_len = max_len});
    EXPECT_LE(n[0][0].score, want.score + 1e-9);
  }
}

TEST(BeamSearch, EqualsBruteForceOnATinyTranslator) {
  manual_seed(5);
  models::Translator m(tiny(6));  // V = 6: pad 0, unk 1, bos 2, eos 3, two words
  m.eval();
  NoGradGuard ng;
  Tensor src = from_vector<int64_t>({4, 5, 4, 3}, {1, 4});
  const int64_t max_len = 3;
  auto score_of = [&](const std::vector<int64_t>& toks, bool) { return sequence_log_prob(m, src, toks); };
  Hypothesis want = brute_force(score_of, 6, 3, 2, max_len, 1.0);
  auto dec = m.start_decoding(src);
  auto got = models::beam_search(*dec, {.beam_size = 200, .length_penalty = 1.0, .n_best = 3, .max_len = max_len});
  ASSERT_EQ(got[0].size(), 3u);
  EXPECT_EQ(got[0][0].tokens, want.tokens);
  EXPECT_NEAR(got[0][0].score, want.score, 1e-4);
  EXPECT_GE(got[0][0].score, got[0][1].score);
  EXPECT_GE(got[0][1].score, got[0][2].score);
}

TEST(BeamSearch, GreedyEqualsBeamOfOne) {
  manual_seed(6);
  models::Translator m(tiny(13));
  m.eval();
  Tensor src = src_batch();
  auto g = models::greedy_decode(*m.start_decoding(src), {.max_len = 10});
  auto b = models::beam_search(*m.start_decoding(src), {.beam_size = 1, .length_penalty = 0.0, .max_len = 10});
  ASSERT_EQ(g.size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(g[i], b[i][0].tokens);
}

TEST(Translator, BadInput) {
  EXPECT_THROW(models::Translator({.vocab_size = 3}), std::invalid_argument);
  models::Translator m(tiny(13));
  EXPECT_THROW(m.start_decoding(src_batch()), std::logic_error);  // still in training mode
  m.eval();
  EXPECT_THROW(m.start_decoding(from_vector<int64_t>({1, 2}, {2})), std::invalid_argument);
  EXPECT_THROW(m.forward(from_vector<int64_t>({1, 99}, {1, 2}), from_vector<int64_t>({2}, {1, 1})), std::exception);
  EXPECT_THROW(models::beam_search(*m.start_decoding(src_batch()), {.beam_size = 2, .n_best = 3}), std::invalid_argument);
}

TEST(Translator, AttentionMapsAreDistributions) {
  manual_seed(7);
  models::Translator m(tiny(13));
  m.eval();
  Tensor src = from_vector<int64_t>({5, 6, 7, 3}, {1, 4});
  Tensor tgt = from_vector<int64_t>({2, 8, 9}, {1, 3});
  auto maps = m.attention_maps(src, tgt);
  ASSERT_EQ(maps.encoder_self.size(), 2u);
  ASSERT_EQ(maps.decoder_cross.size(), 2u);
  EXPECT_EQ(maps.encoder_self[0].shape(), (Shape{4, 4, 4}));   // (H, S, S)
  EXPECT_EQ(maps.decoder_self[1].shape(), (Shape{4, 3, 3}));   // (H, T, T)
  EXPECT_EQ(maps.decoder_cross[1].shape(), (Shape{4, 3, 4}));  // (H, T, S)
  EXPECT_TRUE(allclose(sum(maps.decoder_cross[0], {-1}), ones({4, 3}), 1e-5, 1e-6));
  // causal: no weight above the diagonal
  EXPECT_EQ(maps.decoder_self[0].select(1, 0).narrow(1, 1, 2).abs().sum().item<float>(), 0.0f);
  // the logits of the capturing pass equal the plain forward
  EXPECT_THROW(m.attention_maps(from_vector<int64_t>({5, 6, 5, 6}, {2, 2}), tgt), std::invalid_argument);
}

// ---- golden outputs of a fixed checkpoint (tests/make_translator_fixture.py: a small translator trained
// to reverse word sequences, and six test sources up to 16 words). The expected token ids were recorded
// with the decoder before it was rebuilt on the library's layers (TransformerDecoderLayer::forward_step):
// decoding must stay token-identical. Every ISA the CPU runs gives the same tokens.
namespace {

std::string tokens_str(const std::vector<int64_t>& t) {
  std::ostringstream os;
  os << "{";
  for (size_t i = 0; i < t.size(); ++i) os << (i ? ", " : "") << t[i];
  return os.str() + "}";
}

struct SmallCheckpoint {
  io::SafeTensorsFile file = attn_test::small_translator_file();
  nlohmann::json meta = nlohmann::json::parse(file.metadata().at("options"));
  std::unique_ptr<models::Translator> model = attn_test::small_translator(file);
  Tensor src = file.get("src").clone();  // (6, 17)
};

// greedy_decode(max_len 24) of the six sources
const std::vector<std::vector<int64_t>> kGoldenGreedy = {
    {12, 8, 15},
    {8, 8, 13, 7, 16, 16, 16},
    {5, 4, 4, 5, 10, 8, 8, 13},
    {9, 11, 7, 9, 11, 6, 12, 9, 9, 9},
    {14, 5, 9, 4, 19, 14, 16, 6, 9},
    {15, 5, 5, 5, 5, 5},
};
// beam_search(beam 4, length_penalty 1, n_best 2, max_len 24): the two best of each source
const std::vector<std::vector<std::vector<int64_t>>> kGoldenBeam = {
    {{12, 8, 15}, {12, 13, 15}},
    {{8, 8, 13, 7, 16, 16, 16}, {8, 8, 8, 16, 16, 16, 16}},
    {{5, 4, 5, 4, 10, 8, 8, 13}, {5, 4, 5, 4, 4, 8, 8, 10, 13}},
    {{9, 9, 11, 7, 12, 14, 6, 9, 9, 9}, {9, 9, 11, 7, 12, 14, 6, 9, 9}},
    {{14, 5, 9, 4, 19, 14, 16, 6, 9}, {14, 5, 4, 8, 16, 9, 16, 14, 6}},
    {{15, 5, 5, 5, 5, 5}, {15, 5, 5, 11, 5, 5}},
};

}  // namespace

TEST(Translator, GreedyAndBeamOutputsOfAFixedCheckpointAreUnchanged) {
  SmallCheckpoint ck;
  const auto torch_greedy = ck.meta["torch_greedy"].get<std::vector<std::vector<int64_t>>>();
  for (cpu::Isa isa : {cpu::Isa::Avx512, cpu::Isa::Avx2, cpu::Isa::Reference}) {
    if (!cpu::set_isa_for_testing(isa)) continue;
    SCOPED_TRACE(cpu::isa_name(isa));
    auto greedy = models::greedy_decode(*ck.model->start_decoding(ck.src), {.max_len = ck.meta["greedy_max_len"]});
    auto beam = models::beam_search(*ck.model->start_decoding(ck.src),
                                    {.beam_size = 4, .length_penalty = 1.0, .n_best = 2, .max_len = 24});
    cpu::reset_isa();
    ASSERT_EQ(greedy.size(), 6u);
    ASSERT_EQ(beam.size(), 6u);
    std::string got_greedy, got_beam;  // printed on failure, in the form of the constants above
    for (size_t s = 0; s < 6; ++s) {
      got_greedy += tokens_str(greedy[s]) + ",\n";
      got_beam += "{" + tokens_str(beam[s][0].tokens) + ", " + tokens_str(beam[s][1].tokens) + "},\n";
    }
    EXPECT_EQ(greedy, kGoldenGreedy) << "greedy:\n" << got_greedy;
    ASSERT_EQ(beam.size(), kGoldenBeam.size()) << "beam:\n" << got_beam;
    for (size_t s = 0; s < 6; ++s) {
      ASSERT_EQ(beam[s].size(), 2u);
      EXPECT_EQ(beam[s][0].tokens, kGoldenBeam[s][0]) << "sentence " << s << ", beam:\n" << got_beam;
      EXPECT_EQ(beam[s][1].tokens, kGoldenBeam[s][1]) << "sentence " << s;
    }
    EXPECT_EQ(greedy, torch_greedy) << "PyTorch's greedy decoding of the same checkpoint (full recomputation)";
  }
}
