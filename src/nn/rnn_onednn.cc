// src/nn/rnn_onednn.cc — rnn_onednn.h: one oneDNN forward_inference primitive per layer (both directions
// in one, bidirectional_concat), the weights reordered once into the layouts the primitives chose, and
// the caller's tensors wrapped as oneDNN memories (no copies of inputs, outputs or states).
//
// Gate orders: oneDNN's LSTM is [i f c~ o] = PyTorch's [i f g o]; oneDNN's GRU is [u r o] (update,
// reset, candidate) against PyTorch's [r z n], so the first two row blocks swap. The linear-before-reset
// GRU takes four biases [b_u b_r b_o b_u'] = [b_iz + b_hz, b_ir + b_hr, b_in, b_hn]; LSTM and the
// vanilla RNN take one, b_ih + b_hh. PyTorch's (G * H, I) weight is oneDNN's ldgoi layout and its
// (P, H) projection is ldoi, so the user-side memories wrap the parameters as they are.
#include "nn/rnn_onednn.h"

#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "attn/autocast.h"
#include "attn/autograd.h"
#include "attn/ops.h"
#include "backend/cpu/onednn.h"
#include "backend/cpu/source_stamp.h"

namespace attn::nn::detail {

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using Desc = dnnl::memory::desc;

// ATTN_RNN_ONEDNN=0 / 1 forces attn's loop / oneDNN; unset, the per-case choice of auto_choice().
std::atomic<int>& mode_flag() {
  static std::atomic<int> mode = [] {
    const char* e = std::getenv("ATTN_RNN_ONEDNN");
    if (e && std::string(e) == "0") return kOnednnRnnOff;
    if (e && std::string(e) == "1") return kOnednnRnnOn;
    return kOnednnRnnAuto;
  }();
  return mode;
}

}  // namespace

Tensor gru_gate_order(const Tensor& w, int64_t H) {
  return cat({w.narrow(0, H, H), w.narrow(0, 0, H), w.narrow(0, 2 * H, H)}, 0);
}

Tensor onednn_bias(RNNMode mode, const RNNBase::LayerWeights& w, const Sizes& s) {
  if (!w.b_ih.defined()) return zeros({mode == RNNMode::GRU ? s.G + 1 : s.G, s.H});
  if (mode != RNNMode::GRU) return (w.b_ih + w.b_hh).view({s.G, s.H});
  Tensor rz = gru_gate_order(w.b_ih + w.b_hh, s.H).narrow(0, 0, 2 * s.H);
  return cat({rz, w.b_ih.narrow(0, 2 * s.H, s.H), w.b_hh.narrow(0, 2 * s.H, s.H)}, 0).view({4, s.H});
}

Sizes layer_sizes(const RNNBase& m, int64_t layer, int64_t T, int64_t B) {
  const RNNOptions& o = m.options;
  const int64_t D = o.bidirectional ? 2 : 1, Hout = o.proj_size > 0 ? o.proj_size : o.hidden_size;
  return {T, B, layer == 0 ? o.input_size : D * Hout, o.hidden_size, Hout, o.proj_size, gate_count(m.mode), D};
}

int rnn_onednn_mode() { return mode_flag().load(); }

namespace {

// The faster per case in float32 inference, measured paired on a quiet host (docs/benchmarks_recurrent.md, "oneDNN
// RNN primitives against attn's path"): oneDNN for the LSTM (1.05-1.23x at 1 and 2 threads, unidirectional,
// bidirectional and batch-1 sampling) and for the unidirectional vanilla RNN with two or more threads or one
// row (1.11-2.15x; 0.90x for the batch-32 forward on one thread); attn's loop for the GRU (0.85-1.00x) and
// the bidirectional vanilla RNN (0.89-0.93x).
bool auto_choice(const RNNBase& m, int64_t batch) {
  if (m.mode == RNNMode::LSTM) return true;
  if (m.mode == RNNMode::GRU || m.options.bidirectional) return false;
  return omp_get_max_threads() >= 2 || batch == 1;
}
std::atomic<int64_t> forwards_run{0}, weight_conversions{0};

// More shapes than this in one module's cache (e.g. evaluation over many lengths): start afresh.
constexpr size_t kMaxCachedShapes = 8;

Desc f32(const dnnl::memory::dims& dims, tag t) { return Desc(dims, dt::f32, t); }

// Every parameter of the module, layer by layer and direction by direction (the cache's stamps).
std::vector<Tensor> layer_tensors(const RNNBase& m) {
  std::vector<Tensor> all;
  for (int64_t l = 0; l < m.options.num_layers; ++l)
    for (int64_t d = 0; d < (m.options.bidirectional ? 2 : 1); ++d) {
      const RNNBase::LayerWeights& w = m.weights(l, d);
      for (const Tensor* t : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh, &w.w_hr})
        if (t->defined()) all.push_back(*t);
    }
  return all;
}

