// src/backend/cpu/packed_linear.cc — packed_linear.h: the panel cache (one packed copy per weight view,
// dropped when its storage is freed, repacked when the storage's version changes), the reference
// kernel, and the split of the panels over the OpenMP team.
#include "backend/cpu/packed_linear.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "attn/ops.h"
#include "backend/cpu/dispatch.h"

namespace attn::cpu {

namespace {

std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> on = [] {
    const char* e = std::getenv("ATTN_PACKED_LINEAR");
    return !(e && std::string(e) == "0");
  }();
  return on;
}

// The packed copy of one weight view. Keyed by storage address, element offset and (N, K, ldw); the
// weak pointer tells a freed storage (whose address a new tensor may reuse) from a live one.
struct Entry {
  std::weak_ptr<Storage> storage;
  uint64_t version = 0;
  Tensor panels;  // (ceil(N / 16), K, 16) floats, or packed_panels_bf16(N, K) bf16
};
using Key = std::tuple<const Storage*, int64_t, int64_t, int64_t, int64_t>;

std::mutex cache_mutex;
std::map<Key, Entry>& cache() {
  static std::map<Key, Entry> c;
  return c;
}

void drop_freed_entries() {
  auto& c = cache();
  for (auto it = c.begin(); it != c.end();) it = it->second.storage.expired() ? c.erase(it) : std::next(it);
}

// A buffer of `numel` elements for panels that every decoding step streams from memory. From 1 MiB on it
// is a multiple of 2 MiB, which the allocator maps aligned with huge pages asked for: on 4 KiB pages the
// hardware prefetchers stop at every page boundary and the TLB misses (the 1 MiB weights of the bench
// translator's step were the slowest products; docs/benchmarks.md). Costs at most 1 MiB per weight.
Tensor huge_page_backed(int64_t numel, DType dtype) {
  constexpr int64_t kHuge = int64_t(2) << 20, kFrom = int64_t(1) << 20;
  const int64_t bytes = numel * int64_t(element_size(dtype));
  if (bytes < kFrom) return empty({numel}, {.dtype = dtype});
  const int64_t padded = (bytes + kHuge - 1) / kHuge * kHuge / int64_t(element_size(dtype));
  return empty({padded}, {.dtype = dtype}).narrow(0, 0, numel);
}

// The panels of `weight` (N, K) row-major, packed now if the cache has none for its current version.
Tensor panels_of(const Tensor& weight) {
  const int64_t n = weight.size(0), k = weight.size(1), ldw = weight.stride(0);
  const std::shared_ptr<Storage>& storage = weight.impl()->storage;
  const Key key{storage.get(), weight.storage_offset(), n, k, ldw};
  const uint64_t version = weight.version();
  const std::lock_guard lock(cache_mutex);
  auto it = cache().find(key);
  if (it != cache().end() && !it->second.storage.expired() && it->second.version == version) return it->second.panels;
  drop_freed_entries();
  Tensor panels;
  if (weight.dtype() == kBFloat16) {
    panels = huge_page_backed(packed_panels_bf16(n, k), kBFloat16);
    pack_weight_panels_bf16(static_cast<const uint16_t*>(weight.raw_data()), n, k, ldw,
                            static_cast<uint16_t*>(panels.raw_data()));
  } else {
    panels = huge_page_backed(packed_panels_floats(n, k), kFloat32)
                 .view({(n + kPanelWidth - 1) / kPanelWidth, k, kPanelWidth});
    pack_weight_panels(weight.data_ptr<float>(), n, k, ldw, panels.data_ptr<float>());
  }
  cache()[key] = Entry{storage, version, panels};
  return panels;
}

using Kernel = void (*)(const float*, int64_t, const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t);
Kernel kernel_for_isa() {
  switch (active_isa()) {
    case Isa::Avx512: return avx512::packed_gemm;
    case Isa::Reference: return ref::packed_gemm;
    case Isa::Avx2: return avx2::packed_gemm;
  }
  return nullptr;
}

}  // namespace

