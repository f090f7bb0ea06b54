// tests/test_checkpoint_io.cc — Checkpoint save/load: round trip, owned data, atomicity, bad files.
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "attn/io/checkpoint.h"
#include "attn/io/safetensors.h"

namespace fs = std::filesystem;
using attn::Tensor;
using attn::io::Checkpoint;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "attn_ckpt_XXXXXX").string();
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

Tensor filled(attn::Shape shape, attn::DType dt, double start) {
  Tensor t = attn::empty(shape, {.dtype = dt});
  attn::dispatch_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(t.raw_data());
    for (int64_t i = 0; i < t.numel(); ++i) {
      if constexpr (std::is_same_v<T, bool>) p[i] = (i % 2) == 0;
      else p[i] = T(float(start + double(i) * 0.5));
    }
  });
  return t;
}

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         (a.nbytes() == 0 || std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(), a.nbytes()) == 0);
}

Checkpoint sample() {
  Checkpoint ck;
  ck.model["encoder.weight"] = filled({8, 4}, attn::kFloat32, -1);
  ck.model["encoder.bias"] = filled({8}, attn::kFloat32, 2);
  ck.model["bn.num_batches_tracked"] = filled({}, attn::kInt64, 17);
  ck.model["emb"] = filled({3, 2}, attn::kBFloat16, 0.25);
  ck.model["mask"] = filled({5}, attn::kBool, 0);
  ck.model["empty"] = filled({0, 7}, attn::kFloat64, 0);
  ck.optimizer["state.0.exp_avg"] = filled({8, 4}, attn::kFloat32, 0.125);
  ck.optimizer["state.0.step"] = filled({}, attn::kFloat32, 100);
  ck.optimizer["model.not_a_prefix_clash"] = filled({1}, attn::kFloat64, 3);  // names may contain "model."
  ck.step = 123456789012;
  ck.rng = {0xFEDCBA9876543210ull, 98765};
  ck.extra_json = R"({"epoch": 3, "loader": {"epoch": 3, "batch": 117}, "lr": 0.001})";
  return ck;
}

void expect_equal(const Checkpoint& a, const Checkpoint& b) {
  ASSERT_EQ(a.model.size(), b.model.size());
  ASSERT_EQ(a.optimizer.size(), b.optimizer.size());
  for (const auto& [k, t] : a.model) {
    ASSERT_TRUE(b.model.count(k)) << k;
    EXPECT_TRUE(same(t, b.model.at(k))) << k;
  }
  for (const auto& [k, t] : a.optimizer) {
    ASSERT_TRUE(b.optimizer.count(k)) << k;
    EXPECT_TRUE(same(t, b.optimizer.at(k))) << k;
  }
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.rng.seed, b.rng.seed);
  EXPECT_EQ(a.rng.offset, b.rng.offset);
  EXPECT_EQ(a.extra_json, b.extra_json);
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Checkpoint, RoundTrip) {
  TempDir dir;
  std::string path = dir.file("ck.safetensors");
  Checkpoint ck = sample();
  attn::io::save_checkpoint(path, ck);
  Checkpoint back = attn::io::load_checkpoint(path);
  expect_equal(ck, back);
  // It is a plain safetensors file with prefixed keys and the metadata in __metadata__.
  attn::io::SafeTensorsFile f = attn::io::SafeTensorsFile::open(path);
  EXPECT_TRUE(f.contains("model.encoder.weight"));
  EXPECT_TRUE(f.contains("optimizer.state.0.exp_avg"));
  EXPECT_TRUE(f.contains("optimizer.model.not_a_prefix_clash"));
  EXPECT_EQ(f.metadata().at("attn.step"), "123456789012");
  EXPECT_EQ(f.metadata().at("attn.rng_seed"), std::to_string(0xFEDCBA9876543210ull));
  EXPECT_EQ(f.metadata().at("attn.rng_offset"), "98765");
  // Defaults round trip too.
  Checkpoint empty;
  attn::io::save_checkpoint(path, empty);
  expect_equal(empty, attn::io::load_checkpoint(path));
}

