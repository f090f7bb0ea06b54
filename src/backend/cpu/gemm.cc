// src/backend/cpu/gemm.cc — row-major GEMM with strided batches.
//
// float32: oneDNN's dnnl_sgemm (measured ~2x OpenBLAS here at 512..2048, see linalg_kernels.h).
// Tiny problems (m * n * k <= 16^3) skip its ~0.6 us call overhead and use the blocked loop kernel;
// batches of small matrices run one single-threaded sgemm per item across the OpenMP threads
// (oneDNN's sgemm runs sequentially inside a parallel region), large ones use all threads per item.
// Single products with 64..512 output columns and k >= 512 (many of a Transformer's Linear products,
// forward and backward) go through oneDNN's matmul primitive instead, whose brgemm kernels beat
// dnnl_sgemm there by up to 40 % (see prefer_matmul_primitive).
// bfloat16: gemm_bf16.cc (oneDNN's AMX / AVX512_BF16 matmul, or float32 on widened copies).
// float64: the blocked loop kernel below (op(B) packed once, k-blocked, rows split across threads).
#include <cstdlib>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/linalg_kernels.h"
#include "backend/cpu/onednn.h"
#include "backend/cpu/thread_budget.h"

namespace attn::cpu {

using backend::GemmArgs;

namespace {

std::string describe(const GemmArgs& g) {
  return std::string("(") + (g.trans_a ? "A^T" : "A") + " @ " + (g.trans_b ? "B^T" : "B") +
         ", m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) +
         " lda=" + std::to_string(g.lda) + " ldb=" + std::to_string(g.ldb) + " ldc=" + std::to_string(g.ldc) +
         " batch=" + std::to_string(g.batch) + ")";
}

// Checks sizes and makes leading dimensions of single-row matrices valid for BLAS (their value is
// irrelevant there, but sgemm insists on ld >= row length).
GemmArgs normalized(const GemmArgs& in) {
  GemmArgs g = in;
  if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0) throw std::invalid_argument("gemm: negative size " + describe(in));
  if (g.dtype != kFloat32 && g.dtype != kFloat64 && g.dtype != kBFloat16)
    throw std::invalid_argument(std::string("gemm: unsupported dtype ") + dtype_name(g.dtype));
  auto fix = [&](int64_t& ld, int64_t rows, int64_t cols, const char* name) {
    if (rows <= 1) ld = std::max(ld, cols);
    ld = std::max<int64_t>(ld, 1);
    if (ld < cols)
      throw std::invalid_argument(std::string("gemm: leading dimension of ") + name + " too small " + describe(in));
  };
  fix(g.lda, g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, "A");
  fix(g.ldb, g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, "B");
  fix(g.ldc, g.m, g.n, "C");
  return g;
}

// C(m, n) *= beta (beta == 0 writes zeros without reading C).
template <typename T> void scale_c(T* c, int64_t m, int64_t n, int64_t ldc, double beta) {
  if (beta == 1.0) return;
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == 0.0)
      std::fill(row, row + n, T(0));
    else
      for (int64_t j = 0; j < n; ++j) row[j] = T(beta) * row[j];
  }
}

// One matrix: op(B) is packed contiguous (k, n) when it is transposed or strided, then for blocks of
// kc rows of it, each row of C accumulates alpha * A(i, p) * Bp(p, :) (vectorized over n).
template <typename T>
void blocked_one(const GemmArgs& g, const T* a, const T* b, T* c, bool parallel) {
  const int64_t m = g.m, n = g.n, k = g.k;
  std::vector<T> packed;
  const T* bp = b;
  int64_t ldbp = g.ldb;
  if (g.trans_b || (g.ldb != n && k > 1)) {
    packed.resize(size_t(k * n));
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j) packed[size_t(p * n + j)] = g.trans_b ? b[j * g.ldb + p] : b[p * g.ldb + j];
    bp = packed.data();
    ldbp = n;
  }
  const T alpha = T(g.alpha);
  constexpr int64_t kc = 256;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < m; ++i) {
    T* crow = c + i * g.ldc;
    if (g.beta == 0.0)
      std::fill(crow, crow + n, T(0));
    else if (g.beta != 1.0)
      for (int64_t j = 0; j < n; ++j) crow[j] = T(g.beta) * crow[j];
    for (int64_t p0 = 0; p0 < k; p0 += kc) {
      const int64_t p1 = std::min(k, p0 + kc);
      for (int64_t p = p0; p < p1; ++p) {
        const T av = alpha * (g.trans_a ? a[p * g.lda + i] : a[i * g.lda + p]);
        const T* brow = bp + p * ldbp;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) crow[j] += av * brow[j];
      }
    }
  }
}

