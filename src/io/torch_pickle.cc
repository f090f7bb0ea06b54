// src/io/torch_pickle.cc — TorchFile: torch.save's zip archive (io/zip.h) + its data.pkl run by the
// restricted pickle VM (io/torch_pickle_vm.h); tensors are views of the mapped storages when they can be.
#include "attn/io/torch_pickle.h"

#include <cstring>
#include <stdexcept>

#include "io/half.h"
#include "io/mapped_file.h"
#include "io/map_keys.h"
#include "io/printable.h"
#include "io/torch_pickle_vm.h"
#include "io/zip.h"

namespace attn::io {

namespace {

[[noreturn]] void fail(const std::string& file, const std::string& key, const std::string& what) {
  std::string msg = "torch file '" + file + "'";
  if (!key.empty()) msg += ", key '" + printable(key) + "'";
  throw std::runtime_error(msg + ": " + what);
}

// The archive's records live under one folder (its name is the file's stem when saved): "<dir>/data.pkl".
std::string archive_prefix(const ZipArchive& zip, const std::string& file) {
  std::string prefix;
  bool found = false;
  for (const auto& e : zip.entries()) {
    const std::string suffix = "data.pkl";
    if (e.name.size() < suffix.size() || e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    std::string p = e.name.substr(0, e.name.size() - suffix.size());
    if (p.empty() || p.find('/') != p.size() - 1) continue;  // exactly "<dir>/data.pkl"
    if (found) fail(file, "", "the archive holds two pickles ('" + printable(prefix) + "data.pkl', '" + printable(e.name) + "')");
    prefix = p;
    found = true;
  }
  if (!found) fail(file, "", "the zip archive has no '<dir>/data.pkl': not a torch.save file");
  return prefix;
}

struct Parsed {
  const uint8_t* base = nullptr;
  std::map<std::string, TorchFile::Entry> entries;
};

Parsed parse(const uint8_t* d, size_t n, const std::string& file) {
  bool zip_magic = n >= 4 && std::memcmp(d, "PK\x03\x04", 4) == 0;
  if (!zip_magic && n >= 2 && d[0] == 0x80 && d[1] <= 5)
    fail(file, "", "legacy torch.save format (PyTorch < 1.6) or a plain pickle, not a zip archive: not supported; "
                   "re-save it with a current torch.save or as safetensors");
  if (!zip_magic) fail(file, "", "not a torch.save zip archive (no zip signature at the start; truncated or another format)");
  ZipArchive zip = ZipArchive::parse(d, n, file);
  std::string prefix = archive_prefix(zip, file);
  if (const ZipArchive::Entry* bo = zip.find(prefix + "byteorder")) {
    std::string order(reinterpret_cast<const char*>(d + bo->data_offset), bo->size);
    if (order != "little") fail(file, "", "byte order '" + printable(order, 20) + "' is not supported (little-endian only)");
  }
  const ZipArchive::Entry* pkl = zip.find(prefix + "data.pkl");
  StorageLookup lookup = [&](const std::string& key, size_t* begin, size_t* nbytes) {
    const ZipArchive::Entry* e = zip.find(prefix + "data/" + key);
    if (!e) return false;
    *begin = e->data_offset;
    *nbytes = e->size;
    return true;
  };
  Parsed out;
  out.base = d;
  out.entries = run_state_dict_pickle(d + pkl->data_offset, pkl->size, lookup, file);
  return out;
}

bool is_contiguous(const TorchFile::Entry& e) {
  int64_t expected = 1;
  for (size_t d = e.shape.size(); d-- > 0;) {
    if (e.shape[d] != 1 && e.strides[d] != expected) return false;
    expected *= e.shape[d];
  }
  return true;
}

// Copies the strided elements into a contiguous buffer of element size `elem`.
std::vector<uint8_t> gather(const uint8_t* storage, const TorchFile::Entry& e, size_t elem) {
  int64_t numel = numel_of(e.shape);
  std::vector<uint8_t> out(size_t(numel) * elem);
  std::vector<int64_t> idx(e.shape.size(), 0);
  for (int64_t i = 0; i < numel; ++i) {
    int64_t off = e.storage_offset;
    for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * e.strides[d];
    std::memcpy(out.data() + size_t(i) * elem, storage + size_t(off) * elem, elem);
    for (size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < e.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

template <typename From, typename To>
Tensor widen(const std::vector<uint8_t>& bytes, const Shape& shape, DType dtype) {
  std::vector<To> values(bytes.size() / sizeof(From));
  for (size_t i = 0; i < values.size(); ++i) {
    From v;
    std::memcpy(&v, bytes.data() + i * sizeof(From), sizeof(From));
    values[i] = To(v);
  }
  return from_vector(values, shape, {.dtype = dtype});
}

}  // namespace

TorchFile TorchFile::open(const std::string& path) {
  MappedFile m = map_file(path, "torch file");
  Parsed p = parse(m.data, m.size, path);
  TorchFile f;
  f.path_ = path;
  f.owner_ = std::move(m.owner);
  f.base_ = p.base;
  f.entries_ = std::move(p.entries);
  return f;
}

TorchFile TorchFile::from_bytes(std::string bytes, const std::string& name) {
  auto holder = std::make_shared<std::string>(std::move(bytes));
  Parsed p = parse(reinterpret_cast<const uint8_t*>(holder->data()), holder->size(), name);
  TorchFile f;
  f.path_ = name;
  f.owner_ = std::move(holder);
  f.base_ = p.base;
  f.entries_ = std::move(p.entries);
  return f;
}

std::vector<std::string> TorchFile::keys() const { return map_keys(entries_); }

bool TorchFile::contains(const std::string& key) const { return entries_.count(key) != 0; }

Shape TorchFile::shape(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) fail(path_, key, "no such tensor (the file has " + std::to_string(entries_.size()) + " tensors)");
  return it->second.shape;
}

Tensor TorchFile::get(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) fail(path_, key, "no such tensor (the file has " + std::to_string(entries_.size()) + " tensors)");
  const Entry& e = it->second;
  const std::string& t = e.storage_dtype;
  size_t elem = torch_storage_element_size(t);
  const uint8_t* storage = base_ + e.data_begin;
  DType native = t == "FloatStorage" ? kFloat32 : t == "DoubleStorage" ? kFloat64 : t == "LongStorage" ? kInt64
               : t == "IntStorage" ? kInt32 : t == "BFloat16Storage" ? kBFloat16 : t == "ByteStorage" ? kUInt8
               : t == "BoolStorage" ? kBool : kFloat32;
  bool stored_as_is = t != "HalfStorage" && t != "ShortStorage" && t != "CharStorage";
  if (numel_of(e.shape) == 0) return empty(e.shape, {.dtype = stored_as_is ? native : t == "HalfStorage" ? kFloat32 : kInt32});
  const uint8_t* first = storage + size_t(e.storage_offset) * elem;
  if (stored_as_is && t != "BoolStorage" && is_contiguous(e) && reinterpret_cast<uintptr_t>(first) % elem == 0)
    return from_blob(const_cast<uint8_t*>(first), e.shape, native, owner_);  // zero-copy view
  std::vector<uint8_t> bytes = gather(storage, e, elem);
  if (t == "HalfStorage") {
    std::vector<float> values(bytes.size() / 2);
    for (size_t i = 0; i < values.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      values[i] = half_to_float(h);
    }
    return from_vector(values, e.shape);
  }
  if (t == "ShortStorage") return widen<int16_t, int32_t>(bytes, e.shape, kInt32);
  if (t == "CharStorage") return widen<int8_t, int32_t>(bytes, e.shape, kInt32);
  if (t == "BoolStorage")
    for (size_t i = 0; i < bytes.size(); ++i)
      if (bytes[i] > 1) fail(path_, key, "bool element " + std::to_string(i) + " has byte value " + std::to_string(bytes[i]));
  Tensor out = empty(e.shape, {.dtype = native});
  if (!bytes.empty()) std::memcpy(out.raw_data(), bytes.data(), bytes.size());
  return out;
}

}  // namespace attn::io
