// src/nn/rnn_sequence.cc — the time loop of one layer and direction as one autograd node (see the header).
//
// The forward keeps, per row of gx, what the backward needs (the state before the step and the gate
// activations) in buffers of N rows; the state is one (B, .) buffer whose first batch_sizes[t] rows are
// the active sequences at step t, so in a packed batch a finished row simply keeps its final state
// (forward direction) and a row not yet started keeps its initial state (reverse direction).
#include "nn/rnn_sequence.h"

#include <atomic>

#include "attn/autograd.h"
#include "attn/ops.h"

namespace attn::nn::detail {

namespace {

std::atomic<bool> g_fused{true};
std::atomic<bool> g_fused_kernels{true};

Tensor rows(const Tensor& t, int64_t off, int64_t n) { return t.narrow(0, off, n); }
Tensor cols(const Tensor& t, int64_t start, int64_t n) { return t.narrow(1, start, n); }
// Saves `value` into rows [off, off + n) of a buffer; without autograd there are no buffers.
void keep(const Tensor& buf, int64_t off, int64_t n, const Tensor& value) {
  if (buf.defined()) rows(buf, off, n).copy_(value);
}
Tensor dsigmoid(const Tensor& s) { return mul(s, 1.0 - s); }     // sigma' from sigma
Tensor dtanh(const Tensor& y) { return 1.0 - square(y); }         // tanh' from tanh

struct Buffers {
  Tensor hprev;  // (N, H_out): the state each row's step started from
  Tensor act;    // RNN (N, H) outputs; LSTM (N, 4H) i, f, g, o; GRU (N, 3H) r, z, n
  Tensor cprev;  // LSTM (N, H): the cell before the step
  Tensor c;      // LSTM (N, H): the cell after it
  Tensor m;      // LSTM with proj_size (N, H): o * tanh(c) before the projection
  Tensor ghn;    // GRU (N, H): W_hn h + b_hn (PyTorch's form)
  Tensor q;      // GRU (N, H): r * h (reset_before_product)
};

struct Weights {
  Tensor w_hh, b_hh, w_hr;
  int64_t H;
};

std::vector<size_t> step_order(size_t T, bool reverse) {
  std::vector<size_t> order(T);
  for (size_t i = 0; i < T; ++i) order[i] = reverse ? T - 1 - i : i;
  return order;
}

// One forward step on rows [off, off + bs) of gx; h (and c) are the active rows of the state buffers.
Tensor forward_step(const SequenceArgs& a, const Weights& w, Buffers& s, const Tensor& x, const Tensor& h,
                    Tensor c, int64_t off, int64_t bs) {
  const int64_t H = w.H;
  keep(s.hprev, off, bs, h);
  if (a.mode == RNNMode::RNN) {
    Tensor pre = add(x, linear(h, w.w_hh, w.b_hh));
    Tensor y = a.nonlinearity == RNNNonlinearity::Tanh ? tanh(pre) : relu(pre);
    keep(s.act, off, bs, y);
    return y;
  }
  Tensor act = s.act.defined() ? rows(s.act, off, bs)
                                : empty({bs, x.size(1)}, {.dtype = x.dtype(), .device = x.device()});
  if (a.mode == RNNMode::LSTM) {
    Tensor pre = add(x, linear(h, w.w_hh, w.b_hh));
    act.copy_(sigmoid(pre));  // i, f, o (and g, overwritten next): one pass over the gates
    cols(act, 2 * H, H).copy_(tanh(cols(pre, 2 * H, H)));
    keep(s.cprev, off, bs, c);
    Tensor cn = add(mul(cols(act, H, H), c), mul(cols(act, 0, H), cols(act, 2 * H, H)));
    keep(s.c, off, bs, cn);
    c.copy_(cn);
    Tensor m = mul(cols(act, 3 * H, H), tanh(cn));
    if (!w.w_hr.defined()) return m;
    keep(s.m, off, bs, m);
    return linear(m, w.w_hr);
  }
  Tensor n_pre;
  if (!a.reset_before_product) {
    Tensor gh = linear(h, w.w_hh, w.b_hh);
    cols(act, 0, 2 * H).copy_(sigmoid(add(cols(x, 0, 2 * H), cols(gh, 0, 2 * H))));
    keep(s.ghn, off, bs, cols(gh, 2 * H, H));
    n_pre = add(cols(x, 2 * H, H), mul(cols(act, 0, H), cols(gh, 2 * H, H)));
  } else {
    Tensor b_rz = w.b_hh.defined() ? w.b_hh.narrow(0, 0, 2 * H) : Tensor();
    Tensor b_n = w.b_hh.defined() ? w.b_hh.narrow(0, 2 * H, H) : Tensor();
    cols(act, 0, 2 * H).copy_(sigmoid(add(cols(x, 0, 2 * H), linear(h, w.w_hh.narrow(0, 0, 2 * H), b_rz))));
    Tensor q = mul(cols(act, 0, H), h);
    keep(s.q, off, bs, q);
    n_pre = add(cols(x, 2 * H, H), linear(q, w.w_hh.narrow(0, 2 * H, H), b_n));
  }
  Tensor n = tanh(n_pre);
  cols(act, 2 * H, H).copy_(n);
  return add(n, mul(cols(act, H, H), sub(h, n)));  // (1 - z) * n + z * h
}

struct Grads {
  Tensor dgx, dgh;  // (N, G*H); dgh: the gate gradients as W_hh sees them (differs from dgx for GRU)
  Tensor dh_out;    // LSTM with proj_size (N, H_out): dL/dh per step, for dW_hr
};

// One backward step: dht is dL/dh' for the active rows; updates dh (and dc) in place to dL/d(state before).
void backward_step(const SequenceArgs& a, const Weights& w, const Buffers& s, Grads& g, const Tensor& dht,
                   Tensor dh, Tensor dc, int64_t off, int64_t bs) {
  const int64_t H = w.H;
  const Tensor act = rows(s.act, off, bs), hp = rows(s.hprev, off, bs);
  Tensor dgx = rows(g.dgx, off, bs);
  if (a.mode == RNNMode::RNN) {
    Tensor dpre = a.nonlinearity == RNNNonlinearity::Tanh ? mul(dht, dtanh(act))
                                                          : mul(dht, gt(act, 0.0).to(act.dtype()));
    dgx.copy_(dpre);
    dh.copy_(mm(dpre, w.w_hh));
    return;
  }
  if (a.mode == RNNMode::LSTM) {
    const Tensor i = cols(act, 0, H), f = cols(act, H, H), gg = cols(act, 2 * H, H), o = cols(act, 3 * H, H);
    Tensor dm = dht;
    if (w.w_hr.defined()) {
      rows(g.dh_out, off, bs).copy_(dht);
      dm = mm(dht, w.w_hr);
    }
    Tensor tc = tanh(rows(s.c, off, bs));
    Tensor dct = add(dc, mul(mul(dm, o), dtanh(tc)));
    cols(dgx, 0, H).copy_(mul(mul(dct, gg), dsigmoid(i)));
    cols(dgx, H, H).copy_(mul(mul(dct, rows(s.cprev, off, bs)), dsigmoid(f)));
    cols(dgx, 2 * H, H).copy_(mul(mul(dct, i), dtanh(gg)));
    cols(dgx, 3 * H, H).copy_(mul(mul(dm, tc), dsigmoid(o)));
    dc.copy_(mul(dct, f));
    dh.copy_(mm(dgx, w.w_hh));
    return;
  }
  const Tensor r = cols(act, 0, H), z = cols(act, H, H), n = cols(act, 2 * H, H);
  Tensor dgh = rows(g.dgh, off, bs);
  Tensor dnp = mul(mul(dht, 1.0 - z), dtanh(n));
  Tensor dh_prev = mul(dht, z);
  Tensor dr;
  if (!a.reset_before_product) {
    dr = mul(dnp, rows(s.ghn, off, bs));
    cols(dgh, 2 * H, H).copy_(mul(dnp, r));
  } else {
    Tensor dq = mm(dnp, w.w_hh.narrow(0, 2 * H, H));
    dr = mul(dq, hp);
    dh_prev = add(dh_prev, mul(dq, r));
    cols(dgh, 2 * H, H).copy_(dnp);
  }
  cols(dgx, 0, H).copy_(mul(dr, dsigmoid(r)));
  cols(dgx, H, H).copy_(mul(mul(dht, sub(hp, n)), dsigmoid(z)));
  cols(dgx, 2 * H, H).copy_(dnp);
  cols(dgh, 0, 2 * H).copy_(cols(dgx, 0, 2 * H));
  if (!a.reset_before_product) dh.copy_(add(dh_prev, mm(dgh, w.w_hh)));
  else dh.copy_(add(dh_prev, mm(cols(dgh, 0, 2 * H), w.w_hh.narrow(0, 0, 2 * H))));
}

}  // namespace

bool set_fused_sequence(bool on) { return g_fused.exchange(on); }
bool fused_sequence() { return g_fused.load(); }
bool set_fused_kernels(bool on) { return g_fused_kernels.exchange(on); }
bool fused_kernels() { return g_fused_kernels.load(); }

SequenceResult run_sequence(const SequenceArgs& a, const Tensor& gx_in, const Tensor& h0, const Tensor& c0,
                            const Tensor& w_hh, const Tensor& b_hh, const Tensor& w_hr) {
  if (g_fused_kernels.load() && fast_sequence_applies(a, {gx_in, h0, c0, w_hh, b_hh, w_hr}))
    return run_sequence_fast(a, gx_in, h0, c0, w_hh, b_hh, w_hr);
  const std::vector<int64_t>& bs = *a.batch_sizes;
  const std::vector<int64_t>& off = *a.offsets;
  const bool lstm = a.mode == RNNMode::LSTM, gru = a.mode == RNNMode::GRU;
  const int64_t G = lstm ? 4 : gru ? 3 : 1;
  const Weights w{w_hh.detach(), b_hh.defined() ? b_hh.detach() : Tensor(), w_hr.defined() ? w_hr.detach() : Tensor(),
                  w_hh.size(0) / G};
  const int64_t H = w.H, Hout = w_hh.size(1), N = gx_in.size(0), B = bs[0];
  const TensorOptions like{.dtype = gx_in.dtype(), .device = gx_in.device()};
  const bool proj = w.w_hr.defined();
  // Output, h_n and c_n in one flat tensor: the node has a single output.
  const int64_t n_out = N * Hout, n_h = B * Hout, n_c = lstm ? B * H : 0;
  Tensor flat = empty({n_out + n_h + n_c}, like);
  Tensor out = flat.narrow(0, 0, n_out).view({N, Hout});
  Tensor h = flat.narrow(0, n_out, n_h).view({B, Hout});
  Tensor c = lstm ? flat.narrow(0, n_out + n_h, n_c).view({B, H}) : Tensor();
  const std::vector<Tensor> inputs{gx_in, h0, lstm ? c0 : Tensor(), w_hh, b_hh, w_hr};
  const bool need_grad = autograd::needs_grad(inputs);
  Buffers s;
  {
    NoGradGuard ng;
    const Tensor gx = gx_in.detach();
    h.copy_(h0.detach());
    if (lstm) c.copy_(c0.detach());
    if (need_grad) {  // what the backward reads; inference (sampling) keeps none of it
      s.hprev = empty({N, Hout}, like);
      s.act = empty({N, G * H}, like);
      if (lstm) s.cprev = empty({N, H}, like), s.c = empty({N, H}, like);
      if (proj) s.m = empty({N, H}, like);
      if (gru && !a.reset_before_product) s.ghn = empty({N, H}, like);
      if (gru && a.reset_before_product) s.q = empty({N, H}, like);
    }
    for (size_t t : step_order(bs.size(), a.reverse)) {
      const int64_t rows_t = bs[t];
      Tensor hn = forward_step(a, w, s, rows(gx, off[t], rows_t), rows(h, 0, rows_t),
                               lstm ? rows(c, 0, rows_t) : Tensor(), off[t], rows_t);
      rows(out, off[t], rows_t).copy_(hn);
      rows(h, 0, rows_t).copy_(hn);
    }
  }
  if (!need_grad) return {out, h, c};
  autograd::record(
      "rnn_sequence", flat, inputs,
      [a, w, s, bs, off, N, B, H, Hout, n_out, n_h, n_c, lstm, gru, proj, like](const Tensor& gflat) {
        NoGradGuard ng;
        Tensor gf = gflat.contiguous();
        const Tensor g_out = gf.narrow(0, 0, n_out).view({N, Hout});
        Tensor dh = gf.narrow(0, n_out, n_h).view({B, Hout}).clone();
        Tensor dc = lstm ? gf.narrow(0, n_out + n_h, n_c).view({B, H}).clone() : Tensor();
        Grads g;
        g.dgx = empty({N, w.w_hh.size(0)}, like);
        g.dgh = gru ? empty({N, 3 * H}, like) : g.dgx;
        if (proj) g.dh_out = empty({N, Hout}, like);
        for (size_t t : step_order(bs.size(), !a.reverse)) {  // the forward's steps, last first
          const int64_t rows_t = bs[t];
          Tensor dht = add(rows(dh, 0, rows_t), rows(g_out, off[t], rows_t));
          backward_step(a, w, s, g, dht, rows(dh, 0, rows_t), lstm ? rows(dc, 0, rows_t) : Tensor(), off[t], rows_t);
        }
        // Weight gradients: one GEMM over all steps each.
        Tensor dw_hh;
        if (gru && a.reset_before_product)
          dw_hh = cat({mm(cols(g.dgh, 0, 2 * H).t(), s.hprev), mm(cols(g.dgh, 2 * H, H).t(), s.q)}, 0);
        else
          dw_hh = mm(g.dgh.t(), s.hprev);
        Tensor db_hh = w.b_hh.defined() ? sum(g.dgh, {0}) : Tensor();
        Tensor dw_hr = proj ? mm(g.dh_out.t(), s.m) : Tensor();
        return std::vector<Tensor>{g.dgx, dh, dc, dw_hh, db_hh, dw_hr};
      },
      {w_hh, w_hr});  // read by the backward: in-place updates before it are detected
  return {flat.narrow(0, 0, n_out).view({N, Hout}), flat.narrow(0, n_out, n_h).view({B, Hout}),
          lstm ? flat.narrow(0, n_out + n_h, n_c).view({B, H}) : Tensor()};
}

}  // namespace attn::nn::detail
