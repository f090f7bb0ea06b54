// src/nn/rnn_sequence.h — one layer and one direction of RNN / LSTM / GRU over a packed batch as a
// single autograd node (the layers' default path; the per-step composite of rnn_step is the reference).
//
//   detail::SequenceArgs a{.mode = RNNMode::LSTM, .batch_sizes = &bs, .offsets = &off};
//   auto r = detail::run_sequence(a, gx, h0, c0, w_hh, b_hh, w_hr);   // gx (N, 4H) = x W_ih^T + b_ih,
//                                                                     // h0 (B, H_out), c0 (B, H)
//   // r.out (N, H_out) in packed row order, r.h_n (B, H_out), r.c_n (B, H)
//
// Why one node: with a node per step, every step's slice of gx (and of the layer input) gets a
// zero-filled gradient of the full tensor in the backward, which is quadratic in the sequence length.
// Here the backward writes the gate gradients of all steps into one (N, G*H) buffer, so the weight
// gradients are one GEMM each over all steps (dW_hh = dG^T H_prev; dW_ih through gx's linear).
#pragma once
#include <array>
#include <vector>

#include "attn/nn/rnn.h"

namespace attn::nn::detail {

struct SequenceArgs {
  RNNMode mode = RNNMode::LSTM;
  RNNNonlinearity nonlinearity = RNNNonlinearity::Tanh;
  bool reset_before_product = false;
  bool reverse = false;
  const std::vector<int64_t>* batch_sizes = nullptr;  // (T), non-increasing
  const std::vector<int64_t>* offsets = nullptr;      // (T), first row of each step in gx
};

struct SequenceResult {
  Tensor out;  // (N, H_out)
  Tensor h_n;  // (B, H_out)
  Tensor c_n;  // (B, H), LSTM only
};

SequenceResult run_sequence(const SequenceArgs& a, const Tensor& gx, const Tensor& h0, const Tensor& c0,
                            const Tensor& w_hh, const Tensor& b_hh, const Tensor& w_hr);

// The float32 CPU form of run_sequence (rnn_sequence_fast.cc: fused gate kernels, no allocation in the
// time loop); run_sequence takes it when fast_sequence_applies and fused kernels are on.
bool fast_sequence_applies(const SequenceArgs& a, const std::vector<Tensor>& tensors);
SequenceResult run_sequence_fast(const SequenceArgs& a, const Tensor& gx, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh, const Tensor& b_hh, const Tensor& w_hr);
bool set_fused_kernels(bool on);  // returns the previous setting; off: the generic per-op loop (for tests)
bool fused_kernels();

// Both directions of a bidirectional layer as one node whose two time loops (forward and backward
// through time) run at once on two threads, each single-threaded inside; the same arithmetic per
// direction as run_sequence_fast, so the same bits (rnn_sequence_fast.cc says why).
//   auto [fwd, rev] = detail::run_directions_concurrently({{{args, gx_f, h0_f, c0_f, w_hh_f, b_hh_f, w_hr_f},
//                                                          {args_rev, gx_r, ...}}});
struct DirectionInputs {
  SequenceArgs a;
  Tensor gx, h0, c0, w_hh, b_hh, w_hr;  // as run_sequence's
};
// Whether the layer takes it: the fast path applies, every recurrent product runs on packed panels
// (thread-count independent bits), and the switch: set_concurrent_directions / the environment's
// ATTN_RNN_CONCURRENT_DIRECTIONS = 0 (never) or 1 (whenever it applies, any team); by default with a
// team of two threads (what was measured faster). tensors: the layer's input, weights and states.
bool concurrent_directions_apply(const SequenceArgs& a, const std::vector<Tensor>& tensors);
int set_concurrent_directions(int mode);  // -1 default, 0 off, 1 on; returns the previous mode
std::array<SequenceResult, 2> run_directions_concurrently(const std::array<DirectionInputs, 2>& in);

// The layers use run_sequence unless this is off (then the per-step autograd composite); for tests.
bool set_fused_sequence(bool on);  // returns the previous setting
bool fused_sequence();

}  // namespace attn::nn::detail
