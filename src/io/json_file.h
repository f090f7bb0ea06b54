// src/io/json_file.h — reads a whole JSON file; the errors name the file. Internal to src/ (nlohmann-json stays
// out of the public headers).
//
//   nlohmann::json cfg = attn::io::read_json_file(dir + "/config.json");  // "cannot open ..." / "...: invalid JSON: ..."
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace attn::io {

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": invalid JSON: " + e.what());
  }
}

}  // namespace attn::io