// One layer: the primitive and its weights in the layouts it asked for.
struct LayerPrimitive {
  dnnl::primitive prim;
  Desc src_layer, src_iter, src_iter_c, dst_layer, dst_iter, dst_iter_c;
  dnnl::memory w_layer, w_iter, w_proj, bias;
};

LayerPrimitive make_layer_primitive(const RNNBase& m, const Sizes& s) {
  const dnnl::engine& eng = cpu::onednn_engine();
  const auto prop = dnnl::prop_kind::forward_inference;
  const auto dir = s.D == 2 ? dnnl::rnn_direction::bidirectional_concat : dnnl::rnn_direction::unidirectional_left2right;
  LayerPrimitive p;
  p.src_layer = f32({s.T, s.B, s.I}, tag::tnc), p.dst_layer = f32({s.T, s.B, s.D * s.Hout}, tag::tnc);
  p.src_iter = p.dst_iter = f32({1, s.D, s.B, s.Hout}, tag::ldnc);
  const Desc wl = f32({1, s.D, s.I, s.G, s.H}, tag::any), wi = f32({1, s.D, s.Hout, s.G, s.H}, tag::any);
  const Desc bias = f32({1, s.D, m.mode == RNNMode::GRU ? s.G + 1 : s.G, s.H}, tag::ldgo);
  dnnl::primitive_desc_base pd;
  if (m.mode == RNNMode::LSTM) {
    p.src_iter_c = p.dst_iter_c = f32({1, s.D, s.B, s.H}, tag::ldnc);
    const Desc proj = s.P > 0 ? f32({1, s.D, s.H, s.P}, tag::any) : Desc();
    dnnl::lstm_forward::primitive_desc lpd({prop, dir, p.src_layer, p.src_iter, p.src_iter_c, wl, wi, Desc(), proj,
                                            bias, p.dst_layer, p.dst_iter, p.dst_iter_c},
                                           eng);
    p.prim = dnnl::lstm_forward(lpd), pd = lpd;
  } else if (m.mode == RNNMode::GRU) {
    dnnl::lbr_gru_forward::primitive_desc gpd(
        {prop, dir, p.src_layer, p.src_iter, wl, wi, bias, p.dst_layer, p.dst_iter}, eng);
    p.prim = dnnl::lbr_gru_forward(gpd), pd = gpd;
  } else {
    const auto act = m.options.nonlinearity == RNNNonlinearity::ReLU ? dnnl::algorithm::eltwise_relu
                                                                      : dnnl::algorithm::eltwise_tanh;
    dnnl::vanilla_rnn_forward::primitive_desc rpd(
        {prop, act, dir, p.src_layer, p.src_iter, wl, wi, bias, p.dst_layer, p.dst_iter}, eng);
    p.prim = dnnl::vanilla_rnn_forward(rpd), pd = rpd;
  }
  p.w_layer = dnnl::memory(pd.query_md(dnnl::query::exec_arg_md, DNNL_ARG_WEIGHTS_LAYER), eng);
  p.w_iter = dnnl::memory(pd.query_md(dnnl::query::exec_arg_md, DNNL_ARG_WEIGHTS_ITER), eng);
  if (s.P > 0) p.w_proj = dnnl::memory(pd.query_md(dnnl::query::exec_arg_md, DNNL_ARG_WEIGHTS_PROJECTION), eng);
  p.bias = dnnl::memory(bias, eng);
  return p;
}