template <typename T> void blocked(const GemmArgs& g) {
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  T* c = static_cast<T*>(g.c);
  const double work = double(g.m) * double(g.n) * double(g.k);
  if (g.batch > 1 && work < 64.0 * 64 * 64) {
#pragma omp parallel for schedule(static) if (work * double(g.batch) > 32.0 * 32 * 32)
    for (int64_t i = 0; i < g.batch; ++i)
      blocked_one<T>(g, a + i * g.stride_a, b + i * g.stride_b, c + i * g.stride_c, false);
  } else {
    for (int64_t i = 0; i < g.batch; ++i)
      blocked_one<T>(g, a + i * g.stride_a, b + i * g.stride_b, c + i * g.stride_c, work > 32.0 * 32 * 32);
  }
}

// One dnnl_sgemm with g's sizes, transposes, leading dimensions and scalars on these pointers.
dnnl_status_t dnnl_sgemm_of(const GemmArgs& g, const float* a, const float* b, float* c) {
  return dnnl_sgemm(g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.m, g.n, g.k, float(g.alpha), a, g.lda, b, g.ldb,
                    float(g.beta), c, g.ldc);
}
void check_sgemm(dnnl_status_t st, const GemmArgs& g) {
  if (st != dnnl_success)
    throw std::runtime_error("gemm: dnnl_sgemm failed with status " + std::to_string(int(st)) + " " + describe(g));
}
void sgemm_one(const GemmArgs& g, const float* a, const float* b, float* c) {
  check_sgemm(dnnl_sgemm_of(g, a, b, c), g);
}

// One large product split into one panel of C per thread (columns when n is the wider side, else
// rows), each a single-threaded dnnl_sgemm: no synchronisation inside the product. Off by default:
// measured on the 2-core machine (bench/gemm_bench.cc gemm, 2 threads), dnnl_sgemm's own threading was
// faster from 128^3 to 1024^3 (265-320 vs 160-235 GFLOP/s) and equal at 2048^3. ATTN_GEMM_PANELS=1 turns it on.
std::atomic<bool>& panels_flag() {
  static std::atomic<bool> on = [] {
    const char* e = std::getenv("ATTN_GEMM_PANELS");
    return e && std::string(e) == "1";
  }();
  return on;
}
bool panels_enabled() { return panels_flag().load(std::memory_order_relaxed); }

void sgemm_panels(const GemmArgs& g, const float* a, const float* b, float* c, int nt) {
  const bool by_cols = g.n >= g.m;
  const int64_t extent = by_cols ? g.n : g.m;
  const int64_t per = ((extent + nt - 1) / nt + 15) / 16 * 16;  // multiples of 16
  dnnl_status_t first_error = dnnl_success;
#pragma omp parallel for schedule(static, 1)
  for (int t = 0; t < nt; ++t) {
    const int64_t lo = std::min<int64_t>(extent, t * per), hi = std::min<int64_t>(extent, lo + per);
    if (lo >= hi) continue;
    GemmArgs p = g;
    const float *pa = a, *pb = b;
    float* pc = c;
    if (by_cols) {
      p.n = hi - lo;
      pb = b + (g.trans_b ? lo * g.ldb : lo);
      pc = c + lo;
    } else {
      p.m = hi - lo;
      pa = a + (g.trans_a ? lo : lo * g.lda);
      pc = c + lo * g.ldc;
    }
    const dnnl_status_t st = dnnl_sgemm_of(p, pa, pb, pc);
    if (st != dnnl_success) {
#pragma omp critical(attn_gemm_error)
      first_error = st;
    }
  }
  check_sgemm(first_error, g);
}

