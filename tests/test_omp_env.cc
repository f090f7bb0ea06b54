// tests/test_omp_env.cc — attn's default OpenMP wait policy (src/backend/cpu/omp_env.h): the choice
// respects a user's OMP_WAIT_POLICY / GOMP_SPINCOUNT, and the load-time hook leaves the process
// environment as the user set it. That libgomp itself sees the default (the loader's initialiser order)
// is checked by the omp_env_* tests of tests/CMakeLists.txt, which read libgomp's OMP_DISPLAY_ENV report.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "backend/cpu/omp_env.h"

namespace {

using attn::cpu::choose_omp_wait_default;

std::map<std::string, std::string> g_env;  // the environment choose_omp_wait_default sees
const char* fake_getenv(const char* name) {
  auto it = g_env.find(name);
  return it == g_env.end() ? nullptr : it->second.c_str();
}

TEST(OmpEnv, DefaultSpinCountWhenUserSetNoWaitPolicy) {
  g_env = {{"OMP_NUM_THREADS", "2"}, {"OMP_PROC_BIND", "true"}};
  auto d = choose_omp_wait_default(fake_getenv, ATTN_OMP_SPINCOUNT);
  ASSERT_NE(d.name, nullptr);
  EXPECT_STREQ(d.name, "GOMP_SPINCOUNT");
  EXPECT_STREQ(d.value, ATTN_OMP_SPINCOUNT);
}

TEST(OmpEnv, UserWaitPolicyOrSpinCountWins) {
  for (const char* var : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"})
    for (const char* value : {"active", "passive", "300000", ""}) {
      g_env = {{var, value}};
      auto d = choose_omp_wait_default(fake_getenv, ATTN_OMP_SPINCOUNT);
      EXPECT_EQ(d.name, nullptr) << var << "=" << value;
      EXPECT_EQ(d.value, nullptr) << var << "=" << value;
    }
}

// In this process: the hook either set the default (and libattn's initialiser has since unset it again)
// or found the user's setting and left it alone.
TEST(OmpEnv, HookLeavesTheUserEnvironment) {
  const char* applied = attn::cpu::omp_wait_default_in_effect();
  if (applied != nullptr) {
    EXPECT_EQ(std::string(applied), std::string("GOMP_SPINCOUNT=") + ATTN_OMP_SPINCOUNT);
    EXPECT_EQ(std::getenv("GOMP_SPINCOUNT"), nullptr) << "the default leaked into the process environment";
    EXPECT_EQ(std::getenv("OMP_WAIT_POLICY"), nullptr);
  } else {
    EXPECT_TRUE(std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr)
        << "no user wait policy, yet the hook set no default";
  }
}

}  // namespace
