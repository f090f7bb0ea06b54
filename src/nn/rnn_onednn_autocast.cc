// src/nn/rnn_onednn_autocast.cc — RNN / LSTM / GRU under attn::Autocast on oneDNN's bf16 primitives
// (rnn_onednn.h). Per layer (both directions in one primitive, bidirectional_concat): a forward_training
// primitive and its backward, run as one autograd node whose output is one float32 tensor [out; h_n; c_n].
// What oneDNN's bf16 RNN takes: bf16 layer data, hidden states and weights; float32 bias and cell state;
// float32 gradients everywhere (the weight gradients come back float32 for the float32 master weights).
// The weights are converted to bf16 in the primitives' layouts on every call (once per optimizer step in
// training, as autocast's cast of a parameter), forward and backward layouts separately.
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/onednn.h"
#include "nn/rnn_onednn.h"
#include "ops/autocast.h"

namespace attn::nn::detail {

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using Desc = dnnl::memory::desc;

// One layer shape's primitives and the layouts they chose; ok = false where oneDNN refused the shape.
struct LayerPrimitives {
  bool ok = false;
  dnnl::primitive fwd, bwd;
  Desc w_layer, w_iter, w_proj;     // forward's bf16 weights
  Desc bw_layer, bw_iter, bw_proj;  // backward's bf16 weights
  Desc dw_layer, dw_iter, dw_proj;  // the float32 weight gradients
  Desc workspace;
};

Desc md(const dnnl::memory::dims& d, dt type, tag t) { return Desc(d, type, t); }
Desc arg_md(const dnnl::primitive_desc_base& pd, int arg) { return pd.query_md(dnnl::query::exec_arg_md, arg); }

// The descriptors of one layer: forward (bf16 data) and backward (float32 gradients).
struct LayerDescs {
  Desc src, dst, it, itc, wl, wi, wp, bias, dsrc, ddst, dit, ditc, dwl, dwi, dwp;
  explicit LayerDescs(const Sizes& s, bool lstm, bool gru) {
    const int64_t Gb = gru ? s.G + 1 : s.G;
    src = md({s.T, s.B, s.I}, dt::bf16, tag::tnc), dst = md({s.T, s.B, s.D * s.Hout}, dt::bf16, tag::tnc);
    it = md({1, s.D, s.B, s.Hout}, dt::bf16, tag::ldnc);
    itc = lstm ? md({1, s.D, s.B, s.H}, dt::f32, tag::ldnc) : Desc();
    wl = md({1, s.D, s.I, s.G, s.H}, dt::bf16, tag::any), wi = md({1, s.D, s.Hout, s.G, s.H}, dt::bf16, tag::any);
    wp = s.P > 0 ? md({1, s.D, s.H, s.P}, dt::bf16, tag::any) : Desc();
    bias = md({1, s.D, Gb, s.H}, dt::f32, tag::ldgo);
    dsrc = md({s.T, s.B, s.I}, dt::f32, tag::tnc), ddst = md({s.T, s.B, s.D * s.Hout}, dt::f32, tag::tnc);
    dit = md({1, s.D, s.B, s.Hout}, dt::f32, tag::ldnc);
    ditc = lstm ? md({1, s.D, s.B, s.H}, dt::f32, tag::ldnc) : Desc();
    dwl = md({1, s.D, s.I, s.G, s.H}, dt::f32, tag::any), dwi = md({1, s.D, s.Hout, s.G, s.H}, dt::f32, tag::any);
    dwp = s.P > 0 ? md({1, s.D, s.H, s.P}, dt::f32, tag::any) : Desc();
  }
};

void take_layouts(LayerPrimitives& p, const dnnl::primitive_desc_base& f, const dnnl::primitive_desc_base& b, bool proj) {
  p.w_layer = arg_md(f, DNNL_ARG_WEIGHTS_LAYER), p.w_iter = arg_md(f, DNNL_ARG_WEIGHTS_ITER);
  p.bw_layer = arg_md(b, DNNL_ARG_WEIGHTS_LAYER), p.bw_iter = arg_md(b, DNNL_ARG_WEIGHTS_ITER);
  p.dw_layer = arg_md(b, DNNL_ARG_DIFF_WEIGHTS_LAYER), p.dw_iter = arg_md(b, DNNL_ARG_DIFF_WEIGHTS_ITER);
  if (proj) {
    p.w_proj = arg_md(f, DNNL_ARG_WEIGHTS_PROJECTION), p.bw_proj = arg_md(b, DNNL_ARG_WEIGHTS_PROJECTION);
    p.dw_proj = arg_md(b, DNNL_ARG_DIFF_WEIGHTS_PROJECTION);
  }
  p.workspace = arg_md(f, DNNL_ARG_WORKSPACE);
  p.ok = true;
}

LayerPrimitives make_primitives(RNNMode mode, RNNNonlinearity nl, const Sizes& s) {
  const dnnl::engine& eng = cpu::onednn_engine();
  const bool lstm = mode == RNNMode::LSTM, gru = mode == RNNMode::GRU;
  const LayerDescs d(s, lstm, gru);
  const auto fw = dnnl::prop_kind::forward_training, bw = dnnl::prop_kind::backward;
  const auto dir = s.D == 2 ? dnnl::rnn_direction::bidirectional_concat : dnnl::rnn_direction::unidirectional_left2right;
  LayerPrimitives p;
  try {
    if (lstm) {
      dnnl::lstm_forward::primitive_desc f({fw, dir, d.src, d.it, d.itc, d.wl, d.wi, Desc(), d.wp, d.bias, d.dst, d.it, d.itc},
                                           eng);
      dnnl::lstm_backward::primitive_desc b({bw, dir, d.src, d.it, d.itc, d.wl, d.wi, Desc(), d.wp, d.bias, d.dst, d.it,
                                             d.itc, d.dsrc, d.dit, d.ditc, d.dwl, d.dwi, Desc(), d.dwp, d.bias, d.ddst,
                                             d.dit, d.ditc},
                                            eng, f);
      p.fwd = dnnl::lstm_forward(f), p.bwd = dnnl::lstm_backward(b);
      take_layouts(p, f, b, s.P > 0);
    } else if (gru) {
      dnnl::lbr_gru_forward::primitive_desc f({fw, dir, d.src, d.it, d.wl, d.wi, d.bias, d.dst, d.it}, eng);
      dnnl::lbr_gru_backward::primitive_desc b({bw, dir, d.src, d.it, d.wl, d.wi, d.bias, d.dst, d.it, d.dsrc, d.dit,
                                                d.dwl, d.dwi, d.bias, d.ddst, d.dit},
                                               eng, f);
      p.fwd = dnnl::lbr_gru_forward(f), p.bwd = dnnl::lbr_gru_backward(b);
      take_layouts(p, f, b, false);
    } else {
      const auto act = nl == RNNNonlinearity::ReLU ? dnnl::algorithm::eltwise_relu : dnnl::algorithm::eltwise_tanh;
      dnnl::vanilla_rnn_forward::primitive_desc f({fw, act, dir, d.src, d.it, d.wl, d.wi, d.bias, d.dst, d.it}, eng);
      dnnl::vanilla_rnn_backward::primitive_desc b({bw, act, dir, d.src, d.it, d.wl, d.wi, d.bias, d.dst, d.it, d.dsrc,
                                                    d.dit, d.dwl, d.dwi, d.bias, d.ddst, d.dit},
                                                   eng, f);
      p.fwd = dnnl::vanilla_rnn_forward(f), p.bwd = dnnl::vanilla_rnn_backward(b);
      take_layouts(p, f, b, false);
    }
  } catch (const dnnl::error&) {
    p = LayerPrimitives{};  // a shape or ISA oneDNN does not take: the module's own loop runs instead
  }
  return p;
}

// Primitives per (cell, activation, sizes); shared_ptr so a recorded backward keeps its own alive.
using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
constexpr size_t kMaxCached = 64;
std::mutex g_mutex;  // the cache, and every execution (the primitives share oneDNN's scratchpad)
std::map<Key, std::shared_ptr<const LayerPrimitives>> g_cache;
std::atomic<int64_t> g_layers{0};

// On by default where the bf16 path is AVX512_BF16: there oneDNN's bf16 primitives beat the module's loop
// in every case measured (docs/benchmarks_recurrent.md). On AMX CPUs opt-in until measured there: oneDNN 2.6.3's bf16
// GRU inference primitive crashed on one (bench/onednn_rnn_bench.cc). ATTN_RNN_ONEDNN_BF16=0 / 1 forces it.
std::atomic<bool>& bf16_flag() {
  static std::atomic<bool> on = [] {
    const char* e = std::getenv("ATTN_RNN_ONEDNN_BF16");
    if (e && *e) return std::string(e) == "1";
    return cpu::bf16_path() == cpu::Bf16Path::Avx512Bf16;
  }();
  return on;
}

std::shared_ptr<const LayerPrimitives> primitives_of(const RNNBase& m, const Sizes& s) {
  const Key key{int(m.mode), int(m.options.nonlinearity), s.T, s.B, s.I, s.H, s.Hout, s.P, s.D};
  auto it = g_cache.find(key);
  if (it != g_cache.end()) return it->second;
  if (g_cache.size() >= kMaxCached) g_cache.clear();
  auto p = std::make_shared<const LayerPrimitives>(make_primitives(m.mode, m.options.nonlinearity, s));
  return g_cache.emplace(key, p).first->second;
}

dnnl::memory wrap(const Desc& d, const Tensor& t, int64_t offset = 0) {
  return dnnl::memory(d, cpu::onednn_engine(),
                      static_cast<char*>(t.raw_data()) + offset * int64_t(element_size(t.dtype())));
}

void run(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args) {
  p.execute(cpu::onednn_stream(), args);
  cpu::onednn_stream().wait();
}

// A memory of `d` in a new tensor of attn's caching allocator: the workspace, weights and gradients are
// tens of MiB each step, which oneDNN's own allocation would map and fault in afresh every time (12 % of
// the bf16 LSTM step here). `keep` owns the storage.
dnnl::memory owned(const Desc& d, Tensor& keep) {
  keep = empty({int64_t(std::max<size_t>(d.get_size(), 1))}, {.dtype = kUInt8});
  return wrap(d, keep);
}

// A contiguous float32 tensor laid out as `user`, reordered (and converted) into a new memory of `to`.
dnnl::memory reordered(const Tensor& t, const Desc& user, const Desc& to, Tensor& keep) {
  dnnl::memory from = wrap(user, t), into = owned(to, keep);
  run(dnnl::reorder(from, into), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, into}});
  return into;
}