// Which single float32 products run on oneDNN's matmul primitive (brgemm) rather than dnnl_sgemm.
// Measured on the 2-core AVX-512 machine with `gemm_bench shapes` (2 threads; calls of the two paths
// alternate, the primitive is created per call as below; median over 21 pairs of time of dnnl_sgemm /
// time of matmul, three runs; > 1 = matmul faster):
//   (m, n, k)            op       ratio       what
//   1024,  512,  512     A @ B^T  1.10-1.18   Transformer q / out_proj, forward
//   1024,  512, 2048     A @ B^T  1.19        Transformer linear2, forward
//   1024,  512, 1024     A @ B    1.09-1.14   Transformer cross-attention k, v: input gradient
//   1024,  512, 8000     A @ B    1.11-1.17   Transformer generator: input gradient
//   1024,  512, 512..2048 A @ B   0.96-1.05   other input gradients with 512 columns
//   512..8000, 512, 1024 A^T @ B  1.10-1.44   Transformer weight gradients with 512 columns
//   128, 512, 784 / 128, 256, 512  A @ B^T  1.07-1.29   MLP fc1 / fc2, forward
//   64, 128, 3136        A @ B^T  1.14-1.19   CNN fc1, forward
//   1024, 1024..8000, 512  A @ B^T, A @ B    0.88-1.01   wider outputs: sgemm
//   512, 2048, 1024      A^T @ B  0.93-0.97   (a wide weight gradient): sgemm
//   128, 512, 256        A @ B    0.88-1.01   MLP fc2: input gradient
//   512, 784, 128 / 64, 3136, 128 / 128, 3136, 64   0.92-1.11 / 0.65-0.75 / 0.70-0.85   shallow k: sgemm
// so: 64..512 output columns, k >= 512. With a bias (a Linear's forward, GemmArgs::bias) the primitive
// adds it as it writes C while dnnl_sgemm needs C filled with it first: 1.13-1.15 on the 512-column
// forwards, 0.96-1.02 on the wide ones, so the same rule. The primitive is made once per shape and thread
// (sgemm_matmul); a new shape costs ~0.15 ms. set_gemm_matmul (or ATTN_GEMM_MATMUL=0 / 1
// in the environment) forces the choice off / on for every single product.
std::atomic<int>& matmul_override() {
  static std::atomic<int> v = [] {
    const char* e = std::getenv("ATTN_GEMM_MATMUL");
    return e && (e[0] == '0' || e[0] == '1') ? e[0] - '0' : -1;
  }();
  return v;
}
bool prefer_matmul_primitive(const GemmArgs& g) {
  if (omp_in_parallel()) return false;  // the primitive would run its own parallel region
  const int forced = matmul_override().load(std::memory_order_relaxed);
  if (forced >= 0) return forced == 1;
  return g.n <= 512 && g.n >= 64 && g.m >= 64 && g.k >= 512;
}

// C = alpha op(A) op(B) + beta C through dnnl::matmul (alpha as an output scale, beta as a sum post-op).
// The primitive and its memory objects are kept per shape and per calling thread (a primitive is not
// executed by two threads at once, whatever oneDNN's scratchpad mode): a repeated shape then costs a
// lookup and four set_data_handle calls instead of a primitive descriptor (~10 us through oneDNN's own
// primitive cache; docs/benchmarks.md). The team size is part of the key: oneDNN sizes its split when
// the primitive is made.
struct MatmulEntry {
  dnnl::matmul prim;
  dnnl::memory a, b, c, bias;
  std::unordered_map<int, dnnl::memory> args;  // handles to a, b, c (and bias): set_data_handle reaches them
};
using MatmulKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, double, double, int>;

