// src/io/metrics.cc — JSON lines + TensorBoard event files (see include/attn/io/metrics.h).
#include "attn/io/metrics.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace attn::io {
namespace {

// ---- CRC-32C, one 256-entry table per byte position (slicing-by-8)
constexpr uint32_t kCrc32cPoly = 0x82F63B78u;  // Castagnoli, reflected

struct Crc32cTables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  constexpr Crc32cTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ kCrc32cPoly : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFFu];
  }
};
constexpr Crc32cTables kTables;

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(char(uint8_t(v >> (8 * i))));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(char(uint8_t(v >> (8 * i))));
}

// ---- protobuf wire format: varint, fixed64 (wire type 1), length-delimited (2), fixed32 (5)
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out.push_back(char(uint8_t(v)));
}
void put_key(std::string& out, uint32_t field, uint32_t wire_type) { put_varint(out, (field << 3) | wire_type); }
void put_double(std::string& out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_key(out, field, 1);
  put_u64(out, bits);
}
void put_float(std::string& out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_key(out, field, 5);
  put_u32(out, bits);
}
void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}
// int64 fields are plain varints of the two's complement (negative values take 10 bytes).
void put_int64(std::string& out, uint32_t field, int64_t v) {
  put_key(out, field, 0);
  put_varint(out, uint64_t(v));
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

std::FILE* open_or_throw(const std::string& path, const char* mode, const char* what) {
  std::FILE* f = std::fopen(path.c_str(), mode);
  if (!f)
    throw std::runtime_error(std::string("MetricsWriter: cannot open ") + what + " '" + path +
                             "': " + std::strerror(errno));
  return f;
}

void check_tags(const Scalars& scalars) {
  std::set<std::string_view> seen;
  for (const auto& [tag, value] : scalars) {
    (void)value;
    if (tag.empty()) throw std::invalid_argument("MetricsWriter::log: empty tag");
    if (tag == "step" || tag == "wall_time")
      throw std::invalid_argument("MetricsWriter::log: tag '" + tag + "' is reserved (step, wall_time)");
    if (!seen.insert(tag).second)
      throw std::invalid_argument("MetricsWriter::log: tag '" + tag + "' given twice in one call");
  }
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  const auto& t = kTables.t;
  uint32_t c = ~crc;
  while (n >= 8) {
    uint32_t lo = c ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) c = t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
  return ~c;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord_frame(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_u64(out, data.size());
  put_u32(out, masked_crc32c(out.data(), 8));
  out.append(data.data(), data.size());
  put_u32(out, masked_crc32c(data.data(), data.size()));
  return out;
}

std::string encode_file_version_event(double wall_time) {
  std::string ev;
  put_double(ev, 1, wall_time);
  put_bytes(ev, 3, "brain.Event:2");
  return ev;
}

std::string encode_scalars_event(double wall_time, int64_t step, const Scalars& scalars) {
  std::string summary;
  for (const auto& [tag, value] : scalars) {
    std::string v;  // Summary.Value
    put_bytes(v, 1, tag);
    put_float(v, 2, float(value));
    put_bytes(summary, 1, v);
  }
  std::string ev;
  put_double(ev, 1, wall_time);
  if (step != 0) put_int64(ev, 2, step);  // proto3: default values are not written
  put_bytes(ev, 5, summary);
  return ev;
}

// ---- MetricsWriter

MetricsWriter::MetricsWriter(const MetricsWriterOptions& o) {
  if (!o.tensorboard && !o.jsonl) throw std::invalid_argument("MetricsWriter: both tensorboard and jsonl are off");
  if (o.log_dir.empty() && (o.tensorboard || o.jsonl_path.empty()))
    throw std::invalid_argument("MetricsWriter: log_dir is empty");
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!o.log_dir.empty()) {
    fs::create_directories(o.log_dir, ec);
    if (ec || !fs::is_directory(o.log_dir))
      throw std::runtime_error("MetricsWriter: cannot create log_dir '" + o.log_dir + "': " + ec.message());
  }
  try {
    if (o.jsonl) {
      jsonl_path_ = o.jsonl_path.empty() ? (fs::path(o.log_dir) / "metrics.jsonl").string() : o.jsonl_path;
      jsonl_ = open_or_throw(jsonl_path_, "ab", "JSON lines file");
    }
    if (o.tensorboard) {
      double t = now_seconds();
      std::string base = (fs::path(o.log_dir) / ("events.out.tfevents." + std::to_string(int64_t(t)) + "." +
                                                  host_name() + o.filename_suffix)).string();
      // Never clobber: a second writer started in the same second gets a numbered name ("x" = O_EXCL).
      for (int i = 0; !events_; ++i) {
        event_path_ = i == 0 ? base : base + "." + std::to_string(getpid()) + "." + std::to_string(i);
        events_ = std::fopen(event_path_.c_str(), "wbx");
        if (!events_ && (errno != EEXIST || i > 1000))
          throw std::runtime_error("MetricsWriter: cannot create event file '" + event_path_ +
                                   "': " + std::strerror(errno));
      }
      write_or_throw(events_, tfrecord_frame(encode_file_version_event(t)), event_path_);
    }
  } catch (...) {
    close();
    throw;
  }
}

MetricsWriter::~MetricsWriter() {
  if (events_) std::fclose(events_);
  if (jsonl_) std::fclose(jsonl_);
}

MetricsWriter::MetricsWriter(MetricsWriter&& o) noexcept
    : event_path_(std::move(o.event_path_)), jsonl_path_(std::move(o.jsonl_path_)),
      events_(std::exchange(o.events_, nullptr)), jsonl_(std::exchange(o.jsonl_, nullptr)) {}

MetricsWriter& MetricsWriter::operator=(MetricsWriter&& o) noexcept {
  if (this != &o) {
    if (events_) std::fclose(events_);
    if (jsonl_) std::fclose(jsonl_);
    event_path_ = std::move(o.event_path_);
    jsonl_path_ = std::move(o.jsonl_path_);
    events_ = std::exchange(o.events_, nullptr);
    jsonl_ = std::exchange(o.jsonl_, nullptr);
  }
  return *this;
}

void MetricsWriter::write_or_throw(std::FILE* f, const std::string& bytes, const std::string& path) {
  if (std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fflush(f) != 0)
    throw std::runtime_error("MetricsWriter: write to '" + path + "' failed: " + std::strerror(errno));
}

void MetricsWriter::log(int64_t step, const Scalars& scalars, double wall_time) {
  if (!events_ && !jsonl_) throw std::logic_error("MetricsWriter::log: writer is closed");
  check_tags(scalars);
  if (wall_time < 0) wall_time = now_seconds();
  if (jsonl_) {
    nlohmann::ordered_json j;
    j["step"] = step;
    j["wall_time"] = wall_time;
    // JSON has no NaN/Infinity: those are written as null.
    for (const auto& [tag, value] : scalars) j[tag] = std::isfinite(value) ? nlohmann::ordered_json(value) : nullptr;
    write_or_throw(jsonl_, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", jsonl_path_);
  }
  if (events_) write_or_throw(events_, tfrecord_frame(encode_scalars_event(wall_time, step, scalars)), event_path_);
}

void MetricsWriter::flush() {
  if (events_) std::fflush(events_);
  if (jsonl_) std::fflush(jsonl_);
}

void MetricsWriter::close() {
  if (events_) std::fclose(std::exchange(events_, nullptr));
  if (jsonl_) std::fclose(std::exchange(jsonl_, nullptr));
}

}  // namespace attn::io
