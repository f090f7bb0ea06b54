// src/backend/cpu/conv.cc — 2-d convolution, NCHW activations and OIHW weights.
//
// float32 runs oneDNN primitives (forward with fused bias, backward data, backward weights with fused
// bias gradient). Creating a primitive descriptor costs far more than a small convolution, so one set
// per shape is cached (keyed by all of Conv2dArgs plus which optional tensors are present); the
// training loop then only wraps its pointers in dnnl::memory objects and executes.
// Each primitive either works directly on the plain NCHW / OIHW buffers or lets oneDNN choose a
// blocked layout and reorders around the call; the choice per direction is in `blocked_layout`.
// float64 (and the test oracle) is a direct loop implementation (ref::conv2d*).
#include <oneapi/dnnl/dnnl.hpp>

#include "backend/cpu/thread_budget.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backend/cpu/linalg_kernels.h"
#include "backend/cpu/onednn.h"

namespace attn::cpu {

using backend::Conv2dArgs;

namespace {

std::string describe(const Conv2dArgs& a) {
  auto s = [](int64_t v) { return std::to_string(v); };
  return "(x (" + s(a.n) + ", " + s(a.c_in) + ", " + s(a.h) + ", " + s(a.w) + "), weight (" + s(a.c_out) + ", " +
         s(a.groups ? a.c_in / a.groups : 0) + ", " + s(a.kh) + ", " + s(a.kw) + "), out (" + s(a.out_h) + ", " +
         s(a.out_w) + "), stride (" + s(a.stride_h) + ", " + s(a.stride_w) + "), padding (" + s(a.pad_h) + ", " +
         s(a.pad_w) + "), dilation (" + s(a.dil_h) + ", " + s(a.dil_w) + "), groups " + s(a.groups) + ")";
}

void check_args(const Conv2dArgs& a) {
  bool ok = a.n >= 0 && a.c_in > 0 && a.h > 0 && a.w > 0 && a.c_out > 0 && a.kh > 0 && a.kw > 0 && a.out_h > 0 &&
            a.out_w > 0 && a.stride_h > 0 && a.stride_w > 0 && a.pad_h >= 0 && a.pad_w >= 0 && a.dil_h > 0 &&
            a.dil_w > 0 && a.groups > 0 && a.c_in % a.groups == 0 && a.c_out % a.groups == 0 &&
            a.out_h == (a.h + 2 * a.pad_h - a.dil_h * (a.kh - 1) - 1) / a.stride_h + 1 &&
            a.out_w == (a.w + 2 * a.pad_w - a.dil_w * (a.kw - 1) - 1) / a.stride_w + 1;
  if (!ok) throw std::invalid_argument("conv2d: inconsistent arguments " + describe(a));
  if (a.dtype != kFloat32 && a.dtype != kFloat64)
    throw std::invalid_argument(std::string("conv2d: unsupported dtype ") + dtype_name(a.dtype));
}

// ---------------------------------------------------------------------------------------------
// oneDNN path (float32)

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

// Which directions let oneDNN pick a blocked layout (nChw16c activations; reorders around the call
// into cached scratch) instead of running on the plain buffers (its im2col + sgemm path). Measured on
// the training CNN shapes (thread CPU time, one thread, ms; bench/gemm_bench.cc conv):
//                         plain fwd / bwd_data / bwd_w      blocked fwd / bwd_data / bwd_w
//   64x1x28x28, 1->32       1.1-1.6 /   0.9    / 2.1-3.9      1.4-1.5 /   5.2    / 1.3-1.4
//   64x32x14x14, 32->64    10.6     /  12.4    / 11.9         4.9     /   5.0    / 5.3
// so blocked wins except for data-side directions with very few input channels.
// ATTN_CONV_LAYOUT=plain|blocked forces one choice everywhere (for benchmarking the policy).
enum Dir { kFwd = 0, kBwdData = 1, kBwdWeights = 2 };
bool blocked_layout(const Conv2dArgs& a, Dir d) {
  static const int forced = [] {
    const char* e = std::getenv("ATTN_CONV_LAYOUT");
    if (!e) return -1;
    return std::string(e) == "blocked" ? 1 : std::string(e) == "plain" ? 0 : -1;
  }();
  if (forced >= 0) return forced == 1;
  return d == kBwdWeights || a.c_in >= 8;
}

struct Key {
  std::array<int64_t, 17> v;
  bool operator==(const Key& o) const { return v == o.v; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 1469598103934665603ull;
    for (int64_t x : k.v) h = (h ^ size_t(x)) * 1099511628211ull;
    return h;
  }
};
Key make_key(const Conv2dArgs& a, bool bias) {
  return Key{{a.n, a.c_in, a.h, a.w, a.c_out, a.kh, a.kw, a.out_h, a.out_w, a.stride_h, a.stride_w, a.pad_h, a.pad_w,
              a.dil_h, a.dil_w, a.groups, int64_t(bias)}};
}

struct Prims {
  memory::desc x_md, w_md, b_md, y_md;  // the caller's plain layouts
  memory::dims strides, dilates, pad_l, pad_r;
  std::optional<dnnl::convolution_forward::primitive_desc> fwd_pd;
  std::optional<dnnl::convolution_forward> fwd;
  std::optional<dnnl::convolution_backward_data::primitive_desc> bwd_data_pd;
  std::optional<dnnl::convolution_backward_data> bwd_data;
  std::optional<dnnl::convolution_backward_weights::primitive_desc> bwd_w_pd;
  std::optional<dnnl::convolution_backward_weights> bwd_w;
  // Reorders between the caller's layouts and the primitives' (created once, reused every step).
  std::vector<std::tuple<memory::desc, memory::desc, dnnl::reorder>> reorders;
  std::mutex mu;  // guards lazy creation and execution (the reorder cache, the scratch buffers)
};

std::mutex g_cache_mu;
std::unordered_map<Key, std::shared_ptr<Prims>, KeyHash>& cache() {
  static std::unordered_map<Key, std::shared_ptr<Prims>, KeyHash> c;
  return c;
}
constexpr size_t kMaxCached = 256;  // shapes; beyond that the cache starts over (users keep theirs alive)
std::atomic<int64_t> g_misses{0};

memory::desc any_like(const memory::desc& d) { return memory::desc(d.dims(), dt::f32, tag::any); }

// Creates the forward descriptor (needed as the hint for the backward ones).
void make_fwd(Prims& p, const Conv2dArgs& a) {
  const bool blk = blocked_layout(a, kFwd);
  memory::desc x = blk ? any_like(p.x_md) : p.x_md, w = blk ? any_like(p.w_md) : p.w_md,
               y = blk ? any_like(p.y_md) : p.y_md;
  auto d = p.b_md.is_zero()
               ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                                 x, w, y, p.strides, p.dilates, p.pad_l, p.pad_r)
               : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                                 x, w, p.b_md, y, p.strides, p.dilates, p.pad_l, p.pad_r);
  p.fwd_pd.emplace(d, onednn_engine());
}

