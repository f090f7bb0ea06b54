// src/nn/rnn_cells.cc — the per-step math of RNN / LSTM / GRU (shared by the layers and the cells) and
// the cell modules RNNCell, LSTMCell, GRUCell.
#include <cmath>
#include <stdexcept>

#include "attn/nn/init.h"
#include "attn/nn/rnn.h"
#include "attn/ops.h"

namespace attn::nn {

// ------------------------------------------------------------------------------------- step math

namespace rnn_step {

Tensor rnn(const Tensor& gx, const Tensor& h, const Tensor& w_hh, const Tensor& b_hh, RNNNonlinearity nl) {
  Tensor pre = add(gx, linear(h, w_hh, b_hh));
  return nl == RNNNonlinearity::Tanh ? tanh(pre) : relu(pre);
}

LSTMState lstm(const Tensor& gx, const LSTMState& s, const Tensor& w_hh, const Tensor& b_hh, const Tensor& w_hr) {
  std::vector<Tensor> g = chunk(add(gx, linear(s.h, w_hh, b_hh)), 4, 1);  // [i, f, g, o]
  Tensor c = add(mul(sigmoid(g[1]), s.c), mul(sigmoid(g[0]), tanh(g[2])));
  Tensor h = mul(sigmoid(g[3]), tanh(c));
  if (w_hr.defined()) h = linear(h, w_hr);  // projection (proj_size)
  return {h, c};
}

Tensor gru(const Tensor& gx, const Tensor& h, const Tensor& w_hh, const Tensor& b_hh, bool reset_before_product) {
  const int64_t H = w_hh.size(0) / 3;
  std::vector<Tensor> x = chunk(gx, 3, 1);  // [r, z, n] input parts (with b_ih)
  Tensor r, z, n;
  if (!reset_before_product) {
    std::vector<Tensor> hh = chunk(linear(h, w_hh, b_hh), 3, 1);
    r = sigmoid(add(x[0], hh[0]));
    z = sigmoid(add(x[1], hh[1]));
    n = tanh(add(x[2], mul(r, hh[2])));
  } else {
    // Cho et al.: the reset gate scales h before W_hn, so the n rows need r first (a second product).
    Tensor b_rz = b_hh.defined() ? b_hh.narrow(0, 0, 2 * H) : Tensor();
    Tensor b_n = b_hh.defined() ? b_hh.narrow(0, 2 * H, H) : Tensor();
    std::vector<Tensor> hh = chunk(linear(h, w_hh.narrow(0, 0, 2 * H), b_rz), 2, 1);
    r = sigmoid(add(x[0], hh[0]));
    z = sigmoid(add(x[1], hh[1]));
    n = tanh(add(x[2], linear(mul(r, h), w_hh.narrow(0, 2 * H, H), b_n)));
  }
  return add(n, mul(z, sub(h, n)));  // (1 - z) * n + z * h
}

}  // namespace rnn_step

// ------------------------------------------------------------------------------------------- cells

namespace {
int64_t gate_count(RNNMode mode) { return mode == RNNMode::LSTM ? 4 : mode == RNNMode::GRU ? 3 : 1; }
const char* cell_name(RNNMode mode) {
  return mode == RNNMode::LSTM ? "LSTMCell" : mode == RNNMode::GRU ? "GRUCell" : "RNNCell";
}
}  // namespace

RNNCellBase::RNNCellBase(RNNMode m, const RNNCellOptions& o) : mode(m), options(o) {
  const std::string who = cell_name(mode);
  if (o.input_size <= 0 || o.hidden_size <= 0)
    throw std::invalid_argument(who + ": input_size and hidden_size must be positive, got " +
                                std::to_string(o.input_size) + " and " + std::to_string(o.hidden_size));
  if (o.nonlinearity == RNNNonlinearity::ReLU && mode != RNNMode::RNN)
    throw std::invalid_argument(who + ": nonlinearity=relu is an RNNCell option");
  if (o.reset_before_product && mode != RNNMode::GRU)
    throw std::invalid_argument(who + ": reset_before_product is a GRUCell option");
  const int64_t G = gate_count(mode) * o.hidden_size;
  weight_ih = register_parameter("weight_ih", empty({G, o.input_size}));
  weight_hh = register_parameter("weight_hh", empty({G, o.hidden_size}));
  bias_ih = register_parameter("bias_ih", o.bias ? empty({G}) : Tensor());
  bias_hh = register_parameter("bias_hh", o.bias ? empty({G}) : Tensor());
  reset_parameters();
}

void RNNCellBase::reset_parameters() {
  const double bound = 1.0 / std::sqrt(double(options.hidden_size));
  for (auto& [name, p] : named_parameters()) init::uniform_(p, -bound, bound);
}

std::string RNNCellBase::extra_repr() const {
  std::string s = std::to_string(options.input_size) + ", " + std::to_string(options.hidden_size);
  if (!options.bias) s += ", bias=False";
  if (options.nonlinearity == RNNNonlinearity::ReLU) s += ", nonlinearity=relu";
  if (options.reset_before_product) s += ", reset_before_product=True";
  return s;
}

Tensor RNNCellBase::batched_input(const Tensor& x, bool* unbatched) const {
  const std::string who = cell_name(mode);
  if (!x.defined()) throw std::invalid_argument(who + ": input is undefined");
  if ((x.dim() != 1 && x.dim() != 2) || x.size(-1) != options.input_size)
    throw std::invalid_argument(who + ": input has shape " + shape_str(x.shape()) + ", expected (B, " +
                                std::to_string(options.input_size) + ") or (" + std::to_string(options.input_size) +
                                ")");
  if (!is_floating(x.dtype()))
    throw std::invalid_argument(who + ": input has dtype " + dtype_name(x.dtype()) + ", expected a float type");
  if (x.dim() == 2 && x.size(0) == 0) throw std::invalid_argument(who + ": input is an empty batch (B = 0)");
  *unbatched = x.dim() == 1;
  return *unbatched ? x.unsqueeze(0) : x;
}

Tensor RNNCellBase::batched_state(const Tensor& s, const char* name, const Tensor& x, bool unbatched) const {
  const int64_t B = x.size(0), H = options.hidden_size;
  if (!s.defined()) return zeros({B, H}, {.dtype = x.dtype(), .device = x.device()});
  const Shape want = unbatched ? Shape{H} : Shape{B, H};
  if (s.shape() != want)
    throw std::invalid_argument(std::string(cell_name(mode)) + ": " + name + " has shape " + shape_str(s.shape()) +
                                ", expected " + shape_str(want) + " for input of shape " +
                                shape_str(unbatched ? Shape{options.input_size} : x.shape()));
  if (s.dtype() != x.dtype())
    throw std::invalid_argument(std::string(cell_name(mode)) + ": " + name + " has dtype " + dtype_name(s.dtype()) +
                                ", input has " + dtype_name(x.dtype()));
  return unbatched ? s.unsqueeze(0) : s;
}

Tensor RNNCell::forward(const Tensor& x_in, const Tensor& h_in) {
  bool unbatched = false;
  Tensor x = batched_input(x_in, &unbatched);
  Tensor h = batched_state(h_in, "hx", x, unbatched);
  Tensor out = rnn_step::rnn(linear(x, weight_ih, bias_ih), h, weight_hh, bias_hh, options.nonlinearity);
  return unbatched ? out.squeeze(0) : out;
}

LSTMState LSTMCell::forward(const Tensor& x_in, const LSTMState& state) {
  bool unbatched = false;
  Tensor x = batched_input(x_in, &unbatched);
  if (state.h.defined() != state.c.defined())
    throw std::invalid_argument("LSTMCell: give both h and c of the state, or neither (zeros)");
  LSTMState s{batched_state(state.h, "h", x, unbatched), batched_state(state.c, "c", x, unbatched)};
  LSTMState out = rnn_step::lstm(linear(x, weight_ih, bias_ih), s, weight_hh, bias_hh, Tensor());
  if (unbatched) out = {out.h.squeeze(0), out.c.squeeze(0)};
  return out;
}

Tensor GRUCell::forward(const Tensor& x_in, const Tensor& h_in) {
  bool unbatched = false;
  Tensor x = batched_input(x_in, &unbatched);
  Tensor h = batched_state(h_in, "hx", x, unbatched);
  Tensor out = rnn_step::gru(linear(x, weight_ih, bias_ih), h, weight_hh, bias_hh, options.reset_before_product);
  return unbatched ? out.squeeze(0) : out;
}

}  // namespace attn::nn