// A float32 memory in the primitive's layout back to a contiguous tensor of `shape` laid out as `user`.
Tensor to_user(const dnnl::memory& m, const Desc& user, const Shape& shape) {
  Tensor t = empty(shape);
  dnnl::memory into = wrap(user, t);
  run(dnnl::reorder(m, into), {{DNNL_ARG_FROM, m}, {DNNL_ARG_TO, into}});
  return t;
}

dnnl::memory zeroed(const Desc& d, Tensor& keep) {
  dnnl::memory m = owned(d, keep);
  std::memset(m.get_data_handle(), 0, d.get_size());
  return m;
}

// One layer's parameters, stacked over directions as oneDNN's user layouts take them (float32, oneDNN's
// gate order): w_ih (D, G*H, I) = ldgoi, w_hh (D, G*H, Hout) = ldgoi, w_hr (D, P, H) = ldoi, bias (D, Gb, H).
struct StackedWeights {
  Tensor w_ih, w_hh, w_hr, bias;
};

StackedWeights stacked_weights(RNNMode mode, const std::vector<RNNBase::LayerWeights>& ws, const Sizes& s) {
  NoGradGuard ng;
  const bool gru = mode == RNNMode::GRU;
  std::vector<Tensor> ih, hh, hr, bias;
  for (int64_t d = 0; d < s.D; ++d) {
    const RNNBase::LayerWeights& w = ws[size_t(d)];
    ih.push_back(gru ? gru_gate_order(w.w_ih.detach(), s.H) : w.w_ih.detach());
    hh.push_back(gru ? gru_gate_order(w.w_hh.detach(), s.H) : w.w_hh.detach());
    if (s.P > 0) hr.push_back(w.w_hr.detach());
    bias.push_back(onednn_bias(mode, w, s));
  }
  auto one = [](const std::vector<Tensor>& v) { return (v.size() == 1 ? v[0].unsqueeze(0) : stack(v, 0)).contiguous(); };
  return {one(ih), one(hh), s.P > 0 ? one(hr) : Tensor(), one(bias)};
}

