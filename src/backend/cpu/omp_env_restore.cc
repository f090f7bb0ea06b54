// src/backend/cpu/omp_env_restore.cc — libattn's side of attn's OpenMP wait default (omp_env.h): takes
// it back out of the process environment once libgomp has read it, and reports it.
#include "backend/cpu/omp_env.h"

namespace attn::cpu {

const char* omp_wait_default_in_effect() { return omp_env_default_applied(); }

namespace {
// libattn depends on libgomp, so the loader runs this after libgomp's initialiser.
__attribute__((constructor)) void restore_user_omp_env() { omp_env_restore(); }
}  // namespace

}  // namespace attn::cpu
