// src/backend/cpu/gemm_bf16.cc — see gemm_bf16.h.
#include "backend/cpu/gemm_bf16.h"

#include <cpuid.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "backend/cpu/amx_gemm.h"
#include "backend/cpu/linalg_kernels.h"
#include "backend/cpu/onednn.h"

namespace attn::cpu {

using backend::GemmArgs;

namespace {

struct Bf16Choice {
  Bf16Path path = Bf16Path::Convert;
  int amx_kernel = -1;  // ATTN_BF16_AMX_KERNEL: see set_bf16_amx_kernel
  std::string error;    // a bad ATTN_BF16_ISA / ATTN_BF16_AMX_KERNEL value: thrown at the first bf16 product
};

// Reads ATTN_BF16_ISA and caps oneDNN's ISA accordingly. Runs at load time (below): oneDNN accepts
// dnnl_set_max_cpu_isa only before it generates its first kernel.
Bf16Choice choose_path() {
  Bf16Choice c;
  const char* env = std::getenv("ATTN_BF16_ISA");
  const std::string want = env ? env : "";
  if (!want.empty() && want != "amx" && want != "avx512_bf16" && want != "convert")
    c.error = "ATTN_BF16_ISA: expected amx, avx512_bf16 or convert, got '" + want + "'";
  const char* kernel = std::getenv("ATTN_BF16_AMX_KERNEL");
  const std::string own = kernel ? kernel : "";
  if (own == "0" || own == "1") c.amx_kernel = own == "1" ? 1 : 0;
  else if (!own.empty() && own != "auto")
    c.error = "ATTN_BF16_AMX_KERNEL: expected 0, 1 or auto, got '" + own + "'";
  if (want == "avx512_bf16") dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx512_core_bf16);
  const unsigned isa = unsigned(dnnl_get_effective_cpu_isa());
  auto has = [isa](dnnl_cpu_isa_t need) { return (isa & unsigned(need)) == unsigned(need); };
  if (want == "convert")
    c.path = Bf16Path::Convert;
  else if (has(dnnl_cpu_isa_avx512_core_amx))
    c.path = Bf16Path::Amx;
  else if (has(dnnl_cpu_isa_avx512_core_bf16))
    c.path = Bf16Path::Avx512Bf16;
  else
    c.path = Bf16Path::Convert;
  return c;
}

const Bf16Choice& load_time_choice() {
  static const Bf16Choice c = choose_path();
  return c;
}
[[maybe_unused]] const Bf16Choice& g_choice_at_load = load_time_choice();  // before any oneDNN kernel
std::atomic<bool> g_force_convert{false};

std::string describe(const GemmArgs& g) {
  return "(bf16 m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) +
         " batch=" + std::to_string(g.batch) + (g.c_float32 ? ", float32 C)" : ", bf16 C)");
}

// Elements from a matrix's first to its last one (rows x cols stored with leading dimension ld).
int64_t span(int64_t rows, int64_t cols, int64_t ld) { return (rows - 1) * ld + cols; }
int64_t extent(int64_t batch, int64_t stride, int64_t one) { return (batch - 1) * stride + one; }

float widen1(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// bf16 -> float32 is exact: the 16 bits become the high half.
std::vector<float> widen(const void* src, int64_t n) {
  std::vector<float> out(size_t(std::max<int64_t>(n, 0)));
  const uint16_t* s = static_cast<const uint16_t*>(src);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = widen1(s[i]);
  return out;
}

// C (m, n) items of a float32 scratch with C's strides -> the bf16 C, rounded to nearest even.
void narrow_c(const GemmArgs& g, const float* c32) {
  uint16_t* c = static_cast<uint16_t*>(g.c);
#pragma omp parallel for collapse(2) schedule(static) if (g.batch * g.m * g.n > (1 << 16))
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t i = 0; i < g.m; ++i) {
      const int64_t off = b * g.stride_c + i * g.ldc;
      for (int64_t j = 0; j < g.n; ++j) c[off + j] = BFloat16(c32[off + j]).bits;
    }
}

// The Convert path: the float32 GEMM on widened copies.
void gemm_convert(const GemmArgs& g) {
  const int64_t ea = extent(g.batch, g.stride_a, g.trans_a ? span(g.k, g.m, g.lda) : span(g.m, g.k, g.lda));
  const int64_t eb = extent(g.batch, g.stride_b, g.trans_b ? span(g.n, g.k, g.ldb) : span(g.k, g.n, g.ldb));
  const std::vector<float> a32 = widen(g.a, ea), b32 = widen(g.b, eb);
  GemmArgs f = g;
  f.dtype = kFloat32;
  f.c_float32 = false;
  f.a = a32.data();
  f.b = b32.data();
  if (g.c_float32) return gemm(f);
  std::vector<float> bias32;
  if (g.bias) {
    bias32 = widen(g.bias, g.n);
    f.bias = bias32.data();
  }
  const int64_t ec = extent(g.batch, g.stride_c, span(g.m, g.n, g.ldc));
  std::vector<float> c32 = g.beta != 0.0 ? widen(g.c, ec) : std::vector<float>(size_t(ec));
  f.c = c32.data();
  gemm(f);
  narrow_c(g, c32.data());
}

using dnnl::memory;
using dims = memory::dims;

// A (rows, cols) operand descriptor, optionally one of a strided batch (stride 0: one matrix for all).
memory::desc operand_desc(int64_t batch, int64_t stride, int64_t rows, int64_t cols, bool trans, int64_t ld,
                          memory::data_type dt) {
  if (batch == 1) return memory::desc({rows, cols}, dt, trans ? dims{1, ld} : dims{ld, 1});
  const int64_t one = trans ? span(cols, rows, ld) : span(rows, cols, ld);
  if (stride == 0) return memory::desc({1, rows, cols}, dt, trans ? dims{one, 1, ld} : dims{one, ld, 1});
  return memory::desc({batch, rows, cols}, dt, trans ? dims{stride, 1, ld} : dims{stride, ld, 1});
}

dnnl::matmul::primitive_desc matmul_pd(const GemmArgs& g) {
  const auto bf = memory::data_type::bf16, cdt = g.c_float32 ? memory::data_type::f32 : bf;
  const memory::desc ad = operand_desc(g.batch, g.stride_a, g.m, g.k, g.trans_a, g.lda, bf);
  const memory::desc bd = operand_desc(g.batch, g.stride_b, g.k, g.n, g.trans_b, g.ldb, bf);
  const memory::desc cd = operand_desc(g.batch, g.stride_c, g.m, g.n, false, g.ldc, cdt);
  const dnnl::primitive_attr attr = gemm_scale_and_sum(g.alpha, g.beta);
  dnnl::engine& eng = onednn_engine();
  if (!g.bias) return dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bd, cd), attr, eng);
  const memory::desc biasd({1, g.n}, cdt, dims{g.n, 1});
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bd, biasd, cd), attr, eng);
}

