// attn/nn/rnn.h — recurrent layers with torch.nn's names, shapes, gate order and initialisation, so a
// PyTorch state_dict loads unchanged: RNN (tanh / relu), LSTM (with proj_size), GRU, their cells, and
// packed variable-length batches (torch.nn.utils.rnn.pack_padded_sequence / pad_packed_sequence).
//
//   nn::LSTM lstm({.input_size = 128, .hidden_size = 512, .num_layers = 2, .batch_first = true});
//   auto [out, state] = lstm.forward(x, {});          // x (B, T, 128) -> out (B, T, 512),
//                                                      // state.h, state.c: (2, B, 512) (never batch_first)
//   auto next = lstm.forward(x2, state);               // carry the state on
//
//   nn::GRU gru({.input_size = 8, .hidden_size = 16, .bidirectional = true});
//   auto packed = nn::utils::pack_padded_sequence(x, {5, 2, 4}, {.enforce_sorted = false});  // x (T=5, B=3, 8)
//   auto [pout, h_n] = gru.forward(packed, {});        // h_n (2, 3, 16): each row's state at its own last step
//   auto [padded, lengths] = nn::utils::pad_packed_sequence(pout);   // (5, 3, 32), zeros past each length
//
//   nn::GRUCell cell({.input_size = 8, .hidden_size = 16, .reset_before_product = true});  // Cho et al. 2014
//   Tensor h = cell.forward(x_t, h);                   // (B, 8), (B, 16) -> (B, 16)
//
// Shapes (D = 2 if bidirectional else 1, H_out = proj_size if > 0 else hidden_size):
//   input  (T, B, input_size), or (B, T, input_size) with batch_first, or (T, input_size) unbatched
//   h0/h_n (num_layers * D, B, H_out), c0/c_n (num_layers * D, B, hidden_size); (.., B, ..) dropped unbatched
//   output (T, B, D * H_out) (batch_first: (B, T, D * H_out))
// Gates: LSTM rows of weight_ih/weight_hh are [i; f; g; o]; GRU rows are [r; z; n] with
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))          (PyTorch, cuDNN; the default)
//   n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)          (reset_before_product: the lecture's / Cho's form)
// Every weight and bias starts U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as in PyTorch.
#pragma once
#include <string>
#include <vector>

#include "attn/nn/module.h"

namespace attn::nn {

// ---- packed sequences

// A batch of variable-length sequences laid out step by step: the rows of step t are the first
// batch_sizes[t] sequences (sorted longest first), so padded positions are never computed.
struct PackedSequence {
  Tensor data;                        // (sum of lengths, *)
  std::vector<int64_t> batch_sizes;   // (T_max), non-increasing, batch_sizes[0] = B
  Tensor sorted_indices;              // (B) int64: sorted position -> original row; undefined if sorted
  Tensor unsorted_indices;            // (B) int64: original row -> sorted position; undefined if sorted
};

namespace utils {

struct PackOptions {
  bool batch_first = false;
  bool enforce_sorted = true;  // lengths must be non-increasing; false sorts them (and unsorts on the way out)
};
// input (T, B, *) (or (B, T, *) with batch_first); lengths: B values in [1, T].
PackedSequence pack_padded_sequence(const Tensor& input, const std::vector<int64_t>& lengths,
                                    const PackOptions& options = {});

struct PadOptions {
  bool batch_first = false;
  double padding_value = 0.0;
  int64_t total_length = -1;  // pad the time axis to this length (>= the longest), -1: the longest
};
struct PaddedSequence {
  Tensor padded;                 // (T, B, *) or (B, T, *)
  std::vector<int64_t> lengths;  // (B), in the original batch order
};
PaddedSequence pad_packed_sequence(const PackedSequence& sequence, const PadOptions& options = {});

}  // namespace utils

// ---- outputs and states

struct RNNOutput {
  Tensor output;  // (T, B, D * H_out)
  Tensor h_n;     // (num_layers * D, B, H_out)
};
struct LSTMState {
  Tensor h;  // (num_layers * D, B, H_out), or (B, hidden) for a cell
  Tensor c;  // (num_layers * D, B, hidden_size)
};
struct LSTMOutput {
  Tensor output;
  LSTMState state;
};
struct PackedRNNOutput {
  PackedSequence output;  // data (sum of lengths, D * H_out)
  Tensor h_n;
};
struct PackedLSTMOutput {
  PackedSequence output;
  LSTMState state;
};

// ---- options

enum class RNNNonlinearity { Tanh, ReLU };

struct RNNOptions {
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  RNNNonlinearity nonlinearity = RNNNonlinearity::Tanh;  // RNN only
  bool bias = true;
  bool batch_first = false;
  double dropout = 0.0;  // on the output of every layer but the last, while training
  bool bidirectional = false;
  int64_t proj_size = 0;  // LSTM only: h = W_hr (o * tanh(c)), of size proj_size (< hidden_size)
  bool reset_before_product = false;  // GRU only: the Cho et al. candidate (see the top of this file)
};

struct RNNCellOptions {
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  bool bias = true;
  RNNNonlinearity nonlinearity = RNNNonlinearity::Tanh;  // RNNCell only
  bool reset_before_product = false;                     // GRUCell only
};

// ---- the multi-layer modules

enum class RNNMode { RNN, LSTM, GRU };

// Shared by RNN, LSTM and GRU: parameters per layer and direction, options checks, the time loop.
class RNNBase : public Module {
 public:
  RNNBase(RNNMode mode, const RNNOptions& options);
  void reset_parameters();  // U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)) for every parameter
  std::string extra_repr() const override;

