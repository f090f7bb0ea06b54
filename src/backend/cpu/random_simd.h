// src/backend/cpu/random_simd.h — instruction-set-specific Philox streams (random_avx512.cc), chosen
// by random.cc when cpu::active_isa() is AVX-512; random.cc's scalar loops are the fallback and the
// oracle (tests/test_nn_ops.cc compares fused dropout with the scalar uniform_ stream).
//
//   int64_t done = attn::cpu::avx512::dropout_f32(x, n, keep_below, scale, seed, counter, out, keep, nullptr);
#pragma once
#include <cstdint>

namespace attn::cpu::avx512 {
// Dropout of x[0, done) with done = n rounded down to 64 (16 Philox blocks): the uniform of element i is
// word i % 4 of block counter + i / 4, as in uniform(); keep = u < keep_below, out = x * (keep ? scale : 0);
// keep packed as bit i % 8 of byte i / 8 (8 bytes per 64 elements). With pass (same layout) x goes through
// ReLU first (out = relu(x) * ..., NaN kept) and pass bit i = !(relu(x_i) <= 0), ReLU's backward rule.
int64_t dropout_f32(const float* x, int64_t n, float keep_below, float scale, uint64_t seed, uint64_t counter,
                    float* out, uint8_t* keep, uint8_t* pass);
// The 64 words of Philox blocks counter .. counter + 15 (element order: word l of block b is element
// 4 b + l) as dropout multipliers: mult[e] = (word >> 8) < keep_below24 ? scale : 0. With keep_below24 =
// ceil((1 - p) 2^24) this keeps exactly the elements whose uint32_to_unit_float(word) < 1 - p (in double).
void keep_scales64(uint64_t seed, uint64_t counter, uint32_t keep_below24, float scale, float* mult);
}  // namespace attn::cpu::avx512
