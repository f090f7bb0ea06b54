// src/nn/rnn.cc — RNN, LSTM, GRU over padded and packed batches.
//
// Every layer and direction runs one GEMM for the input projections of all time steps (x W_ih^T + b_ih
// over the whole (N, I) data), then a loop over steps with the recurrent product and the gate math
// (src/nn/rnn_cells.cc). A padded batch is a packed one whose batch sizes are all B, so both forms share
// the loop; packed steps work on the first batch_sizes[t] rows only, so padded positions never enter
// outputs, final states or gradients.
#include <array>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "attn/autocast.h"
#include "attn/nn/init.h"
#include "attn/nn/rnn.h"
#include "attn/ops.h"
#include "nn/rnn_onednn.h"
#include "nn/rnn_sequence.h"

namespace attn::nn {

namespace {

const char* mode_name(RNNMode mode) {
  return mode == RNNMode::LSTM ? "LSTM" : mode == RNNMode::GRU ? "GRU" : "RNN";
}
int64_t gate_count(RNNMode mode) { return mode == RNNMode::LSTM ? 4 : mode == RNNMode::GRU ? 3 : 1; }

// One step: (gx_t (bs, G*H), state {h} or {h, c} with bs rows) -> new state.
using StepFn = std::function<std::vector<Tensor>(const Tensor&, const std::vector<Tensor>&)>;

struct DirectionResult {
  Tensor out;                 // (N, H_out), rows in packed order
  std::vector<Tensor> final;  // each (B, .)
};

// Forward in time: a sequence whose length ends at step t leaves the batch there (the rows at the
// bottom), and its state at that moment is its final state.
DirectionResult run_forward(const Tensor& gx, const std::vector<int64_t>& batch_sizes,
                            const std::vector<int64_t>& offsets, std::vector<Tensor> state, const StepFn& step) {
  const size_t T = batch_sizes.size(), K = state.size();
  std::vector<std::vector<Tensor>> finished(K);
  std::vector<Tensor> outs(T);
  int64_t rows = batch_sizes[0];
  for (size_t t = 0; t < T; ++t) {
    const int64_t bs = batch_sizes[t];
    if (bs < rows) {
      for (size_t k = 0; k < K; ++k) {
        finished[k].push_back(state[k].narrow(0, bs, rows - bs));
        state[k] = state[k].narrow(0, 0, bs);
      }
      rows = bs;
    }
    state = step(gx.narrow(0, offsets[t], bs), state);
    outs[t] = state[0];
  }
  std::vector<Tensor> final(K);
  for (size_t k = 0; k < K; ++k) {
    std::vector<Tensor> parts{state[k]};
    parts.insert(parts.end(), finished[k].rbegin(), finished[k].rend());  // later leavers are upper rows
    final[k] = parts.size() == 1 ? parts[0] : cat(parts, 0);
  }
  return {T == 1 ? outs[0] : cat(outs, 0), final};
}

// Backward in time: a sequence joins at its own last step, starting from its initial state.
DirectionResult run_reverse(const Tensor& gx, const std::vector<int64_t>& batch_sizes,
                            const std::vector<int64_t>& offsets, const std::vector<Tensor>& init,
                            const StepFn& step) {
  const size_t T = batch_sizes.size(), K = init.size();
  std::vector<Tensor> outs(T), state(K);
  int64_t rows = batch_sizes[T - 1];
  for (size_t k = 0; k < K; ++k) state[k] = init[k].narrow(0, 0, rows);
  for (size_t t = T; t-- > 0;) {
    const int64_t bs = batch_sizes[t];
    if (bs > rows) {
      for (size_t k = 0; k < K; ++k) state[k] = cat({state[k], init[k].narrow(0, rows, bs - rows)}, 0);
      rows = bs;
    }
    state = step(gx.narrow(0, offsets[t], bs), state);
    outs[t] = state[0];
  }
  return {T == 1 ? outs[0] : cat(outs, 0), state};
}

void check_batch_sizes(const std::string& who, const std::vector<int64_t>& bs, int64_t rows) {
  if (bs.empty()) throw std::invalid_argument(who + ": the packed sequence has no time steps (empty batch_sizes)");
  int64_t total = 0;
  for (size_t t = 0; t < bs.size(); ++t) {
    if (bs[t] <= 0 || (t > 0 && bs[t] > bs[t - 1]))
      throw std::invalid_argument(who + ": batch_sizes must be positive and non-increasing; step " +
                                  std::to_string(t) + " has " + std::to_string(bs[t]));
    total += bs[t];
  }
  if (total != rows)
    throw std::invalid_argument(who + ": batch_sizes add up to " + std::to_string(total) +
                                " rows but the packed data has " + std::to_string(rows));
}

// The input projection of all time steps in one GEMM. Under autocast that linear runs in bf16; the time
// loop stays float32 (its fused kernels and the float32 master weights), so the projection is widened once
// here: bf16 products for x W_ih^T, float32 recurrence (oneDNN's bf16 primitives: rnn_onednn.h).
Tensor input_projection(const Tensor& layer_in, const RNNBase::LayerWeights& w) {
  Tensor gx = linear(layer_in, w.w_ih, w.b_ih);
  return autocast_enabled() && gx.dtype() == kBFloat16 && w.w_hh.dtype() == kFloat32 ? gx.to(kFloat32) : gx;
}

// Both directions of layer l as one node whose time loops run concurrently (rnn_sequence.h), when that
// applies; appends the outputs and final states as the direction loop of RNNBase::run does.
bool run_both_directions(const RNNBase& m, int64_t l, const Tensor& layer_in, const std::vector<int64_t>& batch_sizes,
                         const std::vector<int64_t>& offsets, const std::vector<Tensor>& states,
                         std::vector<Tensor>& dir_out, std::vector<std::vector<Tensor>>& finals) {
  const bool lstm = m.mode == RNNMode::LSTM;
  std::array<detail::DirectionInputs, 2> in;
  std::vector<Tensor> tensors{layer_in};
  for (int64_t d = 0; d < 2; ++d) {
    const RNNBase::LayerWeights& w = m.weights(l, d);
    detail::DirectionInputs& x = in[size_t(d)];
    x.a = {m.mode, m.options.nonlinearity, m.options.reset_before_product, d == 1, &batch_sizes, &offsets};
    x.h0 = states[0].select(0, l * 2 + d);
    if (lstm) x.c0 = states[1].select(0, l * 2 + d);
    x.w_hh = w.w_hh, x.b_hh = w.b_hh, x.w_hr = w.w_hr;
    tensors.insert(tensors.end(), {w.w_ih, w.b_ih, w.w_hh, w.b_hh, w.w_hr, x.h0, x.c0});
  }
  if (!detail::concurrent_directions_apply(in[0].a, tensors)) return false;
  for (int64_t d = 0; d < 2; ++d) in[size_t(d)].gx = input_projection(layer_in, m.weights(l, d));
  const std::array<detail::SequenceResult, 2> r = detail::run_directions_concurrently(in);
  for (const detail::SequenceResult& dr : r) {
    dir_out.push_back(dr.out);
    finals[0].push_back(dr.h_n);
    if (lstm) finals[1].push_back(dr.c_n);
  }
  return true;
}

}  // namespace

// ------------------------------------------------------------------------------------ construction

RNNBase::RNNBase(RNNMode m, const RNNOptions& o) : mode(m), options(o) {
  const std::string who = mode_name(mode);
  if (o.input_size <= 0 || o.hidden_size <= 0 || o.num_layers <= 0)
    throw std::invalid_argument(who + ": input_size, hidden_size and num_layers must be positive, got " +
                                std::to_string(o.input_size) + ", " + std::to_string(o.hidden_size) + ", " +
                                std::to_string(o.num_layers));
  if (!(o.dropout >= 0.0 && o.dropout <= 1.0))
    throw std::invalid_argument(who + ": dropout must be in [0, 1], got " + std::to_string(o.dropout));
  if (o.proj_size < 0 || (o.proj_size > 0 && (mode != RNNMode::LSTM || o.proj_size >= o.hidden_size)))
    throw std::invalid_argument(who + ": proj_size (" + std::to_string(o.proj_size) +
                                ") is an LSTM option and must be in [0, hidden_size)");
  if (o.nonlinearity == RNNNonlinearity::ReLU && mode != RNNMode::RNN)
    throw std::invalid_argument(who + ": nonlinearity=relu is an RNN option");
  if (o.reset_before_product && mode != RNNMode::GRU)
    throw std::invalid_argument(who + ": reset_before_product is a GRU option");
  const int64_t G = gate_count(mode) * o.hidden_size, D = num_directions(), Hout = output_hidden();
  for (int64_t l = 0; l < o.num_layers; ++l) {
    for (int64_t d = 0; d < D; ++d) {
      const std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
      const int64_t in = l == 0 ? o.input_size : D * Hout;
      LayerWeights w;
      w.w_ih = register_parameter("weight_ih" + sfx, empty({G, in}));
      w.w_hh = register_parameter("weight_hh" + sfx, empty({G, Hout}));
      w.b_ih = register_parameter("bias_ih" + sfx, o.bias ? empty({G}) : Tensor());
      w.b_hh = register_parameter("bias_hh" + sfx, o.bias ? empty({G}) : Tensor());
      if (o.proj_size > 0) w.w_hr = register_parameter("weight_hr" + sfx, empty({o.proj_size, o.hidden_size}));
      layers_.push_back(w);
    }
  }
  reset_parameters();
}

void RNNBase::reset_parameters() {
  const double bound = 1.0 / std::sqrt(double(options.hidden_size));
  for (auto& [name, p] : named_parameters()) init::uniform_(p, -bound, bound);
}

const RNNBase::LayerWeights& RNNBase::weights(int64_t layer, int64_t direction) const {
  if (layer < 0 || layer >= options.num_layers || direction < 0 || direction >= num_directions())
    throw std::out_of_range(std::string(mode_name(mode)) + "::weights: no layer " + std::to_string(layer) +
                            " direction " + std::to_string(direction));
  return layers_[size_t(layer * num_directions() + direction)];
}

std::string RNNBase::extra_repr() const {
  const RNNOptions& o = options;
  std::string s = std::to_string(o.input_size) + ", " + std::to_string(o.hidden_size);
  if (o.proj_size > 0) s += ", proj_size=" + std::to_string(o.proj_size);
  if (o.num_layers != 1) s += ", num_layers=" + std::to_string(o.num_layers);
  if (o.nonlinearity == RNNNonlinearity::ReLU) s += ", nonlinearity=relu";
  if (!o.bias) s += ", bias=False";
  if (o.batch_first) s += ", batch_first=True";
  if (o.dropout != 0.0) s += ", dropout=" + std::to_string(o.dropout);
  if (o.bidirectional) s += ", bidirectional=True";
  if (o.reset_before_product) s += ", reset_before_product=True";
  return s;
}

// -------------------------------------------------------------------------------------- the loop

RNNBase::Result RNNBase::run(const Tensor& data, const std::vector<int64_t>& batch_sizes,
                             const std::vector<Tensor>& given_states) {
  const int64_t D = num_directions(), L = options.num_layers;
  std::vector<int64_t> offsets(batch_sizes.size());
  for (size_t t = 1; t < batch_sizes.size(); ++t) offsets[t] = offsets[t - 1] + batch_sizes[t - 1];
  std::vector<Tensor> states = given_states;
  std::vector<std::vector<Tensor>> finals(states.size());
  for (Tensor& st : states)  // the float32 time loop under autocast (input_projection says why)
    if (autocast_enabled() && st.dtype() == kBFloat16 && layers_[0].w_hh.dtype() == kFloat32) st = st.to(kFloat32);
  Tensor layer_in = data;
  for (int64_t l = 0; l < L; ++l) {
    std::vector<Tensor> dir_out;
    const bool together = D == 2 && detail::fused_sequence() &&
                          run_both_directions(*this, l, layer_in, batch_sizes, offsets, states, dir_out, finals);
    for (int64_t d = 0; d < D && !together; ++d) {
      const LayerWeights& w = layers_[size_t(l * D + d)];
      StepFn step;
      if (mode == RNNMode::LSTM)
        step = [&w](const Tensor& gx, const std::vector<Tensor>& s) {
          LSTMState n = rnn_step::lstm(gx, {s[0], s[1]}, w.w_hh, w.b_hh, w.w_hr);
          return std::vector<Tensor>{n.h, n.c};
        };
      else if (mode == RNNMode::GRU)
        step = [&w, this](const Tensor& gx, const std::vector<Tensor>& s) {
          return std::vector<Tensor>{rnn_step::gru(gx, s[0], w.w_hh, w.b_hh, options.reset_before_product)};
        };
      else
        step = [&w, this](const Tensor& gx, const std::vector<Tensor>& s) {
          return std::vector<Tensor>{rnn_step::rnn(gx, s[0], w.w_hh, w.b_hh, options.nonlinearity)};
        };
      Tensor gx = input_projection(layer_in, w);  // all time steps in one GEMM
      std::vector<Tensor> init;
      for (const Tensor& s : states) init.push_back(s.select(0, l * D + d));
      if (detail::fused_sequence()) {
        detail::SequenceArgs args{mode, options.nonlinearity, options.reset_before_product, d == 1, &batch_sizes,
                                  &offsets};
        detail::SequenceResult r =
            detail::run_sequence(args, gx, init[0], mode == RNNMode::LSTM ? init[1] : Tensor(), w.w_hh, w.b_hh, w.w_hr);
        dir_out.push_back(r.out);
        finals[0].push_back(r.h_n);
        if (mode == RNNMode::LSTM) finals[1].push_back(r.c_n);
        continue;
      }
      DirectionResult r = d == 0 ? run_forward(gx, batch_sizes, offsets, init, step)
                                 : run_reverse(gx, batch_sizes, offsets, init, step);
      dir_out.push_back(r.out);
      for (size_t k = 0; k < r.final.size(); ++k) finals[k].push_back(r.final[k]);
    }
    layer_in = D == 1 ? dir_out[0] : cat(dir_out, 1);
    if (l + 1 < L && options.dropout > 0.0 && is_training()) layer_in = dropout(layer_in, options.dropout, true);
  }
  Result res{layer_in, {}};
  for (auto& f : finals) res.final.push_back(stack(f, 0));
  return res;
}

// ------------------------------------------------------------------------------- input and states

Tensor RNNBase::time_major_input(const Tensor& input, bool* unbatched) const {
  const std::string who = mode_name(mode);
  if (!input.defined()) throw std::invalid_argument(who + ": input is undefined");
  const std::string expected = options.batch_first ? "(B, T, " : "(T, B, ";
  if ((input.dim() != 2 && input.dim() != 3) || input.size(-1) != options.input_size)
    throw std::invalid_argument(who + ": input has shape " + shape_str(input.shape()) + ", expected " + expected +
                                std::to_string(options.input_size) + ") or unbatched (T, " +
                                std::to_string(options.input_size) + ")");
  if (!is_floating(input.dtype()))
    throw std::invalid_argument(who + ": input has dtype " + dtype_name(input.dtype()) + ", expected a float type");
  *unbatched = input.dim() == 2;
  Tensor x = *unbatched ? input.unsqueeze(1) : options.batch_first ? input.transpose(0, 1) : input;
  if (x.size(0) == 0)
    throw std::invalid_argument(who + ": input " + shape_str(input.shape()) + " is an empty sequence (T = 0)");
  if (x.size(1) == 0) throw std::invalid_argument(who + ": input " + shape_str(input.shape()) + " is an empty batch");
  return x;
}

Tensor RNNBase::initial_state(const Tensor& given, const char* name, int64_t batch, int64_t size, bool unbatched,
                              const Tensor& like) const {
  const int64_t LD = options.num_layers * num_directions();
  if (!given.defined()) return zeros({LD, batch, size}, {.dtype = like.dtype(), .device = like.device()});
  const Shape want = unbatched ? Shape{LD, size} : Shape{LD, batch, size};
  if (given.shape() != want)
    throw std::invalid_argument(std::string(mode_name(mode)) + ": " + name + " has shape " +
                                shape_str(given.shape()) + ", expected " + shape_str(want) +
                                " (num_layers * num_directions, " + (unbatched ? "" : "batch, ") + "size)");
  // Under autocast float32 and bf16 mix (as in PyTorch, which casts them): a state carried from the last
  // batch comes back in bf16 from oneDNN's bf16 path, while the embedding gives float32.
  const auto autocast_float = [](DType t) { return t == kFloat32 || t == kBFloat16; };
  const bool autocast_mix = autocast_enabled() && autocast_float(given.dtype()) && autocast_float(like.dtype());
  if (given.dtype() != like.dtype() && !autocast_mix)
    throw std::invalid_argument(std::string(mode_name(mode)) + ": " + name + " has dtype " +
                                dtype_name(given.dtype()) + ", input has " + dtype_name(like.dtype()));
  return unbatched ? given.unsqueeze(1) : given;
}

RNNOutput RNNBase::forward_padded(const Tensor& input, std::vector<Tensor> states, std::vector<Tensor>* finals) {
  bool unbatched = false;
  Tensor x = time_major_input(input, &unbatched);
  const int64_t T = x.size(0), B = x.size(1);
  const int64_t sizes[2] = {output_hidden(), options.hidden_size};
  const char* names[2] = {"h0", "c0"};
  for (size_t k = 0; k < states.size(); ++k) states[k] = initial_state(states[k], names[k], B, sizes[k], unbatched, x);
  Result r;
  if (detail::onednn_rnn_autocast_applies(*this, x, states)) {  // bf16 under autocast (src/nn/rnn_onednn.h)
    detail::OnednnRnnResult o = detail::onednn_rnn_autocast_forward(*this, x, states);
    r = {o.data, o.final};
  } else if (detail::onednn_rnn_applies(*this, x, states)) {  // inference on oneDNN where it wins
    detail::OnednnRnnResult o = detail::onednn_rnn_forward(*this, x, states);
    r = {o.data, o.final};
  } else {
    r = run(x.reshape({T * B, options.input_size}), std::vector<int64_t>(size_t(T), B), states);
  }
  Tensor out = r.data.view({T, B, r.data.size(1)});
  if (unbatched) out = out.squeeze(1);
  else if (options.batch_first) out = out.transpose(0, 1);
  for (Tensor& f : r.final) f = unbatched ? f.squeeze(1) : f;
  *finals = r.final;
  return {out, r.final[0]};
}

PackedSequence RNNBase::forward_packed(const PackedSequence& input, std::vector<Tensor> states,
                                       std::vector<Tensor>* finals) {
  const std::string who = mode_name(mode);
  const Tensor& data = input.data;
  if (!data.defined() || data.dim() != 2 || data.size(1) != options.input_size)
    throw std::invalid_argument(who + ": packed data has shape " + (data.defined() ? shape_str(data.shape()) : "()") +
                                ", expected (sum of lengths, " + std::to_string(options.input_size) + ")");
  if (!is_floating(data.dtype()))
    throw std::invalid_argument(who + ": packed data has dtype " + dtype_name(data.dtype()) +
                                ", expected a float type");
  check_batch_sizes(who, input.batch_sizes, data.size(0));
  const int64_t B = input.batch_sizes[0];
  const int64_t sizes[2] = {output_hidden(), options.hidden_size};
  const char* names[2] = {"h0", "c0"};
  for (size_t k = 0; k < states.size(); ++k) {
    states[k] = initial_state(states[k], names[k], B, sizes[k], false, data);
    // The caller's rows are in the original order; the loop works in the sorted order.
    if (input.sorted_indices.defined()) states[k] = index_select(states[k], 1, input.sorted_indices);
  }
  Result r = run(data, input.batch_sizes, states);
  for (Tensor& f : r.final)
    if (input.unsorted_indices.defined()) f = index_select(f, 1, input.unsorted_indices);
  *finals = r.final;
  return {r.data, input.batch_sizes, input.sorted_indices, input.unsorted_indices};
}

// ------------------------------------------------------------------------------------- the modules

RNNOutput RNN::forward(const Tensor& input, const Tensor& h0) {
  std::vector<Tensor> f;
  return forward_padded(input, {h0}, &f);
}
PackedRNNOutput RNN::forward(const PackedSequence& input, const Tensor& h0) {
  std::vector<Tensor> f;
  PackedSequence out = forward_packed(input, {h0}, &f);
  return {out, f[0]};
}

RNNOutput GRU::forward(const Tensor& input, const Tensor& h0) {
  std::vector<Tensor> f;
  return forward_padded(input, {h0}, &f);
}
PackedRNNOutput GRU::forward(const PackedSequence& input, const Tensor& h0) {
  std::vector<Tensor> f;
  PackedSequence out = forward_packed(input, {h0}, &f);
  return {out, f[0]};
}

namespace {
void check_lstm_state(const LSTMState& s) {
  if (s.h.defined() != s.c.defined())
    throw std::invalid_argument("LSTM: give both h0 and c0 of the initial state, or neither (zeros)");
}
}  // namespace

LSTMOutput LSTM::forward(const Tensor& input, const LSTMState& state) {
  check_lstm_state(state);
  std::vector<Tensor> f;
  RNNOutput o = forward_padded(input, {state.h, state.c}, &f);
  return {o.output, {f[0], f[1]}};
}
PackedLSTMOutput LSTM::forward(const PackedSequence& input, const LSTMState& state) {
  check_lstm_state(state);
  std::vector<Tensor> f;
  PackedSequence out = forward_packed(input, {state.h, state.c}, &f);
  return {out, {f[0], f[1]}};
}

}  // namespace attn::nn
