// src/nn/rnn_sequence_fast.cc — run_sequence's float32 CPU path: the same node as rnn_sequence.cc's
// generic one (same buffers, same gradients), with each step's element work in one fused kernel
// (backend/cpu/rnn_gates.h) and the recurrent products as direct GEMM calls on raw rows, so the time
// loop allocates nothing: every buffer (the saved activations, one (B, G*H) product scratch) is made
// before it. The recurrent weights are packed into panels once per call (forward: W; backward: W^T) for
// backend/cpu/packed_linear.h's kernels: oneDNN's sgemm repacks the weight on every step's small product.
// GRU's reset_before_product form stays on the generic path.
#include <cstring>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "backend/cpu/linalg_kernels.h"
#include "backend/cpu/packed_linear.h"
#include "backend/cpu/rnn_gates.h"
#include "nn/rnn_sequence.h"

namespace attn::nn::detail {

namespace {

// c(m, n) = a(m, k) @ (trans_b ? b(n, k)^T : b(k, n)) + beta * c; rows of a, b, c contiguous.
void gemm_rows(int64_t m, int64_t n, int64_t k, const float* a, const float* b, bool trans_b, float* c,
               double beta = 0.0) {
  if (m == 0) return;
  cpu::gemm({.trans_b = trans_b, .m = m, .n = n, .k = k, .beta = beta, .a = a, .lda = k, .b = b,
             .ldb = trans_b ? k : n, .c = c, .ldc = n});
}

float* ptr(const Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }
float* row(const Tensor& t, int64_t r) { return t.defined() ? t.data_ptr<float>() + r * t.size(1) : nullptr; }
void copy_rows(float* dst, const float* src, int64_t n) { std::memcpy(dst, src, size_t(n) * sizeof(float)); }

// Packing pays off once the weight serves at least this many steps' products (the pack is one pass
// over the weight, as oneDNN's repack on each call).
constexpr size_t kMinStepsToPack = 2;

// c(m, n) (=, or += with accumulate) a(m, k) @ op(w), op(w) = w^T for w (n, k), else w for w (k, n):
// on w's packed panels when the kernels serve `max_rows` rows and `steps` products, else gemm_rows.
class RecurrentProduct {
 public:
  RecurrentProduct() = default;
  RecurrentProduct(const Tensor& w, bool trans_w, int64_t max_rows, size_t steps)
      : w_(ptr(w)), trans_w_(trans_w), n_(w.size(trans_w ? 0 : 1)), k_(w.size(trans_w ? 1 : 0)) {
    if (steps < kMinStepsToPack || max_rows > cpu::kPackedLinearMaxRows || !cpu::packed_gemm_available()) return;
    panels_ = empty({cpu::packed_panels_floats(n_, k_)});
    if (trans_w)
      cpu::pack_weight_panels(w_, n_, k_, k_, ptr(panels_));
    else
      cpu::pack_transposed_weight_panels(w_, n_, k_, n_, ptr(panels_));
  }
  // sum: (max_rows, n) scratch for accumulate, or nullptr when no call accumulates
  void run(int64_t m, const float* a, float* c, bool accumulate = false, float* sum = nullptr) const {
    if (m == 0) return;
    if (!panels_.defined()) return gemm_rows(m, n_, k_, a, w_, trans_w_, c, accumulate ? 1.0 : 0.0);
    float* y = accumulate ? sum : c;
    cpu::packed_gemm_team(a, k_, ptr(panels_), nullptr, y, n_, m, n_, k_);
    if (accumulate)
      for (int64_t i = 0; i < m * n_; ++i) c[i] += y[i];
  }

