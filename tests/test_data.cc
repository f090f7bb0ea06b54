// tests/test_data.cc — IDX reader (generated files, plain and gzip; the real Fashion-MNIST when
// installed), TensorDataset, and the DataLoader (order, determinism, reshuffle, drop_last, resume).
#include <sys/resource.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "attn/data/dataloader.h"
#include "attn/data/dataset.h"
#include "attn/data/idx.h"

namespace fs = std::filesystem;
using attn::Shape;
using attn::Tensor;
using namespace attn::data;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "attn_data_XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_raw(const std::string& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

std::string gzip(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, uLong(in.size())) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = uInt(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

void put_be32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s += char((v >> (8 * i)) & 0xff);
}

// IDX bytes: header for `dims` with type byte `type`, then `payload` verbatim.
std::string idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const std::string& payload) {
  std::string s = {0, 0, char(type), char(dims.size())};
  for (uint32_t d : dims) put_be32(s, d);
  return s + payload;
}

// Big-endian payload of `n` values v(i) stored as T.
template <typename T, typename F>
std::string be_payload(int64_t n, F v) {
  std::string s;
  for (int64_t i = 0; i < n; ++i) {
    T x = T(v(i));
    unsigned char b[sizeof(T)];
    std::memcpy(b, &x, sizeof(T));
    for (int k = int(sizeof(T)) - 1; k >= 0; --k) s += char(b[k]);
  }
  return s;
}