struct UserDescs {  // float32 user layouts of the stacked weights
  Desc wl, wi, wp;
  explicit UserDescs(const Sizes& s)
      : wl(md({1, s.D, s.I, s.G, s.H}, dt::f32, tag::ldgoi)), wi(md({1, s.D, s.Hout, s.G, s.H}, dt::f32, tag::ldgoi)),
        wp(s.P > 0 ? md({1, s.D, s.H, s.P}, dt::f32, tag::ldoi) : Desc()) {}
};

// What the backward reads: the forward's bf16 inputs and outputs, its workspace and cell states.
struct LayerTape {
  Sizes s{};
  RNNMode mode = RNNMode::LSTM;
  std::vector<RNNBase::LayerWeights> w;  // the parameters of each direction (read again by the backward)
  std::shared_ptr<const LayerPrimitives> p;
  Tensor xb, h0b, c0, dst, dst_iter, flat;  // flat: the node's output, detached (dst_iter_c lives in it)
  DType x_dtype = kFloat32, h_dtype = kFloat32, c_dtype = kFloat32;
  Tensor workspace_storage;
  dnnl::memory workspace;
  int64_t n_out() const { return s.T * s.B * s.D * s.Hout; }
  int64_t n_h() const { return s.D * s.B * s.Hout; }
};

