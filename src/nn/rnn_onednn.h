// src/nn/rnn_onednn.h — inference forward of RNN / LSTM / GRU through oneDNN's RNN primitives
// (vanilla_rnn tanh / relu, lstm with projection, lbr_gru = PyTorch's GRU form), for a forward with
// nothing recorded for autograd, where it beats attn's own loop: measured paired (bench/onednn_rnn_bench.cc,
// docs/benchmarks.md "oneDNN RNN primitives against attn's path"), that is the LSTM and the unidirectional
// vanilla RNN (with two threads or one row), not the GRU. ATTN_RNN_ONEDNN=0 / 1 or set_onednn_rnn() force
// attn's loop / oneDNN for every cell oneDNN has.
//
//   if (detail::onednn_rnn_applies(module, x, states))
//     detail::OnednnRnnResult r = detail::onednn_rnn_forward(module, x, states);
//   // x (T, B, I) time-major float32; states {h0} or {h0, c0}, (L * D, B, H_out) / (L * D, B, H)
//   // r.data (T * B, D * H_out) time-major rows, r.final {h_n} or {h_n, c_n}
//
// The weights are converted once (PyTorch's [i f g o] / [r z n] rows to oneDNN's gate order and
// blocked layout, the two biases summed) and kept until a parameter's storage or version changes
// (cpu::SourceStamp, as the fused BERT linear), in a cache keyed by the module's first weight like
// packed_linear's panels (an entry goes when that weight's storage is freed). Tests compare both paths.
#pragma once
#include <vector>

#include "attn/nn/rnn.h"

namespace attn::nn::detail {

struct OnednnRnnResult {
  Tensor data;                // (T * B, D * H_out)
  std::vector<Tensor> final;  // {h_n} or {h_n, c_n}
};

// True for a dense float32 CPU forward with nothing to record (no grad mode, or no input, state or
// parameter requiring grad), no active dropout and no autocast, of a cell oneDNN has (not GRU's
// reset_before_product form), where the mode (forced, or the measured per-case choice) says oneDNN.
bool onednn_rnn_applies(const RNNBase& m, const Tensor& x, const std::vector<Tensor>& states);
OnednnRnnResult onednn_rnn_forward(const RNNBase& m, const Tensor& x, const std::vector<Tensor>& states);

enum : int { kOnednnRnnOff = 0, kOnednnRnnOn = 1, kOnednnRnnAuto = 2 };
int set_onednn_rnn(int mode);            // returns the previous mode (default kOnednnRnnAuto unless ATTN_RNN_ONEDNN is set)
int64_t onednn_rnn_forwards();           // forwards run on oneDNN since the start (tests: the dispatch)
int64_t onednn_rnn_weight_conversions();  // weight conversions since the start (tests: the cache)

}  // namespace attn::nn::detail
