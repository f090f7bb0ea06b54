// src/backend/cpu/amx_gemm.h — attn's own bf16 GEMM on Intel AMX tiles (internal; gemm_bf16.cc
// dispatches to it). amx_gemm.cc alone is compiled with -mamx-tile -mamx-bf16 and AVX-512: call
// gemm_bf16 only when cpu_and_os_ready() said yes.
//
//   if (attn::cpu::amx::cpu_and_os_ready()) {
//     std::vector<std::byte> ws(attn::cpu::amx::workspace_bytes(g, threads) + 64);
//     attn::cpu::amx::gemm_bf16(g, aligned(ws), threads);  // g: one product (batch 1), k > 0
//   }
//
// Design (C(m, n) = alpha op(A)(m, k) @ op(B)(k, n) + beta C (+ bias); bf16 A, B; float32 accumulation):
//  - Both operands are packed into 1 KiB tiles zero-padded to whole tiles: op(A) as 16 rows x 32 k,
//    once per call by all threads; op(B) as AMX's VNNI pairs (16 k-pairs x 16 columns x 2), one
//    256-column panel at a time by the thread whose blocks use it, so the panel stays in its L2
//    (measured 4-10 % faster at 2048^3 than packing all of B first). Packing reads every source row
//    front to back (transposed operands: 16 x 16 32-bit transposes in registers). Loading A tiles
//    straight from a row-major A (stride lda) was slower than packing it (rows 4 KiB apart share L1 sets).
//  - C is cut into 256 x 256 blocks, contiguous column-major runs of them per thread; within a block
//    K is cut into 256-deep slices and every 32 x 32 piece of C runs the 2 x 2 micro-kernel (tiles 0-3: C, 4-5: A,
//    6-7: B) over the slice, accumulating into a float32 block in L2. A piece is scaled, added to beta C
//    and the bias and rounded to C's dtype right after its last slice.
//  - Each element of C is summed in the same order whatever the thread count: same bits with any team.
#pragma once
#include <cstddef>

#include "backend/backend.h"

namespace attn::cpu::amx {

// CPUID reports AMX-TILE, AMX-BF16, AVX512_BF16 (and AVX-512 F/BW/VL/DQ), and Linux granted this
// process the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, asked once).
bool cpu_and_os_ready();

// Bytes of 64-byte-aligned workspace gemm_bf16 needs for g with `threads` threads.
size_t workspace_bytes(const backend::GemmArgs& g, int threads);

// One product (g.batch == 1, g.k > 0; a bias only with alpha == 1), on `threads` OpenMP threads.
void gemm_bf16(const backend::GemmArgs& g, void* workspace, int threads);

}  // namespace attn::cpu::amx
