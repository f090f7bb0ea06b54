// src/models/decoding.cc — greedy decoding, sampling and batched beam search with transformers'
// logits processors (see attn/models/decoding.h for the semantics followed).
#include "attn/models/decoding.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "attn/autograd.h"
#include "attn/ops.h"

namespace attn::models {

namespace {
constexpr float kNegInfF = -std::numeric_limits<float>::infinity();
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// The per-sentence limit: `per[s]` when given (capped by `all`), else `all`.
int64_t limit_of(const std::vector<int64_t>& per, int64_t all, int64_t s, bool cap) {
  if (per.empty()) return all;
  return cap ? std::min(per[size_t(s)], all) : per[size_t(s)];
}

void check_per_sentence(const std::vector<int64_t>& per, int64_t n, const char* what) {
  if (!per.empty() && int64_t(per.size()) != n)
    throw std::invalid_argument(std::string("decoding: ") + what + " has " + std::to_string(per.size()) +
                                " entries for " + std::to_string(n) + " sentences");
  for (int64_t v : per)
    if (v < 0) throw std::invalid_argument(std::string("decoding: ") + what + " must be >= 0, got " + std::to_string(v));
}
}  // namespace

void check_logits_options(const LogitsOptions& o) {
  if (!(std::isfinite(o.repetition_penalty) && o.repetition_penalty > 0))
    throw std::invalid_argument("decoding: repetition_penalty must be a finite number > 0 (1: off), got " +
                                num(o.repetition_penalty));
  if (o.no_repeat_ngram_size < 0)
    throw std::invalid_argument("decoding: no_repeat_ngram_size must be >= 0 (0: off), got " +
                                std::to_string(o.no_repeat_ngram_size));
  if (o.min_len < 0) throw std::invalid_argument("decoding: min_len must be >= 0, got " + std::to_string(o.min_len));
}

void check_sampling_options(const SamplingOptions& o) {
  if (!(std::isfinite(o.temperature) && o.temperature > 0))
    throw std::invalid_argument("decoding: temperature must be a finite number > 0, got " + num(o.temperature));
  if (o.top_k < 0) throw std::invalid_argument("decoding: top_k must be >= 0 (0: off), got " + std::to_string(o.top_k));
  if (!(o.top_p > 0 && o.top_p <= 1))
    throw std::invalid_argument("decoding: top_p must be in (0, 1] (1: off), got " + num(o.top_p));
}

void process_logits(float* x, int64_t V, const std::vector<int64_t>& history, int64_t min_len, int64_t eos_id,
                    const LogitsOptions& o) {
  const int64_t L = int64_t(history.size());
  if (o.repetition_penalty != 1.0) {  // each distinct seen token once
    std::vector<bool> seen(size_t(V), false);
    for (int64_t tok : history) {
      if (tok < 0 || tok >= V || seen[size_t(tok)]) continue;
      seen[size_t(tok)] = true;
      float& s = x[tok];
      s = s < 0 ? float(double(s) * o.repetition_penalty) : float(double(s) / o.repetition_penalty);
    }
  }
  const int64_t n = o.no_repeat_ngram_size;
  if (n > 0 && L + 1 >= n) {  // ban every token that would complete an n-gram already in history
    const int64_t* prefix = history.data() + (L - n + 1);
    for (int64_t i = 0; i + n <= L; ++i)
      if (std::equal(prefix, prefix + (n - 1), history.data() + i)) {
        int64_t banned = history[size_t(i + n - 1)];
        if (banned >= 0 && banned < V) x[banned] = kNegInfF;
      }
  }
  if (L - 1 < min_len && eos_id >= 0 && eos_id < V) x[eos_id] = kNegInfF;  // L - 1 tokens generated (BOS excluded)
}

void warp_for_sampling(float* x, int64_t V, const SamplingOptions& o) {
  if (o.temperature != 1.0)
    for (int64_t v = 0; v < V; ++v) x[v] = float(double(x[v]) / o.temperature);
  if (o.top_k > 0 && o.top_k < V) {  // below the k-th largest score goes; ties with it stay
    std::vector<float> sorted(x, x + V);
    std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(), std::greater<float>());
    const float kth = sorted[size_t(o.top_k - 1)];
    for (int64_t v = 0; v < V; ++v)
      if (x[v] < kth) x[v] = kNegInfF;
  }
  if (o.top_p < 1.0) {  // ascending order; drop the prefix whose cumulative probability is <= 1 - top_p
    std::vector<int64_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x[a] < x[b]; });
    const float mx = x[order.back()];
    double total = 0;
    for (int64_t v = 0; v < V; ++v) total += std::exp(double(x[v]) - double(mx));
    double cum = 0;
    for (int64_t k = 0; k + 1 < V; ++k) {  // the best token always stays
      cum += std::exp(double(x[order[size_t(k)]]) - double(mx)) / total;
      if (cum <= 1.0 - o.top_p) x[order[size_t(k)]] = kNegInfF;
    }
  }
}

