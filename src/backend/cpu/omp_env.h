// src/backend/cpu/omp_env.h — attn's default OpenMP wait policy, set before libgomp reads its environment.
//
// libgomp (GCC's OpenMP runtime, also oneDNN's here) reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in
// its load-time initialiser; by default an idle worker spins 300,000 rounds (~3.8 ms here) before it sleeps,
// which starves a core another process needs and collapses attn when that core is busy
// (docs/threading.md has the measurements). So omp_env.cc is built as its own small shared library,
// libattn_omp_env.so, with no dependency on libgomp, whose initialiser the loader runs before libgomp's
// (CMakeLists.txt, attn_link_omp_env: why the order holds). When the user set neither variable it sets
// GOMP_SPINCOUNT to ATTN_OMP_SPINCOUNT (CMakeLists.txt). libattn's own initialiser, which runs after
// libgomp's, takes it back out of the environment, so child processes see the user's environment.
// A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins.
//
//   const char* d = attn::cpu::omp_wait_default_in_effect();  // "GOMP_SPINCOUNT=..." or nullptr (user's)
//   auto choice = attn::cpu::choose_omp_wait_default([](const char* k) -> const char* { return std::getenv(k); },
//                                                    "10000");  // {"GOMP_SPINCOUNT", "10000"} or {}
#pragma once

namespace attn::cpu {

struct OmpWaitDefault {
  const char* name = nullptr;   // variable to set; nullptr: leave the environment as it is
  const char* value = nullptr;
};

// The default for an environment read through `get` (nullptr for an unset variable): none when the user
// set OMP_WAIT_POLICY or GOMP_SPINCOUNT (even to an empty string), else GOMP_SPINCOUNT = spin_count.
inline OmpWaitDefault choose_omp_wait_default(const char* (*get)(const char*), const char* spin_count) {
  if (get("OMP_WAIT_POLICY") != nullptr || get("GOMP_SPINCOUNT") != nullptr) return {};
  return {.name = "GOMP_SPINCOUNT", .value = spin_count};
}

// In libattn (any program that links it): "GOMP_SPINCOUNT=<n>" when the load-time hook set attn's
// default for libgomp in this process, else nullptr (the user's OMP_WAIT_POLICY / GOMP_SPINCOUNT rule).
const char* omp_wait_default_in_effect();

// In libattn_omp_env.so, for libattn only: a program that links it directly puts it earlier in the
// loader's order than oneDNN and could see libgomp initialised first.
const char* omp_env_default_applied();  // what the hook set, or nullptr
void omp_env_restore();                 // unsets what the hook set; idempotent

}  // namespace attn::cpu
