// tests/expect_error.h — checks that code throws std::runtime_error whose message holds every given part.
//
//   expect_error([&] { HFCheckpoint::open(dir); }, {"config.json", "missing"});
#pragma once
#include <gtest/gtest.h>

#include <initializer_list>
#include <stdexcept>
#include <string>

namespace attn_test {

template <typename F>
void expect_error_(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << *parts.begin();
  } catch (const std::runtime_error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  }
}

}  // namespace attn_test

// A macro so that a failure names the caller's line.
#define expect_error(...)                  \
  do {                                     \
    SCOPED_TRACE("here");                  \
    attn_test::expect_error_(__VA_ARGS__); \
  } while (0)