namespace {

// Whether any processor can change a score. Per-sentence minimum lengths that are all 0 (what translate
// passes by default) change nothing: they must not send decoding down the host path, which copies every
// row's log-probabilities and scans them (~10 % of int8 beam search in perf).
bool processors_active(const LogitsOptions& o) {
  const bool min_len = o.min_lens.empty() ? o.min_len > 0
                                          : std::any_of(o.min_lens.begin(), o.min_lens.end(), [](int64_t m) { return m > 0; });
  return o.repetition_penalty != 1.0 || o.no_repeat_ngram_size > 0 || min_len;
}

// log softmax(x)[k] of one row of logits, in double.
double log_prob_of(const std::vector<float>& x, int64_t k) {
  const double mx = double(*std::max_element(x.begin(), x.end()));
  double total = 0;
  for (float v : x) total += std::exp(double(v) - mx);
  return double(x[size_t(k)]) - mx - std::log(total);
}

// One draw from softmax(x); uses 53 bits of the generator so the result is the same on every platform.
int64_t draw(const float* x, int64_t V, std::mt19937_64& rng) {
  float mx = kNegInfF;
  for (int64_t v = 0; v < V; ++v) mx = std::max(mx, x[v]);
  double total = 0;
  for (int64_t v = 0; v < V; ++v) total += std::exp(double(x[v]) - double(mx));
  const double u = double(rng() >> 11) * 0x1.0p-53 * total;
  double cum = 0;
  int64_t last = 0;
  for (int64_t v = 0; v < V; ++v) {
    double p = std::exp(double(x[v]) - double(mx));
    if (p <= 0) continue;
    last = v;
    cum += p;
    if (u < cum) return v;
  }
  return last;
}

}  // namespace

