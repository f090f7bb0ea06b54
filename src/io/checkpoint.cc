// src/io/checkpoint.cc — Checkpoint <-> one safetensors file (see attn/io/checkpoint.h).
#include "attn/io/checkpoint.h"

#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "attn/io/safetensors.h"
#include "backend/backend.h"

namespace attn::io {
namespace {

constexpr const char* kFormat = "checkpoint/1";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("checkpoint '" + path + "': " + what);
}

template <typename T>
T parse_number(const std::map<std::string, std::string>& meta, const char* key, const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) fail(path, std::string("metadata '") + key + "' is missing");
  const std::string& s = it->second;
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty())
    fail(path, std::string("metadata '") + key + "' = '" + s.substr(0, 60) + "' is not a valid integer");
  return v;
}

void check_json(const std::string& text, const std::string& path, const char* when) {
  if (!nlohmann::json::accept(text)) fail(path, std::string(when) + ": extra_json is not valid JSON: " + text.substr(0, 80));
}

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  check_json(ckpt.extra_json, path, "save");
  std::map<std::string, Tensor> tensors;
  for (const auto& [k, t] : ckpt.model) {
    if (!t.defined()) fail(path, "model tensor '" + k + "' is undefined");
    tensors.emplace("model." + k, t);
  }
  for (const auto& [k, t] : ckpt.optimizer) {
    if (!t.defined()) fail(path, "optimizer tensor '" + k + "' is undefined");
    tensors.emplace("optimizer." + k, t);
  }
  std::map<std::string, std::string> meta = {
      {"attn.format", kFormat},
      {"attn.step", std::to_string(ckpt.step)},
      {"attn.rng_seed", std::to_string(ckpt.rng.seed)},
      {"attn.rng_offset", std::to_string(ckpt.rng.offset)},
      {"attn.extra", ckpt.extra_json},
  };
  save_safetensors(path, tensors, meta);
}

Checkpoint load_checkpoint(const std::string& path) {
  SafeTensorsFile f = SafeTensorsFile::open(path);
  const auto& meta = f.metadata();
  auto fmt = meta.find("attn.format");
  if (fmt == meta.end()) fail(path, "not an attn checkpoint (no 'attn.format' metadata)");
  if (fmt->second != kFormat) fail(path, "unsupported checkpoint format '" + fmt->second.substr(0, 60) + "'");
  Checkpoint ck;
  ck.step = parse_number<int64_t>(meta, "attn.step", path);
  ck.rng.seed = parse_number<uint64_t>(meta, "attn.rng_seed", path);
  ck.rng.offset = parse_number<uint64_t>(meta, "attn.rng_offset", path);
  auto extra = meta.find("attn.extra");
  ck.extra_json = extra == meta.end() ? "{}" : extra->second;
  check_json(ck.extra_json, path, "load");
  for (const auto& [key, e] : f.entries()) {
    Tensor view = f.get(key);
    // Own the data: copy out of the mapping so the file can be replaced or deleted.
    Tensor t = empty(view.shape(), {.dtype = view.dtype()});
    if (t.nbytes() > 0) backend::backend_for(t.device()).copy_from_host(view.raw_data(), backend::ref(t));
    if (key.rfind("model.", 0) == 0) {
      ck.model.emplace(key.substr(6), std::move(t));
    } else if (key.rfind("optimizer.", 0) == 0) {
      ck.optimizer.emplace(key.substr(10), std::move(t));
    } else {
      fail(path, "tensor '" + key + "' is neither 'model.*' nor 'optimizer.*'");
    }
  }
  return ck;
}

}  // namespace attn::io
