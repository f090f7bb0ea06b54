// tests/test_safetensors.cc — safetensors reader/writer: round trips, interop with the official
// package (fixture from tests/make_io_fixtures.py), hostile headers, mutation fuzzing, atomic writes.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "attn/io/safetensors.h"

namespace fs = std::filesystem;
using attn::Shape;
using attn::Tensor;
using attn::io::SafeTensorsFile;

namespace {

// A fresh directory per test, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "attn_io_XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_raw(const std::string& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

// Deterministic contents for every dtype.
Tensor make(attn::DType dt, Shape shape, int salt = 0) {
  Tensor t = attn::empty(shape, {.dtype = dt});
  int64_t n = t.numel();
  attn::dispatch_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(t.raw_data());
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = i + salt;
      if constexpr (std::is_same_v<T, bool>) p[i] = (v % 3) == 0;
      else if constexpr (std::is_same_v<T, attn::BFloat16>) p[i] = attn::BFloat16(float(v) * 0.25f - 3.0f);
      else if constexpr (std::is_same_v<T, uint8_t>) p[i] = uint8_t((v * 37) & 255);
      else if constexpr (std::is_floating_point_v<T>) p[i] = T(v) * T(0.5) - T(3.25);
      else p[i] = T(v * 7919 - 40000);
    }
  });
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return a.nbytes() == 0 || std::memcmp(ca.raw_data(), cb.raw_data(), a.nbytes()) == 0;
}

// A file from a raw header text and data buffer.
std::string raw_file(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// Asserts that parsing `bytes` throws a runtime_error whose message names the file and contains `what`.
void expect_bad(const std::string& bytes, const std::string& what, const std::string& key = "") {
  const std::string name = "hostile.safetensors";
  try {
    SafeTensorsFile f = SafeTensorsFile::from_bytes(bytes, name);
    for (const auto& k : f.keys()) f.get(k);
    ADD_FAILURE() << "no error; expected one containing '" << what << "'";
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(name), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
    if (!key.empty()) {
      EXPECT_NE(msg.find("'" + key + "'"), std::string::npos) << "expected key in: " << msg;
    }
  }
}

const std::string kF32x2 = R"("dtype":"F32","shape":[2])";

}  // namespace

TEST(SafeTensors, RoundTripEveryDType) {
  TempDir dir;
  std::map<std::string, Tensor> in;
  for (attn::DType dt : {attn::kFloat32, attn::kFloat64, attn::kInt32, attn::kInt64, attn::kBool, attn::kUInt8,
                         attn::kBFloat16}) {
    in[std::string("t_") + attn::dtype_name(dt)] = make(dt, {3, 5}, int(dt));
    in[std::string("s_") + attn::dtype_name(dt)] = make(dt, {}, 1);     // 0-d
    in[std::string("e_") + attn::dtype_name(dt)] = make(dt, {0, 4}, 0);  // empty
  }
  std::string path = dir.file("all.safetensors");
  attn::io::save_safetensors(path, in, {{"step", "10"}});
  auto out = attn::io::load_safetensors(path);
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [k, t] : in) {
    ASSERT_TRUE(out.count(k)) << k;
    EXPECT_TRUE(same_bytes(t, out[k])) << k << " " << attn::shape_str(out[k].shape());
  }
  // The in-memory serialisation is byte-identical to the file, and the header is padded to 8 bytes.
  std::string bytes = attn::io::serialize_safetensors(in, {{"step", "10"}});
  EXPECT_EQ(bytes, read_file(path));
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  // Every tensor is aligned to its element size within the data buffer (largest first).
  SafeTensorsFile f = SafeTensorsFile::from_bytes(bytes);
  for (const auto& [k, e] : f.entries()) EXPECT_EQ(e.begin % attn::element_size(e.dtype), 0u) << k;
  EXPECT_EQ(f.metadata().at("step"), "10");
}

TEST(SafeTensors, NonContiguousIsWrittenContiguous) {
  Tensor base = make(attn::kFloat32, {3, 4});
  Tensor tr = base.transpose(0, 1);  // (4, 3), strides (1, 4)
  Tensor sl = base.slice(1, 0, 4, 2);  // (3, 2)
  ASSERT_FALSE(tr.is_contiguous());
  SafeTensorsFile f = SafeTensorsFile::from_bytes(attn::io::serialize_safetensors({{"tr", tr}, {"sl", sl}}));
  Tensor a = f.get("tr"), b = f.get("sl");
  ASSERT_EQ(a.shape(), (Shape{4, 3}));
  ASSERT_EQ(b.shape(), (Shape{3, 2}));
  const float* src = base.data_ptr<float>();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(a.data_ptr<float>()[i * 3 + j], src[j * 4 + i]);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) EXPECT_EQ(b.data_ptr<float>()[i * 2 + j], src[i * 4 + 2 * j]);
}