std::string error_of_parse(const std::string& bytes, const std::string& name = "bad.idx") {
  try {
    attn::data::parse_idx(bytes.data(), bytes.size(), name);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

void expect_idx_error(const std::string& bytes, const std::string& what) {
  for (bool gz : {false, true}) {
    std::string msg = error_of_parse(gz ? gzip(bytes) : bytes, gz ? "bad.idx.gz" : "bad.idx");
    EXPECT_NE(msg.find(gz ? "bad.idx.gz" : "bad.idx"), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
  }
}

// A dataset of N rows (N, 2, 3) float32 with row i filled by i*10+k, targets i (int64).
std::shared_ptr<TensorDataset> numbered(int64_t n) {
  Tensor x = attn::empty({n, 2, 3}, {.dtype = attn::kFloat32});
  Tensor y = attn::empty({n}, {.dtype = attn::kInt64});
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 6; ++k) x.data_ptr<float>()[i * 6 + k] = float(i * 10 + k);
    y.data_ptr<int64_t>()[i] = i;
  }
  return std::make_shared<TensorDataset>(x, y);
}

// Sample ids of a batch from the numbered dataset (checking data and target agree).
std::vector<int64_t> ids(const Batch& b) {
  std::vector<int64_t> out;
  int64_t n = b.data.size(0);
  EXPECT_EQ(b.target.size(0), n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t id = b.target.data_ptr<int64_t>()[i];
    for (int k = 0; k < 6; ++k) EXPECT_EQ(b.data.data_ptr<float>()[i * 6 + k], float(id * 10 + k));
    out.push_back(id);
  }
  return out;
}

std::vector<std::vector<int64_t>> one_epoch(DataLoader& loader) {
  std::vector<std::vector<int64_t>> out;
  for (const Batch& b : loader) out.push_back(ids(b));
  return out;
}

// Same data as `numbered` but through the generic Dataset interface (no fast path).
class GenericNumbered : public Dataset {
 public:
  explicit GenericNumbered(int64_t n, int64_t throw_at = -1) : inner_(numbered(n)), throw_at_(throw_at) {}
  int64_t size() const override { return inner_->size(); }
  Example get(int64_t i) const override {
    if (i == throw_at_) throw std::runtime_error("sample " + std::to_string(i) + " is unreadable");
    Example e = inner_->get(i);
    return {e.data.contiguous(), e.target.contiguous()};
  }

 private:
  std::shared_ptr<TensorDataset> inner_;
  int64_t throw_at_;
};

double process_cpu_seconds() {
  rusage r;
  getrusage(RUSAGE_SELF, &r);
  return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

}  // namespace

// ---------------------------------------------------------------- IDX

TEST(Idx, ReadsEveryTypePlainAndGzip) {
  TempDir dir;
  struct Case {
    uint8_t type;
    attn::DType dtype;
    std::string payload;
  };
  const int64_t n = 2 * 3 * 4;
  std::vector<Case> cases = {
      {0x08, attn::kUInt8, be_payload<uint8_t>(n, [](int64_t i) { return i * 11; })},
      {0x09, attn::kInt32, be_payload<int8_t>(n, [](int64_t i) { return i * 11 - 128; })},
      {0x0B, attn::kInt32, be_payload<int16_t>(n, [](int64_t i) { return i * 1301 - 30000; })},
      {0x0C, attn::kInt32, be_payload<int32_t>(n, [](int64_t i) { return i * 99991 - 2000000000; })},
      {0x0D, attn::kFloat32, be_payload<float>(n, [](int64_t i) { return float(i) * 0.25f - 3.0f; })},
      {0x0E, attn::kFloat64, be_payload<double>(n, [](int64_t i) { return double(i) / 7.0 - 1.0; })},
  };
  for (const Case& c : cases) {
    std::string bytes = idx_bytes(c.type, {2, 3, 4}, c.payload);
    for (bool gz : {false, true}) {
      std::string name = std::to_string(int(c.type));
      name += gz ? ".idx.gz" : ".idx";
      std::string path = dir.file(name);
      write_raw(path, gz ? gzip(bytes) : bytes);
      Tensor t = read_idx(path);
      SCOPED_TRACE(path);
      ASSERT_EQ(t.shape(), (Shape{2, 3, 4}));
      ASSERT_EQ(t.dtype(), c.dtype);
      for (int64_t i = 0; i < n; ++i) {
        double want = 0;
        switch (c.type) {
          case 0x08: want = double(uint8_t(i * 11)); break;
          case 0x09: want = double(int8_t(i * 11 - 128)); break;
          case 0x0B: want = double(int16_t(i * 1301 - 30000)); break;
          case 0x0C: want = double(int32_t(i * 99991 - 2000000000)); break;
          case 0x0D: want = double(float(i) * 0.25f - 3.0f); break;
          case 0x0E: want = double(i) / 7.0 - 1.0; break;
        }
        double got = attn::dispatch_dtype(t.dtype(), [&](auto tag) -> double {
          using T = decltype(tag);
          if constexpr (std::is_same_v<T, attn::BFloat16>) return 0.0;
          else return double(static_cast<const T*>(t.raw_data())[i]);
        });
        EXPECT_EQ(got, want) << "element " << i;
      }
      Tensor m = parse_idx(gz ? gzip(bytes).data() : bytes.data(), gz ? gzip(bytes).size() : bytes.size());
      EXPECT_EQ(m.shape(), t.shape());
      EXPECT_EQ(std::memcmp(m.raw_data(), t.raw_data(), t.nbytes()), 0);
    }
  }
}

TEST(Idx, LabelsAndEdgeShapes) {
  // 1-d labels (magic 0x00000801), an empty dim, and concatenated gzip members.
  std::string labels = idx_bytes(0x08, {5}, std::string("\x00\x01\x02\x09\x05", 5));
  Tensor l = parse_idx(labels.data(), labels.size());
  EXPECT_EQ(l.to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 2, 9, 5}));
  std::string empty = idx_bytes(0x0D, {0, 28}, "");
  EXPECT_EQ(parse_idx(empty.data(), empty.size()).shape(), (Shape{0, 28}));
  std::string two_members = gzip(labels.substr(0, 7)) + gzip(labels.substr(7));
  Tensor c = parse_idx(two_members.data(), two_members.size());
  EXPECT_EQ(c.to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 2, 9, 5}));
}

