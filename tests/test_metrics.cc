// tests/test_metrics.cc — attn::io::MetricsWriter (CRC32C, protobuf bytes, TFRecord framing, JSON lines)
// and attn::io::ProgressBar.
//
// The golden bytes below were produced by tensorboard's own protobuf classes and RecordWriter:
//   python tests/check_tensorboard.py --golden
// Set ATTN_METRICS_KEEP_DIR=/some/dir to keep the files of MetricsWriter.WritesEventsAndJsonLines (in
// /some/dir/tb) and check them with the real tensorboard reader: python tests/check_tensorboard.py /some/dir/tb
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "attn/io/metrics.h"
#include "attn/io/progress.h"

namespace fs = std::filesystem;
using attn::io::MetricsWriter;

namespace {

// Bit-at-a-time CRC-32C: the reference the table-driven one is checked against.
uint32_t crc32c_bitwise(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}
uint32_t mask(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

uint64_t read_le(const std::string& s, size_t pos, int nbytes) {
  uint64_t v = 0;
  for (int i = 0; i < nbytes; ++i) v |= uint64_t(uint8_t(s[pos + i])) << (8 * i);
  return v;
}

// Splits a TFRecord file into records, checking both masked CRCs of each.
std::vector<std::string> read_records(const std::string& bytes) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    EXPECT_LE(pos + 12, bytes.size()) << "truncated record header at " << pos;
    if (pos + 12 > bytes.size()) break;
    uint64_t len = read_le(bytes, pos, 8);
    uint32_t len_crc = uint32_t(read_le(bytes, pos + 8, 4));
    EXPECT_EQ(len_crc, mask(crc32c_bitwise(reinterpret_cast<const uint8_t*>(bytes.data() + pos), 8)))
        << "length crc of record at " << pos;
    EXPECT_LE(pos + 12 + len + 4, bytes.size()) << "truncated record at " << pos;
    if (pos + 12 + len + 4 > bytes.size()) break;
    std::string data = bytes.substr(pos + 12, len);
    uint32_t data_crc = uint32_t(read_le(bytes, pos + 12 + len, 4));
    EXPECT_EQ(data_crc, mask(crc32c_bitwise(reinterpret_cast<const uint8_t*>(data.data()), data.size())))
        << "data crc of record at " << pos;
    out.push_back(data);
    pos += 12 + len + 4;
  }
  return out;
}

// A minimal protobuf reader for the Event fields we write.
struct Field {
  uint32_t number = 0, wire = 0;
  uint64_t varint = 0;  // wire 0, 1 (bits), 5 (bits)
  std::string bytes = {};  // wire 2
};
std::vector<Field> parse_proto(const std::string& s) {
  std::vector<Field> out;
  size_t pos = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= s.size()) throw std::runtime_error("truncated varint");
      uint8_t b = uint8_t(s[pos++]);
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("varint too long");
  };
  while (pos < s.size()) {
    uint64_t key = varint();
    Field f{uint32_t(key >> 3), uint32_t(key & 7)};
    if (f.wire == 0) f.varint = varint();
    else if (f.wire == 1) { f.varint = read_le(s, pos, 8); pos += 8; }
    else if (f.wire == 5) { f.varint = read_le(s, pos, 4); pos += 4; }
    else if (f.wire == 2) {
      uint64_t n = varint();
      if (pos + n > s.size()) throw std::runtime_error("truncated bytes field");
      f.bytes = s.substr(pos, n);
      pos += n;
    } else throw std::runtime_error("unexpected wire type");
    if (pos > s.size()) throw std::runtime_error("truncated fixed field");
    out.push_back(f);
  }
  return out;
}

