// src/nn/rnn_sequence_fast.cc — run_sequence's float32 CPU path: the same node as rnn_sequence.cc's
// generic one (same buffers, same gradients), with each step's element work in one fused kernel
// (backend/cpu/rnn_gates.h) and the recurrent products as direct GEMM calls on raw rows, so the time
// loop allocates nothing: every buffer (the saved activations, one (B, G*H) product scratch) is made
// before it. The recurrent weights are packed into panels once per call (forward: W; backward: W^T) for
// backend/cpu/packed_linear.h's kernels: oneDNN's sgemm repacks the weight on every step's small product.
// GRU's reset_before_product form stays on the generic path.
#include <omp.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>

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

// One direction's sizes and what its backward reads from its forward (the node keeps it).
struct Direction {
  SequenceArgs a;  // mode and options; batch_sizes / offsets null (the caller's vectors end): bs, off
  FastWeights w;
  Saved s{};
  std::vector<int64_t> bs{}, off{};
  int64_t N = 0, B = 0;
  bool lstm() const { return a.mode == RNNMode::LSTM; }
  int64_t n_out() const { return N * w.Hout; }
  int64_t n_h() const { return B * w.Hout; }
  int64_t n_c() const { return lstm() ? B * w.H : 0; }
  int64_t floats() const { return n_out() + n_h() + n_c(); }  // output, h_n and c_n in one flat tensor
  SequenceResult views(const Tensor& flat) const {
    return {flat.narrow(0, 0, n_out()).view({N, w.Hout}), flat.narrow(0, n_out(), n_h()).view({B, w.Hout}),
            lstm() ? flat.narrow(0, n_out() + n_h(), n_c()).view({B, w.H}) : Tensor()};
  }
};

Direction direction_of(const SequenceArgs& a, const Tensor& gx, const Tensor& w_hh, const Tensor& b_hh,
                       const Tensor& w_hr) {
  const int64_t G = a.mode == RNNMode::LSTM ? 4 : a.mode == RNNMode::GRU ? 3 : 1;
  Direction d{.a = a,
              .w = {contiguous_detached(w_hh), contiguous_detached(b_hh), contiguous_detached(w_hr),
                    w_hh.size(0) / G, w_hh.size(1), G},
              .bs = *a.batch_sizes,
              .off = *a.offsets,
              .N = gx.size(0),
              .B = (*a.batch_sizes)[0]};
  d.a.batch_sizes = d.a.offsets = nullptr;
  return d;
}

// The floats of Direction::floats() before the weights are copied.
int64_t result_floats(const SequenceArgs& a, const Tensor& gx, const Tensor& w_hh) {
  const int64_t G = a.mode == RNNMode::LSTM ? 4 : a.mode == RNNMode::GRU ? 3 : 1, B = (*a.batch_sizes)[0];
  return (gx.size(0) + B) * w_hh.size(1) + (a.mode == RNNMode::LSTM ? B * w_hh.size(0) / G : 0);
}

// One direction's forward, everything made before its time loop: run_forward_loop allocates nothing.
struct ForwardRun {
  Direction d;
  Scratch k{};
  Tensor gx{};                                   // (N, G*H) contiguous
  float *out = nullptr, *h = nullptr, *c = nullptr;  // into the result's flat tensor
};

ForwardRun prepare_forward(const SequenceArgs& a, const Tensor& gx_in, const Tensor& h0, const Tensor& c0,
                           const Tensor& w_hh, const Tensor& b_hh, const Tensor& w_hr, const Tensor& flat,
                           bool need_grad) {
  NoGradGuard ng;
  const TensorOptions like{.dtype = kFloat32, .device = kCPU};
  ForwardRun r{.d = direction_of(a, gx_in, w_hh, b_hh, w_hr), .gx = contiguous_detached(gx_in)};
  Direction& d = r.d;
  const int64_t H = d.w.H, G = d.w.G, N = d.N, B = d.B;
  const bool proj = d.w.w_hr.defined(), gru = a.mode == RNNMode::GRU;
  r.out = flat.data_ptr<float>();
  r.h = r.out + d.n_out();
  r.c = d.lstm() ? r.h + d.n_h() : nullptr;
  flat.narrow(0, d.n_out(), d.n_h()).view({B, d.w.Hout}).copy_(h0.detach());
  if (d.lstm()) flat.narrow(0, d.n_out() + d.n_h(), d.n_c()).view({B, H}).copy_(c0.detach());
  r.k.gh = empty({B, G * H}, like);
  r.k.hh = RecurrentProduct(d.w.w_hh, true, B, d.bs.size());
  if (proj) r.k.hr = RecurrentProduct(d.w.w_hr, true, B, d.bs.size());
  if (need_grad) {
    d.s.hprev = empty({N, d.w.Hout}, like);
    d.s.act = empty({N, G * H}, like);
    if (d.lstm()) d.s.cprev = empty({N, H}, like), d.s.c = empty({N, H}, like);
    if (proj) d.s.m = empty({N, H}, like);
    if (gru) d.s.ghn = empty({N, H}, like);
  } else {
    r.k.act = empty({B, G * H}, like);
    if (proj) r.k.m = empty({B, H}, like);
  }
  return r;
}

