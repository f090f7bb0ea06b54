// tests/fuzz/fuzz_pickle.cc — libFuzzer target for the torch.save reader (attn/io/torch_pickle.h).
//
//   build-fuzz/tests/fuzz/fuzz_pickle -dict=tests/fuzz/pickle.dict -max_total_time=60 <scratch dir> tests/fuzz/corpus/pickle
//
// An input starting with "PK" is a whole torch.save file (zip + pickle); any other input is the
// pickle alone, wrapped here into an archive with 32 storages "0".."31" of 1 KB each, so the fuzzer
// spends its time in the pickle VM rather than on CRCs. Either way the input must load or throw
// std::runtime_error, and every tensor it yields is read in full.
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "attn/io/torch_pickle.h"

namespace {

void put(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out += char(v >> (8 * i) & 0xff);
}

// A stored zip of `files`, as torch.save lays it out (local headers, central directory, end record).
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out, central;
  for (const auto& [name, data] : files) {
    uint32_t crc = uint32_t(crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
    size_t local = out.size();
    put(out, 0x04034b50, 4), put(out, 20, 2), put(out, 0, 2), put(out, 0, 2), put(out, 0, 4);
    put(out, crc, 4), put(out, data.size(), 4), put(out, data.size(), 4), put(out, name.size(), 2), put(out, 0, 2);
    out += name + data;
    put(central, 0x02014b50, 4), put(central, 20, 2), put(central, 20, 2), put(central, 0, 2), put(central, 0, 2);
    put(central, 0, 4), put(central, crc, 4), put(central, data.size(), 4), put(central, data.size(), 4);
    put(central, name.size(), 2), put(central, 0, 2), put(central, 0, 2), put(central, 0, 2), put(central, 0, 2);
    put(central, 0, 4), put(central, local, 4);
    central += name;
  }
  size_t at = out.size();
  out += central;
  put(out, 0x06054b50, 4), put(out, 0, 2), put(out, 0, 2), put(out, files.size(), 2), put(out, files.size(), 2);
  put(out, central.size(), 4), put(out, at, 4), put(out, 0, 2);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  if (input.rfind("PK", 0) != 0) {
    std::vector<std::pair<std::string, std::string>> files = {{"archive/data.pkl", input}, {"archive/byteorder", "little"}};
    for (int i = 0; i < 32; ++i) {
      std::string storage(1024, '\0');
      for (size_t j = 0; j < storage.size(); ++j) storage[j] = char(i % 2 ? j * 7 + i : j % 2);  // odd: bad bools
      files.push_back({"archive/data/" + std::to_string(i), storage});
    }
    input = make_zip(files);
  }
  try {
    attn::io::TorchFile f = attn::io::TorchFile::from_bytes(std::move(input), "fuzz");
    for (const auto& key : f.keys()) {
      try {
        attn::Tensor t = f.get(key);
        if (t.shape() != f.shape(key)) __builtin_trap();
        const unsigned char* p = static_cast<const unsigned char*>(t.contiguous().raw_data());
        volatile unsigned sum = 0;
        for (size_t i = 0; i < t.nbytes(); ++i) sum = sum + p[i];
      } catch (const std::runtime_error&) {  // e.g. a bool storage holding 7
      }
    }
  } catch (const std::runtime_error&) {
  }
  return 0;
}