  // The parameters of layer `layer`, direction `direction` (1 = reverse); w_hr only with proj_size.
  struct LayerWeights {
    Tensor w_ih, w_hh, b_ih, b_hh, w_hr;
  };
  const LayerWeights& weights(int64_t layer, int64_t direction) const;

  RNNMode mode;
  RNNOptions options;

 protected:
  int64_t num_directions() const { return options.bidirectional ? 2 : 1; }
  int64_t output_hidden() const { return options.proj_size > 0 ? options.proj_size : options.hidden_size; }
  // The time loop over (possibly packed) data; states: {h} or {h, c}, each (L * D, B, .) or empty.
  struct Result {
    Tensor data;                // (N, D * H_out)
    std::vector<Tensor> final;  // {h_n} or {h_n, c_n}
  };
  Result run(const Tensor& data, const std::vector<int64_t>& batch_sizes, const std::vector<Tensor>& states);
  // Padded input -> (T, B, I) time-major; checks ranks and sizes; `unbatched` set for 2-d input.
  Tensor time_major_input(const Tensor& input, bool* unbatched) const;
  // Checks an initial state (or makes zeros), batched to (L * D, B, size).
  Tensor initial_state(const Tensor& given, const char* name, int64_t batch, int64_t size, bool unbatched,
                       const Tensor& like) const;
  RNNOutput forward_padded(const Tensor& input, std::vector<Tensor> states, std::vector<Tensor>* finals);
  PackedSequence forward_packed(const PackedSequence& input, std::vector<Tensor> states,
                                std::vector<Tensor>* finals);

 private:
  std::vector<LayerWeights> layers_;  // index layer * D + direction
};

class RNN : public RNNBase {
 public:
  explicit RNN(const RNNOptions& options) : RNNBase(RNNMode::RNN, options) {}
  RNNOutput forward(const Tensor& input, const Tensor& h0);  // h0 undefined: zeros
  PackedRNNOutput forward(const PackedSequence& input, const Tensor& h0);
  Tensor forward(const Tensor& input) override { return forward(input, Tensor()).output; }
};

class LSTM : public RNNBase {
 public:
  explicit LSTM(const RNNOptions& options) : RNNBase(RNNMode::LSTM, options) {}
  LSTMOutput forward(const Tensor& input, const LSTMState& state);  // both h and c, or neither (zeros)
  PackedLSTMOutput forward(const PackedSequence& input, const LSTMState& state);
  Tensor forward(const Tensor& input) override { return forward(input, LSTMState{}).output; }
};

class GRU : public RNNBase {
 public:
  explicit GRU(const RNNOptions& options) : RNNBase(RNNMode::GRU, options) {}
  RNNOutput forward(const Tensor& input, const Tensor& h0);
  PackedRNNOutput forward(const PackedSequence& input, const Tensor& h0);
  Tensor forward(const Tensor& input) override { return forward(input, Tensor()).output; }
};

// ---- cells: one time step; x (B, input_size) or (input_size) unbatched

class RNNCellBase : public Module {
 public:
  RNNCellBase(RNNMode mode, const RNNCellOptions& options);
  void reset_parameters();
  std::string extra_repr() const override;

  RNNMode mode;
  RNNCellOptions options;
  Tensor weight_ih;  // (G * hidden, input_size), G = 1 / 4 / 3
  Tensor weight_hh;  // (G * hidden, hidden)
  Tensor bias_ih;    // (G * hidden) or undefined
  Tensor bias_hh;

 protected:
  // Checks x and a state against the sizes; returns x batched, sets `unbatched`.
  Tensor batched_input(const Tensor& x, bool* unbatched) const;
  Tensor batched_state(const Tensor& s, const char* name, const Tensor& x, bool unbatched) const;
};

class RNNCell : public RNNCellBase {
 public:
  explicit RNNCell(const RNNCellOptions& options) : RNNCellBase(RNNMode::RNN, options) {}
  Tensor forward(const Tensor& x, const Tensor& h);  // h undefined: zeros -> h' (B, hidden)
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
};

class LSTMCell : public RNNCellBase {
 public:
  explicit LSTMCell(const RNNCellOptions& options) : RNNCellBase(RNNMode::LSTM, options) {}
  LSTMState forward(const Tensor& x, const LSTMState& state);  // -> (h', c'), each (B, hidden)
  Tensor forward(const Tensor& x) override { return forward(x, LSTMState{}).h; }
};

class GRUCell : public RNNCellBase {
 public:
  explicit GRUCell(const RNNCellOptions& options) : RNNCellBase(RNNMode::GRU, options) {}
  Tensor forward(const Tensor& x, const Tensor& h);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
};

// ---- the step functions behind both the cells and the layers (autograd composites).
// gx = x W_ih^T + b_ih, computed for all steps at once by the layers; h (B, H_out), c (B, hidden).
namespace rnn_step {
Tensor rnn(const Tensor& gx, const Tensor& h, const Tensor& w_hh, const Tensor& b_hh, RNNNonlinearity nl);
LSTMState lstm(const Tensor& gx, const LSTMState& s, const Tensor& w_hh, const Tensor& b_hh, const Tensor& w_hr);
Tensor gru(const Tensor& gx, const Tensor& h, const Tensor& w_hh, const Tensor& b_hh, bool reset_before_product);
}  // namespace rnn_step

}  // namespace attn::nn
