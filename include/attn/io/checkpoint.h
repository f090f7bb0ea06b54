// attn/io/checkpoint.h — one-file training checkpoints (a safetensors file; loadable by any reader).
//
//   attn::io::Checkpoint ck;
//   ck.model = model.state_dict();                  // name -> Tensor
//   ck.optimizer = optimizer.state_dict_tensors();  // name -> Tensor
//   ck.step = step;
//   ck.rng = attn::default_generator().state();
//   ck.extra_json = R"({"epoch": 3, "loader": {"epoch": 3, "batch": 117}})";
//   attn::io::save_checkpoint("run/ckpt.safetensors", ck);   // atomic: old file intact on failure
//   attn::io::Checkpoint back = attn::io::load_checkpoint("run/ckpt.safetensors");
//
// File layout: tensors "model.<name>" and "optimizer.<name>"; __metadata__ holds
// "attn.format" = "checkpoint/1", "attn.step", "attn.rng_seed", "attn.rng_offset" (decimal strings)
// and "attn.extra" (the JSON text of extra_json, validated on save and on load).
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "attn/random.h"
#include "attn/tensor.h"

namespace attn::io {

struct Checkpoint {
  std::map<std::string, Tensor> model;
  std::map<std::string, Tensor> optimizer;
  int64_t step = 0;
  GeneratorState rng;
  std::string extra_json = "{}";  // any JSON value (usually an object) with run state: epoch, loader, ...
};

void save_checkpoint(const std::string& path, const Checkpoint& ckpt);
// Loaded tensors own their memory (copied out of the file), so the file may be replaced right away.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace attn::io
