// attn/io/metrics.h — training metrics as JSON lines and as TensorBoard scalars.
//
//   attn::io::MetricsWriter metrics({.log_dir = "runs/cnn"});      // runs/cnn/metrics.jsonl +
//                                                                    // runs/cnn/events.out.tfevents.<time>.<host>
//   metrics.log(step, {{"train/loss", loss.item()}, {"train/acc", acc}});
//   metrics.add_scalar("lr", 1e-3, step);                           // torch SummaryWriter name
//   // tensorboard --logdir runs
//
// Every call writes one JSON object per line, {"step": .., "wall_time": .., "<tag>": value, ...}, and one
// TensorBoard Event with a Summary holding one simple_value per tag; both files are flushed before the
// call returns, so a crashed run keeps everything it logged.
//
// Event files are TFRecord files: each record is u64 length (little endian), u32 masked CRC32C of the
// length bytes, the data, u32 masked CRC32C of the data. The data is a serialized tensorflow.Event
// protobuf (encoded by hand here: wall_time=1 double, step=2 int64, file_version=3 string,
// summary=5 {value=1 {tag=1 string, simple_value=2 float}}). The first record is
// Event{wall_time, file_version = "brain.Event:2"}.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace attn::io {

struct MetricsWriterOptions {
  std::string log_dir = {};        // created if missing; holds the event file (and metrics.jsonl)
  std::string jsonl_path = {};     // default: <log_dir>/metrics.jsonl; appended to if it exists
  bool tensorboard = true;         // write the event file
  bool jsonl = true;               // write the JSON lines file
  std::string filename_suffix = {};  // appended to the event file name (as torch's SummaryWriter)
};

using Scalars = std::vector<std::pair<std::string, double>>;  // (tag, value), in the order given

class MetricsWriter {
 public:
  explicit MetricsWriter(const MetricsWriterOptions& o);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  MetricsWriter(MetricsWriter&& o) noexcept;
  MetricsWriter& operator=(MetricsWriter&& o) noexcept;

  // One JSON line and one Event holding all the scalars. Tags must be non-empty, unique within the
  // call, and not "step" or "wall_time". wall_time < 0: now (seconds since the Unix epoch).
  void log(int64_t step, const Scalars& scalars, double wall_time = -1.0);
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time = -1.0) {
    log(step, {{tag, value}}, wall_time);
  }
  void flush();
  void close();  // idempotent; further log() calls throw

  const std::string& event_path() const { return event_path_; }  // empty if !tensorboard
  const std::string& jsonl_path() const { return jsonl_path_; }   // empty if !jsonl

 private:
  void write_or_throw(std::FILE* f, const std::string& bytes, const std::string& path);
  std::string event_path_, jsonl_path_;
  std::FILE* events_ = nullptr;
  std::FILE* jsonl_ = nullptr;
};

// ---- the encoding pieces, exposed for tests and for other writers
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven; crc32c("123456789") == 0xE3069283.
// `crc` continues a previous result (pass the value returned for the preceding bytes).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
inline uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }
// TFRecord's mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);
// length, masked crc(length), data, masked crc(data)
std::string tfrecord_frame(std::string_view data);
// Serialized tensorflow.Event protobufs.
std::string encode_file_version_event(double wall_time);  // file_version = "brain.Event:2"
std::string encode_scalars_event(double wall_time, int64_t step, const Scalars& scalars);

}  // namespace attn::io
