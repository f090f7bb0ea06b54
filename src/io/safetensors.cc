// src/io/safetensors.cc — safetensors reader (mmap, zero-copy, fully validated) and atomic writer.
//
// Reading never trusts the file: every length, offset and shape is checked before any data is
// touched, and each error is a std::runtime_error naming the file (and the tensor key, if any).
#include "attn/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <stdexcept>

#include "attn/autograd.h"
#include "backend/backend.h"
#include "io/half.h"
#include "io/mapped_file.h"
#include "io/map_keys.h"
#include "io/printable.h"

namespace attn::io {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

using json = nlohmann::json;

constexpr size_t kMaxHeaderBytes = 100u << 20;  // like the reference implementation
constexpr int kMaxJsonDepth = 64;
constexpr size_t kMaxDims = 64;

struct FileDType {
  const char* name;
  DType dtype;       // what get() returns
  size_t file_size;  // bytes per element in the file
  bool f16;          // IEEE half, converted to float32 on load
};
constexpr FileDType kFileDTypes[] = {
    {"F32", kFloat32, 4, false}, {"F64", kFloat64, 8, false}, {"I32", kInt32, 4, false},
    {"I64", kInt64, 8, false},   {"BOOL", kBool, 1, false},   {"U8", kUInt8, 1, false},
    {"BF16", kBFloat16, 2, false}, {"F16", kFloat32, 2, true},
};
constexpr const char* kKnownUnsupported[] = {"I8", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2",
                                             "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};

const FileDType* find_file_dtype(const std::string& name) {
  for (const auto& d : kFileDTypes)
    if (name == d.name) return &d;
  return nullptr;
}
const char* file_dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int32: return "I32";
    case DType::Int64: return "I64";
    case DType::Bool: return "BOOL";
    case DType::UInt8: return "U8";
    case DType::BFloat16: return "BF16";
  }
  return "?";
}

[[noreturn]] void fail(const std::string& file, const std::string& key, const std::string& what) {
  std::string msg = "safetensors file '" + file + "'";
  if (!key.empty()) msg += ", key '" + printable(key) + "'";
  throw std::runtime_error(msg + ": " + what);
}

std::string errno_str() { return std::strerror(errno); }

// Maximum nesting depth of [ and { outside strings, computed without building anything, so a
// hostile header like "[[[[..." cannot make the JSON parser allocate gigabytes.
int json_depth(const char* p, size_t n) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escape = false;
  for (size_t i = 0; i < n; ++i) {
    char c = p[i];
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > kMaxJsonDepth) return max_depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

uint64_t json_uint(const json& v, const std::string& file, const std::string& key, const char* what) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer()) fail(file, key, std::string(what) + " is negative: " + v.dump());
    fail(file, key, std::string(what) + " must be a non-negative integer, got " + v.dump().substr(0, 100));
  }
  return v.get<uint64_t>();
}

// nlohmann-json keeps the last of two equal keys silently; this SAX pass finds the first duplicate
// with one hash set per open object, so it stays linear in the header size (a callback parser
// rescans the enclosing object after every entry: minutes for 200,000 entries).
class DuplicateKeyFinder : public nlohmann::json_sax<json> {
 public:
  std::string duplicate;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    open_.emplace_back();
    return true;
  }
  bool key(string_t& k) override {
    if (!open_.back().insert(k).second) duplicate = k;
    return duplicate.empty();  // stop at the first one
  }
  bool end_object() override {
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  std::vector<std::unordered_set<std::string>> open_;
};

std::string find_duplicate_key(const char* text, size_t n) {
  DuplicateKeyFinder finder;
  json::sax_parse(text, text + n, &finder);
  return finder.duplicate;
}

struct Parsed {
  const uint8_t* data = nullptr;
  size_t data_size = 0;
  std::map<std::string, SafeTensorsFile::Entry> entries;
  std::map<std::string, std::string> metadata;
};