TEST(SafeTensors, MetadataAndKeys) {
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"unicode", "h\xc3\xa9llo"}, {"empty", ""},
                                             {"json", R"({"a": [1, 2]})"}};
  SafeTensorsFile f = SafeTensorsFile::from_bytes(
      attn::io::serialize_safetensors({{"b", make(attn::kInt64, {2})}, {"a.weight", make(attn::kFloat32, {1})}}, meta));
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_EQ(f.keys(), (std::vector<std::string>{"a.weight", "b"}));
  EXPECT_TRUE(f.contains("b"));
  EXPECT_FALSE(f.contains("c"));
  EXPECT_EQ(f.entries().at("b").dtype_name, "I64");
  // No metadata: no __metadata__ key at all.
  std::string bytes = attn::io::serialize_safetensors({{"x", make(attn::kUInt8, {3})}});
  EXPECT_EQ(bytes.find("__metadata__"), std::string::npos);
}

TEST(SafeTensors, ReadsReferenceFileFromOfficialPackage) {
  std::string path = std::string(ATTN_FIXTURE_DIR) + "/io_reference.safetensors";
  SafeTensorsFile f = SafeTensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("producer"), "make_io_fixtures.py");
  EXPECT_EQ(f.keys().size(), 11u);
  Tensor f32 = f.get("f32");
  ASSERT_EQ(f32.shape(), (Shape{3, 4}));
  for (int i = 0; i < 12; ++i) EXPECT_EQ(f32.data_ptr<float>()[i], float(i) * 0.5f - 1.0f);
  Tensor f64 = f.get("f64");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f64.data_ptr<double>()[i], double(i) / 3.0);
  Tensor i32 = f.get("i32");
  ASSERT_EQ(i32.shape(), (Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(i32.data_ptr<int32_t>()[i], i * -7 + 3);
  EXPECT_EQ(f.get("i64").to_vector<int64_t>(), (std::vector<int64_t>{int64_t(1) << 40, -(int64_t(1) << 40), 0, 1}));
  Tensor b = f.get("bool");
  ASSERT_EQ(b.dtype(), attn::kBool);
  EXPECT_EQ(b.data_ptr<bool>()[0], true);
  EXPECT_EQ(b.data_ptr<bool>()[1], false);
  EXPECT_EQ(b.data_ptr<bool>()[2], true);
  EXPECT_EQ(f.get("u8").to_vector<uint8_t>(), (std::vector<uint8_t>{0, 51, 102, 153, 204, 255}));
  Tensor bf = f.get("bf16");
  ASSERT_EQ(bf.dtype(), attn::kBFloat16);
  const float bf_ref[] = {1.0f, -2.5f, 3.140625f, 0.0078125f};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(float(bf.data_ptr<attn::BFloat16>()[i]), bf_ref[i]);
  Tensor h = f.get("f16");  // converted to float32
  ASSERT_EQ(h.dtype(), attn::kFloat32);
  EXPECT_EQ(f.entries().at("f16").dtype_name, "F16");
  const float* hp = h.data_ptr<float>();
  EXPECT_EQ(hp[0], 1.0f);
  EXPECT_EQ(hp[1], -2.0f);
  EXPECT_EQ(hp[2], 0.5f);
  EXPECT_EQ(hp[3], 65504.0f);
  EXPECT_EQ(hp[4], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(hp[5]) && hp[5] > 0);
  EXPECT_TRUE(hp[6] == 0.0f && std::signbit(hp[6]));
  Tensor s = f.get("scalar");
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.data_ptr<float>()[0], 7.0f);
  EXPECT_EQ(f.get("empty").shape(), (Shape{0, 3}));
  Tensor w = f.get("layer.0.weight");
  ASSERT_EQ(w.shape(), (Shape{3, 2}));
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST(SafeTensors, ZeroCopyViewsOutliveTheFileObject) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  attn::io::save_safetensors(path, {{"w", make(attn::kFloat32, {64, 64})}});
  Tensor w;
  {
    SafeTensorsFile f = SafeTensorsFile::open(path);
    w = f.get("w");
    EXPECT_NE(w.impl()->storage->owner, nullptr);  // wraps the mapping
  }
  // Replacing the file (atomic rename) leaves the old mapping, and so `w`, unchanged.
  attn::io::save_safetensors(path, {{"w", make(attn::kFloat32, {64, 64}, 5)}});
  EXPECT_TRUE(same_bytes(w, make(attn::kFloat32, {64, 64})));
  EXPECT_TRUE(same_bytes(attn::io::load_safetensors(path).at("w"), make(attn::kFloat32, {64, 64}, 5)));
  // Writing into a mapped tensor is private (copy-on-write): the file does not change.
  std::string before = read_file(path);
  Tensor w2 = SafeTensorsFile::open(path).get("w");
  w2.data_ptr<float>()[0] = 12345.0f;
  EXPECT_EQ(read_file(path), before);
}