// The Amx / Avx512Bf16 paths: one oneDNN matmul for the whole strided batch (created per call; the
// primitive cache makes a repeated shape cheap).
void gemm_matmul(const GemmArgs& g) {
  if (g.batch > 1 && g.stride_a == 0) {  // A shared by all items: not expressible as one matmul
    GemmArgs one = g;
    one.batch = 1;
    for (int64_t i = 0; i < g.batch; ++i) {
      one.b = static_cast<const uint16_t*>(g.b) + i * g.stride_b;
      one.c = static_cast<char*>(g.c) + i * g.stride_c * (g.c_float32 ? 4 : 2);
      gemm_matmul(one);
    }
    return;
  }
  try {
    const dnnl::matmul::primitive_desc pd = matmul_pd(g);
    const dnnl::matmul prim(pd);
    dnnl::engine& eng = onednn_engine();
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(pd.src_desc(), eng, const_cast<void*>(g.a))},
                                         {DNNL_ARG_WEIGHTS, memory(pd.weights_desc(), eng, const_cast<void*>(g.b))},
                                         {DNNL_ARG_DST, memory(pd.dst_desc(), eng, g.c)}};
    if (g.bias) args.emplace(DNNL_ARG_BIAS, memory(pd.bias_desc(), eng, const_cast<void*>(g.bias)));
    dnnl::stream& stream = onednn_stream();
    prim.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    throw std::runtime_error(std::string("gemm: oneDNN bf16 matmul failed (") + e.what() + ") " + describe(g));
  }
}