Parsed parse(const uint8_t* bytes, size_t size, const std::string& file) {
  if (size < 8)
    fail(file, "", "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, bytes, 8);
  if (n > kMaxHeaderBytes)
    fail(file, "", "header length " + std::to_string(n) + " exceeds the 100 MB limit (corrupt file?)");
  if (n > size - 8)
    fail(file, "", "header length " + std::to_string(n) + " is beyond the end of the file (" +
                       std::to_string(size) + " bytes)");
  if (n < 2) fail(file, "", "header length " + std::to_string(n) + " is too short for a JSON object");
  const char* hdr = reinterpret_cast<const char*>(bytes + 8);
  if (json_depth(hdr, n) > kMaxJsonDepth) fail(file, "", "header JSON is nested too deeply");

  json header;
  try {
    header = json::parse(hdr, hdr + n);
  } catch (const json::exception& e) {
    fail(file, "", std::string("header is not valid JSON: ") + e.what());
  }
  std::string duplicate = find_duplicate_key(hdr, n);
  if (!duplicate.empty()) fail(file, duplicate, "duplicate key in header JSON");
  if (!header.is_object()) fail(file, "", std::string("header must be a JSON object, got ") + header.type_name());

  Parsed out;
  out.data = bytes + 8 + n;
  out.data_size = size - 8 - size_t(n);
  for (const auto& [key, val] : header.items()) {
    if (key == "__metadata__") {
      if (!val.is_object()) fail(file, key, "must be an object of strings");
      for (const auto& [mk, mv] : val.items()) {
        if (!mv.is_string())
          fail(file, "__metadata__." + mk, std::string("metadata value must be a string, got ") + mv.type_name());
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    if (!val.is_object()) fail(file, key, std::string("entry must be an object, got ") + val.type_name());
    auto dt = val.find("dtype");
    auto sh = val.find("shape");
    auto off = val.find("data_offsets");
    if (dt == val.end() || sh == val.end() || off == val.end())
      fail(file, key, "entry needs \"dtype\", \"shape\" and \"data_offsets\"");
    if (!dt->is_string()) fail(file, key, "dtype must be a string");
    const std::string& dname = dt->get_ref<const std::string&>();
    const FileDType* fdt = find_file_dtype(dname);
    if (!fdt) {
      bool known = std::any_of(std::begin(kKnownUnsupported), std::end(kKnownUnsupported),
                               [&](const char* s) { return dname == s; });
      fail(file, key, (known ? "unsupported dtype '" : "unknown dtype '") + printable(dname) + "'");
    }
    if (!sh->is_array()) fail(file, key, "shape must be an array of non-negative integers");
    if (sh->size() > kMaxDims) fail(file, key, "shape has " + std::to_string(sh->size()) + " dims (max 64)");
    SafeTensorsFile::Entry e;
    e.dtype = fdt->dtype;
    e.dtype_name = dname;
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      uint64_t v = json_uint(d, file, key, "shape dim");
      if (v > uint64_t(std::numeric_limits<int64_t>::max()) || __builtin_mul_overflow(numel, v, &numel) ||
          numel > uint64_t(std::numeric_limits<int64_t>::max()))
        fail(file, key, "shape " + sh->dump() + " overflows the element count");
      e.shape.push_back(int64_t(v));
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, uint64_t(fdt->file_size), &nbytes))
      fail(file, key, "shape " + sh->dump() + " overflows the byte size");
    if (!off->is_array() || off->size() != 2)
      fail(file, key, "data_offsets must be [begin, end], got " + off->dump().substr(0, 100));
    uint64_t begin = json_uint((*off)[0], file, key, "data_offsets begin");
    uint64_t end = json_uint((*off)[1], file, key, "data_offsets end");
    if (end < begin)
      fail(file, key, "data_offsets end " + std::to_string(end) + " < begin " + std::to_string(begin));
    if (end > out.data_size)
      fail(file, key, "data_offsets end " + std::to_string(end) + " is beyond the data buffer (" +
                          std::to_string(out.data_size) + " bytes)");
    if (end - begin != nbytes)
      fail(file, key, "data size " + std::to_string(end - begin) + " bytes != " + dname + " x shape " +
                          shape_str(e.shape) + " = " + std::to_string(nbytes) + " bytes");
    e.begin = size_t(begin);
    e.end = size_t(end);
    out.entries.emplace(key, std::move(e));
  }

  // The entries must tile the data buffer exactly: no overlaps, no holes, nothing left over.
  std::vector<std::pair<const std::string*, const SafeTensorsFile::Entry*>> order;
  for (const auto& [k, e] : out.entries) order.push_back({&k, &e});
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return std::pair(a.second->begin, a.second->end) < std::pair(b.second->begin, b.second->end);
  });
  size_t pos = 0;
  const std::string* prev = nullptr;
  for (const auto& [k, e] : order) {
    if (e->begin < pos)
      fail(file, *k, "data [" + std::to_string(e->begin) + ", " + std::to_string(e->end) +
                         ") overlaps tensor '" + printable(*prev) + "'");
    if (e->begin > pos)
      fail(file, *k, "hole in the data buffer: bytes [" + std::to_string(pos) + ", " +
                         std::to_string(e->begin) + ") belong to no tensor");
    pos = e->end;
    prev = k;
  }
  if (pos != out.data_size)
    fail(file, "", "data buffer has " + std::to_string(out.data_size - pos) +
                       " trailing bytes that belong to no tensor");
  return out;
}

