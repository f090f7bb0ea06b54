// src/ops/autocast.cc — attn::Autocast's state, the one policy table, and the per-thread cache of
// parameters' bf16 copies (see include/attn/autocast.h and src/ops/autocast.h).
#include "ops/autocast.h"

#include <atomic>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "attn/autograd.h"

namespace attn {
namespace {

struct AutocastState {
  bool enabled = false;
  DType dtype = kBFloat16;
  bool suspended = false;  // inside an op's redispatch
  bool float32_reads = false;  // ... of a Float32Reads op
  int depth = 0;           // nested Autocast scopes (the cache is dropped when the outermost ends)
};
thread_local AutocastState t_state;

// A parameter's copy in the autocast dtype, valid while the parameter's storage and version are the
// ones it was made from. `source` keeps that storage alive so its address cannot be reused meanwhile.
struct CastCopy {
  Tensor source, copy;
  uint64_t version;
};
thread_local std::unordered_map<const TensorImpl*, CastCopy> t_cache;
std::atomic<int64_t> g_parameter_casts{0};

// PyTorch's CPU autocast lists (aten/src/ATen/autocast_mode.cpp, torch 2.x), for the ops attn has.
// Ops in neither list run in their inputs' dtype.
const std::unordered_map<std::string_view, ops::autocast::CastPolicy>& policy_table() {
  using ops::autocast::CastPolicy;
  static const std::unordered_map<std::string_view, CastPolicy> table = {
      // lower_precision_fp
      {"matmul", CastPolicy::LowerPrecision},
      {"mm", CastPolicy::LowerPrecision},
      {"bmm", CastPolicy::LowerPrecision},
      {"linear", CastPolicy::LowerPrecision},
      {"conv1d", CastPolicy::LowerPrecision},
      {"conv2d", CastPolicy::LowerPrecision},
      {"scaled_dot_product_attention", CastPolicy::LowerPrecision},
      {"packed_scaled_dot_product_attention", CastPolicy::LowerPrecision},
      // fp32
      {"cross_entropy", CastPolicy::Float32Reads},  // PyTorch's fp32; no float32 copy of bf16 logits
      {"nll_loss", CastPolicy::Float32},
      {"mse_loss", CastPolicy::Float32},
      {"binary_cross_entropy_with_logits", CastPolicy::Float32},
  };
  return table;
}

// A fresh node from `param` to a view of its cached copy: the gradient flows back as for t.to(dtype).
Tensor tied_to(const Tensor& param, const Tensor& copy) {
  Tensor out = copy.detach();
  const DType from = param.dtype();
  autograd::record("to", out, {param}, [from](const Tensor& g) -> std::vector<Tensor> { return {g.to(from)}; });
  return out;
}

}  // namespace

Autocast::Autocast(DType dtype, bool enabled) : prev_enabled_(t_state.enabled), prev_dtype_(t_state.dtype) {
  if (dtype != kBFloat16)
    throw std::invalid_argument(std::string("Autocast: only bfloat16 is supported on the CPU, got ") + dtype_name(dtype));
  t_state.enabled = enabled;
  t_state.dtype = dtype;
  ++t_state.depth;
}

Autocast::~Autocast() {
  t_state.enabled = prev_enabled_;
  t_state.dtype = prev_dtype_;
  if (--t_state.depth == 0) t_cache.clear();
}

bool autocast_enabled() { return t_state.enabled; }
DType autocast_dtype() { return t_state.dtype; }

namespace ops::autocast {

bool active() { return t_state.enabled && !t_state.suspended; }

CastPolicy policy_of(std::string_view op) {
  const auto& table = policy_table();
  const auto it = table.find(op);
  if (it == table.end()) throw std::logic_error("autocast: op '" + std::string(op) + "' is not in the policy table");
  return it->second;
}

DType target_dtype(CastPolicy p) { return p == CastPolicy::LowerPrecision ? t_state.dtype : kFloat32; }

Tensor cast(const Tensor& t, DType to) {
  if (!t.defined() || !is_floating(t.dtype()) || t.dtype() == to || t.dtype() == kFloat64) return t;
  if (!(t.is_leaf() && t.requires_grad() && to == t_state.dtype)) return t.to(to);
  auto it = t_cache.find(t.impl());
  if (it == t_cache.end() || !it->second.source.is_same(t) || it->second.version != t.version()) {
    CastCopy c{t, t.detach().to(to), t.version()};
    g_parameter_casts.fetch_add(1, std::memory_order_relaxed);
    it = t_cache.insert_or_assign(t.impl(), std::move(c)).first;
  }
  return tied_to(t, it->second.copy);
}

Suspend::Suspend(bool reads) : prev_(t_state.suspended), prev_reads_(t_state.float32_reads) {
  t_state.suspended = true;
  t_state.float32_reads = reads;
}
Suspend::~Suspend() {
  t_state.suspended = prev_;
  t_state.float32_reads = prev_reads_;
}
bool float32_reads() { return t_state.float32_reads; }

int64_t parameter_casts() { return g_parameter_casts.load(); }

}  // namespace ops::autocast
}  // namespace attn