std::shared_ptr<Prims> lookup(const Conv2dArgs& a, bool bias) {
  const Key key = make_key(a, bias);
  std::lock_guard<std::mutex> lock(g_cache_mu);
  auto it = cache().find(key);
  if (it != cache().end()) return it->second;
  if (cache().size() >= kMaxCached) cache().clear();
  auto p = std::make_shared<Prims>();
  const int64_t g = a.groups;
  p->x_md = memory::desc({a.n, a.c_in, a.h, a.w}, dt::f32, tag::nchw);
  p->y_md = memory::desc({a.n, a.c_out, a.out_h, a.out_w}, dt::f32, tag::nchw);
  p->w_md = g == 1 ? memory::desc({a.c_out, a.c_in, a.kh, a.kw}, dt::f32, tag::oihw)
                   : memory::desc({g, a.c_out / g, a.c_in / g, a.kh, a.kw}, dt::f32, tag::goihw);
  if (bias) p->b_md = memory::desc({a.c_out}, dt::f32, tag::x);
  p->strides = {a.stride_h, a.stride_w};
  p->dilates = {a.dil_h - 1, a.dil_w - 1};
  p->pad_l = {a.pad_h, a.pad_w};
  p->pad_r = {a.pad_h, a.pad_w};  // oneDNN's size check floors like PyTorch's formula
  try {
    make_fwd(*p, a);
  } catch (const dnnl::error& e) {
    throw std::runtime_error(std::string("conv2d: oneDNN rejected ") + describe(a) + ": " + e.what());
  }
  g_misses.fetch_add(1);
  cache().emplace(key, p);
  return p;
}