MatmulEntry make_matmul(const GemmArgs& g) {
  using dnnl::memory;
  using dims = memory::dims;
  const memory::desc ad({g.m, g.k}, memory::data_type::f32, g.trans_a ? dims{1, g.lda} : dims{g.lda, 1});
  const memory::desc bd({g.k, g.n}, memory::data_type::f32, g.trans_b ? dims{1, g.ldb} : dims{g.ldb, 1});
  const memory::desc cd({g.m, g.n}, memory::data_type::f32, dims{g.ldc, 1});
  const memory::desc biasd = g.bias ? memory::desc({1, g.n}, memory::data_type::f32, dims{g.n, 1}) : memory::desc();
  dnnl::engine& eng = onednn_engine();
  const dnnl::matmul::desc desc = g.bias ? dnnl::matmul::desc(ad, bd, biasd, cd) : dnnl::matmul::desc(ad, bd, cd);
  MatmulEntry e{dnnl::matmul(dnnl::matmul::primitive_desc(desc, gemm_scale_and_sum(g.alpha, g.beta), eng)),
                memory(ad, eng, nullptr), memory(bd, eng, nullptr), memory(cd, eng, nullptr), {}, {}};
  e.args = {{DNNL_ARG_SRC, e.a}, {DNNL_ARG_WEIGHTS, e.b}, {DNNL_ARG_DST, e.c}};
  if (g.bias) {
    e.bias = memory(biasd, eng, nullptr);
    e.args.emplace(DNNL_ARG_BIAS, e.bias);
  }
  return e;
}

void sgemm_matmul(const GemmArgs& g, const float* a, const float* b, float* c) {
  constexpr size_t kMaxShapes = 256;  // per thread; a program cycling through more starts afresh
  thread_local std::map<MatmulKey, MatmulEntry> cache;
  try {
    const MatmulKey key{g.trans_a, g.trans_b, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.bias != nullptr, g.alpha, g.beta,
                        omp_get_max_threads()};
    auto it = cache.find(key);
    if (it == cache.end()) {
      if (cache.size() >= kMaxShapes) cache.clear();
      it = cache.emplace(key, make_matmul(g)).first;
    }
    MatmulEntry& e = it->second;
    e.a.set_data_handle(const_cast<float*>(a));
    e.b.set_data_handle(const_cast<float*>(b));
    e.c.set_data_handle(c);
    if (g.bias) e.bias.set_data_handle(const_cast<void*>(g.bias));
    dnnl::stream& stream = onednn_stream();
    e.prim.execute(stream, e.args);
    stream.wait();
  } catch (const dnnl::error& e) {
    throw std::runtime_error(std::string("gemm: oneDNN matmul failed (") + e.what() + ") " + describe(g));
  }
}

enum class SgemmPath { Blocked, Panels, Matmul, Sgemm, Batched };