// The float32 gradients of one direction's parameters from the stacked ones, in PyTorch's gate order.
void direction_grads(const LayerTape& t, const Tensor& dw_ih, const Tensor& dw_hh, const Tensor& dw_hr,
                     const Tensor& dbias, int64_t d, bool has_bias, std::vector<Tensor>& out) {
  const bool gru = t.mode == RNNMode::GRU;
  const int64_t H = t.s.H;
  Tensor gih = dw_ih.select(0, d), ghh = dw_hh.select(0, d), b = dbias.select(0, d).reshape({-1});
  out.push_back(gru ? gru_gate_order(gih, H) : gih);
  out.push_back(gru ? gru_gate_order(ghh, H) : ghh);
  if (!has_bias) {
    out.insert(out.end(), {Tensor(), Tensor()});
  } else if (!gru) {  // one summed bias: both get its gradient
    out.insert(out.end(), {b, b.clone()});
  } else {  // [u r o u'] = [b_iz + b_hz, b_ir + b_hr, b_in, b_hn]
    const Tensor r = b.narrow(0, H, H), z = b.narrow(0, 0, H);
    out.push_back(cat({r, z, b.narrow(0, 2 * H, H)}, 0));
    out.push_back(cat({r, z, b.narrow(0, 3 * H, H)}, 0));
  }
  out.push_back(t.s.P > 0 ? dw_hr.select(0, d) : Tensor());
}