Tensor copy_out(const uint8_t* p, const SafeTensorsFile::Entry& e) {
  Tensor out = empty(e.shape, {.dtype = e.dtype});
  if (e.end > e.begin) backend::backend_for(out.device()).copy_from_host(p, backend::ref(out));
  return out;
}

// ---- writing

void write_all(int fd, const void* data, size_t n, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, std::min(n, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("write_file_atomic: writing " + what + " failed: " + errno_str());
    }
    p += w;
    n -= size_t(w);
  }
}

struct Plan {
  std::string header;               // length prefix + JSON + space padding
  std::vector<Tensor> ordered;      // contiguous CPU tensors, in file order
  size_t data_bytes = 0;
};

Plan plan_file(const std::map<std::string, Tensor>& tensors, const std::map<std::string, std::string>& metadata) {
  NoGradGuard no_grad;
  std::vector<std::pair<const std::string*, Tensor>> items;
  for (const auto& [k, t] : tensors) {
    if (k == "__metadata__") throw std::runtime_error("save_safetensors: '__metadata__' is reserved, not a tensor name");
    if (!t.defined()) throw std::runtime_error("save_safetensors: tensor '" + k + "' is undefined");
    Tensor c = t.device() == kCPU ? t : t.to(kCPU);
    items.push_back({&k, c.contiguous()});
  }
  // Largest elements first, so every tensor stays aligned to its element size in the file.
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return element_size(a.second.dtype()) > element_size(b.second.dtype());
  });
  json h = json::object();
  Plan plan;
  for (auto& [k, t] : items) {
    size_t nb = t.nbytes();
    h[*k] = {{"dtype", file_dtype_name(t.dtype())}, {"shape", t.shape()},
             {"data_offsets", {plan.data_bytes, plan.data_bytes + nb}}};
    plan.data_bytes += nb;
    plan.ordered.push_back(std::move(t));
  }
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::string text;
  try {
    text = h.dump();
  } catch (const json::exception& e) {
    throw std::runtime_error(std::string("save_safetensors: a key or metadata value is not valid UTF-8: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t n = text.size();
  plan.header.resize(8);
  std::memcpy(plan.header.data(), &n, 8);
  plan.header += text;
  return plan;
}

}  // namespace

// ---- SafeTensorsFile

SafeTensorsFile SafeTensorsFile::open(const std::string& path) {
  MappedFile m = map_file(path, "safetensors file");
  Parsed p = parse(m.data, m.size, path);
  SafeTensorsFile f;
  f.path_ = path;
  f.owner_ = std::move(m.owner);
  f.data_ = p.data;
  f.data_size_ = p.data_size;
  f.entries_ = std::move(p.entries);
  f.metadata_ = std::move(p.metadata);
  return f;
}

SafeTensorsFile SafeTensorsFile::from_bytes(std::string bytes, const std::string& name) {
  auto holder = std::make_shared<std::string>(std::move(bytes));
  Parsed p = parse(reinterpret_cast<const uint8_t*>(holder->data()), holder->size(), name);
  SafeTensorsFile f;
  f.path_ = name;
  f.owner_ = std::move(holder);
  f.data_ = p.data;
  f.data_size_ = p.data_size;
  f.entries_ = std::move(p.entries);
  f.metadata_ = std::move(p.metadata);
  return f;
}

std::vector<std::string> SafeTensorsFile::keys() const { return map_keys(entries_); }

bool SafeTensorsFile::contains(const std::string& key) const { return entries_.count(key) != 0; }

Tensor SafeTensorsFile::get(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end())
    fail(path_, key, "no such tensor (the file has " + std::to_string(entries_.size()) + " tensors)");
  const Entry& e = it->second;
  const uint8_t* p = data_ + e.begin;
  size_t n = e.end - e.begin;
  if (e.dtype_name == "F16") {  // converted on the host, then one copy into the tensor
    std::vector<float> values(n / 2);
    for (size_t i = 0; i < n / 2; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      values[i] = half_to_float(h);
    }
    return from_vector(values, e.shape);
  }
  if (e.dtype == kBool) {
    for (size_t i = 0; i < n; ++i)
      if (p[i] > 1) fail(path_, key, "BOOL element " + std::to_string(i) + " has byte value " + std::to_string(p[i]));
  }
  if (reinterpret_cast<uintptr_t>(p) % element_size(e.dtype) != 0) return copy_out(p, e);
  return from_blob(const_cast<uint8_t*>(p), e.shape, e.dtype, owner_);
}