// Whether oneDNN's product of g's shape gives other bits with the current team than with the
// partition count (thread_budget.h). Its split over threads is internal: dnnl_sgemm, for one, splits
// some A @ B^T products with k >= 1024 over k with two threads and not with one. So the first product
// of a shape under a smaller team runs on made-up operands with both thread counts, and shapes whose
// bits differ keep the full team from then on. Same split, same bits, whatever the operands.
bool team_changes_bits(const GemmArgs& g, SgemmPath path) {
  const int team = omp_get_max_threads(), partition = partition_threads();
  if (team >= partition || omp_in_parallel()) return false;
  using Key = std::tuple<int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double, double, bool,
                         int, int>;
  static std::mutex mu;
  static std::map<Key, bool> known;
  const Key key{int(path), g.trans_a, g.trans_b, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.alpha, g.beta,
                g.bias != nullptr, team, partition};
  {
    const std::lock_guard lock(mu);
    if (auto it = known.find(key); it != known.end()) return it->second;
  }
  GemmArgs probe = g;
  const int64_t a_n = (g.trans_a ? g.k : g.m) * g.lda, b_n = (g.trans_b ? g.n : g.k) * g.ldb, c_n = g.m * g.ldc;
  std::vector<float> ops(static_cast<size_t>(a_n + b_n + g.n)), full(static_cast<size_t>(c_n)), small(full.size());
  uint32_t state = 12345;
  for (float& v : ops) v = float(int32_t(state = state * 1664525u + 1013904223u)) * 4.6566e-10f;
  for (size_t i = 0; i < full.size(); ++i) full[i] = small[i] = ops[i % ops.size()];
  probe.a = ops.data();
  probe.b = ops.data() + a_n;
  if (g.bias) probe.bias = ops.data() + a_n + b_n;
  const auto run_probe = [&](float* out) {
    GemmArgs p = probe;
    p.c = out;
    const float *pa = static_cast<const float*>(p.a), *pb = static_cast<const float*>(p.b);
    path == SgemmPath::Matmul ? sgemm_matmul(p, pa, pb, out) : sgemm_one(p, pa, pb, out);
  };
  {
    const FullTeam f;
    run_probe(full.data());
  }
  run_probe(small.data());
  const bool differs = std::memcmp(full.data(), small.data(), full.size() * sizeof(float)) != 0;
  const std::lock_guard lock(mu);
  known[key] = differs;
  return differs;
}

// One float32 product on dnnl_sgemm or the matmul primitive, with the full team where a smaller one
// would change its bits.
void onednn_single(const GemmArgs& g, SgemmPath path) {
  const float* a = static_cast<const float*>(g.a);
  const float* b = static_cast<const float*>(g.b);
  float* c = static_cast<float*>(g.c);
  std::optional<FullTeam> full;
  if (team_changes_bits(g, path)) full.emplace();
  if (path == SgemmPath::Matmul) sgemm_matmul(g, a, b, c);
  else sgemm_one(g, a, b, c);
}

// The kernel a float32 product runs on.
SgemmPath sgemm_path(const GemmArgs& g) {
  const double work = double(g.m) * double(g.n) * double(g.k);
  if (work <= 16.0 * 16 * 16) return SgemmPath::Blocked;
  if (g.batch != 1) return SgemmPath::Batched;
  if (partition_threads() > 1 && !omp_in_parallel() && panels_enabled() && work >= 128.0 * 128 * 128 &&
      std::max(g.m, g.n) >= 64 * int64_t(partition_threads()))
    return SgemmPath::Panels;
  return prefer_matmul_primitive(g) ? SgemmPath::Matmul : SgemmPath::Sgemm;
}

void sgemm(const GemmArgs& g) {
  const float* a = static_cast<const float*>(g.a);
  const float* b = static_cast<const float*>(g.b);
  float* c = static_cast<float*>(g.c);
  const double work = double(g.m) * double(g.n) * double(g.k);
  const SgemmPath path = sgemm_path(g);
  switch (path) {
    case SgemmPath::Blocked: return blocked<float>(g);
    case SgemmPath::Panels: return sgemm_panels(g, a, b, c, partition_threads());
    case SgemmPath::Matmul:
    case SgemmPath::Sgemm: return onednn_single(g, path);
    case SgemmPath::Batched: break;
  }
  // Per-item threading only pays off for large matrices; otherwise split the batch.
  // (the split follows the partition count: a smaller team runs the same per-item products)
  if (work >= 256.0 * 256 * 256 || partition_threads() == 1 || omp_in_parallel()) {
    for (int64_t i = 0; i < g.batch; ++i) sgemm_one(g, a + i * g.stride_a, b + i * g.stride_b, c + i * g.stride_c);
    return;
  }
  dnnl_status_t first_error = dnnl_success;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < g.batch; ++i) {
    const dnnl_status_t st = dnnl_sgemm_of(g, a + i * g.stride_a, b + i * g.stride_b, c + i * g.stride_c);
    if (st != dnnl_success) {
#pragma omp critical(attn_gemm_error)
      first_error = st;
    }
  }
  check_sgemm(first_error, g);
}