std::vector<std::vector<int64_t>> greedy_decode(IncrementalDecoder& dec, const GreedyOptions& o) {
  NoGradGuard ng;
  const int64_t n = dec.rows();
  check_logits_options(o.logits);
  check_per_sentence(o.max_lens, n, "max_lens");
  check_per_sentence(o.logits.min_lens, n, "min_lens");
  if (o.sample) check_sampling_options(o.sampling);
  // Without processors or sampling, argmax of the log-probabilities (as always); else the logits' path.
  const bool raw = o.sample || processors_active(o.logits);
  std::mt19937_64 rng(o.sampling.seed);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(n));
  std::vector<int64_t> last(size_t(n), dec.bos_id()), history;
  std::vector<bool> done(size_t(n), false);
  int64_t remaining = n, longest = 0;
  for (int64_t s = 0; s < n; ++s) {
    if (limit_of(o.max_lens, o.max_len, s, true) <= 0) {
      done[size_t(s)] = true;
      --remaining;
    }
    longest = std::max(longest, limit_of(o.max_lens, o.max_len, s, true));
  }
  if (o.log_probs) o.log_probs->assign(size_t(n), 0.0);
  std::vector<float> original;
  for (int64_t t = 0; t < longest && remaining > 0; ++t) {
    std::vector<int64_t> best;
    if (!raw && !o.log_probs) {
      // softmax keeps the order: the logits' argmax suffices (the backend's kernel: first maximum, NaN wins)
      best = argmax(dec.step_logits(from_vector(last, {n})).to(kFloat32), 1).to_vector<int64_t>();
    } else if (!raw) {
      // the lecture's argmax decoding; topk(1) also gives the chosen log-probability (the same first maximum,
      // NaN first), so only n values come to the host
      const auto [lp, tokens] = topk(dec.step(from_vector(last, {n})), 1, 1);
      best = tokens.to_vector<int64_t>();
      const std::vector<float> chosen = lp.to_vector<float>();
      for (int64_t i = 0; i < n; ++i)
        if (!done[size_t(i)]) (*o.log_probs)[size_t(i)] += chosen[size_t(i)];
    } else {
      Tensor scores = dec.step_logits(from_vector(last, {n}));
      const int64_t V = scores.size(1);
      std::vector<float> all = scores.to_vector<float>();
      best.assign(size_t(n), dec.eos_id());
      for (int64_t i = 0; i < n; ++i) {
        if (done[size_t(i)]) continue;
        float* x = all.data() + i * V;
        if (o.log_probs) original.assign(x, x + V);
        history.assign(1, dec.bos_id());
        history.insert(history.end(), out[size_t(i)].begin(), out[size_t(i)].end());
        process_logits(x, V, history, limit_of(o.logits.min_lens, o.logits.min_len, i, false), dec.eos_id(), o.logits);
        if (o.sample) {
          warp_for_sampling(x, V, o.sampling);
          best[size_t(i)] = draw(x, V, rng);
        } else {
          best[size_t(i)] = int64_t(std::max_element(x, x + V) - x);
        }
        if (o.log_probs) (*o.log_probs)[size_t(i)] += log_prob_of(original, best[size_t(i)]);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      if (done[size_t(i)]) {
        last[size_t(i)] = dec.eos_id();
        continue;
      }
      last[size_t(i)] = best[size_t(i)];
      if (best[size_t(i)] != dec.eos_id()) out[size_t(i)].push_back(best[size_t(i)]);
      if (best[size_t(i)] == dec.eos_id() || t + 1 >= limit_of(o.max_lens, o.max_len, i, true)) {
        done[size_t(i)] = true;
        --remaining;
      }
    }
  }
  return out;
}

