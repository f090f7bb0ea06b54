// src/backend/cpu/conv_max_over_time.h — the Kim text CNN's convolutions, bias, ReLU and max over time
// for several kernel widths in one pass over channels-last input (internal; the op is
// attn::conv1d_max_over_time in src/ops/conv_max_over_time.cc).
//
//   cpu::MaxOverTimeShape s{.batch = 32, .time = 200, .channels = 128, .widths = {3, 4, 5}, .filters = {100, 100, 100}};
//   cpu::MaxOverTimePicks picks;
//   cpu::conv1d_max_over_time<float>(s, x, packed_w, biases, out, picks);     // out (32, 300)
//   cpu::conv1d_max_over_time_backward<float>(s, x, packed_w, picks, grad_out, gx, packed_gw, gb);
//
// x: (B, T, E) contiguous; packed weight i: (F_i, k_i, E) (Conv1d's (F_i, E, k_i) with the last two dims
// swapped, so a filter is one contiguous run matching the window x[b, t : t + k_i, :]). The forward is
// a GEMM per width on one shared im2col of the widest window (the narrower windows are its prefixes along
// K), then one pass per width that adds the bias, takes the max over time and records where it came
// from. The backward only touches those places: d out / d conv is zero elsewhere (the max's other steps,
// and every step of a column whose max is <= 0, cut by the ReLU), so its weight and input gradients are
// a few axpys per (b, filter) instead of two dense GEMMs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace attn::cpu {

struct MaxOverTimeShape {
  int64_t batch = 0, time = 0, channels = 0;
  std::vector<int64_t> widths, filters;  // per convolution: kernel width k_i and filter count F_i
  int64_t total_filters() const;
  int64_t out_len(size_t i) const { return time - widths[i] + 1; }
};

// Where each output (b, column) got its value: PyTorch's amax backward shares the gradient equally among
// the steps equal to the max, and the ReLU's backward passes nothing where its output is 0. first < 0:
// no gradient (max <= 0). count == 1: the step `first` only. Otherwise (ties, or nan: a NaN max, which
// PyTorch turns into NaN gradients at the steps whose value is > 0 or NaN) the steps are in `ties`.
struct MaxOverTimePicks {
  struct Pick {
    int32_t first = -1, count = 0;
    bool nan = false;
  };
  std::vector<Pick> picks;                                    // (B, total_filters)
  std::unordered_map<int64_t, std::vector<int32_t>> ties;     // b * total_filters + column -> steps
};

// out (B, total_filters): column block i = max over t of relu(conv1d_i(x)[b, :, t] + bias_i). biases[i]
// may be nullptr. T is float or double.
template <typename T>
void conv1d_max_over_time(const MaxOverTimeShape& s, const T* x, const std::vector<const T*>& packed_weights,
                          const std::vector<const T*>& biases, T* out, MaxOverTimePicks& picks);

// Gradients from grad_out (B, total_filters); any of grad_x (B, T, E), packed_grad_weights[i] (F_i, k_i, E),
// grad_biases[i] (F_i) may be null (not needed; an empty vector: none). All are overwritten.
template <typename T>
void conv1d_max_over_time_backward(const MaxOverTimeShape& s, const T* x, const std::vector<const T*>& packed_weights,
                                   const MaxOverTimePicks& picks, const T* grad_out, T* grad_x,
                                   const std::vector<T*>& packed_grad_weights, const std::vector<T*>& grad_biases);

}  // namespace attn::cpu