TEST(Checkpoint, LoadedTensorsOwnTheirData) {
  TempDir dir;
  std::string path = dir.file("ck.safetensors");
  Checkpoint ck = sample();
  attn::io::save_checkpoint(path, ck);
  Checkpoint back = attn::io::load_checkpoint(path);
  for (const auto& [k, t] : back.model) EXPECT_EQ(t.impl()->storage->owner, nullptr) << k;
  // Overwrite the file in place (not atomically) and delete it: loaded tensors are unaffected.
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << std::string(4096, 'z'); }
  fs::remove(path);
  expect_equal(ck, back);
  // In-place updates of loaded tensors work (they are ordinary writable tensors).
  back.model["encoder.bias"].data_ptr<float>()[0] = 42.0f;
  EXPECT_EQ(back.model["encoder.bias"].data_ptr<float>()[0], 42.0f);
}

TEST(Checkpoint, FailedSaveLeavesOldCheckpoint) {
  TempDir dir;
  std::string path = dir.file("ck.safetensors");
  attn::io::save_checkpoint(path, sample());
  std::string old = read_file(path);
  Checkpoint bad = sample();
  bad.model["broken"] = Tensor();  // undefined: cannot be written
  std::string msg = error_of([&] { attn::io::save_checkpoint(path, bad); });
  EXPECT_NE(msg.find("broken"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  Checkpoint bad_json = sample();
  bad_json.extra_json = "{\"epoch\": ";
  msg = error_of([&] { attn::io::save_checkpoint(path, bad_json); });
  EXPECT_NE(msg.find("extra_json"), std::string::npos) << msg;
  EXPECT_EQ(read_file(path), old);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()), 1);  // no temp files
  expect_equal(sample(), attn::io::load_checkpoint(path));
}

TEST(Checkpoint, RejectsFilesThatAreNotCheckpoints) {
  TempDir dir;
  std::string path = dir.file("x.safetensors");
  Tensor w = filled({2}, attn::kFloat32, 0);
  attn::io::save_safetensors(path, {{"model.w", w}});
  std::string msg = error_of([&] { attn::io::load_checkpoint(path); });
  EXPECT_NE(msg.find("not an attn checkpoint"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;

  std::map<std::string, std::string> meta = {{"attn.format", "checkpoint/1"}, {"attn.step", "12x"},
                                             {"attn.rng_seed", "1"}, {"attn.rng_offset", "2"}};
  attn::io::save_safetensors(path, {{"model.w", w}}, meta);
  msg = error_of([&] { attn::io::load_checkpoint(path); });
  EXPECT_NE(msg.find("attn.step"), std::string::npos) << msg;

  meta["attn.step"] = "5";
  meta.erase("attn.rng_offset");
  attn::io::save_safetensors(path, {{"model.w", w}}, meta);
  msg = error_of([&] { attn::io::load_checkpoint(path); });
  EXPECT_NE(msg.find("attn.rng_offset"), std::string::npos) << msg;

  meta["attn.rng_offset"] = "-3";  // uint64
  attn::io::save_safetensors(path, {{"model.w", w}}, meta);
  EXPECT_NE(error_of([&] { attn::io::load_checkpoint(path); }).find("attn.rng_offset"), std::string::npos);

  meta["attn.rng_offset"] = "3";
  attn::io::save_safetensors(path, {{"model.w", w}, {"other.w", w}}, meta);
  msg = error_of([&] { attn::io::load_checkpoint(path); });
  EXPECT_NE(msg.find("other.w"), std::string::npos) << msg;

  meta["attn.format"] = "checkpoint/99";
  attn::io::save_safetensors(path, {{"model.w", w}}, meta);
  EXPECT_NE(error_of([&] { attn::io::load_checkpoint(path); }).find("unsupported checkpoint format"), std::string::npos);

  meta["attn.format"] = "checkpoint/1";
  meta["attn.extra"] = "{not json";
  attn::io::save_safetensors(path, {{"model.w", w}}, meta);
  EXPECT_NE(error_of([&] { attn::io::load_checkpoint(path); }).find("extra_json"), std::string::npos);

  meta.erase("attn.extra");  // optional: defaults to {}
  attn::io::save_safetensors(path, {{"model.w", w}}, meta);
  Checkpoint ck = attn::io::load_checkpoint(path);
  EXPECT_EQ(ck.step, 5);
  EXPECT_EQ(ck.extra_json, "{}");
  EXPECT_TRUE(same(ck.model.at("w"), w));

  EXPECT_THROW(attn::io::load_checkpoint(dir.file("missing")), std::runtime_error);
}
