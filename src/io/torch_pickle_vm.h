// src/io/torch_pickle_vm.h — the restricted pickle VM behind TorchFile (io/torch_pickle.h), exposed
// for its tests and fuzz target.
//
//   auto entries = run_state_dict_pickle(pkl, n, lookup, "model.bin");  // name -> tensor entry
//
// Runs the pickle opcodes of protocols 2-5 that torch.save emits, with a fixed table of globals (a
// subset of PyTorch's weights_only allow-list); any other global, and every opcode that could call
// arbitrary code (INST, OBJ, NEWOBJ_EX, EXT*), is a std::runtime_error naming it. Values live in an
// arena, so self-referencing containers cannot leak or recurse.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "attn/io/torch_pickle.h"

namespace attn::io {

// Resolves a storage key (the persistent id's "data/<key>" record) to its bytes in the file:
// sets *begin and *nbytes and returns true, or returns false if there is no such record.
using StorageLookup = std::function<bool(const std::string& key, size_t* begin, size_t* nbytes)>;

// The pickled object must be a mapping of names to tensors (possibly under "state_dict" or
// "model"); non-tensor values are skipped. Every tensor is checked against its storage's size.
std::map<std::string, TorchFile::Entry> run_state_dict_pickle(const uint8_t* pkl, size_t n,
                                                              const StorageLookup& lookup, const std::string& file);

size_t torch_storage_element_size(const std::string& storage_dtype);  // 0 if unknown

}  // namespace attn::io