namespace {

double normalised(double log_prob, int64_t len, double alpha) {
  return alpha == 0.0 ? log_prob : log_prob / std::pow(double(std::max<int64_t>(len, 1)), alpha);
}

struct Beam {
  std::vector<int64_t> tokens;  // without BOS
  double log_prob;              // -inf: no beam
};
using Candidate = std::tuple<double, int64_t, int64_t>;  // (accumulated score, beam, token)

// A step's log-probabilities on the host: every row (M, V) where logits processors run, else each row's
// K = min(2B, V) best (the backend's topk: best first, ties to the lower token), not the whole vocabulary.
struct StepScores {
  std::vector<float> rows, top_values;  // (M, V) / (M, K)
  std::vector<int64_t> top_tokens;      // (M, K)
  int64_t V = 0, K = 0;                 // K = 0: rows
};

StepScores step_scores(const Tensor& logp, int64_t B, const LogitsOptions& lo) {
  StepScores sc;
  sc.V = logp.size(1);
  if (processors_active(lo)) {
    sc.rows = logp.to_vector<float>();
    return sc;
  }
  sc.K = std::min<int64_t>(2 * B, sc.V);
  const auto [values, tokens] = topk(logp, sc.K, 1);
  sc.top_values = values.to_vector<float>();
  sc.top_tokens = tokens.to_vector<int64_t>();
  return sc;
}

// The 2B best continuations of a sentence's live beams, best first (ties: lower beam, then lower token).
// Only each beam's 2B best tokens can be among them: its row's topk, or the row scanned once into a small
// sorted list after the processors changed it.
std::vector<Candidate> top_candidates(const std::vector<Beam>& beams, StepScores& sc, int64_t row0, int64_t min_len,
                                      int64_t bos, int64_t eos, const LogitsOptions& lo) {
  const int64_t B = int64_t(beams.size()), V = sc.V;
  const bool process = processors_active(lo);
  const size_t K = size_t(std::min<int64_t>(2 * B, V));
  std::vector<Candidate> cand;
  cand.reserve(size_t(B) * K);
  std::vector<std::pair<float, int64_t>> top;  // (log-prob, token), best first
  top.reserve(K + 1);
  std::vector<int64_t> history;
  for (int64_t b = 0; b < B; ++b) {
    const double base = beams[size_t(b)].log_prob;
    if (base == kNegInf) continue;
    if (sc.K > 0) {  // the row's best, already ordered
      for (int64_t r = 0; r < sc.K; ++r) {
        const float x = sc.top_values[size_t((row0 + b) * sc.K + r)];
        if (x != x || x == kNegInfF) continue;  // NaN and banned tokens never enter
        cand.emplace_back(base + double(x), b, sc.top_tokens[size_t((row0 + b) * sc.K + r)]);
      }
      continue;
    }
    float* row = sc.rows.data() + (row0 + b) * V;
    top.clear();
    if (process) {
      history.assign(1, bos);
      history.insert(history.end(), beams[size_t(b)].tokens.begin(), beams[size_t(b)].tokens.end());
      process_logits(row, V, history, min_len, eos, lo);
    }
    for (int64_t v = 0; v < V; ++v) {
      const float x = row[v];
      if (top.size() == K && !(x > top.back().first)) continue;  // NaN never enters
      if (x != x || x == kNegInfF) continue;                      // nor a banned token
      auto at = std::upper_bound(top.begin(), top.end(), x,
                                 [](float val, const std::pair<float, int64_t>& e) { return val > e.first; });
      top.insert(at, {x, v});
      if (top.size() > K) top.pop_back();
    }
    for (const auto& [x, v] : top) cand.emplace_back(base + double(x), b, v);
  }
  const size_t keep = std::min(cand.size(), size_t(2 * B));
  std::partial_sort(cand.begin(), cand.begin() + ptrdiff_t(keep), cand.end(), [](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
    return std::make_pair(std::get<1>(a), std::get<2>(a)) < std::make_pair(std::get<1>(b), std::get<2>(b));
  });
  cand.resize(keep);
  return cand;
}

// top_candidates of every active sentence (its rows start at block[s] * B); where whole rows are scanned,
// the sentences are split over the threads (their rows are disjoint).
std::vector<std::vector<Candidate>> step_candidates(const std::vector<std::vector<Beam>>& alive,
                                                    const std::vector<bool>& active, const std::vector<int64_t>& block,
                                                    StepScores& sc, const BeamSearchOptions& o,
                                                    const IncrementalDecoder& dec) {
  const int64_t n = int64_t(alive.size()), B = o.beam_size;
  std::vector<std::vector<Candidate>> cands(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic) if (n > 1 && sc.K == 0 && n * B * sc.V > (1 << 16))
  for (int64_t s = 0; s < n; ++s) {
    if (!active[size_t(s)]) continue;
    cands[size_t(s)] = top_candidates(alive[size_t(s)], sc, block[size_t(s)] * B,
                                      limit_of(o.logits.min_lens, o.logits.min_len, s, false), dec.bos_id(),
                                      dec.eos_id(), o.logits);
  }
  return cands;
}

// Keeps the B best finished hypotheses, best first (a new one goes after equal scores).
void add_finished(std::vector<Hypothesis>& finished, Hypothesis h, int64_t B) {
  if (int64_t(finished.size()) >= B && !(h.score > finished.back().score)) return;
  auto at = std::upper_bound(finished.begin(), finished.end(), h.score,
                             [](double s, const Hypothesis& e) { return s > e.score; });
  finished.insert(at, std::move(h));
  if (int64_t(finished.size()) > B) finished.pop_back();
}

// Whether a sentence's search is over after `len` tokens (transformers' beam-full test and
// _check_early_stop_heuristic): no live beam, or `finished` full and no live beam can still beat it.
bool search_ended(const std::vector<Beam>& beams, const std::vector<Hypothesis>& finished, const BeamSearchOptions& o,
                  int64_t len, int64_t max_len) {
  if (beams[0].log_prob == kNegInf) return true;
  if (int64_t(finished.size()) < o.beam_size) return false;
  if (o.early_stopping == EarlyStopping::WhenBeamFull) return true;
  const int64_t best_len = o.early_stopping == EarlyStopping::Never && o.length_penalty > 0 ? max_len : len;
  const double best_possible = beams[0].log_prob / std::pow(double(best_len), o.length_penalty);
  return !(best_possible > finished.back().score);
}

// One sentence's step: its candidates (best first) finish (EOS, or the length limit; only those ranked
// within the beam) or become the next beams (the first B that go on); dead beams fill the rest with -inf.
// Returns the decoder row each next beam continues (rows from row0).
std::vector<int64_t> advance_beams(std::vector<Beam>& beams, std::vector<Hypothesis>& finished,
                                   const std::vector<Candidate>& cand, int64_t row0, bool at_max, int64_t len,
                                   int64_t eos, const BeamSearchOptions& o) {
  const int64_t B = o.beam_size;
  std::vector<Beam> next;
  std::vector<int64_t> from;
  for (size_t r = 0; r < cand.size(); ++r) {
    const auto& [acc, b, v] = cand[r];
    const bool stops = v == eos || at_max;
    if (stops && int64_t(r) < B) {
      std::vector<int64_t> toks = beams[size_t(b)].tokens;
      if (v != eos) toks.push_back(v);
      add_finished(finished, {std::move(toks), acc, normalised(acc, len, o.length_penalty), v == eos}, B);
    } else if (!stops && int64_t(next.size()) < B) {
      std::vector<int64_t> toks = beams[size_t(b)].tokens;
      toks.push_back(v);
      from.push_back(row0 + b);
      next.push_back({std::move(toks), acc});
    }
  }
  for (int64_t b = int64_t(next.size()); b < B; ++b) {  // dead beams keep the block's first row
    next.push_back({{}, kNegInf});
    from.push_back(row0);
  }
  beams = std::move(next);
  return from;
}

// A sentence's n_best hypotheses: the finished ones, topped up from the live beams only when beams died out
// (a tiny vocabulary, everything banned).
std::vector<Hypothesis> n_best_of(std::vector<Hypothesis> all, const std::vector<Beam>& alive,
                                  const BeamSearchOptions& o) {
  if (int64_t(all.size()) < o.n_best)
    for (const Beam& b : alive)
      if (b.log_prob != kNegInf)
        add_finished(all, {b.tokens, b.log_prob, normalised(b.log_prob, int64_t(b.tokens.size()), o.length_penalty), false},
                     o.beam_size);
  if (int64_t(all.size()) > o.n_best) all.resize(size_t(o.n_best));
  return all;
}

}  // namespace

