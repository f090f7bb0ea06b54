// src/backend/cpu/conv_max_over_time.cc — see conv_max_over_time.h. The batch is cut into fixed chunks
// of whole sequences (~512 im2col rows, whatever the team), each chunk's im2col and products staying in
// the thread's cache; every result is computed by one thread in a fixed order, so the bits do not
// depend on the team size.
#include "backend/cpu/conv_max_over_time.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>

#include "backend/cpu/linalg_kernels.h"

namespace attn::cpu {

int64_t MaxOverTimeShape::total_filters() const { return std::accumulate(filters.begin(), filters.end(), int64_t(0)); }

namespace {

using Pick = MaxOverTimePicks::Pick;

template <typename T> std::vector<T>& scratch(int slot) {
  thread_local std::vector<T> bufs[2];
  return bufs[slot];
}

template <typename T> T* grown(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Rows per im2col chunk: whole sequences, about 512 rows (a GEMM tall enough to run at speed, its
// operands still in L2).
int64_t items_per_chunk(const MaxOverTimeShape& s, int64_t rows_per_item) {
  return std::clamp<int64_t>(512 / std::max<int64_t>(rows_per_item, 1), 1, std::max<int64_t>(s.batch, 1));
}

// prod (L_all, F) holds one sequence's products for one width (rows past this width's L are ignored):
// writes out[f] = max over t < L of relu(prod[t, f] + bias[f]) and the pick of each column.
template <typename T>
void reduce_sequence(const T* prod, int64_t L, int64_t F, const T* bias, T* out, Pick* picks, T* best,
                     std::vector<std::pair<int64_t, std::vector<int32_t>>>& ties, int64_t key0) {
  auto z = [&](int64_t t, int64_t f) { return prod[t * F + f] + (bias ? bias[f] : T(0)); };
  for (int64_t f = 0; f < F; ++f) best[f] = z(0, f);
  for (int64_t t = 1; t < L; ++t)
    for (int64_t f = 0; f < F; ++f) {
      const T v = z(t, f);
      best[f] = (v > best[f] || v != v) ? v : best[f];  // a NaN stays: amax propagates it
    }
  for (int64_t f = 0; f < F; ++f) {
    picks[f] = Pick{};
    out[f] = best[f] != best[f] ? best[f] : std::max(best[f], T(0));
  }
  for (int64_t t = 0; t < L; ++t)  // first step and count of the steps equal to a positive max
    for (int64_t f = 0; f < F; ++f)
      if (best[f] > T(0) && z(t, f) == best[f]) {
        if (picks[f].count++ == 0) picks[f].first = int32_t(t);
      }
  for (int64_t f = 0; f < F; ++f) {
    const bool nan = best[f] != best[f];
    if (!nan && picks[f].count <= 1) continue;
    std::vector<int32_t> steps;  // rare: ties, or a NaN max (NaN gradients where z > 0 or NaN)
    for (int64_t t = 0; t < L; ++t) {
      const T v = z(t, f);
      if (nan ? (v > T(0) || v != v) : v == best[f]) steps.push_back(int32_t(t));
    }
    picks[f] = Pick{.first = steps.empty() ? -1 : steps[0], .count = int32_t(steps.size()), .nan = nan};
    if (!steps.empty()) ties.emplace_back(key0 + f, std::move(steps));
  }
}

// One sequence chunk of the forward: im2col of the widest window, then per width a GEMM on its prefix
// and the max pass per sequence.
template <typename T>
void forward_chunk(const MaxOverTimeShape& s, const T* x, const std::vector<const T*>& w,
                   const std::vector<const T*>& biases, T* out, Pick* picks, int64_t b0, int64_t nb,
                   std::vector<std::pair<int64_t, std::vector<int32_t>>>& ties) {
  const int64_t E = s.channels, kmax = *std::max_element(s.widths.begin(), s.widths.end());
  const int64_t kmin = *std::min_element(s.widths.begin(), s.widths.end());
  const int64_t span = kmax * E, rows_per_item = s.time - kmin + 1, rows = nb * rows_per_item;
  const int64_t Ftot = s.total_filters(), Fmax = *std::max_element(s.filters.begin(), s.filters.end());
  T* cols = grown(scratch<T>(0), size_t(rows * span));
  T* prod = grown(scratch<T>(1), size_t(rows * Fmax + Fmax));
  T* best = prod + rows * Fmax;
  for (int64_t i = 0; i < nb; ++i)
    for (int64_t t = 0; t < rows_per_item; ++t) {  // row t: x[b, t : t + kmax, :], zeros past the end
      T* dst = cols + (i * rows_per_item + t) * span;
      const int64_t have = std::min(kmax, s.time - t) * E;
      std::memcpy(dst, x + ((b0 + i) * s.time + t) * E, size_t(have) * sizeof(T));
      std::fill(dst + have, dst + span, T(0));
    }
  int64_t col0 = 0;
  for (size_t wi = 0; wi < s.widths.size(); ++wi) {
    const int64_t F = s.filters[wi], K = s.widths[wi] * E;
    gemm({.trans_b = true, .m = rows, .n = F, .k = K, .a = cols, .lda = span, .b = w[wi], .ldb = K, .c = prod,
          .ldc = F, .dtype = std::is_same_v<T, float> ? kFloat32 : kFloat64});
    for (int64_t i = 0; i < nb; ++i) {
      const int64_t b = b0 + i;
      reduce_sequence(prod + i * rows_per_item * F, s.out_len(wi), F, biases[wi], out + b * Ftot + col0,
                      picks + b * Ftot + col0, best, ties, b * Ftot + col0);
    }
    col0 += F;
  }
}

// The gradient reaching conv output (b, column) at each of its picked steps.
template <typename T> T pick_weight(const Pick& p, T g) {
  if (p.nan) return std::numeric_limits<T>::quiet_NaN();
  return p.count > 0 ? g / T(p.count) : T(0);
}

// Calls f(step) for each picked step of (b, column) `key`.
template <typename F> void for_each_step(const MaxOverTimePicks& mp, int64_t key, F&& f) {
  const Pick& p = mp.picks[size_t(key)];
  if (p.first < 0) return;
  if (p.count == 1 && !p.nan) return f(int64_t(p.first));
  for (int32_t t : mp.ties.at(key)) f(int64_t(t));
}

template <typename T> void axpy(T* y, T a, const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

template <typename T>
void conv1d_max_over_time(const MaxOverTimeShape& s, const T* x, const std::vector<const T*>& packed_weights,
                          const std::vector<const T*>& biases, T* out, MaxOverTimePicks& picks) {
  const int64_t Ftot = s.total_filters();
  const int64_t kmin = *std::min_element(s.widths.begin(), s.widths.end());
  const int64_t per = items_per_chunk(s, s.time - kmin + 1), chunks = (s.batch + per - 1) / per;
  picks.picks.assign(size_t(s.batch * Ftot), Pick{});
  picks.ties.clear();
  std::vector<std::vector<std::pair<int64_t, std::vector<int32_t>>>> ties(static_cast<size_t>(chunks));
  const double work = double(s.batch) * double(s.time) * double(Ftot) * double(s.channels) * 4;
#pragma omp parallel for schedule(dynamic, 1) if (chunks > 1 && work > 1e6)
  for (int64_t c = 0; c < chunks; ++c)
    forward_chunk(s, x, packed_weights, biases, out, picks.picks.data(), c * per, std::min(per, s.batch - c * per),
                  ties[size_t(c)]);
  for (auto& chunk : ties)
    for (auto& [key, steps] : chunk) picks.ties.emplace(key, std::move(steps));
}

template <typename T>
void conv1d_max_over_time_backward(const MaxOverTimeShape& s, const T* x, const std::vector<const T*>& packed_weights,
                                   const MaxOverTimePicks& picks, const T* grad_out, T* grad_x,
                                   const std::vector<T*>& packed_grad_weights, const std::vector<T*>& grad_biases) {
  const int64_t E = s.channels, Ftot = s.total_filters(), nw = int64_t(s.widths.size());
  std::vector<int64_t> width_of(static_cast<size_t>(Ftot)), col0(static_cast<size_t>(nw + 1), 0);
  for (int64_t i = 0; i < nw; ++i) {
    col0[size_t(i + 1)] = col0[size_t(i)] + s.filters[size_t(i)];
    std::fill(width_of.begin() + col0[size_t(i)], width_of.begin() + col0[size_t(i + 1)], i);
  }
  const bool want_w = !packed_grad_weights.empty(), want_b = !grad_biases.empty();
  const bool par = s.batch * Ftot * s.channels > 32768;
  if (want_w || want_b) {
    // Each filter's rows over the batch in order: one thread per filter, no reduction across threads.
#pragma omp parallel for schedule(static) if (par)
    for (int64_t col = 0; col < Ftot; ++col) {
      const int64_t wi = width_of[size_t(col)], f = col - col0[size_t(wi)], K = s.widths[size_t(wi)] * E;
      T* gw = want_w && packed_grad_weights[size_t(wi)] ? packed_grad_weights[size_t(wi)] + f * K : nullptr;
      if (gw) std::fill(gw, gw + K, T(0));
      T gb = 0;
      for (int64_t b = 0; b < s.batch; ++b) {
        const int64_t key = b * Ftot + col;
        const T a = pick_weight(picks.picks[size_t(key)], grad_out[key]);
        for_each_step(picks, key, [&](int64_t t) {
          if (gw) axpy(gw, a, x + (b * s.time + t) * E, K);
          gb += a;
        });
      }
      if (want_b && grad_biases[size_t(wi)]) grad_biases[size_t(wi)][f] = gb;
    }
  }
  if (grad_x) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t b = 0; b < s.batch; ++b) {
      T* gx = grad_x + b * s.time * E;
      std::fill(gx, gx + s.time * E, T(0));
      for (int64_t col = 0; col < Ftot; ++col) {
        const int64_t wi = width_of[size_t(col)], f = col - col0[size_t(wi)], K = s.widths[size_t(wi)] * E;
        const int64_t key = b * Ftot + col;
        const T a = pick_weight(picks.picks[size_t(key)], grad_out[key]);
        for_each_step(picks, key, [&](int64_t t) { axpy(gx + t * E, a, packed_weights[size_t(wi)] + f * K, K); });
      }
    }
  }
}

#define ATTN_MAX_OVER_TIME(T)                                                                                    \
  template void conv1d_max_over_time<T>(const MaxOverTimeShape&, const T*, const std::vector<const T*>&,        \
                                        const std::vector<const T*>&, T*, MaxOverTimePicks&);                  \
  template void conv1d_max_over_time_backward<T>(const MaxOverTimeShape&, const T*, const std::vector<const T*>&, \
                                                 const MaxOverTimePicks&, const T*, T*, const std::vector<T*>&,  \
                                                 const std::vector<T*>&);
ATTN_MAX_OVER_TIME(float)
ATTN_MAX_OVER_TIME(double)
#undef ATTN_MAX_OVER_TIME

}  // namespace attn::cpu
