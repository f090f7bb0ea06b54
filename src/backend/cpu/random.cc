// src/backend/cpu/random.cc — uniform and normal (Box-Muller) fills from Philox 4x32-10 (attn/random.h).
// Philox blocks are independent, so blocks are split across threads and element i's value depends
// only on (seed, counter, i): identical results for any thread count. Layout (kernels.h, and the
// oracles ref::uniform / ref::normal): uniform takes lane i%4 of block counter + i/4 (ceil(n/4)
// blocks), normal takes block counter + i/2 (ceil(n/2) blocks).
#include <algorithm>
#include <cmath>

#include "attn/random.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/random_simd.h"

namespace attn::cpu {

namespace {
constexpr double kTwoPi = 6.28318530717958647692;

template <typename T> inline T below(double lo, double hi, double u) {  // lo + (hi - lo) u, kept < hi
  T v = T(lo + (hi - lo) * u);
  if (hi > lo && v >= T(hi)) v = std::nextafter(T(hi), T(lo));
  return v;
}

template <typename T> void uniform_impl(T* out, int64_t n, double lo, double hi, uint64_t seed, uint64_t counter) {
  const int64_t nb = uniform_blocks(n);
#pragma omp parallel for schedule(static) if (n >= kParallelGrain / 4)
  for (int64_t b = 0; b < nb; ++b) {
    const Philox4 p = philox4x32(seed, counter + uint64_t(b));
    if constexpr (sizeof(T) == 4) {
      for (int64_t l = 0; l < 4 && 4 * b + l < n; ++l)
        out[4 * b + l] = below<T>(lo, hi, double(uint32_to_unit_float(p.v[l])));
    } else {
      const Philox4 q = philox4x32(seed ^ kPhiloxLowKey, counter + uint64_t(b));
      for (int64_t l = 0; l < 4 && 4 * b + l < n; ++l)
        out[4 * b + l] = below<T>(lo, hi, uint64_to_unit_double((uint64_t(p.v[l]) << 32) | q.v[l]));
    }
  }
}

template <typename T> void normal_impl(T* out, int64_t n, double mean, double std, uint64_t seed, uint64_t counter) {
  const int64_t nb = normal_blocks(n);
#pragma omp parallel for schedule(static) if (n >= kParallelGrain / 8)
  for (int64_t b = 0; b < nb; ++b) {
    const Philox4 p = philox4x32(seed, counter + uint64_t(b));
    const double u1 = 1.0 - uint64_to_unit_double((uint64_t(p.v[0]) << 32) | p.v[1]);  // (0, 1]
    const double u2 = uint64_to_unit_double((uint64_t(p.v[2]) << 32) | p.v[3]);
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double theta = kTwoPi * u2;
    out[2 * b] = T(mean + std * (radius * std::cos(theta)));
    if (2 * b + 1 < n) out[2 * b + 1] = T(mean + std * (radius * std::sin(theta)));
  }
}

// Draws exactly as uniform_impl(.., 0, 1, ..) does; the comparison and scale are rounded to T as the
// composite lt(u, 1 - p) * (1 / (1 - p)) rounds them, so out is what that composite made (of relu(x) with
// pass, whose bits are ReLU's backward rule !(y <= 0)). The scalar part runs over whole bytes of the keep
// bits (8 elements, 2 Philox blocks), so no two threads share one.
template <typename T>
void dropout_impl(const T* x, int64_t n, T keep_below, T scale, uint64_t seed, uint64_t counter, T* out, uint8_t* keep,
                  uint8_t* pass) {
  int64_t first = 0;  // elements below this were done by the vector path (a multiple of 64)
#if defined(__x86_64__)
  if constexpr (sizeof(T) == 4) {
    if (active_isa() == Isa::Avx512)
      first = avx512::dropout_f32(x, n, keep_below, scale, seed, counter, out, keep, pass);
  }
#endif
  const int64_t byte_first = first / 8, bytes = backend::dropout_keep_bytes(n);
#pragma omp parallel for schedule(static) if ((n - first) >= kParallelGrain)
  for (int64_t byte = byte_first; byte < bytes; ++byte) {
    uint8_t bits = 0, pass_bits = 0;
    for (int64_t half = 0; half < 2; ++half) {
      const int64_t b = 2 * byte + half;  // Philox block: elements 4 b .. 4 b + 3
      if (4 * b >= n) break;
      const Philox4 r = philox4x32(seed, counter + uint64_t(b));
      Philox4 q{};
      if constexpr (sizeof(T) == 8) q = philox4x32(seed ^ kPhiloxLowKey, counter + uint64_t(b));
      for (int64_t l = 0; l < 4 && 4 * b + l < n; ++l) {
        T u;
        if constexpr (sizeof(T) == 4) u = uint32_to_unit_float(r.v[l]);
        else u = T(uint64_to_unit_double((uint64_t(r.v[l]) << 32) | q.v[l]));
        const bool k = u < keep_below;
        bits = uint8_t(bits | (uint8_t(k) << (4 * half + l)));
        T v = x[4 * b + l];
        if (pass) {
          v = std::isnan(v) ? v : std::max(v, T(0));  // UnaryOp::Relu
          pass_bits = uint8_t(pass_bits | (uint8_t(!(v <= T(0))) << (4 * half + l)));
        }
        out[4 * b + l] = v * (k ? scale : T(0));
      }
    }
    keep[byte] = bits;
    if (pass) pass[byte] = pass_bits;
  }
}
}  // namespace

void dropout(const float* x, int64_t n, double p, uint64_t seed, uint64_t counter, float* out, uint8_t* keep,
             uint8_t* pass) {
  dropout_impl(x, n, float(1.0 - p), float(1.0 / (1.0 - p)), seed, counter, out, keep, pass);
}
void dropout(const double* x, int64_t n, double p, uint64_t seed, uint64_t counter, double* out, uint8_t* keep,
             uint8_t* pass) {
  dropout_impl(x, n, 1.0 - p, 1.0 / (1.0 - p), seed, counter, out, keep, pass);
}
void dropout_scaled(const float* x, int64_t n, float keep_below, float scale, uint64_t seed, uint64_t counter,
                    float* out, uint8_t* keep, uint8_t* pass) {
  dropout_impl(x, n, keep_below, scale, seed, counter, out, keep, pass);
}

void uniform(float* out, int64_t n, double lo, double hi, uint64_t seed, uint64_t counter) {
  uniform_impl(out, n, lo, hi, seed, counter);
}
void uniform(double* out, int64_t n, double lo, double hi, uint64_t seed, uint64_t counter) {
  uniform_impl(out, n, lo, hi, seed, counter);
}
void normal(float* out, int64_t n, double mean, double std, uint64_t seed, uint64_t counter) {
  normal_impl(out, n, mean, std, seed, counter);
}
void normal(double* out, int64_t n, double mean, double std, uint64_t seed, uint64_t counter) {
  normal_impl(out, n, mean, std, seed, counter);
}

}  // namespace attn::cpu