// ---- attn's own AMX kernel (amx_gemm.cc)

// -1: by shape (amx_kernel_wins), 0: never, 1: always; from ATTN_BF16_AMX_KERNEL at load time
std::atomic<int> g_amx_kernel_mode{load_time_choice().amx_kernel};

// Where attn's AMX kernel beats oneDNN 2.6.3's brgemm (`gemm_bench bf16`, paired, loaded 2-core host,
// 2 threads / 1 thread): 1.6-1.7x at 2048^3; 1.0-1.5x / 1.05-1.8x on the Transformer step's products
// with m n k >= 1024 * 1024 * 512, and on A^T B (weight gradients: 1.06-1.17x at 512 x 512 x 1024).
// 1024 x 512 x 512 A B and A B^T lose at 2 threads (0.91-0.98x; the per-call packing of A weighs
// there), smaller products lose more (0.6-0.95x at 256^3, m <= 64 or k = 64), and batches of small
// products (attention) stay on oneDNN.
bool amx_kernel_wins(const GemmArgs& g) {
  const double work = double(g.m) * double(g.n) * double(g.k);
  return g.batch == 1 && std::min({g.m, g.n, g.k}) >= 512 && (work >= 1024.0 * 1024 * 512 || g.trans_a);
}

bool use_amx_kernel(const GemmArgs& g) {
  if (bf16_path() != Bf16Path::Amx || !amx::cpu_and_os_ready()) return false;
  const int mode = g_amx_kernel_mode.load(std::memory_order_relaxed);
  return mode == 1 || (mode == -1 && amx_kernel_wins(g));
}

// The kernel's workspace (packed B, per-thread A strips and accumulators): one buffer kept for the
// process, so a repeated product does not fault in fresh pages; a concurrent caller gets its own.
class AmxWorkspace {
 public:
  explicit AmxWorkspace(size_t bytes) : lock_(mu(), std::try_to_lock) {
    std::vector<char>& buf = lock_.owns_lock() ? shared() : own_;
    if (buf.size() < bytes + 64) buf.resize(bytes + 64);
    const uintptr_t at = reinterpret_cast<uintptr_t>(buf.data());
    ptr_ = buf.data() + ((64 - at % 64) % 64);
  }
  void* get() const { return ptr_; }

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::vector<char>& shared() {
    static std::vector<char> v;
    return v;
  }
  std::unique_lock<std::mutex> lock_;
  std::vector<char> own_;
  void* ptr_ = nullptr;
};

// Every item of the strided batch on the AMX kernel, all threads each.
void gemm_amx(const GemmArgs& g) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  GemmArgs one = g;
  one.batch = 1;
  const AmxWorkspace ws(amx::workspace_bytes(one, threads));
  const size_t c_size = g.c_float32 ? 4 : 2;
  for (int64_t i = 0; i < g.batch; ++i) {
    one.a = static_cast<const uint16_t*>(g.a) + i * g.stride_a;
    one.b = static_cast<const uint16_t*>(g.b) + i * g.stride_b;
    one.c = static_cast<char*>(g.c) + size_t(i * g.stride_c) * c_size;
    amx::gemm_bf16(one, ws.get(), threads);
  }
}

}  // namespace