// ---- free functions

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  SafeTensorsFile f = SafeTensorsFile::open(path);
  std::map<std::string, Tensor> out;
  for (const auto& kv : f.entries()) out.emplace(kv.first, f.get(kv.first));
  return out;
}

std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  Plan plan = plan_file(tensors, metadata);
  std::string out;
  out.reserve(plan.header.size() + plan.data_bytes);
  out += plan.header;
  for (const Tensor& t : plan.ordered) out.append(static_cast<const char*>(t.raw_data()), t.nbytes());
  return out;
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  Plan plan = plan_file(tensors, metadata);  // throws before anything touches the disk
  write_file_atomic(path, [&](const ByteSink& write) {
    write(plan.header.data(), plan.header.size());
    for (const Tensor& t : plan.ordered)
      if (t.nbytes() > 0) write(t.raw_data(), t.nbytes());
  });
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, [&](const ByteSink& write) { write(bytes.data(), bytes.size()); });
}

void write_file_atomic(const std::string& path, const std::function<void(const ByteSink& write)>& produce) {
  namespace fs = std::filesystem;
  fs::path target(path);
  if (target.filename().empty()) throw std::runtime_error("write_file_atomic: '" + path + "' names no file");
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  std::string tmpl = (dir / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
  std::vector<char> tmp(tmpl.begin(), tmpl.end());
  tmp.push_back('\0');
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error("write_file_atomic: cannot create a temp file in '" + dir.string() + "' for '" +
                             path + "': " + errno_str());
  std::string tmp_path(tmp.data());
  try {
    struct stat st;
    mode_t mode = ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
    if (::fchmod(fd, mode) != 0)
      throw std::runtime_error("write_file_atomic: chmod of '" + tmp_path + "' failed: " + errno_str());
    produce([&](const void* data, size_t n) { write_all(fd, data, n, "'" + tmp_path + "'"); });
    if (::fsync(fd) != 0)
      throw std::runtime_error("write_file_atomic: fsync of '" + tmp_path + "' failed: " + errno_str());
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) throw std::runtime_error("write_file_atomic: close of '" + tmp_path + "' failed: " + errno_str());
    if (::rename(tmp_path.c_str(), path.c_str()) != 0)
      throw std::runtime_error("write_file_atomic: cannot rename '" + tmp_path + "' to '" + path +
                               "': " + errno_str());
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp_path.c_str());
    throw;
  }
  // Make the rename durable. Some file systems refuse fsync on directories: the data is in place, so
  // that is not an error.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace attn::io
