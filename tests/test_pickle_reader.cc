// tests/test_pickle_reader.cc — torch.save reader (io/torch_pickle.h): tensors equal to PyTorch's
// (strides, offsets, shared storages, every dtype; fixtures from tests/make_hf_fixtures.py), hostile
// pickles refused by name, and zip archives that lie about their entries.
#include <cstring>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "attn/io/safetensors.h"
#include "attn/io/torch_pickle.h"
#include "expect_error.h"
#include "io/torch_pickle_vm.h"
#include "io/zip.h"

using attn::Tensor;
using attn::io::TorchFile;

namespace {

const std::string kHF = std::string(ATTN_FIXTURE_DIR) + "/hf/";

std::string read_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  EXPECT_TRUE(f.good()) << p;
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.nbytes() == cb.nbytes() && (ca.nbytes() == 0 || std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0);
}

void put_u32(std::string& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }
uint32_t get_u32(const std::string& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}
// Offset of the central-directory header of the entry whose name ends with `suffix`.
size_t central_header(const std::string& b, const std::string& suffix) {
  for (size_t pos = b.find("PK\x01\x02"); pos != std::string::npos; pos = b.find("PK\x01\x02", pos + 1)) {
    uint16_t n;
    std::memcpy(&n, b.data() + pos + 28, 2);
    std::string name = b.substr(pos + 46, n);
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) return pos;
  }
  ADD_FAILURE() << "no entry " << suffix;
  return 0;
}

}  // namespace

TEST(PickleReader, StridedOffsetSharedAndEveryDTypeMatchTorch) {
  for (const char* file : {"strided.bin", "protocol4.bin"}) {
    TorchFile f = TorchFile::open(kHF + file);
    attn::io::SafeTensorsFile want = attn::io::SafeTensorsFile::open(kHF + "strided_expected.safetensors");
    ASSERT_FALSE(f.keys().empty());
    for (const auto& key : f.keys()) {
      ASSERT_TRUE(want.contains(key)) << key;
      Tensor got = f.get(key);
      EXPECT_TRUE(same_bytes(got, want.get(key))) << file << " " << key;
      EXPECT_EQ(f.shape(key), got.shape());
    }
    if (std::string(file) == "strided.bin") {
      EXPECT_EQ(f.keys().size(), want.keys().size());
    }
  }
}

TEST(PickleReader, ContiguousTensorsAreViewsOfTheMapping) {
  TorchFile f = TorchFile::open(kHF + "strided.bin");
  Tensor big = f.get("big"), row = f.get("row");
  // "row" is big[2]: the same storage, 10 floats in, no copy.
  EXPECT_EQ(static_cast<const char*>(row.raw_data()), static_cast<const char*>(big.raw_data()) + 10 * sizeof(float));
  EXPECT_EQ(f.entries().at("slice").storage_offset, 7);
  EXPECT_EQ(f.entries().at("transposed").strides, (attn::Shape{1, 5}));
}

TEST(PickleReader, CodeExecutingPicklesAreRefusedByName) {
  expect_error([] { TorchFile::open(kHF + "hostile_os_system.bin"); }, {"hostile_os_system.bin", "system", "refused"});
  expect_error([] { TorchFile::open(kHF + "hostile_eval_protocol4.bin"); }, {"builtins.eval", "refused"});
  expect_error([] { TorchFile::open(kHF + "hostile_inst.bin"); }, {"hostile_inst.bin", "INST 'os.system'", "refused"});
  expect_error([] { TorchFile::open(kHF + "hostile_plain_pickle.bin"); }, {"hostile_plain_pickle.bin", "legacy"});
  expect_error([] { TorchFile::open(kHF + "legacy.bin"); }, {"legacy.bin", "legacy torch.save format", "not a zip archive"});
}

namespace {
// Runs a hand-written pickle against one fake 64-byte storage record "0".
std::map<std::string, TorchFile::Entry> run(const std::string& pkl) {
  attn::io::StorageLookup lookup = [](const std::string& key, size_t* begin, size_t* nbytes) {
    if (key != "0") return false;
    *begin = 0;
    *nbytes = 64;
    return true;
  };
  return attn::io::run_state_dict_pickle(reinterpret_cast<const uint8_t*>(pkl.data()), pkl.size(), lookup, "t.pkl");
}
// Pickle pieces: BINUNICODE, BININT1, GLOBAL, one-byte opcodes.
std::string str(const std::string& s) {
  std::string out = "X";
  uint32_t n = uint32_t(s.size());
  out.append(reinterpret_cast<const char*>(&n), 4);
  return out + s;
}
std::string k(int v) { return std::string("K") + char(v); }
std::string glob(const std::string& module, const std::string& name) { return "c" + module + "\n" + name + "\n"; }
std::string op(unsigned char c) { return std::string(1, char(c)); }
const std::string kProto2 = op(0x80) + op(2);
// {'w': _rebuild_tensor_v2(storage('0', FloatStorage, numel), offset, size, stride, False, OrderedDict())}
std::string tensor_pickle(int numel, int offset, const std::string& size, const std::string& stride) {
  std::string storage = "(" + str("storage") + glob("torch", "FloatStorage") + str("0") + str("cpu") + k(numel) + "tQ";
  return kProto2 + "}" + str("w") + glob("torch._utils", "_rebuild_tensor_v2") + "(" + storage + k(offset) + size +
         stride + op(0x89) + glob("collections", "OrderedDict") + ")Rt" + "Rs.";
}
std::string tuple(int a) { return k(a) + op(0x85); }
std::string tuple(int a, int b) { return k(a) + k(b) + op(0x86); }
}  // namespace

