// src/nn/rnn_onednn.h — inference forward of RNN / LSTM / GRU through oneDNN's RNN primitives
// (vanilla_rnn tanh / relu, lstm with projection, lbr_gru = PyTorch's GRU form), for a forward with
// nothing recorded for autograd, where it beats attn's own loop: measured paired (bench/onednn_rnn_bench.cc,
// docs/benchmarks_recurrent.md "oneDNN RNN primitives against attn's path"), that is the LSTM and the unidirectional
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
int rnn_onednn_mode();                   // the current mode (kOnednnRnnOff: attn's loop, also under autocast)
int set_onednn_rnn(int mode);            // returns the previous mode (default kOnednnRnnAuto unless ATTN_RNN_ONEDNN is set)
int64_t onednn_rnn_forwards();           // forwards run on oneDNN since the start (tests: the dispatch)
int64_t onednn_rnn_weight_conversions();  // weight conversions since the start (tests: the cache)

// Under attn::Autocast on a CPU with AMX or AVX512_BF16 (cpu::bf16_path() is not Convert), training and
// inference of a dense batch run on oneDNN's bf16 primitives (rnn_onednn_autocast.cc): per layer a
// forward_training primitive and its backward as one autograd node; bf16 data, hidden states and weights,
// float32 bias, cell state and gradients (oneDNN's bf16 RNN); dropout between layers as the module's op.
// The output and h_n come back in bf16 (as PyTorch's autocast gives them), c_n in float32. Not for packed
// batches, GRU's reset_before_product form, LSTM projections, ATTN_RNN_ONEDNN=0, or a shape oneDNN refuses
// (then the module's own loop runs on the autocast ops).
// The default where the bf16 path is AVX512_BF16 (it beat the module's loop in every case measured there:
// docs/benchmarks_recurrent.md); opt-in on AMX until measured there (ATTN_RNN_ONEDNN_BF16=1, or set_onednn_rnn_bf16);
// ATTN_RNN_ONEDNN_BF16=0 turns it off. LSTM projections stay on the loop because oneDNN 2.6.3's bf16
// backward gave them zero gradients. tests/test_rnn_autocast.cc checks it against PyTorch wherever it is on.
//   if (detail::onednn_rnn_autocast_applies(m, x, states)) r = detail::onednn_rnn_autocast_forward(m, x, states);
bool onednn_rnn_autocast_applies(const RNNBase& m, const Tensor& x, const std::vector<Tensor>& states);
OnednnRnnResult onednn_rnn_autocast_forward(const RNNBase& m, const Tensor& x, const std::vector<Tensor>& states);
int64_t onednn_rnn_autocast_layers();  // layer nodes run since the start (tests: the dispatch)
bool set_onednn_rnn_bf16(bool on);      // returns the previous setting (default: see above)
bool onednn_rnn_bf16();

// Shared by rnn_onednn.cc and rnn_onednn_autocast.cc.
struct Sizes {
  int64_t T, B, I, H, Hout, P, G, D;  // steps, batch, layer input, hidden, output hidden, proj, gates, directions
};
inline int64_t gate_count(RNNMode mode) { return mode == RNNMode::LSTM ? 4 : mode == RNNMode::GRU ? 3 : 1; }
Sizes layer_sizes(const RNNBase& m, int64_t layer, int64_t T, int64_t B);
// PyTorch's GRU rows [r; z; n] <-> oneDNN's [u; r; o] = [z; r; n] (w: (3H, .) or (3H)); its own inverse.
Tensor gru_gate_order(const Tensor& w, int64_t H);
// The summed bias of one direction in oneDNN's order: (G, H), or (4, H) for the GRU.
Tensor onednn_bias(RNNMode mode, const RNNBase::LayerWeights& w, const Sizes& s);

}  // namespace attn::nn::detail
