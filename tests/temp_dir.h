// tests/temp_dir.h — a fresh directory under the system temp dir, removed with all it holds at scope end.
//
//   attn_test::TempDir tmp("attn_lora");            // e.g. /tmp/attn_lora_a8Xk2Q
//   tmp.write("config.json", "{}");                 // tmp.file("config.json") is its path
#pragma once
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace attn_test {

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& prefix) {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;  // a destructor must not throw
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (std::filesystem::path(path) / name).string(); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(file(name), std::ios::binary) << text; }
};

}  // namespace attn_test
