// src/backend/cpu/optim_avx512.cc — the AVX-512 (16 float lanes) build of optim_loop.inc (the fused Adam/AdamW step).
// Compiled with the ISA's flags (CMake: *_avx512.cc, plus -fno-math-errno -ffp-contract=off); optim.cc
// calls it only when the CPU has them.
#include <cmath>
#include <cstdint>
#include <limits>

#include "backend/backend.h"
#include "backend/cpu/dispatch.h"

#define ATTN_OPTIM_NS avx512
#include "backend/cpu/optim_loop.inc"
#undef ATTN_OPTIM_NS