// Reorders a contiguous float tensor laid out as `user` into `into` (the primitive's layout).
void reorder_into(const Tensor& t, const Desc& user, const dnnl::memory& into) {
  dnnl::memory from(user, cpu::onednn_engine(), t.data_ptr<float>());
  dnnl::reorder(from, into).execute(cpu::onednn_stream(), from, const_cast<dnnl::memory&>(into));
  cpu::onednn_stream().wait();
}

void convert_layer_weights(const RNNBase& m, int64_t layer, const Sizes& s, LayerPrimitive& p) {
  NoGradGuard no_grad;
  std::vector<Tensor> w_ih, w_hh, w_hr, bias;
  for (int64_t d = 0; d < s.D; ++d) {
    const RNNBase::LayerWeights& w = m.weights(layer, d);
    const bool gru = m.mode == RNNMode::GRU;
    w_ih.push_back(gru ? gru_gate_order(w.w_ih.detach(), s.H) : w.w_ih.detach());
    w_hh.push_back(gru ? gru_gate_order(w.w_hh.detach(), s.H) : w.w_hh.detach());
    if (s.P > 0) w_hr.push_back(w.w_hr.detach());
    bias.push_back(onednn_bias(m.mode, w, s).detach());
  }
  // stack: (D, G * H, I) = ldgoi's (l, d, g, o, i) order with l = 1; the projection (D, P, H) = ldoi.
  reorder_into(stack(w_ih, 0).contiguous(), f32({1, s.D, s.I, s.G, s.H}, tag::ldgoi), p.w_layer);
  reorder_into(stack(w_hh, 0).contiguous(), f32({1, s.D, s.Hout, s.G, s.H}, tag::ldgoi), p.w_iter);
  if (s.P > 0) reorder_into(stack(w_hr, 0).contiguous(), f32({1, s.D, s.H, s.P}, tag::ldoi), p.w_proj);
  Tensor b = stack(bias, 0).contiguous();
  std::memcpy(p.bias.get_data_handle(), b.data_ptr<float>(), size_t(b.numel()) * sizeof(float));
  weight_conversions.fetch_add(1);
}

dnnl::memory wrap(const Desc& d, const Tensor& t, int64_t offset_floats = 0) {
  return dnnl::memory(d, cpu::onednn_engine(), t.data_ptr<float>() + offset_floats);
}

// The converted weights and primitives of one module, per input shape (T, B).
struct ModuleEntry {
  struct ShapeEntry {
    std::vector<LayerPrimitive> layers;
    std::vector<cpu::SourceStamp> stamps;  // of layer_tensors when the weights were converted
  };
  std::weak_ptr<Storage> anchor;  // the storage of weight_ih_l0: expired = the module is gone
  std::map<std::pair<int64_t, int64_t>, ShapeEntry> by_shape;
};

// One entry per module, keyed like backend/cpu/packed_linear.cc's panels: by weight_ih_l0's storage and
// offset (with the cell, whose layouts differ); entries whose storage was freed are dropped on insert.
using ModuleKey = std::tuple<const Storage*, int64_t, int, int>;
std::mutex cache_mutex;
std::map<ModuleKey, ModuleEntry>& cache() {
  static std::map<ModuleKey, ModuleEntry> c;
  return c;
}

ModuleEntry& entry_of(const RNNBase& m) {
  const Tensor& w = m.weights(0, 0).w_ih;
  const ModuleKey key{w.impl()->storage.get(), w.storage_offset(), int(m.mode), int(m.options.nonlinearity)};
  auto it = cache().find(key);
  if (it != cache().end() && !it->second.anchor.expired()) return it->second;
  for (auto e = cache().begin(); e != cache().end();) e = e->second.anchor.expired() ? cache().erase(e) : std::next(e);
  ModuleEntry& fresh = cache()[key];
  fresh = ModuleEntry{};
  fresh.anchor = w.impl()->storage;
  return fresh;
}

}  // namespace

int set_onednn_rnn(int mode) { return mode_flag().exchange(mode); }
int64_t onednn_rnn_forwards() { return forwards_run.load(); }
int64_t onednn_rnn_weight_conversions() { return weight_conversions.load(); }

