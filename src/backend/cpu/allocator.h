// src/backend/cpu/allocator.h — 64-byte aligned host memory with a size-bucketed cache, so a
// training loop that allocates the same shapes every step does not call malloc.
#pragma once
#include <cstddef>

namespace attn::cpu {

void* cached_alloc(size_t nbytes);
void cached_free(void* p, size_t nbytes);
void empty_cache();                // returns cached blocks to the system; the footprint bound (1.5x the
                                   // most in use) then counts from what is in use now
size_t cached_bytes();             // bytes held in the cache, unused
size_t allocated_bytes();          // bytes handed out, in use
size_t peak_allocated_bytes();
void reset_peak_allocated_bytes();

}  // namespace attn::cpu
