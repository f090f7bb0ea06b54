// tests/strict_backend.h — the strict test device (attn::kStrict): the CPU kernels on memory that the
// host cannot touch outside a backend call. Its memory lives in one mmap'd arena kept PROT_NONE except
// while a backend call runs, so any read or write through a raw pointer that does not go through the
// backend (raw_data(), data_ptr<>(), a stray memcpy) crashes the test instead of passing silently.
// Built only into the tests (strict_backend.cc registers it at start-up).
//
//   attn::Tensor x = attn::randn({2, 3}, {.device = attn::kStrict});   // lives in the arena
//   std::vector<float> v = x.to_vector<float>();                       // fine: copy_to_host
//   float bad = x.data_ptr<float>()[0];                                 // SIGSEGV
#pragma once
#include <cstddef>

#include "attn/dtype.h"

namespace attn_test {

// Bytes of the arena in use now (allocated blocks, rounded to 64).
size_t strict_arena_bytes_in_use();
// On: the strict backend's fused entries (softmax, cross_entropy, sdpa, dropout, relu_dropout,
// adam_step) run the Backend base class's composites instead of the CPU's fused kernels.
void set_strict_composites(bool on);
// True while the arena is readable (inside a backend call).
bool strict_arena_open();

}  // namespace attn_test
