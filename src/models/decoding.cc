// src/models/decoding.cc — greedy decoding and batched beam search.
#include "attn/models/decoding.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "attn/autograd.h"
#include "attn/ops.h"

namespace attn::models {

std::vector<std::vector<int64_t>> greedy_decode(IncrementalDecoder& dec, const GreedyOptions& o) {
  NoGradGuard ng;
  const int64_t n = dec.rows();
  std::vector<std::vector<int64_t>> out(n);
  std::vector<int64_t> last(n, dec.bos_id());
  std::vector<bool> done(n, false);
  int64_t remaining = n;
  for (int64_t t = 0; t < o.max_len && remaining > 0; ++t) {
    Tensor logp = dec.step(from_vector(last, {n}));
    std::vector<int64_t> best = argmax(logp, 1).to_vector<int64_t>();  // the lecture's argmax decoding
    for (int64_t i = 0; i < n; ++i) {
      if (done[i]) {
        last[i] = dec.eos_id();
        continue;
      }
      last[i] = best[i];
      if (best[i] == dec.eos_id()) {
        done[i] = true;
        --remaining;
      } else {
        out[i].push_back(best[i]);
      }
    }
  }
  return out;
}

namespace {
double normalised(double log_prob, int64_t len, double alpha) {
  return alpha == 0.0 ? log_prob : log_prob / std::pow(double(std::max<int64_t>(len, 1)), alpha);
}
}  // namespace

std::vector<std::vector<Hypothesis>> beam_search(IncrementalDecoder& dec, const BeamSearchOptions& o) {
  if (o.beam_size < 1) throw std::invalid_argument("beam_search: beam_size must be >= 1");
  if (o.n_best < 1 || o.n_best > o.beam_size)
    throw std::invalid_argument("beam_search: n_best must be in 1..beam_size, got " + std::to_string(o.n_best));
  NoGradGuard ng;
  const int64_t n = dec.rows(), B = o.beam_size;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  // expand every sentence to B rows: row s*B + b
  std::vector<int64_t> expand(size_t(n * B));
  for (int64_t s = 0; s < n; ++s)
    for (int64_t b = 0; b < B; ++b) expand[size_t(s * B + b)] = s;
  dec.select_rows(expand);

  struct Beam {
    std::vector<int64_t> tokens;
    double log_prob;
  };
  std::vector<std::vector<Beam>> alive(n);
  for (int64_t s = 0; s < n; ++s) {
    alive[s].push_back({{}, 0.0});
    for (int64_t b = 1; b < B; ++b) alive[s].push_back({{}, neg_inf});  // only beam 0 starts live
  }
  std::vector<std::vector<Hypothesis>> finished(n);
  std::vector<bool> done(n, false);
  std::vector<int64_t> last(size_t(n * B), dec.bos_id());

  for (int64_t t = 0; t < o.max_len; ++t) {
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    Tensor logp_t = dec.step(from_vector(last, {n * B}));
    const int64_t V = logp_t.size(1);
    std::vector<float> logp = logp_t.to_vector<float>();
    std::vector<int64_t> select(size_t(n * B));
    for (int64_t s = 0; s < n; ++s) {
      std::vector<Beam> next;
      if (!done[s]) {
        // candidates: (score, beam, token), best first; ties go to the lower beam, then the lower token.
        // Only each live beam's 2B best tokens can be among the 2B best candidates, so each row is
        // scanned once into a small sorted top list instead of materialising B * V candidates.
        std::vector<std::tuple<double, int64_t, int64_t>> cand;
        const size_t K = size_t(std::min<int64_t>(2 * B, V));
        cand.reserve(size_t(B) * K);
        std::vector<std::pair<float, int64_t>> top;  // (log-prob, token), best first
        top.reserve(K + 1);
        for (int64_t b = 0; b < B; ++b) {
          double base = alive[s][b].log_prob;
          if (base == neg_inf) continue;
          const float* row = logp.data() + (s * B + b) * V;
          top.clear();
          for (int64_t v = 0; v < V; ++v) {
            const float x = row[v];
            if (top.size() == K && !(x > top.back().first)) continue;  // NaN never enters
            if (x != x) continue;
            auto at = std::upper_bound(top.begin(), top.end(), x,
                                       [](float val, const std::pair<float, int64_t>& e) { return val > e.first; });
            top.insert(at, {x, v});
            if (top.size() > K) top.pop_back();
          }
          for (const auto& [x, v] : top) cand.emplace_back(base + double(x), b, v);
        }
        size_t keep = std::min(cand.size(), size_t(2 * B));
        std::partial_sort(cand.begin(), cand.begin() + keep, cand.end(), [](const auto& a, const auto& b) {
          if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
          return std::make_pair(std::get<1>(a), std::get<2>(a)) < std::make_pair(std::get<1>(b), std::get<2>(b));
        });
        for (size_t c = 0; c < keep && int64_t(next.size()) < B; ++c) {
          auto [lp, b, v] = cand[c];
          std::vector<int64_t> toks = alive[s][b].tokens;
          if (v == dec.eos_id()) {
            if (int64_t(finished[s].size()) < B)
              finished[s].push_back({toks, lp, normalised(lp, int64_t(toks.size()) + 1, o.length_penalty), true});
          } else {
            toks.push_back(v);
            next.push_back({std::move(toks), lp});
            select[size_t(s * B + int64_t(next.size()) - 1)] = s * B + b;
          }
        }
        if (int64_t(finished[s].size()) >= B) done[s] = true;
      }
      // pad to B beams (dead beams keep row s*B and score -inf)
      for (int64_t b = int64_t(next.size()); b < B; ++b) {
        next.push_back({{}, neg_inf});
        select[size_t(s * B + b)] = s * B;
      }
      alive[s] = std::move(next);
      for (int64_t b = 0; b < B; ++b)
        last[size_t(s * B + b)] = alive[s][b].tokens.empty() ? dec.eos_id() : alive[s][b].tokens.back();
      if (done[s])
        for (int64_t b = 0; b < B; ++b) alive[s][b].log_prob = neg_inf;
    }
    dec.select_rows(select);
  }
  std::vector<std::vector<Hypothesis>> result(n);
  for (int64_t s = 0; s < n; ++s) {
    std::vector<Hypothesis> all = finished[s];
    for (const Beam& b : alive[s])  // cut at max_len
      if (b.log_prob != neg_inf)
        all.push_back({b.tokens, b.log_prob, normalised(b.log_prob, int64_t(b.tokens.size()), o.length_penalty), false});
    std::stable_sort(all.begin(), all.end(), [](const Hypothesis& a, const Hypothesis& b) { return a.score > b.score; });
    if (int64_t(all.size()) > o.n_best) all.resize(size_t(o.n_best));
    result[s] = std::move(all);
  }
  return result;
}

}  // namespace attn::models
