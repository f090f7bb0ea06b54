// tests/rnn_packed_run.h — one packed forward and backward of an RNN, LSTM or GRU, for tests that compare two
// implementations of the time loop on the same module and inputs (fused vs composite, fast vs generic).
//
//   auto res = attn_test::packed_outputs_and_grads(*m, nn::RNNMode::LSTM, x, h0, c0, up);
//   // res: output data, h_n (, c_n), grad of x, h0 (, c0), then every parameter's gradient
#pragma once
#include <memory>
#include <vector>

#include "attn/nn/rnn.h"
#include "attn/ops.h"

namespace attn_test {

// The loss sum(outs[0] * up) + sum(outs[1]^2) (+ 0.3 sum(outs[2])), backward; returns outs, then the
// gradients of x, h0 (, c0 for the LSTM) and of every parameter of m.
inline std::vector<attn::Tensor> backward_and_collect(attn::nn::RNNBase& m, attn::nn::RNNMode mode,
                                                      const std::vector<attn::Tensor>& outs, const attn::Tensor& up,
                                                      const attn::Tensor& x, const attn::Tensor& h0,
                                                      const attn::Tensor& c0) {
  using namespace attn;
  Tensor loss = add(sum(mul(outs[0], up)), sum(square(outs[1])));
  if (outs.size() == 3) loss = add(loss, sum(mul(outs[2], 0.3)));
  loss.backward();
  std::vector<Tensor> res = outs;
  res.push_back(x.grad());
  res.push_back(h0.grad());
  if (mode == nn::RNNMode::LSTM) res.push_back(c0.grad());
  for (const Tensor& q : m.parameters()) res.push_back(q.grad());
  return res;
}

// x (6, 4, F) with lengths {3, 6, 1, 6} (unsorted), h0/c0 (layers*dirs, 4, ...), up (16, dirs*H_out): the loss
// sum(output * up) + sum(h_n^2) (+ 0.3 sum(c_n)) reaches every output, state and parameter.
inline std::vector<attn::Tensor> packed_outputs_and_grads(const std::shared_ptr<attn::nn::RNNBase>& m,
                                                          attn::nn::RNNMode mode, const attn::Tensor& x,
                                                          const attn::Tensor& h0, const attn::Tensor& c0,
                                                          const attn::Tensor& up) {
  using namespace attn;
  m->zero_grad();
  Tensor xl = x.detach(), hl = h0.detach(), cl = c0.detach();
  xl.requires_grad_(true), hl.requires_grad_(true), cl.requires_grad_(true);
  nn::PackedSequence p = nn::utils::pack_padded_sequence(xl, {3, 6, 1, 6}, {.enforce_sorted = false});
  std::vector<Tensor> outs;
  if (mode == nn::RNNMode::LSTM) {
    auto r = std::static_pointer_cast<nn::LSTM>(m)->forward(p, {hl, cl});
    outs = {r.output.data, r.state.h, r.state.c};
  } else {
    auto r = mode == nn::RNNMode::RNN ? std::static_pointer_cast<nn::RNN>(m)->forward(p, hl)
                                      : std::static_pointer_cast<nn::GRU>(m)->forward(p, hl);
    outs = {r.output.data, r.h_n};
  }
  return backward_and_collect(*m, mode, outs, up, xl, hl, cl);
}

}  // namespace attn_test
