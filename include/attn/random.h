// attn/random.h — one seeded, counter-based (Philox 4x32-10) generator, so runs are reproducible and
// parallel kernels draw the same numbers whatever the thread count.
//
//   attn::manual_seed(42);
//   auto state = attn::default_generator().state();   // save in a checkpoint ...
//   attn::default_generator().set_state(state);        // ... and restore on resume
#pragma once
#include <cstdint>

namespace attn {

struct GeneratorState {
  uint64_t seed = 0;
  uint64_t offset = 0;  // how many 128-bit blocks were consumed
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : state_{seed, 0} {}
  void manual_seed(uint64_t seed) { state_ = {seed, 0}; }
  GeneratorState state() const { return state_; }
  void set_state(GeneratorState s) { state_ = s; }
  // Reserves `n` 128-bit blocks (4 uint32 each) and returns the first block's counter.
  uint64_t reserve(uint64_t n) {
    uint64_t first = state_.offset;
    state_.offset += n;
    return first;
  }
  uint64_t seed() const { return state_.seed; }

 private:
  GeneratorState state_;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

// Philox 4x32-10: 4 random uint32 for (key = seed, counter).
struct Philox4 {
  uint32_t v[4];
};
inline Philox4 philox4x32(uint64_t seed, uint64_t counter) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}
// uint32 -> float in [0, 1) with 24 random bits.
inline float uint32_to_unit_float(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }
inline double uint64_to_unit_double(uint64_t x) { return double(x >> 11) * (1.0 / 9007199254740992.0); }

}  // namespace attn