// C's m rows (ldc apart) = the bias row (n elements of the dtype).
void fill_bias_rows(const GemmArgs& g) {
  const size_t es = g.dtype == kFloat32 ? sizeof(float) : sizeof(double), row = size_t(g.n) * es;
  char* c = static_cast<char*>(g.c);
  const char* bias = static_cast<const char*>(g.bias);
#pragma omp parallel for schedule(static) if (g.m * g.n > (1 << 16))
  for (int64_t i = 0; i < g.m; ++i) std::memcpy(c + size_t(i * g.ldc) * es, bias, row);
}

}  // namespace

bool set_gemm_panels(bool on) { return panels_flag().exchange(on); }
int set_gemm_matmul(int mode) { return matmul_override().exchange(mode < 0 ? -1 : mode > 0 ? 1 : 0); }
bool gemm_uses_matmul(const GemmArgs& g) { return g.dtype == kFloat32 && sgemm_path(g) == SgemmPath::Matmul; }

void gemm(const GemmArgs& in) {
  const GemmArgs g = normalized(in);
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (g.bias && (g.batch != 1 || g.beta != 0.0))
    throw std::invalid_argument("gemm: a bias needs a single product with beta = 0 " + describe(g));
  if (g.dtype == kBFloat16) return gemm_bf16(g);
  if (g.c_float32) throw std::invalid_argument("gemm: c_float32 needs bfloat16 operands " + describe(g));
  if (g.bias) {
    // the primitive adds the bias as it writes C (alpha would scale it there: only alpha = 1)
    if (g.dtype == kFloat32 && g.alpha == 1.0 && sgemm_path(g) == SgemmPath::Matmul)
      return onednn_single(g, SgemmPath::Matmul);
    // otherwise C = bias rows, then C += alpha op(A) op(B)
    GemmArgs rest = g;
    rest.bias = nullptr;
    rest.beta = 1.0;
    fill_bias_rows(g);
    return gemm(rest);
  }
  if (g.k == 0) {  // empty sum: C = beta * C
    for (int64_t i = 0; i < g.batch; ++i) {
      if (g.dtype == kFloat32)
        scale_c(static_cast<float*>(g.c) + i * g.stride_c, g.m, g.n, g.ldc, g.beta);
      else
        scale_c(static_cast<double*>(g.c) + i * g.stride_c, g.m, g.n, g.ldc, g.beta);
    }
    return;
  }
  if (g.dtype == kFloat32)
    sgemm(g);
  else
    blocked<double>(g);
}

namespace ref {

namespace {
template <typename T> void gemm_t(const GemmArgs& g) {
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    const T* a = static_cast<const T*>(g.a) + bi * g.stride_a;
    const T* b = static_cast<const T*>(g.b) + bi * g.stride_b;
    T* c = static_cast<T*>(g.c) + bi * g.stride_c;
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < g.k; ++p)
          acc += double(g.trans_a ? a[p * g.lda + i] : a[i * g.lda + p]) *
                 double(g.trans_b ? b[j * g.ldb + p] : b[p * g.ldb + j]);
        double prev = g.beta == 0.0 ? 0.0 : g.beta * double(c[i * g.ldc + j]);
        if (g.bias) prev += double(static_cast<const T*>(g.bias)[j]);
        c[i * g.ldc + j] = T(g.alpha * acc + prev);
      }
  }
}
}  // namespace

void gemm(const GemmArgs& g) {
  if (g.dtype == kBFloat16)
    gemm_bf16(g);
  else if (g.dtype == kFloat32)
    gemm_t<float>(g);
  else if (g.dtype == kFloat64)
    gemm_t<double>(g);
  else
    throw std::invalid_argument(std::string("ref::gemm: unsupported dtype ") + dtype_name(g.dtype));
}

}  // namespace ref
}  // namespace attn::cpu