TEST(Idx, ClearErrors) {
  std::string good = idx_bytes(0x08, {2, 3}, "abcdef");
  expect_idx_error("", "truncated header");
  expect_idx_error(std::string("\0\0\x08", 3), "truncated header");
  expect_idx_error(idx_bytes(0x08, {2, 3}, "").substr(0, 9), "truncated dimension list");
  expect_idx_error("\x01" + good.substr(1), "bad magic 0x01000802");
  expect_idx_error(std::string("\0\x07", 2) + good.substr(2), "bad magic");
  expect_idx_error(idx_bytes(0x0A, {2, 3}, "abcdef"), "unknown element type byte 0x0a");
  expect_idx_error(idx_bytes(0x08, {}, "abcdef"), "zero dimensions");
  expect_idx_error(idx_bytes(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, ""), "overflows");
  expect_idx_error(idx_bytes(0x0E, {0x7FFFFFFF, 0x7FFFFFFF, 4}, ""), "overflows");
  expect_idx_error(idx_bytes(0x08, {2, 3}, "abcde"), "too little data");
  expect_idx_error(idx_bytes(0x08, {60000, 28, 28}, "abc"), "too little data");
  expect_idx_error(idx_bytes(0x0C, {2}, "1234567"), "too little data");
  expect_idx_error(idx_bytes(0x08, {2, 3}, "abcdefg"), "too much data: 1 bytes");
  expect_idx_error(idx_bytes(0x08, {2, 3}, "abcdef" + std::string(1000, 'x')), "too much data: at least");
  // gzip-level damage.
  std::string gz = gzip(good);
  std::string bad_crc = gz;
  bad_crc[bad_crc.size() - 6] ^= 0x55;  // inside the CRC32 trailer
  EXPECT_NE(error_of_parse(bad_crc).find("corrupt gzip data"), std::string::npos) << error_of_parse(bad_crc);
  EXPECT_NE(error_of_parse(gz.substr(0, gz.size() - 3)).find("truncated"), std::string::npos);
  EXPECT_NE(error_of_parse(gz + "garbage").find("trailing garbage"), std::string::npos);
  std::string bad_deflate = gz;
  bad_deflate[10] = char(0xff);  // invalid block type
  EXPECT_NE(error_of_parse(bad_deflate).find("corrupt gzip data"), std::string::npos) << error_of_parse(bad_deflate);
  // Files.
  TempDir dir;
  std::string missing = dir.file("nope.gz");
  try {
    read_idx(missing);
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos);
  }
  std::string empty = dir.file("empty.idx");
  write_raw(empty, "");
  try {
    read_idx(empty);
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(empty), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("truncated header"), std::string::npos);
  }
}

// Mutated and truncated variants of valid IDX files (plain and gzip) must parse or throw.
TEST(Idx, MutationFuzz) {
  std::string plain = idx_bytes(0x0B, {3, 5}, be_payload<int16_t>(15, [](int64_t i) { return i * 300 - 2000; }));
  std::string f64 = idx_bytes(0x0E, {4}, be_payload<double>(4, [](int64_t i) { return double(i); }));
  std::vector<std::string> seeds = {plain, gzip(plain), f64, gzip(f64)};
  std::mt19937_64 rng(99);
  int ok = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::string s = seeds[size_t(iter) % seeds.size()];
    switch ((iter / 4) % 4) {
      case 0:
        for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) s[rng() % s.size()] = char(rng());
        break;
      case 1: s.resize(rng() % s.size()); break;
      case 2: s.insert(rng() % (s.size() + 1), std::string(1 + rng() % 8, char(rng()))); break;
      case 3: s[rng() % std::min<size_t>(s.size(), 16)] = char(rng() % 16); break;  // header bytes
    }
    try {
      Tensor t = parse_idx(s.data(), s.size(), "fuzz");
      EXPECT_LE(t.nbytes(), 64u * s.size() + 4096);  // nothing absurd was allocated
      ++ok;
    } catch (const std::runtime_error&) {
      ++rejected;
    }
  }
  EXPECT_GT(ok, 50);
  EXPECT_GT(rejected, 1000);
}