TEST(PickleReader, HandWrittenPickles) {
  // A good one: 2x3 floats at offset 4 with strides (3, 1) in a 16-float storage.
  auto ok = run(tensor_pickle(16, 4, tuple(2, 3), tuple(3, 1)));
  ASSERT_EQ(ok.count("w"), 1u);
  EXPECT_EQ(ok["w"].shape, (attn::Shape{2, 3}));
  EXPECT_EQ(ok["w"].storage_offset, 4);
  // The tensor reaches past its storage; the storage claims more than its record holds.
  expect_error([] { run(tensor_pickle(16, 11, tuple(2, 3), tuple(3, 1))); }, {"t.pkl", "element 16 of a storage of 16"});
  expect_error([] { run(tensor_pickle(17, 0, tuple(1), tuple(1))); }, {"storage '0'", "17", "64 bytes"});
  expect_error([] { run(tensor_pickle(16, 0, tuple(2), tuple(1, 1))); }, {"size and stride have 1 and 2 dims"});
  // Globals outside the allow-list, in each spelling.
  expect_error([] { run(kProto2 + glob("os", "system") + str("id") + op(0x85) + "R."); }, {"global 'os.system' is refused"});
  expect_error([] { run(op(0x80) + op(4) + op(0x8c) + op(8) + "builtins" + op(0x8c) + op(4) + "exec" + op(0x93) + "."); },
               {"global 'builtins.exec'"});
  expect_error([] { run(kProto2 + glob("torch", "load") + "."); }, {"global 'torch.load' is refused"});
  expect_error([] { run(kProto2 + "(" + glob("torch._utils", "_rebuild_tensor_v2") + op(0x81) + "."); }, {"NEWOBJ is refused"});
  // Malformed streams.
  expect_error([] { run(kProto2 + "}"); }, {"truncated: no STOP"});
  expect_error([] { run(kProto2 + "h" + op(5) + "."); }, {"memo entry 5 was never stored"});
  expect_error([] { run(kProto2 + "0."); }, {"stack underflow"});
  expect_error([] { run(kProto2 + "X" + op(0xff) + op(0xff) + op(0xff) + op(0x7f)); }, {"truncated"});
  expect_error([] { run(kProto2 + op(0x8a) + op(9) + "123456789."); }, {"does not fit 64 bits"});
  expect_error([] { run(kProto2 + k(1) + k(2) + op(0x86) + "."); }, {"not a dict of tensors"});
  // A list that holds itself neither loops nor leaks (values live in an arena).
  expect_error([] { run(kProto2 + "]q" + op(0) + "h" + op(0) + "a."); }, {"not a dict of tensors"});
  // A state dict nested under "state_dict" is found.
  std::string inner = tensor_pickle(16, 0, tuple(2), tuple(1));
  inner = inner.substr(2, inner.size() - 3);  // without PROTO and STOP
  EXPECT_EQ(run(kProto2 + "}" + str("state_dict") + inner + "s.").count("w"), 1u);
}

TEST(PickleReader, ZipEntriesThatLieAreErrorsNamingTheEntry) {
  const std::string good = read_bytes(kHF + "bert_bin/pytorch_model.bin");
  ASSERT_NO_THROW(TorchFile::from_bytes(good, "model.bin"));
  size_t c = central_header(good, "/data/0");
  {  // sizes one byte larger (both fields, as a consistent liar would), then smaller
    std::string b = good;
    put_u32(b, c + 20, get_u32(b, c + 20) + 1);
    put_u32(b, c + 24, get_u32(b, c + 24) + 1);
    expect_error([&] { TorchFile::from_bytes(b, "model.bin"); }, {"model.bin", "data/0"});
    b = good;
    put_u32(b, c + 20, get_u32(b, c + 20) - 4);
    put_u32(b, c + 24, get_u32(b, c + 24) - 4);
    expect_error([&] { TorchFile::from_bytes(b, "model.bin"); }, {"model.bin", "data/0"});
    b = good;
    put_u32(b, c + 24, 1u << 30);
    expect_error([&] { TorchFile::from_bytes(b, "model.bin"); }, {"data/0", "claims"});
    put_u32(b, c + 20, 1u << 30);
    expect_error([&] { TorchFile::from_bytes(b, "model.bin"); }, {"data/0", "past the end of the file"});
  }
  {  // local header offset outside the file / pointing at another entry
    std::string b = good;
    put_u32(b, c + 42, uint32_t(good.size() + 10));
    expect_error([&] { TorchFile::from_bytes(b, "model.bin"); }, {"data/0", "local header"});
    b = good;
    put_u32(b, c + 42, 0);
    expect_error([&] { TorchFile::from_bytes(b, "model.bin"); }, {"data/0", "names another entry"});
  }
  {  // compressed entry; damaged data
    std::string b = good;
    b[c + 10] = 8;
    expect_error([&] { TorchFile::from_bytes(b, "model.bin"); }, {"data/0", "compression method 8"});
    b = good;
    size_t local = get_u32(good, c + 42);
    uint16_t name_len, extra_len;
    std::memcpy(&name_len, good.data() + local + 26, 2);
    std::memcpy(&extra_len, good.data() + local + 28, 2);
    b[local + 30 + name_len + extra_len] ^= 1;  // first data byte
    expect_error([&] { TorchFile::from_bytes(b, "model.bin"); }, {"data/0", "CRC-32 mismatch"});
  }
  // Every truncation is a clear error, never a crash.
  for (size_t n = 0; n < good.size(); n += 61)
    expect_error([&] { TorchFile::from_bytes(good.substr(0, n), "cut.bin"); }, {"cut.bin"});
}