 private:
  const float* w_ = nullptr;
  bool trans_w_ = false;
  int64_t n_ = 0, k_ = 0;
  Tensor panels_;
};

struct FastWeights {
  Tensor w_hh, b_hh, w_hr;  // contiguous, detached
  int64_t H, Hout, G;
};

struct Saved {  // what the backward reads (as the generic path's Buffers)
  Tensor hprev, act, cprev, c, m, ghn;
};

// Scratch of the forward: one step's h W_hh^T, and (without autograd) the activations and m.
struct Scratch {
  Tensor gh{}, act{}, m{};
  RecurrentProduct hh{}, hr{};  // h W_hh^T, m W_hr^T
};

// One forward step of `rows` rows at row offset o of gx; h (and c) the state buffers' first rows.
void forward_step(const SequenceArgs& a, const FastWeights& w, const Saved& s, const Scratch& k, const float* gx,
                  float* h, float* c, float* out, int64_t o, int64_t rows) {
  const auto& gates = cpu::rnn_gates();
  const int64_t H = w.H, Hout = w.Hout, GH = w.G * H;
  if (s.hprev.defined()) copy_rows(row(s.hprev, o), h, rows * Hout);
  k.hh.run(rows, h, ptr(k.gh));
  float* act = s.act.defined() ? row(s.act, o) : ptr(k.act);
  const float* x = gx + o * GH;
  float* h_new = out + o * Hout;
  if (a.mode == RNNMode::RNN) {
    gates.rnn_forward(rows, H, a.nonlinearity == RNNNonlinearity::ReLU, x, ptr(k.gh), ptr(w.b_hh), h_new);
    if (s.act.defined()) copy_rows(act, h_new, rows * H);
  } else if (a.mode == RNNMode::GRU) {
    gates.gru_forward(rows, H, x, ptr(k.gh), ptr(w.b_hh), h, act, row(s.ghn, o), h_new);
  } else {
    float* c_new = c;  // inference: the cell is updated in place
    if (s.c.defined()) {
      copy_rows(row(s.cprev, o), c, rows * H);
      c_new = row(s.c, o);
    }
    float* m = w.w_hr.defined() ? (s.m.defined() ? row(s.m, o) : ptr(k.m)) : h_new;
    gates.lstm_forward(rows, H, x, ptr(k.gh), ptr(w.b_hh), c, act, c_new, m);
    if (c_new != c) copy_rows(c, c_new, rows * H);
    if (w.w_hr.defined()) k.hr.run(rows, m, h_new);
  }
  copy_rows(h, h_new, rows * Hout);
}

struct FastGrads {
  Tensor dgx{}, dgh{}, dh_out{}, dm{};  // dgh: GRU only; dh_out, dm (B, H): LSTM with proj_size
  Tensor sum{};                         // GRU: (B, Hout) scratch of dgh W_hh, added to dh
  RecurrentProduct hh{}, hr{};          // dg W_hh, dh W_hr
};

// One backward step: dh (and dc) rows [0, rows) in: dL/d(state after), out: dL/d(state before).
void backward_step(const SequenceArgs& a, const FastWeights& w, const Saved& s, const FastGrads& g,
                   const float* g_out, float* dh, float* dc, int64_t o, int64_t rows) {
  const auto& gates = cpu::rnn_gates();
  const int64_t H = w.H, Hout = w.Hout;
  const float* add = g_out + o * Hout;
  float* dgx = row(g.dgx, o);
  if (a.mode == RNNMode::RNN) {
    gates.rnn_backward(rows, H, a.nonlinearity == RNNNonlinearity::ReLU, dh, add, row(s.act, o), dgx);
    g.hh.run(rows, dgx, dh);
  } else if (a.mode == RNNMode::GRU) {
    float* dgh = row(g.dgh, o);
    gates.gru_backward(rows, H, dh, add, row(s.act, o), row(s.ghn, o), row(s.hprev, o), dgx, dgh);
    g.hh.run(rows, dgh, dh, true, ptr(g.sum));
  } else {
    const float* dm = dh;
    if (w.w_hr.defined()) {  // dL/dh of this step, kept for dW_hr; dm = dh W_hr
      float* dht = row(g.dh_out, o);
      for (int64_t i = 0; i < rows * Hout; ++i) dht[i] = dh[i] + add[i];
      g.hr.run(rows, dht, ptr(g.dm));
      dm = ptr(g.dm), add = nullptr;
    }
    gates.lstm_backward(rows, H, dm, add, dc, row(s.act, o), row(s.cprev, o), row(s.c, o), dgx);
    g.hh.run(rows, dgx, dh);
  }
}

std::vector<size_t> step_order(size_t T, bool reverse) {
  std::vector<size_t> order(T);
  for (size_t i = 0; i < T; ++i) order[i] = reverse ? T - 1 - i : i;
  return order;
}

Tensor contiguous_detached(const Tensor& t) { return t.defined() ? t.detach().contiguous() : Tensor(); }

}  // namespace

bool fast_sequence_applies(const SequenceArgs& a, const std::vector<Tensor>& tensors) {
  if (a.mode == RNNMode::GRU && a.reset_before_product) return false;
  for (const Tensor& t : tensors)
    if (t.defined() && (t.dtype() != kFloat32 || t.device() != kCPU)) return false;
  return true;
}

SequenceResult run_sequence_fast(const SequenceArgs& a, const Tensor& gx_in, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh, const Tensor& b_hh, const Tensor& w_hr) {
  const std::vector<int64_t>& bs = *a.batch_sizes;
  const std::vector<int64_t>& off = *a.offsets;
  const bool lstm = a.mode == RNNMode::LSTM, gru = a.mode == RNNMode::GRU;
  const int64_t G = lstm ? 4 : gru ? 3 : 1;
  const FastWeights w{contiguous_detached(w_hh), contiguous_detached(b_hh), contiguous_detached(w_hr),
                      w_hh.size(0) / G, w_hh.size(1), G};
  const int64_t H = w.H, Hout = w.Hout, N = gx_in.size(0), B = bs[0];
  const TensorOptions like{.dtype = kFloat32, .device = kCPU};
  const bool proj = w.w_hr.defined();
  const int64_t n_out = N * Hout, n_h = B * Hout, n_c = lstm ? B * H : 0;
  Tensor flat = empty({n_out + n_h + n_c}, like);  // output, h_n and c_n: the node has a single output
  float* out = flat.data_ptr<float>();
  float* h = out + n_out;
  float* c = lstm ? h + n_h : nullptr;
  const std::vector<Tensor> inputs{gx_in, h0, lstm ? c0 : Tensor(), w_hh, b_hh, w_hr};
  const bool need_grad = autograd::needs_grad(inputs);
  Saved s;
  {
    NoGradGuard ng;
    const Tensor gx = contiguous_detached(gx_in);
    flat.narrow(0, n_out, n_h).view({B, Hout}).copy_(h0.detach());
    if (lstm) flat.narrow(0, n_out + n_h, n_c).view({B, H}).copy_(c0.detach());
    Scratch k{.gh = empty({B, G * H}, like)};
    k.hh = RecurrentProduct(w.w_hh, true, B, bs.size());
    if (proj) k.hr = RecurrentProduct(w.w_hr, true, B, bs.size());
    if (need_grad) {
      s.hprev = empty({N, Hout}, like);
      s.act = empty({N, G * H}, like);
      if (lstm) s.cprev = empty({N, H}, like), s.c = empty({N, H}, like);
      if (proj) s.m = empty({N, H}, like);
      if (gru) s.ghn = empty({N, H}, like);
    } else {
      k.act = empty({B, G * H}, like);
      if (proj) k.m = empty({B, H}, like);
    }
    const float* gxp = gx.data_ptr<float>();
    for (size_t t : step_order(bs.size(), a.reverse)) forward_step(a, w, s, k, gxp, h, c, out, off[t], bs[t]);
  }
  auto views = [=](const Tensor& f) {
    return SequenceResult{f.narrow(0, 0, n_out).view({N, Hout}), f.narrow(0, n_out, n_h).view({B, Hout}),
                          lstm ? f.narrow(0, n_out + n_h, n_c).view({B, H}) : Tensor()};
  };
  if (!need_grad) return views(flat);
  autograd::record(
      "rnn_sequence", flat, inputs,
      [a, w, s, bs, off, N, B, H, Hout, n_out, n_h, n_c, lstm, gru, proj, like](const Tensor& gflat) {
        NoGradGuard ng;
        const Tensor gf = gflat.contiguous();
        Tensor dh = gf.narrow(0, n_out, n_h).view({B, Hout}).clone();
        Tensor dc = lstm ? gf.narrow(0, n_out + n_h, n_c).view({B, H}).clone() : Tensor();
        FastGrads g{.dgx = empty({N, w.w_hh.size(0)}, like)};
        g.dgh = gru ? empty({N, 3 * H}, like) : g.dgx;
        if (proj) g.dh_out = empty({N, Hout}, like), g.dm = empty({B, H}, like);
        if (gru) g.sum = empty({B, Hout}, like);
        g.hh = RecurrentProduct(w.w_hh, false, B, bs.size());
        if (proj) g.hr = RecurrentProduct(w.w_hr, false, B, bs.size());
        const float* g_out = gf.data_ptr<float>();
        for (size_t t : step_order(bs.size(), !a.reverse))  // the forward's steps, last first
          backward_step(a, w, s, g, g_out, ptr(dh), ptr(dc), off[t], bs[t]);
        // Weight gradients: one GEMM over all steps each.
        Tensor dw_hh = mm(g.dgh.t(), s.hprev);
        Tensor db_hh = w.b_hh.defined() ? sum(g.dgh, {0}) : Tensor();
        Tensor dw_hr = proj ? mm(g.dh_out.t(), s.m) : Tensor();
        return std::vector<Tensor>{g.dgx, dh, dc, dw_hh, db_hh, dw_hr};
      },
      {w_hh, w_hr});  // read by the backward: in-place updates before it are detected
  return views(flat);
}

}  // namespace attn::nn::detail
