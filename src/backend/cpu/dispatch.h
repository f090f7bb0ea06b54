// src/backend/cpu/dispatch.h — run-time choice of the instruction set for the float32 kernels.
//
// The same kernel source (kernels_simd.inc) is compiled twice, by kernels_avx512.cc and
// kernels_avx2.cc; each exposes a KernelTable. The table is picked once with
// __builtin_cpu_supports, and tests can force one:
//
//   attn::cpu::set_isa_for_testing(attn::cpu::Isa::Avx2);   // returns false if the CPU lacks it
//   attn::cpu::softmax(x, y, rows, d, false);                // runs the AVX2 build
//   attn::cpu::reset_isa();
#pragma once
#include <cstdint>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"

namespace attn::cpu {

enum class Isa { Reference, Avx2, Avx512 };
const char* isa_name(Isa isa);
Isa active_isa();
bool isa_supported(Isa isa);
bool set_isa_for_testing(Isa isa);  // false (and no change) if the CPU cannot run it
void reset_isa();                   // back to the best supported

struct KernelTable {
  void (*softmax)(const float* x, float* y, int64_t rows, int64_t d, bool log);
  void (*softmax_backward)(const float* y, const float* gy, float* gx, int64_t rows, int64_t d, bool log);
  void (*layer_norm)(const float* x, const float* w, const float* b, double eps, float* y, float* mean,
                     float* rstd, int64_t rows, int64_t d);
  void (*layer_norm_backward)(const float* gy, const float* x, const float* w, const float* mean,
                              const float* rstd, float* gx, float* gw, float* gb, int64_t rows, int64_t d);
  bool (*unary)(backend::UnaryOp op, const float* x, float* y, int64_t n, float alpha);
  bool (*unary_backward)(backend::UnaryGradOp op, const float* x_or_y, const float* gy, float* gx, int64_t n,
                         float alpha);
  bool (*binary)(backend::BinaryOp op, const float* a, int64_t a_period, const float* b, int64_t b_period,
                 float* out, int64_t n);
  void (*reduce)(backend::ReduceOp op, const float* x, float* out, int64_t outer, int64_t r, int64_t inner);
  // gx[i] = gy[i] * (bit i of keep ? scale : 0); keep: bit i % 8 of byte i / 8, backend::dropout_keep_bytes(n) bytes
  void (*dropout_backward)(const float* gy, const uint8_t* keep, float scale, float* gx, int64_t n);
  // gx[i] = bit i of pass ? gy[i] * (bit i of keep ? scale : 0) : 0 (relu_dropout's backward; same layouts)
  void (*relu_dropout_backward)(const float* gy, const uint8_t* keep, const uint8_t* pass, float scale, float* gx,
                                int64_t n);
  // bf16 <-> float32 of n contiguous values (kernels.h widen_bf16 / narrow_bf16)
  void (*widen_bf16)(const uint16_t* h, float* f, int64_t n);
  void (*narrow_bf16)(const float* f, uint16_t* h, int64_t n);
  // the first j in [0, n) with x[j] `cmp` t, or x[j] NaN where or_nan; n where none (argmax's and topk's scans)
  int64_t (*find_first)(const float* x, int64_t n, float t, FindCmp cmp, bool or_nan);
};

const KernelTable& kernels();  // the active ISA's table

namespace avx512 { const KernelTable& table(); }
namespace avx2 { const KernelTable& table(); }
const KernelTable& reference_table();  // ref:: kernels behind the same signatures (serial)

// Work below this many elements runs on one thread (OpenMP start-up costs more than it saves).
inline constexpr int64_t kParallelGrain = 32768;

}  // namespace attn::cpu
