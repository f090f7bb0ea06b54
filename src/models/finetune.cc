// src/models/finetune.cc — freezing by parameter-name pattern (shell globs).
#include "attn/models/finetune.h"

#include <fnmatch.h>

namespace attn::models {

NamedParameters hf_named(const std::vector<nn::VarBuilder::Loaded>& loaded) {
  NamedParameters out;
  out.reserve(loaded.size());
  for (const auto& l : loaded) out.emplace_back(l.key, l.param);
  return out;
}

bool name_matches(const std::string& name, const std::string& pattern) {
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

int64_t set_requires_grad(const NamedParameters& params, const std::string& pattern, bool requires_grad) {
  int64_t n = 0;
  for (const auto& [name, p] : params) {
    if (!name_matches(name, pattern)) continue;
    Tensor t = p;  // a handle on the parameter itself
    t.requires_grad_(requires_grad);
    if (!requires_grad) t.set_grad(Tensor());
    ++n;
  }
  if (n == 0) throw std::invalid_argument("set_requires_grad: pattern '" + pattern + "' matches no parameter");
  return n;
}

}  // namespace attn::models
