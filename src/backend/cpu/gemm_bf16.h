// src/backend/cpu/gemm_bf16.h — bfloat16 GEMM (GemmArgs::dtype == kBFloat16) and the choice of the
// instruction path it runs on. cpu::gemm forwards bf16 products here.
//
//   attn::cpu::Bf16Path p = attn::cpu::bf16_path();        // Amx on a Sapphire Rapids Xeon
//   std::cout << attn::cpu::bf16_path_name(p) << " " << attn::cpu::bf16_gemm_impl();  // "amx brg:avx512_core_amx_bf16"
//   ATTN_BF16_ISA=avx512_bf16 attn info                   // forces a lower path (for tests)
//
// Paths, best first:
//  - Amx: attn's own AMX tile kernel (amx_gemm.h) for the single products where it beats oneDNN,
//    oneDNN's matmul primitive for the rest (batches of small products).
//  - Amx / Avx512Bf16: oneDNN's matmul primitive on bf16 operands (its brgemm kernels use AMX tiles or
//    vdpbf16ps), float32 accumulation, C rounded to nearest even. Which one oneDNN may use is set once
//    per process, before its first JIT kernel (dnnl_set_max_cpu_isa), so forcing Avx512Bf16 happens at
//    load time from the environment.
//  - Convert: CPUs without AVX512_BF16 (AVX2, AVX-512F): A and B widened to float32 (exact), the
//    float32 GEMM, C rounded to nearest even. Same products and float32 accumulation, so the results
//    agree with the other paths within float32 summation-order differences before the final rounding.
// ATTN_BF16_ISA=amx|avx512_bf16|convert caps the path (a path above what the CPU has falls to the best it has).
// ATTN_BF16_AMX_KERNEL=0|1|auto: on the Amx path, oneDNN only / attn's AMX kernel for every product /
// by shape (default), for A/B measurements (bench/ab.py --a-env) and tests.
#pragma once
#include <string>

#include "backend/backend.h"

namespace attn::cpu {

enum class Bf16Path { Amx, Avx512Bf16, Convert };

Bf16Path bf16_path();  // the active path
const char* bf16_path_name(Bf16Path p);  // "amx", "avx512_bf16", "convert"
// The implementation behind the active path: oneDNN's name for a probe bf16 matmul
// ("brg:avx512_core_amx_bf16"), or "convert+sgemm".
std::string bf16_gemm_impl();
// Tests: force the Convert path on (true) or return to the path chosen at load time (false).
// The oneDNN paths cannot be switched inside a process; run a process with ATTN_BF16_ISA for those.
void set_bf16_convert_for_testing(bool on);

// attn's own AMX kernel (amx_gemm.h) on the Amx path: -1 where it beats oneDNN (the shape rule in
// gemm_bf16.cc, default), 1 for every product, 0 never (oneDNN only). Returns the previous mode.
// For tests and bench/gemm_bench.cc.
int set_bf16_amx_kernel(int mode);
bool bf16_uses_amx_kernel(const backend::GemmArgs& g);  // whether g (checked, normalized) runs on it

// C = alpha op(A) @ op(B) + beta C (+ bias) for bf16 A, B; C bf16 or float32 (g.c_float32). g is
// already checked and normalized by cpu::gemm.
void gemm_bf16(const backend::GemmArgs& g);

namespace ref {
// Reference: products and sums in double, one rounding to C's dtype.
void gemm_bf16(const backend::GemmArgs& g);
}  // namespace ref

}  // namespace attn::cpu