struct DecodedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> values;
};
DecodedEvent decode_event(const std::string& data) {
  DecodedEvent e;
  for (const Field& f : parse_proto(data)) {
    if (f.number == 1 && f.wire == 1) std::memcpy(&e.wall_time, &f.varint, 8);
    else if (f.number == 2 && f.wire == 0) e.step = int64_t(f.varint);
    else if (f.number == 3 && f.wire == 2) e.file_version = f.bytes;
    else if (f.number == 5 && f.wire == 2) {
      for (const Field& v : parse_proto(f.bytes)) {
        EXPECT_EQ(v.number, 1u);
        std::string tag;
        float value = NAN;
        for (const Field& g : parse_proto(v.bytes)) {
          if (g.number == 1 && g.wire == 2) tag = g.bytes;
          else if (g.number == 2 && g.wire == 5) {
            uint32_t bits = uint32_t(g.varint);
            std::memcpy(&value, &bits, 4);
          } else ADD_FAILURE() << "unexpected Summary.Value field " << g.number;
        }
        e.values.emplace_back(tag, value);
      }
    } else ADD_FAILURE() << "unexpected Event field " << f.number << " wire " << f.wire;
  }
  return e;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct TempDir {
  fs::path path;
  bool keep = false;
  explicit TempDir(const std::string& name) {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("attn-test-" + name + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    if (!keep) fs::remove_all(path, ec);
  }
};

}  // namespace

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(attn::io::crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(attn::io::crc32c(""), 0u);
  // RFC 3720 appendix B.4
  std::string zeros(32, '\0'), ones(32, '\xFF'), inc(32, '\0'), dec(32, '\0');
  for (int i = 0; i < 32; ++i) {
    inc[i] = char(i);
    dec[i] = char(31 - i);
  }
  EXPECT_EQ(attn::io::crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(attn::io::crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(attn::io::crc32c(inc), 0x46DD794Eu);
  EXPECT_EQ(attn::io::crc32c(dec), 0x113FDB5Cu);
}

TEST(Crc32c, MatchesBitwiseReferenceAndContinues) {
  std::string buf;
  uint32_t x = 12345;
  for (int i = 0; i < 300; ++i) {
    x = x * 1103515245u + 12345u;
    buf.push_back(char(x >> 16));
  }
  for (size_t n = 0; n <= buf.size(); n += 7) {
    auto p = reinterpret_cast<const uint8_t*>(buf.data());
    ASSERT_EQ(attn::io::crc32c(buf.data(), n), crc32c_bitwise(p, n)) << "n=" << n;
    for (size_t k : {size_t(0), n / 3, n}) {  // crc(a + b) == crc(b, crc(a))
      uint32_t a = attn::io::crc32c(buf.data(), k);
      EXPECT_EQ(attn::io::crc32c(buf.data() + k, n - k, a), crc32c_bitwise(p, n)) << "n=" << n << " k=" << k;
    }
  }
  EXPECT_EQ(attn::io::masked_crc32c(buf.data(), buf.size()),
            mask(crc32c_bitwise(reinterpret_cast<const uint8_t*>(buf.data()), buf.size())));
}

TEST(Metrics, EventBytesMatchTensorboardProtobuf) {
  std::string ev = attn::io::encode_scalars_event(1700000000.25, -3, {{"train/loss", 0.5}, {"acc", -1.5}});
  EXPECT_EQ(hex(ev),
            "0900001040fc54d94110fdffffffffffffffff012a1f0a110a0a747261696e2f6c6f7373150000003f0a0a0a0361636315"
            "0000c0bf");
  std::string version = attn::io::encode_file_version_event(1.5);
  EXPECT_EQ(hex(version), "09000000000000f83f1a0d627261696e2e4576656e743a32");
  EXPECT_EQ(hex(attn::io::tfrecord_frame(version)),
            "1800000000000000a37f4b2209000000000000f83f1a0d627261696e2e4576656e743a322a28646c");
  // step 0 is proto3's default: not written, decodes as 0
  DecodedEvent d = decode_event(attn::io::encode_scalars_event(2.0, 0, {{"x", 1.0}}));
  EXPECT_EQ(d.step, 0);
  EXPECT_EQ(d.wall_time, 2.0);
  ASSERT_EQ(d.values.size(), 1u);
  EXPECT_EQ(d.values[0].first, "x");
  // large steps use multi-byte varints
  EXPECT_EQ(decode_event(attn::io::encode_scalars_event(2.0, int64_t(1) << 40, {{"x", 1.0}})).step,
            int64_t(1) << 40);
}

TEST(Metrics, WritesEventsAndJsonLines) {
  TempDir tmp("metrics");
  const char* keep = std::getenv("ATTN_METRICS_KEEP_DIR");
  fs::path dir = keep ? fs::path(keep) / "tb" : tmp.path / "tb";
  if (keep) fs::remove_all(dir);
  MetricsWriter w({.log_dir = dir.string()});
  ASSERT_TRUE(fs::exists(w.event_path()));
  EXPECT_EQ(fs::path(w.event_path()).parent_path(), dir);
  EXPECT_EQ(fs::path(w.event_path()).filename().string().rfind("events.out.tfevents.", 0), 0u);
  EXPECT_EQ(w.jsonl_path(), (dir / "metrics.jsonl").string());

  const int kSteps = 25;
  for (int s = 0; s < kSteps; ++s) {
    double loss = 2.0 * std::exp(-0.1 * s), acc = 1.0 - 0.9 * std::exp(-0.2 * s);
    w.log(s * 10, {{"train/loss", loss}, {"train/acc", acc}}, 1700000000.0 + s * 0.5);
    if (s % 5 == 4) w.add_scalar("val/loss", loss * 1.1, s * 10, 1700000000.0 + s * 0.5 + 0.25);
  }
  w.log(kSteps * 10, {{"train/loss", NAN}});  // NaN: float NaN in the event, null in JSON; wall_time = now

  // Flushed after each call: everything is on disk while the writer is still open.
  std::vector<std::string> records = read_records(slurp(w.event_path()));
  ASSERT_EQ(records.size(), size_t(1 + kSteps + kSteps / 5 + 1));
  DecodedEvent first = decode_event(records[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_GT(first.wall_time, 1.6e9);
  EXPECT_TRUE(first.values.empty());
  size_t r = 1;
  for (int s = 0; s < kSteps; ++s) {
    DecodedEvent e = decode_event(records[r++]);
    EXPECT_EQ(e.step, s * 10);
    EXPECT_EQ(e.wall_time, 1700000000.0 + s * 0.5);
    ASSERT_EQ(e.values.size(), 2u);
    EXPECT_EQ(e.values[0].first, "train/loss");
    EXPECT_EQ(e.values[0].second, float(2.0 * std::exp(-0.1 * s)));
    EXPECT_EQ(e.values[1].first, "train/acc");
    EXPECT_EQ(e.values[1].second, float(1.0 - 0.9 * std::exp(-0.2 * s)));
    if (s % 5 == 4) {
      DecodedEvent v = decode_event(records[r++]);
      EXPECT_EQ(v.step, s * 10);
      ASSERT_EQ(v.values.size(), 1u);
      EXPECT_EQ(v.values[0].first, "val/loss");
      EXPECT_EQ(v.values[0].second, float(2.0 * std::exp(-0.1 * s) * 1.1));
    }
  }
  DecodedEvent last = decode_event(records[r]);
  EXPECT_EQ(last.step, kSteps * 10);
  ASSERT_EQ(last.values.size(), 1u);
  EXPECT_TRUE(std::isnan(last.values[0].second));
  EXPECT_GT(last.wall_time, 1.6e9);

  std::ifstream jf(w.jsonl_path());
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(jf, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), records.size() - 1);
  EXPECT_EQ(lines[0]["step"], 0);
  EXPECT_EQ(lines[0]["wall_time"].get<double>(), 1700000000.0);
  EXPECT_EQ(lines[0]["train/loss"].get<double>(), 2.0);  // full double precision in JSON
  EXPECT_EQ(lines[1]["train/acc"].get<double>(), 1.0 - 0.9 * std::exp(-0.2));
  EXPECT_EQ(lines[5]["val/loss"].get<double>(), 2.0 * std::exp(-0.4) * 1.1);
  EXPECT_EQ(lines[5].size(), 3u);  // step, wall_time, val/loss
  EXPECT_TRUE(lines.back()["train/loss"].is_null());
  std::vector<std::string> keys;
  for (auto it = lines[0].begin(); it != lines[0].end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys.size(), 4u);

  w.close();
  w.close();  // idempotent
  EXPECT_THROW(w.log(1, {{"x", 1.0}}), std::logic_error);
}

TEST(Metrics, RejectsBadTagsAndPaths) {
  TempDir tmp("metrics-bad");
  MetricsWriter w({.log_dir = (tmp.path / "a" / "b").string()});  // nested dirs are created
  EXPECT_THROW(w.log(0, {{"step", 1.0}}), std::invalid_argument);
  EXPECT_THROW(w.log(0, {{"wall_time", 1.0}}), std::invalid_argument);
  EXPECT_THROW(w.log(0, {{"", 1.0}}), std::invalid_argument);
  EXPECT_THROW(w.log(0, {{"x", 1.0}, {"x", 2.0}}), std::invalid_argument);
  // nothing was written by the rejected calls
  EXPECT_EQ(read_records(slurp(w.event_path())).size(), 1u);
  EXPECT_EQ(fs::file_size(w.jsonl_path()), 0u);

  std::ofstream(tmp.path / "file") << "x";
  try {
    MetricsWriter bad({.log_dir = (tmp.path / "file" / "sub").string()});
    ADD_FAILURE() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("file/sub"), std::string::npos) << e.what();
  }
  EXPECT_THROW(MetricsWriter({.log_dir = ""}), std::invalid_argument);
  EXPECT_THROW(MetricsWriter({.log_dir = tmp.path.string(), .tensorboard = false, .jsonl = false}),
               std::invalid_argument);
}

TEST(Metrics, TwoWritersNeverShareAFileAndJsonlOnlyMode) {
  TempDir tmp("metrics-two");
  MetricsWriter a({.log_dir = tmp.path.string(), .jsonl = false});
  MetricsWriter b({.log_dir = tmp.path.string(), .jsonl = false});
  EXPECT_NE(a.event_path(), b.event_path());
  EXPECT_TRUE(a.jsonl_path().empty());
  a.log(1, {{"x", 1.0}});
  b.log(2, {{"y", 2.0}});
  EXPECT_EQ(read_records(slurp(a.event_path())).size(), 2u);
  EXPECT_EQ(decode_event(read_records(slurp(b.event_path()))[1]).values[0].first, "y");

  std::string path = (tmp.path / "only.jsonl").string();
  {
    MetricsWriter j({.jsonl_path = path, .tensorboard = false});
    EXPECT_TRUE(j.event_path().empty());
    j.log(3, {{"z", 0.25}});
  }
  {
    MetricsWriter j({.jsonl_path = path, .tensorboard = false});  // appends
    j.log(4, {{"z", 0.5}});
  }
  std::ifstream f(path);
  std::string l1, l2;
  std::getline(f, l1);
  std::getline(f, l2);
  EXPECT_EQ(nlohmann::json::parse(l1)["z"], 0.25);
  EXPECT_EQ(nlohmann::json::parse(l2)["step"], 4);
}

// ---- ProgressBar

namespace {
std::string read_stream(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  for (int c; (c = std::fgetc(f)) != EOF;) out.push_back(char(c));
  return out;
}
}  // namespace

TEST(ProgressBar, FormatDuration) {
  EXPECT_EQ(attn::io::format_duration(0), "00:00");
  EXPECT_EQ(attn::io::format_duration(59.9), "00:59");
  EXPECT_EQ(attn::io::format_duration(307), "05:07");
  EXPECT_EQ(attn::io::format_duration(3723), "1:02:03");
  EXPECT_EQ(attn::io::format_duration(100 * 3600 + 1), "100:00:01");
  EXPECT_EQ(attn::io::format_duration(-1), "?");
  EXPECT_EQ(attn::io::format_duration(INFINITY), "?");
}

TEST(ProgressBar, FormatsStepsRateEtaAndStats) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    attn::io::ProgressBar bar(1000, {.desc = "epoch 1", .stream = f, .tty = false});
    bar.update(450, {{"loss", 0.34123}, {"acc", 0.912}});
    EXPECT_EQ(bar.step(), 450);
    EXPECT_EQ(bar.format(12.0),
              "epoch 1  45%|#############                 | 450/1000 [00:12<00:14, 37.50 it/s] loss=0.3412 acc=0.912");
    bar.set_step(2);
    bar.set_postfix({});
    EXPECT_EQ(bar.format(10.0), "epoch 1   0%|                              | 2/1000 [00:10<1:23:10, 5.00 s/it]");
    bar.set_step(1000);
    EXPECT_EQ(bar.format(1.0).substr(0, 54), "epoch 1 100%|##############################| 1000/1000");
    EXPECT_NE(bar.format(0.0).find("<?, ? it/s]"), std::string::npos) << bar.format(0.0);
  }
  {
    attn::io::ProgressBar unknown(0, {.unit = "batch", .stream = f, .tty = false, .initial = 5});
    unknown.update(3);
    EXPECT_EQ(unknown.format(2.0), "8 [00:02, 1.50 batch/s]");
    attn::io::ProgressBar resumed(10, {.bar_width = 0, .stream = f, .tty = false, .initial = 4});
    EXPECT_EQ(resumed.format(1.0), " 40% 4/10 [00:01<?, ? it/s]");
    resumed.update(2);
    EXPECT_EQ(resumed.format(1.0), " 60% 6/10 [00:01<00:02, 2.00 it/s]");  // rate counts from `initial`
  }
  std::fclose(f);
  EXPECT_THROW(attn::io::ProgressBar(10, {.bar_width = -1}), std::invalid_argument);
}

TEST(ProgressBar, PlainLinesWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    attn::io::ProgressBar quiet(100, {.print_interval_s = 1e9, .stream = f, .tty = false});
    for (int i = 0; i < 100; ++i) quiet.update(1, {{"loss", 1.0 / (i + 1)}});
    EXPECT_EQ(read_stream(f), "");  // not due yet
    quiet.finish();
    quiet.finish();  // idempotent
    std::string out = read_stream(f);
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
    EXPECT_EQ(out.find('\r'), std::string::npos);
    EXPECT_NE(out.find("100/100"), std::string::npos) << out;
    EXPECT_NE(out.find("loss=0.01\n"), std::string::npos) << out;
  }
  std::fclose(f);
  f = std::tmpfile();
  {
    attn::io::ProgressBar every(5, {.print_interval_s = 0, .stream = f, .tty = false});
    for (int i = 0; i < 5; ++i) every.update();
  }  // the destructor finishes: one more line
  std::string out = read_stream(f);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 6) << out;
  std::fclose(f);
}

TEST(ProgressBar, RedrawsInPlaceOnATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  attn::io::ProgressBar bar(3, {.refresh_interval_s = 0, .stream = f, .tty = true});
  bar.update(1, {{"a_long_stat_name", 123456.0}});
  bar.update(1, {});  // shorter line: the old tail is blanked with spaces
  std::string out = read_stream(f);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\r'), 2) << out;
  EXPECT_EQ(out.find('\n'), std::string::npos);
  size_t second = out.rfind('\r');
  EXPECT_EQ(out.size() - second, second) << "both lines have the same width: " << out;
  bar.update(1);  // reaching total always redraws
  bar.finish();
  out = read_stream(f);
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
  EXPECT_NE(out.substr(out.rfind('\r')).find("100%|##############################| 3/3"), std::string::npos) << out;
  std::fclose(f);
}