void run_forward_loop(const ForwardRun& r) {
  const float* gxp = r.gx.data_ptr<float>();
  for (size_t t : step_order(r.d.bs.size(), r.d.a.reverse))
    forward_step(r.d.a, r.d.w, r.d.s, r.k, gxp, r.h, r.c, r.out, r.d.off[t], r.d.bs[t]);
}

// One direction's backward through time, made before its loop as the forward.
struct BackwardRun {
  const Direction* d;
  Tensor dh{}, dc{};      // (B, H_out), (B, H): from the gradient of h_n, c_n; become those of h0, c0
  FastGrads g;
  const float* g_out;     // (N, H_out): the gradient of the output
};

// gf: the gradient of the direction's flat result, contiguous.
BackwardRun prepare_backward(const Direction& d, const Tensor& gf) {
  const TensorOptions like{.dtype = kFloat32, .device = kCPU};
  const int64_t H = d.w.H, B = d.B;
  const bool proj = d.w.w_hr.defined(), gru = d.a.mode == RNNMode::GRU;
  BackwardRun r{.d = &d, .g = {.dgx = empty({d.N, d.w.w_hh.size(0)}, like)}, .g_out = gf.data_ptr<float>()};
  r.dh = gf.narrow(0, d.n_out(), d.n_h()).view({B, d.w.Hout}).clone();
  if (d.lstm()) r.dc = gf.narrow(0, d.n_out() + d.n_h(), d.n_c()).view({B, H}).clone();
  r.g.dgh = gru ? empty({d.N, 3 * H}, like) : r.g.dgx;
  if (proj) r.g.dh_out = empty({d.N, d.w.Hout}, like), r.g.dm = empty({B, H}, like);
  if (gru) r.g.sum = empty({B, d.w.Hout}, like);
  r.g.hh = RecurrentProduct(d.w.w_hh, false, B, d.bs.size());
  if (proj) r.g.hr = RecurrentProduct(d.w.w_hr, false, B, d.bs.size());
  return r;
}

void run_backward_loop(const BackwardRun& r) {
  const Direction& d = *r.d;
  for (size_t t : step_order(d.bs.size(), !d.a.reverse))  // the forward's steps, last first
    backward_step(d.a, d.w, d.s, r.g, r.g_out, ptr(r.dh), ptr(r.dc), d.off[t], d.bs[t]);
}

// The gradients of gx, h0, c0, w_hh, b_hh, w_hr; the weight gradients are one GEMM over all steps each.
std::vector<Tensor> finish_backward(const BackwardRun& r) {
  const Direction& d = *r.d;
  Tensor dw_hh = mm(r.g.dgh.t(), d.s.hprev);
  Tensor db_hh = d.w.b_hh.defined() ? sum(r.g.dgh, {0}) : Tensor();
  Tensor dw_hr = d.w.w_hr.defined() ? mm(r.g.dh_out.t(), d.s.m) : Tensor();
  return {r.g.dgx, r.dh, r.dc, dw_hh, db_hh, dw_hr};
}

// Runs `first` and `second` on two OpenMP threads, each with a team of one for its nested work: its
// GEMMs and gate kernels see omp_in_parallel() and a one-thread team (packed_gemm_team, rnn_gates),
// so the two threads are all the process runs. If the runtime grants one thread, it runs both in turn.
void run_two_threads(const std::function<void()>& first, const std::function<void()>& second) {
  std::exception_ptr error[2];
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    omp_set_num_threads(1);  // this thread's nested regions
    for (int job = t; job < 2; job += n) {
      try {
        (job == 0 ? first : second)();
      } catch (...) {
        error[job] = std::current_exception();
      }
    }
  }
  for (const std::exception_ptr& e : error)
    if (e) std::rethrow_exception(e);
}

std::atomic<int>& concurrent_override() {
  static std::atomic<int> v = [] {
    const char* e = std::getenv("ATTN_RNN_CONCURRENT_DIRECTIONS");
    return e && (e[0] == '0' || e[0] == '1') ? e[0] - '0' : -1;
  }();
  return v;
}

}  // namespace

bool fast_sequence_applies(const SequenceArgs& a, const std::vector<Tensor>& tensors) {
  if (a.mode == RNNMode::GRU && a.reset_before_product) return false;
  for (const Tensor& t : tensors)
    if (t.defined() && (t.dtype() != kFloat32 || t.device() != kCPU)) return false;
  return true;
}