std::vector<Tensor> layer_backward(const LayerTape& t, const Tensor& gflat_in) {
  NoGradGuard ng;
  const Sizes& s = t.s;
  const LayerPrimitives& p = *t.p;
  const LayerDescs d(s, t.mode == RNNMode::LSTM, t.mode == RNNMode::GRU);
  const UserDescs u(s);
  const Tensor g = gflat_in.contiguous();
  const StackedWeights w = stacked_weights(t.mode, t.w, s);  // unchanged since the forward (the node checks)
  Tensor dsrc = empty({s.T, s.B, s.I}), dh0 = empty({s.D, s.B, s.Hout});
  Tensor dc0 = t.c0.defined() ? empty({s.D, s.B, s.H}) : Tensor();
  Tensor keep[7];  // the storage of the memories below
  dnnl::memory dwl = zeroed(p.dw_layer, keep[0]), dwi = zeroed(p.dw_iter, keep[1]);  // oneDNN accumulates
  dnnl::memory dbias = zeroed(d.bias, keep[2]), dwp = s.P > 0 ? zeroed(p.dw_proj, keep[3]) : dnnl::memory();
  {
    const std::lock_guard lock(g_mutex);
    std::unordered_map<int, dnnl::memory> a{
        {DNNL_ARG_SRC_LAYER, wrap(d.src, t.xb)},     {DNNL_ARG_SRC_ITER, wrap(d.it, t.h0b)},
        {DNNL_ARG_WEIGHTS_LAYER, reordered(w.w_ih, u.wl, p.bw_layer, keep[4])},
        {DNNL_ARG_WEIGHTS_ITER, reordered(w.w_hh, u.wi, p.bw_iter, keep[5])},
        {DNNL_ARG_BIAS, wrap(d.bias, w.bias)},       {DNNL_ARG_DST_LAYER, wrap(d.dst, t.dst)},
        {DNNL_ARG_DST_ITER, wrap(d.it, t.dst_iter)}, {DNNL_ARG_WORKSPACE, t.workspace},
        {DNNL_ARG_DIFF_SRC_LAYER, wrap(d.dsrc, dsrc)}, {DNNL_ARG_DIFF_SRC_ITER, wrap(d.dit, dh0)},
        {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwl},          {DNNL_ARG_DIFF_WEIGHTS_ITER, dwi},
        {DNNL_ARG_DIFF_BIAS, dbias},                 {DNNL_ARG_DIFF_DST_LAYER, wrap(d.ddst, g)},
        {DNNL_ARG_DIFF_DST_ITER, wrap(d.dit, g, t.n_out())}};
    if (t.c0.defined()) {
      a.emplace(DNNL_ARG_SRC_ITER_C, wrap(d.itc, t.c0));
      a.emplace(DNNL_ARG_DST_ITER_C, wrap(d.itc, t.flat, t.n_out() + t.n_h()));
      a.emplace(DNNL_ARG_DIFF_SRC_ITER_C, wrap(d.ditc, dc0));
      a.emplace(DNNL_ARG_DIFF_DST_ITER_C, wrap(d.ditc, g, t.n_out() + t.n_h()));
    }
    if (s.P > 0) {
      a.emplace(DNNL_ARG_WEIGHTS_PROJECTION, reordered(w.w_hr, u.wp, p.bw_proj, keep[6]));
      a.emplace(DNNL_ARG_DIFF_WEIGHTS_PROJECTION, dwp);
    }
    run(p.bwd, a);
  }
  const Tensor dw_ih = to_user(dwl, u.wl, {s.D, s.G * s.H, s.I});
  const Tensor dw_hh = to_user(dwi, u.wi, {s.D, s.G * s.H, s.Hout});
  const Tensor dw_hr = s.P > 0 ? to_user(dwp, u.wp, {s.D, s.P, s.H}) : Tensor();
  const Tensor db = to_user(dbias, d.bias, {s.D, d.bias.dims()[2], s.H});
  std::vector<Tensor> grads{dsrc.to(t.x_dtype), dh0.to(t.h_dtype), t.c0.defined() ? dc0.to(t.c_dtype) : Tensor()};
  for (int64_t dir = 0; dir < s.D; ++dir)
    direction_grads(t, dw_ih, dw_hh, dw_hr, db, dir, t.w[0].b_ih.defined(), grads);
  return grads;
}