bool onednn_rnn_applies(const RNNBase& m, const Tensor& x, const std::vector<Tensor>& states) {
  const int mode = mode_flag().load();
  if (mode == kOnednnRnnOff || autocast_enabled()) return false;
  if (m.mode == RNNMode::GRU && m.options.reset_before_product) return false;
  if (mode == kOnednnRnnAuto && !auto_choice(m, x.size(1))) return false;
  if (m.is_training() && m.options.dropout > 0.0 && m.options.num_layers > 1) return false;
  if (x.dtype() != kFloat32 || x.device() != kCPU) return false;
  std::vector<Tensor> all = layer_tensors(m);
  for (const Tensor& t : all)
    if (t.dtype() != kFloat32 || t.device() != kCPU) return false;
  all.push_back(x);
  all.insert(all.end(), states.begin(), states.end());
  return !autograd::needs_grad(all);
}

OnednnRnnResult onednn_rnn_forward(const RNNBase& m, const Tensor& x, const std::vector<Tensor>& states) {
  NoGradGuard no_grad;
  const int64_t T = x.size(0), B = x.size(1), L = m.options.num_layers;
  std::vector<cpu::SourceStamp> now;
  for (const Tensor& t : layer_tensors(m)) now.push_back(cpu::stamp(t));
  const std::lock_guard lock(cache_mutex);  // also serialises the primitives' shared scratchpads
  ModuleEntry& module = entry_of(m);
  auto it = module.by_shape.find({T, B});
  if (it == module.by_shape.end()) {
    if (module.by_shape.size() >= kMaxCachedShapes) module.by_shape.clear();
    ModuleEntry::ShapeEntry e;
    for (int64_t l = 0; l < L; ++l) e.layers.push_back(make_layer_primitive(m, layer_sizes(m, l, T, B)));
    it = module.by_shape.emplace(std::make_pair(T, B), std::move(e)).first;
  }
  ModuleEntry::ShapeEntry& entry = it->second;
  if (entry.stamps != now) {
    for (int64_t l = 0; l < L; ++l) convert_layer_weights(m, l, layer_sizes(m, l, T, B), entry.layers[size_t(l)]);
    entry.stamps = now;
  }
  const bool lstm = m.mode == RNNMode::LSTM;
  const Tensor h0 = states[0].contiguous(), c0 = lstm ? states[1].contiguous() : Tensor();
  Tensor h_n = empty(h0.shape()), c_n = lstm ? empty(c0.shape()) : Tensor();
  Tensor layer_in = x.contiguous();
  for (int64_t l = 0; l < L; ++l) {
    const LayerPrimitive& p = entry.layers[size_t(l)];
    const Sizes s = layer_sizes(m, l, T, B);
    Tensor out = empty({T, B, s.D * s.Hout});
    const int64_t h_at = l * s.D * B * s.Hout, c_at = l * s.D * B * s.H;
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC_LAYER, wrap(p.src_layer, layer_in)}, {DNNL_ARG_SRC_ITER, wrap(p.src_iter, h0, h_at)},
        {DNNL_ARG_WEIGHTS_LAYER, p.w_layer},               {DNNL_ARG_WEIGHTS_ITER, p.w_iter},
        {DNNL_ARG_BIAS, p.bias},                           {DNNL_ARG_DST_LAYER, wrap(p.dst_layer, out)},
        {DNNL_ARG_DST_ITER, wrap(p.dst_iter, h_n, h_at)}};
    if (lstm) {
      args.emplace(DNNL_ARG_SRC_ITER_C, wrap(p.src_iter_c, c0, c_at));
      args.emplace(DNNL_ARG_DST_ITER_C, wrap(p.dst_iter_c, c_n, c_at));
    }
    if (s.P > 0) args.emplace(DNNL_ARG_WEIGHTS_PROJECTION, p.w_proj);
    p.prim.execute(cpu::onednn_stream(), args);
    cpu::onednn_stream().wait();
    layer_in = out;
  }
  forwards_run.fetch_add(1);
  OnednnRnnResult r{layer_in.view({T * B, layer_in.size(2)}), {h_n}};
  if (lstm) r.final.push_back(c_n);
  return r;
}

}  // namespace attn::nn::detail