// ---------------------------------------------------------------- Fashion-MNIST

TEST(FashionMNIST, RealFiles) {
  if (!FashionMNIST::available()) GTEST_SKIP() << "Fashion-MNIST not installed under /usr/share/datasets/fashion-mnist";
  const std::string root = FashionMNISTOptions{}.root;
  Tensor raw = read_idx(root + "/t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(raw.shape(), (Shape{10000, 28, 28}));
  EXPECT_EQ(raw.dtype(), attn::kUInt8);

  auto t0 = std::chrono::steady_clock::now();
  double cpu0 = process_cpu_seconds();
  FashionMNIST train;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ perf ] FashionMNIST train split (60000 images + labels: gunzip, float32): %.3f s wall, %.3f s cpu\n",
              secs, process_cpu_seconds() - cpu0);
  ASSERT_EQ(train.data().shape(), (Shape{60000, 1, 28, 28}));
  ASSERT_EQ(train.targets().shape(), (Shape{60000}));
  EXPECT_EQ(train.data().dtype(), attn::kFloat32);
  EXPECT_EQ(train.targets().dtype(), attn::kInt64);
  std::vector<int64_t> hist(10, 0);
  for (int64_t i = 0; i < 60000; ++i) hist[size_t(train.targets().data_ptr<int64_t>()[i])]++;
  EXPECT_EQ(hist, std::vector<int64_t>(10, 6000));
  const float* x = train.data().data_ptr<float>();
  double sum = 0, sq = 0;
  float lo = 1, hi = 0;
  for (int64_t i = 0; i < 60000 * 784; ++i) {
    sum += x[i];
    sq += double(x[i]) * x[i];
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  double mean = sum / (60000.0 * 784), std = std::sqrt(sq / (60000.0 * 784) - mean * mean);
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 1.0f);
  EXPECT_NEAR(mean, FashionMNIST::kMean, 5e-4);
  EXPECT_NEAR(std, FashionMNIST::kStd, 5e-4);

  FashionMNIST test({.train = false, .normalize = true});
  ASSERT_EQ(test.size(), 10000);
  std::vector<int64_t> th(10, 0);
  for (int64_t i = 0; i < 10000; ++i) th[size_t(test.targets().data_ptr<int64_t>()[i])]++;
  EXPECT_EQ(th, std::vector<int64_t>(10, 1000));
  const float* z = test.data().data_ptr<float>();
  const uint8_t* r = raw.data_ptr<uint8_t>();
  for (int64_t i = 0; i < 10000 * 784; i += 997)
    EXPECT_NEAR(z[i], float((r[i] / 255.0 - FashionMNIST::kMean) / FashionMNIST::kStd), 1e-5) << i;
  Example ex = test.get(3);
  EXPECT_EQ(ex.data.shape(), (Shape{1, 28, 28}));
  EXPECT_EQ(ex.target.dim(), 0);

  // One shuffled epoch through the DataLoader fast path.
  auto ds = std::make_shared<FashionMNIST>();
  DataLoader loader(ds, {.batch_size = 256, .shuffle = true, .seed = 7});
  t0 = std::chrono::steady_clock::now();
  int64_t seen = 0;
  for (const Batch& b : loader) seen += b.data.size(0);
  secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ perf ] DataLoader epoch, 60000 x (1, 28, 28) float32, batch 256, shuffled: %.3f s\n", secs);
  EXPECT_EQ(seen, 60000);
}