struct LayerResult {
  Tensor out;  // (T, B, D * Hout) bf16
  Tensor h_n;  // (D, B, Hout) bf16
  Tensor c_n;  // (D, B, H) float32, LSTM only
};

// One layer: x (T, B, I), h0 (D, B, Hout), c0 (D, B, H) or undefined.
LayerResult run_layer(const RNNBase& m, int64_t layer, const Sizes& s, const Tensor& x, const Tensor& h0,
                      const Tensor& c0) {
  const bool lstm = m.mode == RNNMode::LSTM;
  std::vector<Tensor> inputs{x, h0, lstm ? c0 : Tensor()}, params;
  LayerTape t;
  t.s = s, t.mode = m.mode, t.x_dtype = x.dtype(), t.h_dtype = h0.dtype(), t.c_dtype = lstm ? c0.dtype() : kFloat32;
  for (int64_t d = 0; d < s.D; ++d) {
    const RNNBase::LayerWeights& w = m.weights(layer, d);
    t.w.push_back(w);
    for (const Tensor* p : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh, &w.w_hr}) {
      inputs.push_back(*p);
      if (p->defined()) params.push_back(*p);
    }
  }
  const bool need_grad = autograd::needs_grad(inputs);
  Tensor flat = empty({t.n_out() + t.n_h() + (lstm ? s.D * s.B * s.H : 0)});
  {
    NoGradGuard ng;
    const std::lock_guard lock(g_mutex);
    t.p = primitives_of(m, s);
    const LayerPrimitives& p = *t.p;
    const LayerDescs d(s, lstm, m.mode == RNNMode::GRU);
    const UserDescs u(s);
    const StackedWeights w = stacked_weights(m.mode, t.w, s);
    t.xb = x.detach().to(kBFloat16).contiguous(), t.h0b = h0.detach().to(kBFloat16).contiguous();
    if (lstm) t.c0 = c0.detach().to(kFloat32).contiguous();
    t.dst = empty({s.T, s.B, s.D * s.Hout}, {.dtype = kBFloat16}), t.dst_iter = empty({s.D, s.B, s.Hout}, {.dtype = kBFloat16});
    t.workspace = owned(p.workspace, t.workspace_storage);
    Tensor keep[3];  // the storage of the bf16 weights
    std::unordered_map<int, dnnl::memory> a{
        {DNNL_ARG_SRC_LAYER, wrap(d.src, t.xb)},        {DNNL_ARG_SRC_ITER, wrap(d.it, t.h0b)},
        {DNNL_ARG_WEIGHTS_LAYER, reordered(w.w_ih, u.wl, p.w_layer, keep[0])},
        {DNNL_ARG_WEIGHTS_ITER, reordered(w.w_hh, u.wi, p.w_iter, keep[1])},
        {DNNL_ARG_BIAS, wrap(d.bias, w.bias)},          {DNNL_ARG_DST_LAYER, wrap(d.dst, t.dst)},
        {DNNL_ARG_DST_ITER, wrap(d.it, t.dst_iter)},    {DNNL_ARG_WORKSPACE, t.workspace}};
    if (lstm) {
      a.emplace(DNNL_ARG_SRC_ITER_C, wrap(d.itc, t.c0));
      a.emplace(DNNL_ARG_DST_ITER_C, wrap(d.itc, flat, t.n_out() + t.n_h()));
    }
    if (s.P > 0) a.emplace(DNNL_ARG_WEIGHTS_PROJECTION, reordered(w.w_hr, u.wp, p.w_proj, keep[2]));
    run(p.fwd, a);
    flat.narrow(0, 0, t.n_out()).copy_(t.dst.view({t.n_out()}));
    flat.narrow(0, t.n_out(), t.n_h()).copy_(t.dst_iter.view({t.n_h()}));
    t.flat = flat.detach();
  }
  g_layers.fetch_add(1, std::memory_order_relaxed);
  if (need_grad)
    autograd::record(
        "rnn_onednn_bf16", flat, inputs,
        [t](const Tensor& g) { return layer_backward(t, g); }, params);
  LayerResult r{flat.narrow(0, 0, t.n_out()).view({s.T, s.B, s.D * s.Hout}).to(kBFloat16),
                flat.narrow(0, t.n_out(), t.n_h()).view({s.D, s.B, s.Hout}).to(kBFloat16), Tensor()};
  if (lstm) r.c_n = flat.narrow(0, t.n_out() + t.n_h(), s.D * s.B * s.H).view({s.D, s.B, s.H});
  return r;
}

}  // namespace