std::vector<std::vector<Hypothesis>> beam_search(IncrementalDecoder& dec, const BeamSearchOptions& o) {
  if (o.beam_size < 1) throw std::invalid_argument("beam_search: beam_size must be >= 1, got " + std::to_string(o.beam_size));
  if (o.n_best < 1 || o.n_best > o.beam_size)
    throw std::invalid_argument("beam_search: n_best must be in 1..beam_size, got " + std::to_string(o.n_best));
  if (!std::isfinite(o.length_penalty))
    throw std::invalid_argument("beam_search: length_penalty must be finite, got " + num(o.length_penalty));
  check_logits_options(o.logits);
  NoGradGuard ng;
  const int64_t n = dec.rows(), B = o.beam_size;
  check_per_sentence(o.max_lens, n, "max_lens");
  check_per_sentence(o.logits.min_lens, n, "min_lens");
  std::vector<int64_t> expand(static_cast<size_t>(n * B));  // every sentence to B rows: row s*B + b
  for (int64_t s = 0; s < n; ++s)
    for (int64_t b = 0; b < B; ++b) expand[size_t(s * B + b)] = s;
  dec.select_rows(expand);

  std::vector<std::vector<Beam>> alive(static_cast<size_t>(n));
  std::vector<std::vector<Hypothesis>> finished(static_cast<size_t>(n));
  std::vector<bool> active(size_t(n), true);
  int64_t longest = 0;
  for (int64_t s = 0; s < n; ++s) {
    alive[size_t(s)].push_back({{}, 0.0});
    for (int64_t b = 1; b < B; ++b) alive[size_t(s)].push_back({{}, kNegInf});  // only beam 0 starts live
    const int64_t max_len_s = limit_of(o.max_lens, o.max_len, s, true);
    active[size_t(s)] = max_len_s > 0;
    longest = std::max(longest, max_len_s);
  }
  // The decoder holds the live sentences' rows only: a sentence whose search ended is dropped from it
  // (CTranslate2 does the same), so the finished ones cost nothing in the remaining steps. block[s]:
  // where sentence s's B rows start, in blocks of B rows (-1 once dropped).
  std::vector<int64_t> block(static_cast<size_t>(n)), last(static_cast<size_t>(n * B), dec.bos_id()), select, next_last;
  std::iota(block.begin(), block.end(), 0);
  for (int64_t t = 0; t < longest; ++t) {
    if (std::none_of(active.begin(), active.end(), [](bool a) { return a; })) break;
    Tensor logp_t = dec.step(from_vector(last, {int64_t(last.size())}));
    StepScores scores = step_scores(logp_t, B, o.logits);
    const std::vector<std::vector<Candidate>> cands = step_candidates(alive, active, block, scores, o, dec);
    select.clear();
    next_last.clear();
    for (int64_t s = 0; s < n; ++s) {
      if (!active[size_t(s)]) continue;
      std::vector<Beam>& beams = alive[size_t(s)];
      const int64_t row0 = block[size_t(s)] * B;
      const int64_t max_len_s = limit_of(o.max_lens, o.max_len, s, true);
      const bool at_max = t + 1 >= max_len_s;
      const std::vector<int64_t> from = advance_beams(beams, finished[size_t(s)], cands[size_t(s)], row0, at_max, t + 1,
                                                      dec.eos_id(), o);
      active[size_t(s)] = !at_max && !search_ended(beams, finished[size_t(s)], o, t + 1, max_len_s);
      if (!active[size_t(s)]) {
        block[size_t(s)] = -1;
        continue;
      }
      block[size_t(s)] = int64_t(select.size()) / B;
      select.insert(select.end(), from.begin(), from.end());
      for (int64_t b = 0; b < B; ++b)
        next_last.push_back(beams[size_t(b)].tokens.empty() ? dec.eos_id() : beams[size_t(b)].tokens.back());
    }
    if (select.empty()) break;
    dec.select_rows(select);
    last.swap(next_last);
  }
  std::vector<std::vector<Hypothesis>> result(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) result[size_t(s)] = n_best_of(std::move(finished[size_t(s)]), alive[size_t(s)], o);
  return result;
}

}  // namespace attn::models