namespace amx {

// CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE; subleaf 1 EAX bit 5 AVX512_BF16. Linux (>= 5.16)
// enables the 8 KiB tile data state per process on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
bool cpu_and_os_ready() {
  static const bool ready = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) return false;
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    if (!__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) || !(a1 & (1u << 5))) return false;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("fma"))
      return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ready;
}

}  // namespace amx

int set_bf16_amx_kernel(int mode) { return g_amx_kernel_mode.exchange(mode < 0 ? -1 : mode > 0 ? 1 : 0); }

bool bf16_uses_amx_kernel(const GemmArgs& g) { return use_amx_kernel(g); }

Bf16Path bf16_path() {
  return g_force_convert.load(std::memory_order_relaxed) ? Bf16Path::Convert : load_time_choice().path;
}

const char* bf16_path_name(Bf16Path p) {
  switch (p) {
    case Bf16Path::Amx: return "amx";
    case Bf16Path::Avx512Bf16: return "avx512_bf16";
    case Bf16Path::Convert: return "convert";
  }
  return "?";
}

std::string bf16_gemm_impl() {
  if (bf16_path() == Bf16Path::Convert) return "convert+sgemm";
  const bool own = bf16_path() == Bf16Path::Amx && amx::cpu_and_os_ready() && g_amx_kernel_mode.load() != 0;
  const std::string prefix = own ? (g_amx_kernel_mode.load() == 1 ? "attn-amx" : "attn-amx (large products), ") : "";
  if (own && g_amx_kernel_mode.load() == 1) return prefix;
  GemmArgs probe;
  probe.m = probe.n = probe.k = probe.lda = probe.ldb = probe.ldc = 256;
  probe.dtype = kBFloat16;
  try {
    return prefix + matmul_pd(probe).impl_info_str();
  } catch (const dnnl::error& e) {
    return std::string("unavailable (") + e.what() + ")";
  }
}

void set_bf16_convert_for_testing(bool on) { g_force_convert.store(on); }

void gemm_bf16(const GemmArgs& g) {
  if (!load_time_choice().error.empty()) throw std::invalid_argument(load_time_choice().error);
  // k == 0 (C = beta C) and a scaled product with a bias (oneDNN would scale the bias too) are rare:
  // the Convert path does them with the float32 GEMM's semantics.
  if (bf16_path() == Bf16Path::Convert || g.k == 0 || (g.bias && g.alpha != 1.0)) return gemm_convert(g);
  if (use_amx_kernel(g)) return gemm_amx(g);
  gemm_matmul(g);
}

namespace ref {

void gemm_bf16(const GemmArgs& g) {
  const uint16_t* a = static_cast<const uint16_t*>(g.a);
  const uint16_t* b = static_cast<const uint16_t*>(g.b);
  for (int64_t bi = 0; bi < g.batch; ++bi)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < g.k; ++p)
          acc += double(widen1(a[bi * g.stride_a + (g.trans_a ? p * g.lda + i : i * g.lda + p)])) *
                 double(widen1(b[bi * g.stride_b + (g.trans_b ? j * g.ldb + p : p * g.ldb + j)]));
        const int64_t at = bi * g.stride_c + i * g.ldc + j;
        float* c32 = static_cast<float*>(g.c) + at;
        uint16_t* c16 = static_cast<uint16_t*>(g.c) + at;
        double v = g.alpha * acc;
        if (g.beta != 0.0) v += g.beta * double(g.c_float32 ? *c32 : widen1(*c16));
        if (g.bias)
          v += g.c_float32 ? double(static_cast<const float*>(g.bias)[j])
                           : double(widen1(static_cast<const uint16_t*>(g.bias)[j]));
        if (g.c_float32)
          *c32 = float(v);
        else
          *c16 = BFloat16(float(v)).bits;
      }
}

}  // namespace ref
}  // namespace attn::cpu