namespace {
// Panel p, row kk, lane j holds W(p * 16 + j, kk) = w[(p * 16 + j) * row_stride + kk * k_stride], zero past n:
// W row-major (row_stride = ldw, k_stride = 1) or given as W^T row-major (row_stride = 1, k_stride = ldwt).
void pack_panels(const float* w, int64_t n, int64_t k, int64_t row_stride, int64_t k_stride, float* panels) {
  const int64_t count = (n + kPanelWidth - 1) / kPanelWidth;
#pragma omp parallel for schedule(static) if (n * k > (1 << 16))
  for (int64_t p = 0; p < count; ++p) {
    float* out = panels + p * k * kPanelWidth;
    const int64_t r0 = p * kPanelWidth, rows = std::min(kPanelWidth, n - r0);
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t j = 0; j < kPanelWidth; ++j)
        out[kk * kPanelWidth + j] = j < rows ? w[(r0 + j) * row_stride + kk * k_stride] : 0.0f;
  }
}
}  // namespace

void pack_weight_panels(const float* w, int64_t n, int64_t k, int64_t ldw, float* panels) {
  pack_panels(w, n, k, ldw, 1, panels);
}

void pack_transposed_weight_panels(const float* wt, int64_t n, int64_t k, int64_t ldwt, float* panels) {
  pack_panels(wt, n, k, 1, ldwt, panels);
}

namespace ref {
// Same panels and the same k-ordered fused multiply-adds per element as the SIMD kernel.
void packed_gemm(const float* x, int64_t ldx, const float* panels, const float* bias, float* y, int64_t ldy,
                 int64_t m, int64_t n, int64_t k) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t col = 0; col < n; ++col) {
      const float* p = panels + (col / kPanelWidth) * k * kPanelWidth + col % kPanelWidth;
      float acc = 0.0f;
      for (int64_t kk = 0; kk < k; ++kk) acc = std::fma(x[i * ldx + kk], p[kk * kPanelWidth], acc);
      y[i * ldy + col] = acc + (bias ? bias[col] : 0.0f);
    }
}
}  // namespace ref

bool set_packed_linear(bool on) { return enabled_flag().exchange(on); }

int64_t packed_linear_cache_entries() {
  const std::lock_guard lock(cache_mutex);
  drop_freed_entries();
  return int64_t(cache().size());
}

bool packed_linear_applies(const Tensor& x2, const Tensor& weight) {
  if (!enabled_flag().load(std::memory_order_relaxed) || !kernel_for_isa()) return false;
  const bool f32 = x2.dtype() == kFloat32 && weight.dtype() == kFloat32;
  const bool bf16 = x2.dtype() == kBFloat16 && weight.dtype() == kBFloat16 && packed_bf16_available();
  if (!(f32 || bf16) || x2.device() != kCPU || weight.device() != kCPU) return false;
  if (x2.dim() != 2 || weight.dim() != 2 || x2.size(0) > kPackedLinearMaxRows || x2.size(0) == 0) return false;
  return x2.stride(1) == 1 && weight.stride(1) == 1 && weight.stride(0) >= weight.size(1);
}

void packed_linear(const Tensor& x2, const Tensor& weight, const Tensor& bias, const Tensor& y2) {
  const Tensor panels = panels_of(weight);
  if (weight.dtype() == kBFloat16) {
    auto bits = [](const Tensor& t) { return static_cast<uint16_t*>(t.raw_data()); };
    packed_gemm_bf16_team(bits(x2), x2.stride(0), bits(panels), bias.defined() ? bits(bias) : nullptr, bits(y2),
                          y2.stride(0), x2.size(0), weight.size(0), weight.size(1));
    return;
  }
  packed_gemm_team(x2.data_ptr<float>(), x2.stride(0), panels.data_ptr<float>(),
                   bias.defined() ? bias.data_ptr<float>() : nullptr, y2.data_ptr<float>(), y2.stride(0), x2.size(0),
                   weight.size(0), weight.size(1));
}

bool packed_gemm_available() { return enabled_flag().load(std::memory_order_relaxed) && kernel_for_isa(); }

void packed_gemm_team(const float* x, int64_t ldx, const float* p, const float* b, float* y, int64_t ldy, int64_t m,
                      int64_t n, int64_t k) {
  const Kernel kernel = kernel_for_isa();
  // each element is one thread's sum
  split_columns_over_team(m, n, k, [&](int64_t c0, int64_t c1) {
    kernel(x, ldx, p + c0 * k, b ? b + c0 : nullptr, y + c0, ldy, m, c1 - c0, k);
  });
}

}  // namespace attn::cpu