namespace {
void put(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out += char(v >> (8 * i) & 0xff);
}
// The entries of `zip` re-archived the zip64 way (as torch.save does past 4 GB): sizes and offsets
// in the central directory read 0xffffffff and live in zip64 extra fields; a zip64 end record.
std::string rewrite_as_zip64(const std::string& bytes) {
  auto zip = attn::io::ZipArchive::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "src");
  std::string out, central;
  for (const auto& e : zip.entries()) {
    std::string data = bytes.substr(e.data_offset, e.size);
    size_t local = out.size();
    put(out, 0x04034b50, 4), put(out, 45, 2), put(out, 0, 2), put(out, 0, 2), put(out, 0, 4), put(out, e.crc32, 4);
    put(out, 0xffffffff, 4), put(out, 0xffffffff, 4), put(out, e.name.size(), 2), put(out, 20, 2);
    out += e.name;
    put(out, 1, 2), put(out, 16, 2), put(out, data.size(), 8), put(out, data.size(), 8);
    out += data;
    put(central, 0x02014b50, 4), put(central, 45, 2), put(central, 45, 2), put(central, 0, 2), put(central, 0, 2);
    put(central, 0, 4), put(central, e.crc32, 4), put(central, 0xffffffff, 4), put(central, 0xffffffff, 4);
    put(central, e.name.size(), 2), put(central, 28, 2), put(central, 0, 2), put(central, 0, 2), put(central, 0, 2);
    put(central, 0, 4), put(central, 0xffffffff, 4);
    central += e.name;
    put(central, 1, 2), put(central, 24, 2), put(central, data.size(), 8), put(central, data.size(), 8), put(central, local, 8);
  }
  size_t dir = out.size(), n = zip.entries().size();
  out += central;
  size_t record = out.size();
  put(out, 0x06064b50, 4), put(out, 44, 8), put(out, 45, 2), put(out, 45, 2), put(out, 0, 4), put(out, 0, 4);
  put(out, n, 8), put(out, n, 8), put(out, central.size(), 8), put(out, dir, 8);
  put(out, 0x07064b50, 4), put(out, 0, 4), put(out, record, 8), put(out, 1, 4);
  put(out, 0x06054b50, 4), put(out, 0, 2), put(out, 0, 2), put(out, 0xffff, 2), put(out, 0xffff, 2);
  put(out, 0xffffffff, 4), put(out, 0xffffffff, 4), put(out, 0, 2);
  return out;
}
}  // namespace

TEST(PickleReader, Zip64ArchivesReadTheSame) {
  const std::string bytes = read_bytes(kHF + "strided.bin");
  TorchFile plain = TorchFile::from_bytes(bytes, "plain.bin");
  std::string z64 = rewrite_as_zip64(bytes);
  TorchFile f = TorchFile::from_bytes(z64, "zip64.bin");
  ASSERT_EQ(f.keys(), plain.keys());
  for (const auto& key : f.keys()) EXPECT_TRUE(same_bytes(f.get(key), plain.get(key))) << key;
  // A zip64 extra field too short for the sizes it must hold.
  size_t c = central_header(z64, "data.pkl");
  std::string b = z64;
  uint16_t name_len;
  std::memcpy(&name_len, z64.data() + c + 28, 2);
  b[c + 46 + name_len + 2] = 8;  // the extra's own length: 8 instead of 24
  expect_error([&] { TorchFile::from_bytes(b, "zip64.bin"); }, {"zip64.bin", "data.pkl"});
}

TEST(PickleReader, ValueCountIsCapped) {
  // 1.1 million one-byte pushes (each popped again): refused before they take ~100 bytes each.
  std::string pkl = op(0x80) + op(2);
  for (int i = 0; i < 1100000; ++i) pkl += "K\x01" "0";
  expect_error([&] { run(pkl + "}."); }, {"t.pkl", "more than 1048576 values"});
}
