// src/io/map_keys.h — the keys of a tensor-name map, in order: what SafeTensorsFile, TorchFile and HFCheckpoint
// return from keys(). Internal to src/io.
//
//   std::vector<std::string> names = attn::io::map_keys(entries_);  // std::map<std::string, Entry>
#pragma once
#include <map>
#include <string>
#include <vector>

namespace attn::io {

template <typename Value>
std::vector<std::string> map_keys(const std::map<std::string, Value>& map) {
  std::vector<std::string> out;
  out.reserve(map.size());
  for (const auto& kv : map) out.push_back(kv.first);
  return out;
}

}  // namespace attn::io