SequenceResult run_sequence_fast(const SequenceArgs& a, const Tensor& gx_in, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh, const Tensor& b_hh, const Tensor& w_hr) {
  const bool lstm = a.mode == RNNMode::LSTM;
  const std::vector<Tensor> inputs{gx_in, h0, lstm ? c0 : Tensor(), w_hh, b_hh, w_hr};
  const bool need_grad = autograd::needs_grad(inputs);
  Tensor flat = empty({result_floats(a, gx_in, w_hh)}, {.dtype = kFloat32, .device = kCPU});
  ForwardRun f = prepare_forward(a, gx_in, h0, c0, w_hh, b_hh, w_hr, flat, need_grad);
  run_forward_loop(f);
  if (!need_grad) return f.d.views(flat);
  autograd::record(
      "rnn_sequence", flat, inputs,
      [d = f.d](const Tensor& gflat) {
        NoGradGuard ng;
        const BackwardRun b = prepare_backward(d, gflat.contiguous());
        run_backward_loop(b);
        return finish_backward(b);
      },
      {w_hh, w_hr});  // read by the backward: in-place updates before it are detected
  return f.d.views(flat);
}

int set_concurrent_directions(int mode) { return concurrent_override().exchange(mode < 0 ? -1 : mode > 0 ? 1 : 0); }

bool concurrent_directions_apply(const SequenceArgs& a, const std::vector<Tensor>& tensors) {
  const int forced = concurrent_override().load(std::memory_order_relaxed);
  if (forced == 0 || omp_in_parallel() || !fused_kernels() || !fast_sequence_applies(a, tensors)) return false;
  // Every recurrent product on packed panels, whose bits do not depend on the team (oneDNN's sgemm,
  // the fallback, may split k over threads): then each direction computes what the sequential path does.
  const std::vector<int64_t>& bs = *a.batch_sizes;
  if (!cpu::packed_gemm_available() || bs[0] > cpu::kPackedLinearMaxRows || bs.size() < kMinStepsToPack) return false;
  // Measured with two threads only (docs/benchmarks.md); a larger team keeps splitting each direction.
  return forced == 1 || omp_get_max_threads() == 2;
}

// Thread safety of the two time loops: each direction reads only its own Direction (weights, panels,
// gx) and writes only its own buffers (its slice of `flat`, its saved activations and scratch, its
// gradient tensors), all made before the threads start; the shared inputs (batch_sizes, offsets, the
// layer input behind gx) are read only. Nothing allocates, records autograd or touches a global inside.
std::array<SequenceResult, 2> run_directions_concurrently(const std::array<DirectionInputs, 2>& in) {
  std::vector<Tensor> inputs;
  for (const DirectionInputs& d : in)
    inputs.insert(inputs.end(), {d.gx, d.h0, d.a.mode == RNNMode::LSTM ? d.c0 : Tensor(), d.w_hh, d.b_hh, d.w_hr});
  const bool need_grad = autograd::needs_grad(inputs);
  const int64_t n0 = result_floats(in[0].a, in[0].gx, in[0].w_hh), n1 = result_floats(in[1].a, in[1].gx, in[1].w_hh);
  Tensor flat = empty({n0 + n1}, {.dtype = kFloat32, .device = kCPU});
  std::array<ForwardRun, 2> f{
      prepare_forward(in[0].a, in[0].gx, in[0].h0, in[0].c0, in[0].w_hh, in[0].b_hh, in[0].w_hr,
                      flat.narrow(0, 0, n0), need_grad),
      prepare_forward(in[1].a, in[1].gx, in[1].h0, in[1].c0, in[1].w_hh, in[1].b_hh, in[1].w_hr,
                      flat.narrow(0, n0, n1), need_grad)};
  run_two_threads([&] { run_forward_loop(f[0]); }, [&] { run_forward_loop(f[1]); });
  if (need_grad)
    autograd::record(
        "rnn_directions", flat, inputs,
        [d0 = f[0].d, d1 = f[1].d, n0, n1](const Tensor& gflat) {
          NoGradGuard ng;
          const Tensor gf = gflat.contiguous();
          const BackwardRun b0 = prepare_backward(d0, gf.narrow(0, 0, n0)), b1 = prepare_backward(d1, gf.narrow(0, n0, n1));
          run_two_threads([&] { run_backward_loop(b0); }, [&] { run_backward_loop(b1); });
          std::vector<Tensor> grads = finish_backward(b0), g1 = finish_backward(b1);  // all threads again
          grads.insert(grads.end(), g1.begin(), g1.end());
          return grads;
        },
        {in[0].w_hh, in[0].w_hr, in[1].w_hh, in[1].w_hr});
  return {f[0].d.views(flat.narrow(0, 0, n0)), f[1].d.views(flat.narrow(0, n0, n1))};
}

}  // namespace attn::nn::detail