// One primitive argument: the caller's buffer, reordered to/from the primitive's layout if needed.
struct Arg {
  int id;
  memory::desc want;  // the primitive's layout
  memory::desc user;  // the caller's layout
  void* ptr;
  bool output;
};

// Reusable 64-byte aligned buffers for reordered arguments, one per argument slot and thread: fresh
// allocations of several MiB would page-fault on every training step.
struct Scratch {
  std::vector<std::pair<void*, size_t>> bufs;
  void* get(size_t slot, size_t bytes) {
    if (bufs.size() <= slot) bufs.resize(slot + 1, {nullptr, 0});
    auto& [ptr, size] = bufs[slot];
    if (size < bytes) {
      std::free(ptr);
      size = (bytes + 63) / 64 * 64;
      ptr = std::aligned_alloc(64, size);
      if (!ptr) throw std::bad_alloc();
    }
    return ptr;
  }
  ~Scratch() {
    for (auto& b : bufs) std::free(b.first);
  }
};

dnnl::reorder& reorder_for(Prims& p, const memory::desc& from, const memory::desc& to) {
  for (auto& [f, t, r] : p.reorders)
    if (f == from && t == to) return r;
  dnnl::engine& eng = onednn_engine();
  p.reorders.emplace_back(from, to, dnnl::reorder(dnnl::reorder::primitive_desc(eng, from, eng, to)));
  return std::get<2>(p.reorders.back());
}

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Runs `prim` on the caller's buffers (temporaries in scratch slots from `first_slot` on); caller
// holds p.mu.
void execute(Prims& p, const dnnl::primitive& prim, const std::vector<Arg>& args, size_t first_slot = 1) {
  dnnl::stream& s = onednn_stream();
  std::unordered_map<int, memory> exec_args;
  std::vector<std::pair<memory, memory>> outputs;  // (primitive's, caller's) to reorder back
  size_t slot = first_slot;
  for (const Arg& a : args) {
    memory user(a.user, onednn_engine(), a.ptr);
    if (a.want == a.user) {
      exec_args.emplace(a.id, user);
      continue;
    }
    memory tmp(a.want, onednn_engine(), scratch().get(slot++, a.want.get_size()));
    if (a.output)
      outputs.emplace_back(tmp, user);
    else
      reorder_for(p, a.user, a.want).execute(s, user, tmp);
    exec_args.emplace(a.id, tmp);
  }
  prim.execute(s, exec_args);
  for (auto& [from, to] : outputs) reorder_for(p, from.get_desc(), to.get_desc()).execute(s, from, to);
  s.wait();
}

void conv2d_dnnl(const Conv2dArgs& a, const void* x, const void* w, const void* b, void* y) {
  const std::shared_ptr<Prims> held = lookup(a, b != nullptr);
  Prims& p = *held;
  std::lock_guard<std::mutex> lock(p.mu);
  if (!p.fwd) p.fwd.emplace(*p.fwd_pd);
  const auto& pd = *p.fwd_pd;
  std::vector<Arg> args = {{DNNL_ARG_SRC, pd.src_desc(), p.x_md, const_cast<void*>(x), false},
                           {DNNL_ARG_WEIGHTS, pd.weights_desc(), p.w_md, const_cast<void*>(w), false},
                           {DNNL_ARG_DST, pd.dst_desc(), p.y_md, y, true}};
  if (b) args.push_back({DNNL_ARG_BIAS, pd.bias_desc(), p.b_md, const_cast<void*>(b), false});
  execute(p, *p.fwd, args);
}