TEST(SafeTensors, MisalignedDataIsCopied) {
  // U8 (1 byte) then F32 at data offset 1: not 4-aligned, so get() must copy.
  std::string header = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  float vals[2] = {1.5f, -7.25f};
  std::string data(1, '\x2a');
  data.append(reinterpret_cast<const char*>(vals), 8);
  SafeTensorsFile f = SafeTensorsFile::from_bytes(raw_file(header, data), "mis.safetensors");
  Tensor b = f.get("b");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.raw_data()) % 4, 0u);
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{1.5f, -7.25f}));
  EXPECT_EQ(f.get("a").to_vector<uint8_t>(), (std::vector<uint8_t>{42}));
}

TEST(SafeTensors, HostileHeaders) {
  const std::string D8(8, '\0');
  // Sizes and lengths.
  expect_bad("", "shorter than the 8-byte");
  expect_bad(std::string(7, '\0'), "shorter than the 8-byte");
  {
    std::string b = raw_file("{}");
    uint64_t n = 1000;
    std::memcpy(b.data(), &n, 8);
    expect_bad(b, "beyond the end of the file");
    n = uint64_t(200) << 20;
    std::memcpy(b.data(), &n, 8);
    expect_bad(b, "100 MB");
    n = ~uint64_t(0);
    std::memcpy(b.data(), &n, 8);
    expect_bad(b, "100 MB");
  }
  expect_bad(raw_file(""), "too short");
  // JSON.
  expect_bad(raw_file("{\"a\": "), "not valid JSON");
  expect_bad(raw_file("{'a': 1}"), "not valid JSON");
  expect_bad(raw_file("{\"a\": \"\xff\xfe\"}"), "not valid JSON");  // invalid UTF-8
  expect_bad(raw_file("[1, 2]"), "must be a JSON object");
  expect_bad(raw_file("\"x\""), "must be a JSON object");
  expect_bad(raw_file(std::string(5000, '[') + std::string(5000, ']')), "nested too deeply");
  expect_bad(raw_file(R"({"a": )" + std::string(100, '{') + std::string(100, '}') + "}"), "nested too deeply");
  // Entries.
  expect_bad(raw_file(R"({"w": 5})"), "entry must be an object", "w");
  expect_bad(raw_file(R"({"w": [1]})"), "entry must be an object", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"F32","shape":[2]}})", D8), "data_offsets", "w");
  expect_bad(raw_file(R"({"w": {"shape":[2],"data_offsets":[0,8]}})", D8), "dtype", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", D8), "unknown dtype 'F17'", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"I8","shape":[8],"data_offsets":[0,8]}})", D8), "unsupported dtype 'I8'", "w");
  expect_bad(raw_file(R"({"w": {"dtype":4,"shape":[2],"data_offsets":[0,8]}})", D8), "dtype must be a string", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", D8), "unknown dtype", "w");
  // Shapes.
  expect_bad(raw_file(R"({"w": {"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", D8), "negative", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", D8), "non-negative integer", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", D8), "non-negative integer", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"F32","shape":2,"data_offsets":[0,8]}})", D8), "shape must be an array", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", D8),
             "overflows the element count", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})", D8),
             "overflows", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}})", D8),
             "overflows the byte size", "w");
  expect_bad(raw_file(R"({"w": {"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,8]}})", D8),
             "non-negative integer", "w");
  // Offsets.
  expect_bad(raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":[0,8,16]}})", D8), "data_offsets must be [begin, end]", "w");
  expect_bad(raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":[8]}})", D8), "data_offsets must be [begin, end]", "w");
  expect_bad(raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":"0,8"}})", D8), "data_offsets must be [begin, end]", "w");
  expect_bad(raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":[-8,0]}})", D8), "negative", "w");
  expect_bad(raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":[0,8.5]}})", D8), "non-negative integer", "w");
  expect_bad(raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":[8,0]}})", D8), "end 0 < begin 8", "w");
  expect_bad(raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":[0,16]}})", D8), "beyond the data buffer", "w");
  expect_bad(raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":[0,18446744073709551615]}})", D8),
             "beyond the data buffer", "w");
  expect_bad(raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":[0,4]}})", D8), "!= F32 x shape (2,)", "w");
  // Coverage of the buffer: overlaps, holes, trailing bytes.
  expect_bad(raw_file(R"({"a": {)" + kF32x2 + R"(,"data_offsets":[0,8]},"b": {)" + kF32x2 +
                          R"(,"data_offsets":[4,12]}})",
                      std::string(12, '\0')),
             "overlaps tensor 'a'", "b");
  expect_bad(raw_file(R"({"a": {)" + kF32x2 + R"(,"data_offsets":[0,8]},"b": {)" + kF32x2 +
                          R"(,"data_offsets":[0,8]}})",
                      D8),
             "overlaps");
  expect_bad(raw_file(R"({"a": {"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b": {"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                      std::string(12, '\0')),
             "hole in the data buffer", "b");
  expect_bad(raw_file(R"({"a": {"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", D8), "hole", "a");
  expect_bad(raw_file(R"({"a": {)" + kF32x2 + R"(,"data_offsets":[0,8]}})", D8 + "xyz"), "3 trailing bytes");
  expect_bad(raw_file("{}", "x"), "1 trailing bytes");
  // Duplicate keys (the JSON library alone would keep the last one silently).
  expect_bad(raw_file(R"({"a": {)" + kF32x2 + R"(,"data_offsets":[0,8]},"a": {)" + kF32x2 +
                          R"(,"data_offsets":[0,8]}})",
                      D8),
             "duplicate key", "a");
  expect_bad(raw_file(R"({"a": {)" + kF32x2 + R"(,"data_offsets":[0,8],"dtype":"I32"}})", D8), "duplicate key",
             "dtype");
  // Metadata.
  expect_bad(raw_file(R"({"__metadata__": {"x": 1}})"), "metadata value must be a string", "__metadata__.x");
  expect_bad(raw_file(R"({"__metadata__": ["x"]})"), "must be an object of strings", "__metadata__");
  // Values.
  expect_bad(raw_file(R"({"m": {"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", std::string("\x01\x02", 2)),
             "byte value 2", "m");
  // Hostile key names are printed escaped.
  expect_bad(raw_file("{\"k\\n\\u0001\": 3}"), "k\\x0a\\x01");
}

TEST(SafeTensors, ErrorsNameTheFileOnDisk) {
  TempDir dir;
  std::string p = dir.file("short.safetensors");
  write_raw(p, "abc");
  try {
    SafeTensorsFile::open(p);
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  p = dir.file("lying.safetensors");
  write_raw(p, raw_file(R"({"w": {)" + kF32x2 + R"(,"data_offsets":[0,8]}})", "1234"));
  try {
    SafeTensorsFile::open(p);
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
  }
  EXPECT_THROW(SafeTensorsFile::open(dir.file("missing.safetensors")), std::runtime_error);
  EXPECT_THROW(SafeTensorsFile::open(dir.path.string()), std::runtime_error);  // a directory
  SafeTensorsFile ok = SafeTensorsFile::from_bytes(attn::io::serialize_safetensors({{"a", make(attn::kInt32, {2})}}));
  try {
    ok.get("nope");
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("no such tensor"), std::string::npos);
  }
}

TEST(SafeTensors, WriterRejectsBadInput) {
  EXPECT_THROW(attn::io::serialize_safetensors({{"a", Tensor()}}), std::runtime_error);
  EXPECT_THROW(attn::io::serialize_safetensors({{"__metadata__", make(attn::kFloat32, {1})}}), std::runtime_error);
  EXPECT_THROW(attn::io::serialize_safetensors({{"bad\xff", make(attn::kFloat32, {1})}}), std::runtime_error);
}

// Thousands of corrupted variants of a valid file: each must parse or throw, never crash or read out
// of bounds (run under the ASan build to make that meaningful).
TEST(SafeTensors, MutationFuzz) {
  std::map<std::string, Tensor> tensors = {{"w", make(attn::kFloat32, {3, 4})}, {"b", make(attn::kFloat64, {4})},
                                           {"idx", make(attn::kInt64, {2})},    {"m", make(attn::kBool, {5})},
                                           {"h", make(attn::kBFloat16, {3})},   {"i", make(attn::kInt32, {0})}};
  const std::string valid = attn::io::serialize_safetensors(tensors, {{"k", "v"}});
  std::mt19937_64 rng(1234);
  auto uniform = [&](size_t n) { return size_t(rng() % std::max<size_t>(n, 1)); };
  int ok = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::string s = valid;
    switch (iter % 6) {
      case 0:  // random byte flips
        for (int k = 0, n = 1 + int(uniform(8)); k < n; ++k) s[uniform(s.size())] = char(rng());
        break;
      case 1:  // truncation
        s.resize(uniform(s.size()));
        break;
      case 2: {  // change a digit in the header: lying shapes and offsets
        for (int k = 0, n = 1 + int(uniform(3)); k < n; ++k) {
          size_t pos = 8 + uniform(s.size() - 8);
          for (; pos < s.size(); ++pos)
            if (std::isdigit(static_cast<unsigned char>(s[pos]))) break;
          if (pos < s.size()) s[pos] = char('0' + uniform(10));
        }
        break;
      }
      case 3: {  // lying header length
        uint64_t n = rng() % (s.size() + 16);
        std::memcpy(s.data(), &n, 8);
        break;
      }
      case 4:  // inserted or deleted bytes
        if (rng() & 1) s.insert(uniform(s.size()), std::string(1 + uniform(16), char(rng())));
        else s.erase(uniform(s.size()), 1 + uniform(16));
        break;
      case 5: {  // structural JSON characters
        const char chars[] = "{}[]\",:-0e";
        for (int k = 0, n = 1 + int(uniform(4)); k < n; ++k) s[8 + uniform(s.size() - 8)] = chars[uniform(10)];
        break;
      }
    }
    try {
      SafeTensorsFile f = SafeTensorsFile::from_bytes(s, "fuzz");
      for (const auto& k : f.keys()) {
        Tensor t = f.get(k);
        const unsigned char* p = static_cast<const unsigned char*>(t.raw_data());
        unsigned sum = 0;
        for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];  // touch every byte
        (void)sum;
      }
      ++ok;
    } catch (const std::runtime_error&) {
      ++rejected;
    }
  }
  EXPECT_GT(ok, 100);
  EXPECT_GT(rejected, 1000);
}