bool onednn_rnn_autocast_applies(const RNNBase& m, const Tensor& x, const std::vector<Tensor>& states) {
  if (!bf16_flag().load() || rnn_onednn_mode() == kOnednnRnnOff) return false;
  if (!ops::autocast::active() || autocast_dtype() != kBFloat16) return false;
  if (cpu::bf16_path() == cpu::Bf16Path::Convert) return false;
  if (m.mode == RNNMode::GRU && m.options.reset_before_product) return false;
  // oneDNN 2.6.3's bf16 LSTM with projection returned all-zero gradients (Zen 4, avx512_bf16): the loop runs.
  if (m.options.proj_size > 0) return false;
  if (x.device() != kCPU || !is_floating(x.dtype()) || x.dtype() == kFloat64) return false;
  for (const Tensor& t : states)
    if (t.device() != kCPU || !is_floating(t.dtype()) || t.dtype() == kFloat64) return false;
  for (int64_t l = 0; l < m.options.num_layers; ++l)
    for (int64_t d = 0; d < (m.options.bidirectional ? 2 : 1); ++d) {
      const RNNBase::LayerWeights& w = m.weights(l, d);
      for (const Tensor* p : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh, &w.w_hr})
        if (p->defined() && (p->dtype() != kFloat32 || p->device() != kCPU)) return false;
    }
  const std::lock_guard lock(g_mutex);
  for (int64_t l = 0; l < m.options.num_layers; ++l)
    if (!primitives_of(m, layer_sizes(m, l, x.size(0), x.size(1)))->ok) return false;
  return true;
}

// The layer nodes in turn; the backward of layer l reads the parameters of layer l again (not copied: the
// node lists them as saved, so an update between forward and backward is an error, not a wrong gradient).
OnednnRnnResult onednn_rnn_autocast_forward(const RNNBase& m, const Tensor& x, const std::vector<Tensor>& states) {
  const int64_t T = x.size(0), B = x.size(1), L = m.options.num_layers, D = (m.options.bidirectional ? 2 : 1);
  const bool lstm = m.mode == RNNMode::LSTM;
  std::vector<Tensor> h_n, c_n;
  Tensor layer_in = x;
  for (int64_t l = 0; l < L; ++l) {
    const Sizes s = layer_sizes(m, l, T, B);
    LayerResult r = run_layer(m, l, s, layer_in, states[0].narrow(0, l * D, D),
                              lstm ? states[1].narrow(0, l * D, D) : Tensor());
    h_n.push_back(r.h_n);
    if (lstm) c_n.push_back(r.c_n);
    layer_in = r.out;
    if (l + 1 < L && m.options.dropout > 0.0 && m.is_training()) layer_in = dropout(layer_in, m.options.dropout, true);
  }
  OnednnRnnResult res{layer_in.view({T * B, layer_in.size(2)}), {L == 1 ? h_n[0] : cat(h_n, 0)}};
  if (lstm) res.final.push_back(L == 1 ? c_n[0] : cat(c_n, 0));
  return res;
}

int64_t onednn_rnn_autocast_layers() { return g_layers.load(); }
bool set_onednn_rnn_bf16(bool on) { return bf16_flag().exchange(on); }
bool onednn_rnn_bf16() { return bf16_flag().load(); }

}  // namespace attn::nn::detail