// grad_bias without grad_weight: sum grad_y over (n, h, w).
void bias_grad(const Conv2dArgs& a, const float* gy, float* gb) {
  const int64_t plane = a.out_h * a.out_w;
#pragma omp parallel for schedule(static) if (a.n * a.c_out * plane > 32768)
  for (int64_t o = 0; o < a.c_out; ++o) {
    double acc = 0;
    for (int64_t n = 0; n < a.n; ++n) {
      const float* p = gy + (n * a.c_out + o) * plane;
      float s = 0;
      for (int64_t i = 0; i < plane; ++i) s += p[i];
      acc += s;
    }
    gb[o] = float(acc);
  }
}

void conv2d_backward_dnnl(const Conv2dArgs& a, const void* x, const void* w, const void* gy, void* gx, void* gw,
                          void* gb) {
  // The forward's primitive set (the backward needs its descriptor as a hint); bias presence only
  // changes the forward, so the set without bias serves every backward.
  const std::shared_ptr<Prims> held = lookup(a, false);
  Prims& p = *held;
  const bool want_bias = gb != nullptr && gw != nullptr;
  std::lock_guard<std::mutex> lock(p.mu);
  try {
    if (gx && !p.bwd_data) {
      const bool blk = blocked_layout(a, kBwdData);
      dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct,
                                              blk ? any_like(p.x_md) : p.x_md, blk ? any_like(p.w_md) : p.w_md,
                                              blk ? any_like(p.y_md) : p.y_md, p.strides, p.dilates, p.pad_l, p.pad_r);
      p.bwd_data_pd.emplace(d, onednn_engine(), *p.fwd_pd);
      p.bwd_data.emplace(*p.bwd_data_pd);
    }
    if (gw && !p.bwd_w) {
      // Always with the fused bias gradient: it costs one extra pass over grad_y at most.
      const bool blk = blocked_layout(a, kBwdWeights);
      memory::desc b_md({a.c_out}, dt::f32, tag::x);
      dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct,
                                                 blk ? any_like(p.x_md) : p.x_md, blk ? any_like(p.w_md) : p.w_md,
                                                 b_md, blk ? any_like(p.y_md) : p.y_md, p.strides, p.dilates,
                                                 p.pad_l, p.pad_r);
      p.bwd_w_pd.emplace(d, onednn_engine(), *p.fwd_pd);
      p.bwd_w.emplace(*p.bwd_w_pd);
    }
  } catch (const dnnl::error& e) {
    throw std::runtime_error(std::string("conv2d_backward: oneDNN rejected ") + describe(a) + ": " + e.what());
  }
  // When both directions want grad_y in the same blocked layout, reorder it once (scratch slot 0).
  memory::desc gy_md = p.y_md;
  void* gy_ptr = const_cast<void*>(gy);
  if (gx && gw && p.bwd_data_pd->diff_dst_desc() == p.bwd_w_pd->diff_dst_desc() &&
      p.bwd_w_pd->diff_dst_desc() != p.y_md) {
    gy_md = p.bwd_w_pd->diff_dst_desc();
    gy_ptr = scratch().get(0, gy_md.get_size());
    memory from(p.y_md, onednn_engine(), const_cast<void*>(gy)), to(gy_md, onednn_engine(), gy_ptr);
    dnnl::stream& s = onednn_stream();
    reorder_for(p, p.y_md, gy_md).execute(s, from, to);
    s.wait();
  }
  if (gx) {
    const auto& pd = *p.bwd_data_pd;
    execute(p, *p.bwd_data, {{DNNL_ARG_DIFF_DST, pd.diff_dst_desc(), gy_md, gy_ptr, false},
                          {DNNL_ARG_WEIGHTS, pd.weights_desc(), p.w_md, const_cast<void*>(w), false},
                          {DNNL_ARG_DIFF_SRC, pd.diff_src_desc(), p.x_md, gx, true}});
  }
  if (gw) {
    const auto& pd = *p.bwd_w_pd;
    std::vector<float> unused_bias;
    void* gb_ptr = gb;
    if (!want_bias) {
      unused_bias.resize(size_t(a.c_out));
      gb_ptr = unused_bias.data();
    }
    memory::desc b_md({a.c_out}, dt::f32, tag::x);
    execute(p, *p.bwd_w, {{DNNL_ARG_SRC, pd.src_desc(), p.x_md, const_cast<void*>(x), false},
                       {DNNL_ARG_DIFF_DST, pd.diff_dst_desc(), gy_md, gy_ptr, false},
                       {DNNL_ARG_DIFF_WEIGHTS, pd.diff_weights_desc(), p.w_md, gw, true},
                       {DNNL_ARG_DIFF_BIAS, pd.diff_bias_desc(), b_md, gb_ptr, true}});
  } else if (gb) {
    bias_grad(a, static_cast<const float*>(gy), static_cast<float*>(gb));
  }
}