TEST(SafeTensors, AtomicWriteKeepsOldFileOnFailure) {
  TempDir dir;
  std::string path = dir.file("ckpt.safetensors");
  attn::io::save_safetensors(path, {{"w", make(attn::kFloat32, {4})}});
  const std::string old = read_file(path);
  auto only_the_file = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir.path)) {
      ++n;
      EXPECT_EQ(e.path().filename(), "ckpt.safetensors") << "left behind: " << e.path();
    }
    EXPECT_EQ(n, 1);
  };
  // The producer throws after writing part of the new content.
  EXPECT_THROW(attn::io::write_file_atomic(path,
                                           [](const attn::io::ByteSink& write) {
                                             write("partial", 7);
                                             throw std::runtime_error("disk on fire");
                                           }),
               std::runtime_error);
  EXPECT_EQ(read_file(path), old);
  only_the_file();
  // A tensor that cannot be written: rejected before the disk is touched.
  EXPECT_THROW(attn::io::save_safetensors(path, {{"w", make(attn::kFloat32, {4})}, {"x", Tensor()}}),
               std::runtime_error);
  EXPECT_EQ(read_file(path), old);
  only_the_file();
  // The rename fails (the target is a non-empty directory): the temp file is removed.
  fs::create_directory(dir.path / "sub");
  write_raw((dir.path / "sub" / "f").string(), "x");
  try {
    attn::io::write_file_atomic((dir.path / "sub").string(), "data");
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("sub"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file((dir.path / "sub" / "f").string()), "x");
  fs::remove_all(dir.path / "sub");
  only_the_file();
  // A directory that does not exist: clear error naming it.
  try {
    attn::io::write_file_atomic(dir.file("nodir/x.bin"), "data");
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("nodir"), std::string::npos) << e.what();
  }
  // A directory we may not write into (only meaningful when not running as root).
  if (::geteuid() != 0) {
    fs::permissions(dir.path, fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_THROW(attn::io::save_safetensors(path, {{"w", make(attn::kFloat32, {4}, 9)}}), std::runtime_error);
    fs::permissions(dir.path, fs::perms::owner_all);
    EXPECT_EQ(read_file(path), old);
  }
  only_the_file();
  // Success replaces the content and keeps the file's permission bits.
  ::chmod(path.c_str(), 0600);
  attn::io::write_file_atomic(path, std::string("new"));
  EXPECT_EQ(read_file(path), "new");
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  only_the_file();
}