TEST(FashionMNIST, MissingRootIsAClearError) {
  try {
    FashionMNIST ds({.root = "/nonexistent/fmnist"});
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/fmnist/train-"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(FashionMNIST::available("/nonexistent/fmnist"));
}

// ---------------------------------------------------------------- TensorDataset and DataLoader

TEST(TensorDataset, SlicesFirstDim) {
  auto ds = numbered(4);
  EXPECT_EQ(ds->size(), 4);
  Example e = ds->get(2);
  EXPECT_EQ(e.data.shape(), (Shape{2, 3}));
  EXPECT_EQ(e.data.to_vector<float>(), (std::vector<float>{20, 21, 22, 23, 24, 25}));
  EXPECT_EQ(e.target.item<int64_t>(), 2);
  EXPECT_EQ(ds->get(-1).target.item<int64_t>(), 3);
  EXPECT_THROW(ds->get(4), std::out_of_range);
  EXPECT_THROW(ds->get(-5), std::out_of_range);
  EXPECT_THROW(TensorDataset(attn::zeros({3, 2}), attn::zeros({4})), std::invalid_argument);
  TensorDataset unlabelled(attn::zeros({3, 2}).transpose(0, 1));  // made contiguous
  EXPECT_TRUE(unlabelled.data().is_contiguous());
  EXPECT_FALSE(unlabelled.get(0).target.defined());
}

TEST(DataLoader, SequentialBatchesAndDropLast) {
  auto ds = numbered(10);
  DataLoader loader(ds, {.batch_size = 4});
  EXPECT_EQ(loader.size(), 3);
  auto epoch = one_epoch(loader);
  ASSERT_EQ(epoch.size(), 3u);
  EXPECT_EQ(epoch[0], (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(epoch[2], (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(loader.state(), (DataLoaderState{1, 0}));
  DataLoader dl(ds, {.batch_size = 4, .drop_last = true});
  EXPECT_EQ(dl.size(), 2);
  epoch = one_epoch(dl);
  ASSERT_EQ(epoch.size(), 2u);
  EXPECT_EQ(epoch[1], (std::vector<int64_t>{4, 5, 6, 7}));
  // Batch shapes stack along a new first dim.
  Batch b = loader.get_batch(0, 2);
  EXPECT_EQ(b.data.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(b.target.shape(), (Shape{2}));
  EXPECT_THROW(loader.get_batch(0, 3), std::out_of_range);
  EXPECT_THROW(DataLoader(ds, {.batch_size = 0}), std::invalid_argument);
}

TEST(DataLoader, ShuffleIsSeededPerEpochPermutation) {
  auto ds = numbered(103);
  DataLoader a(ds, {.batch_size = 8, .shuffle = true, .seed = 42});
  DataLoader b(ds, {.batch_size = 8, .shuffle = true, .seed = 42, .prefetch = 0});
  DataLoader c(ds, {.batch_size = 8, .shuffle = true, .seed = 43, .prefetch = 5});
  auto a0 = one_epoch(a), a1 = one_epoch(a);
  auto b0 = one_epoch(b), b1 = one_epoch(b);
  auto c0 = one_epoch(c);
  EXPECT_EQ(a0, b0);  // same seed: same batches, whatever the prefetch depth
  EXPECT_EQ(a1, b1);
  EXPECT_NE(a0, a1);  // a new permutation each epoch
  EXPECT_NE(a0, c0);  // another seed
  for (const auto& epoch : {a0, a1, c0}) {
    std::vector<int64_t> all;
    for (const auto& batch : epoch) all.insert(all.end(), batch.begin(), batch.end());
    std::vector<int64_t> sorted = all;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> iota(103);
    std::iota(iota.begin(), iota.end(), 0);
    EXPECT_EQ(sorted, iota);  // a permutation
  }
  // The order is epoch_indices(e), batched.
  auto order = a.epoch_indices(1);
  std::vector<int64_t> flat;
  for (const auto& batch : a1) flat.insert(flat.end(), batch.begin(), batch.end());
  EXPECT_EQ(flat, order);
  // Rough uniformity: where sample 0 lands over many epochs covers the range.
  std::set<int64_t> positions;
  for (int e = 0; e < 200; ++e) {
    auto o = a.epoch_indices(e);
    positions.insert(std::find(o.begin(), o.end(), 0) - o.begin());
  }
  EXPECT_GT(positions.size(), 70u);
}

TEST(DataLoader, GenericDatasetMatchesFastPath) {
  auto fast = numbered(37);
  auto slow = std::make_shared<GenericNumbered>(37);
  DataLoader a(fast, {.batch_size = 5, .shuffle = true, .seed = 3});
  DataLoader b(slow, {.batch_size = 5, .shuffle = true, .seed = 3});
  EXPECT_EQ(one_epoch(a), one_epoch(b));
  EXPECT_EQ(one_epoch(a), one_epoch(b));
}

TEST(DataLoader, ErrorsInTheWorkerReachTheCaller) {
  auto ds = std::make_shared<GenericNumbered>(20, /*throw_at=*/13);
  for (int prefetch : {0, 2}) {
    DataLoader loader(ds, {.batch_size = 4, .prefetch = prefetch});
    int batches = 0;
    try {
      for (const Batch& b : loader) {
        (void)b;
        ++batches;
      }
      ADD_FAILURE();
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("sample 13"), std::string::npos);
    }
    EXPECT_EQ(batches, 3);  // batches 0..2 arrived before the failing batch 3
  }
}

TEST(DataLoader, ResumeSeesTheSameBatches) {
  auto ds = numbered(50);
  DataLoaderOptions o{.batch_size = 6, .shuffle = true, .seed = 11, .prefetch = 3};
  // Uninterrupted: 3 epochs.
  DataLoader full(ds, o);
  std::vector<std::vector<int64_t>> reference;
  for (int e = 0; e < 3; ++e)
    for (const Batch& b : full) reference.push_back(ids(b));
  ASSERT_EQ(reference.size(), 27u);

  // Interrupted in epoch 1 after 4 batches, "checkpointed" inside the loop body.
  DataLoader first(ds, o);
  std::vector<std::vector<int64_t>> seen;
  DataLoaderState saved;
  for (const Batch& b : first) seen.push_back(ids(b));
  for (const Batch& b : first) {
    seen.push_back(ids(b));
    if (seen.size() == 9 + 4) {
      saved = first.state();
      break;
    }
  }
  EXPECT_EQ(saved, (DataLoaderState{1, 4}));

  // A new process: load the state and run to the end of epoch 2.
  DataLoader resumed(ds, o);
  resumed.load_state(saved);
  resumed.set_epoch(1);  // a set_epoch for the current epoch keeps the position
  EXPECT_EQ(resumed.state(), saved);
  while (resumed.state().epoch < 3)
    for (const Batch& b : resumed) seen.push_back(ids(b));
  EXPECT_EQ(seen, reference);

  // State saved during the last batch of an epoch resumes at the next epoch.
  DataLoader last(ds, o);
  last.load_state({0, 9});
  auto e1 = one_epoch(last);
  EXPECT_EQ(e1.front(), reference[9]);
  EXPECT_EQ(last.state(), (DataLoaderState{2, 0}));

  // Abandoning an iteration and starting again continues where it stopped.
  DataLoader again(ds, o);
  for (const Batch& b : again) {
    (void)b;
    break;
  }
  EXPECT_EQ(again.state(), (DataLoaderState{0, 1}));
  auto rest = one_epoch(again);
  EXPECT_EQ(rest.size(), 8u);
  EXPECT_EQ(rest.front(), reference[1]);

  // set_epoch to another epoch starts it from batch 0.
  again.set_epoch(2);
  EXPECT_EQ(one_epoch(again).front(), reference[18]);
  EXPECT_THROW(again.load_state({0, 10}), std::out_of_range);
  EXPECT_THROW(again.set_epoch(-1), std::out_of_range);
}

TEST(DataLoader, DestroyWhilePrefetching) {
  auto ds = numbered(1000);
  for (int i = 0; i < 20; ++i) {
    DataLoader loader(ds, {.batch_size = 3, .shuffle = true, .prefetch = 4});
    auto it = loader.begin();
    ++it;
    EXPECT_EQ(loader.state().batch, 2);
  }  // the worker is blocked on a full queue: the destructor must stop it
  SUCCEED();
}