// ---------------------------------------------------------------------------------------------
// Direct loops (float64, and the oracle)

template <typename T> void conv_fwd_direct(const Conv2dArgs& a, const T* x, const T* w, const T* b, T* y) {
  const int64_t cig = a.c_in / a.groups, cog = a.c_out / a.groups;
#pragma omp parallel for collapse(2) schedule(static) if (a.n * a.c_out * a.out_h * a.out_w * cig * a.kh * a.kw > 32768)
  for (int64_t n = 0; n < a.n; ++n)
    for (int64_t o = 0; o < a.c_out; ++o) {
      const int64_t g = o / cog;
      for (int64_t oh = 0; oh < a.out_h; ++oh)
        for (int64_t ow = 0; ow < a.out_w; ++ow) {
          double acc = b ? double(b[o]) : 0.0;
          for (int64_t ci = 0; ci < cig; ++ci) {
            const T* xp = x + (n * a.c_in + g * cig + ci) * a.h * a.w;
            const T* wp = w + (o * cig + ci) * a.kh * a.kw;
            for (int64_t i = 0; i < a.kh; ++i) {
              const int64_t ih = oh * a.stride_h - a.pad_h + i * a.dil_h;
              if (ih < 0 || ih >= a.h) continue;
              for (int64_t j = 0; j < a.kw; ++j) {
                const int64_t iw = ow * a.stride_w - a.pad_w + j * a.dil_w;
                if (iw < 0 || iw >= a.w) continue;
                acc += double(xp[ih * a.w + iw]) * double(wp[i * a.kw + j]);
              }
            }
          }
          y[((n * a.c_out + o) * a.out_h + oh) * a.out_w + ow] = T(acc);
        }
    }
}

template <typename T>
void conv_bwd_direct(const Conv2dArgs& a, const T* x, const T* w, const T* gy, T* gx, T* gw, T* gb) {
  const int64_t cig = a.c_in / a.groups, cog = a.c_out / a.groups;
  const int64_t ksz = a.kh * a.kw, plane = a.out_h * a.out_w;
  // Visits every (output position, kernel tap) pairing in range: f(n, o, oh, ow, ci, i, j, x index).
  auto taps = [&](int64_t n, int64_t o, auto&& f) {
    const int64_t g = o / cog;
    for (int64_t oh = 0; oh < a.out_h; ++oh)
      for (int64_t ow = 0; ow < a.out_w; ++ow)
        for (int64_t ci = 0; ci < cig; ++ci)
          for (int64_t i = 0; i < a.kh; ++i) {
            const int64_t ih = oh * a.stride_h - a.pad_h + i * a.dil_h;
            if (ih < 0 || ih >= a.h) continue;
            for (int64_t j = 0; j < a.kw; ++j) {
              const int64_t iw = ow * a.stride_w - a.pad_w + j * a.dil_w;
              if (iw < 0 || iw >= a.w) continue;
              f(oh * a.out_w + ow, ci, i * a.kw + j, ((n * a.c_in + g * cig + ci) * a.h + ih) * a.w + iw);
            }
          }
  };
  const bool par = a.n * a.c_out * plane * cig * ksz > 32768;
  if (gx) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t n = 0; n < a.n; ++n) {  // each image writes only its own slice
      std::vector<double> acc(size_t(a.c_in * a.h * a.w), 0.0);
      const int64_t base = n * a.c_in * a.h * a.w;
      for (int64_t o = 0; o < a.c_out; ++o) {
        const T* gyp = gy + (n * a.c_out + o) * plane;
        taps(n, o, [&](int64_t p, int64_t ci, int64_t k, int64_t xi) {
          acc[size_t(xi - base)] += double(gyp[p]) * double(w[(o * cig + ci) * ksz + k]);
        });
      }
      for (size_t i = 0; i < acc.size(); ++i) gx[base + int64_t(i)] = T(acc[i]);
    }
  }
  if (gw || gb) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t o = 0; o < a.c_out; ++o) {  // each output channel writes only its own slice
      std::vector<double> acc(size_t(cig * ksz), 0.0);
      double bacc = 0;
      for (int64_t n = 0; n < a.n; ++n) {
        const T* gyp = gy + (n * a.c_out + o) * plane;
        if (gb)
          for (int64_t p = 0; p < plane; ++p) bacc += double(gyp[p]);
        if (gw)
          taps(n, o, [&](int64_t p, int64_t ci, int64_t k, int64_t xi) {
            acc[size_t(ci * ksz + k)] += double(gyp[p]) * double(x[xi]);
          });
      }
      if (gw)
        for (size_t i = 0; i < acc.size(); ++i) gw[o * cig * ksz + int64_t(i)] = T(acc[i]);
      if (gb) gb[o] = T(bacc);
    }
  }
}

}  // namespace

