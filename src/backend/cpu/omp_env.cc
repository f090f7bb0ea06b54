// src/backend/cpu/omp_env.cc — see omp_env.h. Built alone as libattn_omp_env.so (CMakeLists.txt): it
// must not depend on libgomp, or the loader would run libgomp's initialiser first.
#include "backend/cpu/omp_env.h"

#include <cstdio>
#include <cstdlib>

#ifndef ATTN_OMP_SPINCOUNT
#error "ATTN_OMP_SPINCOUNT must be defined by the build (CMakeLists.txt)"
#endif

namespace attn::cpu {

namespace {
bool g_set_by_hook = false;
char g_applied[64] = "";
}  // namespace

const char* omp_env_default_applied() { return g_applied[0] != '\0' ? g_applied : nullptr; }

void omp_env_restore() {
  if (!g_set_by_hook) return;
  unsetenv("GOMP_SPINCOUNT");
  g_set_by_hook = false;
}

namespace {

const char* read_env(const char* name) { return std::getenv(name); }

// Runs at load time, before libgomp's initialiser (see omp_env.h for why the order holds).
__attribute__((constructor)) void set_omp_wait_default() {
  const OmpWaitDefault d = choose_omp_wait_default(read_env, ATTN_OMP_SPINCOUNT);
  if (d.name == nullptr || setenv(d.name, d.value, 0) != 0) return;
  g_set_by_hook = true;
  std::snprintf(g_applied, sizeof g_applied, "%s=%s", d.name, d.value);
}

}  // namespace

}  // namespace attn::cpu