void conv2d(const Conv2dArgs& a, const void* x, const void* weight, const void* bias, void* y) {
  check_args(a);
  if (a.n == 0) return;
  const FullTeam full;  // oneDNN splits the work by the threads its primitives are made for
  if (a.dtype == kFloat32)
    conv2d_dnnl(a, x, weight, bias, y);
  else
    ref::conv2d(a, x, weight, bias, y);
}

void conv2d_backward(const Conv2dArgs& a, const void* x, const void* weight, const void* grad_y, void* grad_x,
                     void* grad_weight, void* grad_bias) {
  check_args(a);
  if (a.n == 0) {  // empty batch: zero weight / bias gradients
    const size_t es = element_size(a.dtype);
    if (grad_weight) std::memset(grad_weight, 0, size_t(a.c_out * (a.c_in / a.groups) * a.kh * a.kw) * es);
    if (grad_bias) std::memset(grad_bias, 0, size_t(a.c_out) * es);
    return;
  }
  const FullTeam full;  // the weight gradient's partial sums follow the primitive's thread count
  if (a.dtype == kFloat32)
    conv2d_backward_dnnl(a, x, weight, grad_y, grad_x, grad_weight, grad_bias);
  else
    ref::conv2d_backward(a, x, weight, grad_y, grad_x, grad_weight, grad_bias);
}

int64_t conv2d_cache_misses() { return g_misses.load(); }

namespace ref {

void conv2d(const Conv2dArgs& a, const void* x, const void* weight, const void* bias, void* y) {
  check_args(a);
  if (a.dtype == kFloat32)
    conv_fwd_direct<float>(a, static_cast<const float*>(x), static_cast<const float*>(weight),
                           static_cast<const float*>(bias), static_cast<float*>(y));
  else
    conv_fwd_direct<double>(a, static_cast<const double*>(x), static_cast<const double*>(weight),
                            static_cast<const double*>(bias), static_cast<double*>(y));
}

void conv2d_backward(const Conv2dArgs& a, const void* x, const void* weight, const void* grad_y, void* grad_x,
                     void* grad_weight, void* grad_bias) {
  check_args(a);
  if (a.dtype == kFloat32)
    conv_bwd_direct<float>(a, static_cast<const float*>(x), static_cast<const float*>(weight),
                           static_cast<const float*>(grad_y), static_cast<float*>(grad_x),
                           static_cast<float*>(grad_weight), static_cast<float*>(grad_bias));
  else
    conv_bwd_direct<double>(a, static_cast<const double*>(x), static_cast<const double*>(weight),
                            static_cast<const double*>(grad_y), static_cast<double*>(grad_x),
                            static_cast<double*>(grad_weight), static_cast<double*>(grad_bias));
}

}  // namespace ref
}  // namespace attn::cpu
