// src/data/idx.cc — IDX reader: mmap the file, inflate (zlib) straight into the tensor's memory.
#include "attn/data/idx.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

namespace attn::data {
namespace {

constexpr uint64_t kMaxDeflateRatio = 1032;  // deflate cannot expand data by more than this

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw std::runtime_error("IDX file '" + name + "': " + what);
}

// Yields the decompressed (or plain) bytes of the input, in order.
class ByteSource {
 public:
  ByteSource(const uint8_t* data, size_t size, const std::string& name)
      : data_(data), size_(size), name_(name) {
    gzip_ = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (gzip_) {
      std::memset(&zs_, 0, sizeof zs_);
      if (inflateInit2(&zs_, 15 + 16) != Z_OK) fail(name_, "zlib inflateInit2 failed");
      zs_.next_in = const_cast<Bytef*>(data_);
      zs_.avail_in = 0;
      zlib_live_ = true;
    }
  }
  ~ByteSource() {
    if (zlib_live_) inflateEnd(&zs_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  bool gzip() const { return gzip_; }
  // Upper bound on the number of bytes this source can yield.
  uint64_t max_bytes() const { return gzip_ ? uint64_t(size_) * kMaxDeflateRatio + 64 : size_; }

  // Reads up to n bytes; returns fewer only at the end of the data.
  size_t read(void* dst, size_t n) {
    if (!gzip_) {
      size_t k = std::min(n, size_ - pos_);
      if (k) std::memcpy(dst, data_ + pos_, k);
      pos_ += k;
      return k;
    }
    size_t done = 0;
    uint8_t* out = static_cast<uint8_t*>(dst);
    while (done < n && !finished_) {
      if (zs_.avail_in == 0) {
        size_t k = std::min<size_t>(size_ - pos_, 1u << 30);
        zs_.next_in = const_cast<Bytef*>(data_ + pos_);
        zs_.avail_in = uInt(k);
        pos_ += k;
      }
      size_t chunk = std::min<size_t>(n - done, 1u << 30);
      zs_.next_out = out + done;
      zs_.avail_out = uInt(chunk);
      int rc = inflate(&zs_, Z_NO_FLUSH);
      done += chunk - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        // Another gzip member may follow (gzip files may be concatenated).
        size_t left = zs_.avail_in + (size_ - pos_);
        if (left == 0) {
          finished_ = true;
        } else {
          const uint8_t* next = zs_.next_in;
          if (left < 2 || next[0] != 0x1f || next[1] != 0x8b)
            fail(name_, std::to_string(left) + " bytes of trailing garbage after the gzip data");
          if (inflateReset(&zs_) != Z_OK) fail(name_, "zlib inflateReset failed");
        }
      } else if (rc == Z_BUF_ERROR) {  // no progress possible
        if (zs_.avail_in == 0 && pos_ == size_) fail(name_, "gzip data is truncated");
        fail(name_, "corrupt gzip data: inflate made no progress");
      } else if (rc != Z_OK) {
        fail(name_, std::string("corrupt gzip data: ") + (zs_.msg ? zs_.msg : "inflate error " + std::to_string(rc)));
      }
    }
    return done;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string name_;
  bool gzip_ = false;
  bool zlib_live_ = false;
  bool finished_ = false;
  z_stream zs_{};
};

uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

struct IdxType {
  uint8_t code;
  const char* name;
  size_t size;  // bytes per element in the file
  DType dtype;  // result dtype
};
constexpr IdxType kTypes[] = {{0x08, "u8", 1, kUInt8},  {0x09, "i8", 1, kInt32},   {0x0B, "i16", 2, kInt32},
                              {0x0C, "i32", 4, kInt32}, {0x0D, "f32", 4, kFloat32}, {0x0E, "f64", 8, kFloat64}};

void read_exact(ByteSource& src, void* dst, size_t n, uint64_t offset, const std::string& name, const char* what) {
  size_t got = src.read(dst, n);
  if (got != n)
    fail(name, std::string("truncated ") + what + ": expected " + std::to_string(n) + " bytes at offset " +
                   std::to_string(offset) + ", got " + std::to_string(got));
}

}  // namespace

Tensor parse_idx(const void* data, size_t size, const std::string& name) {
  ByteSource src(static_cast<const uint8_t*>(data), size, name);
  uint8_t hdr[4];
  read_exact(src, hdr, 4, 0, name, "header");
  if (hdr[0] != 0 || hdr[1] != 0) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "bad magic 0x%02x%02x%02x%02x (expected 0x000008xx..0x00000Exx)", hdr[0], hdr[1],
                  hdr[2], hdr[3]);
    fail(name, buf);
  }
  const IdxType* type = nullptr;
  for (const auto& t : kTypes)
    if (t.code == hdr[2]) type = &t;
  if (!type) fail(name, "bad magic: unknown element type byte 0x" + [&] {
    char b[8];
    std::snprintf(b, sizeof b, "%02x", hdr[2]);
    return std::string(b);
  }());
  int ndims = hdr[3];
  if (ndims == 0) fail(name, "bad magic: zero dimensions");
  std::vector<uint8_t> dim_bytes(size_t(ndims) * 4);
  read_exact(src, dim_bytes.data(), dim_bytes.size(), 4, name, "dimension list");
  Shape shape;
  uint64_t numel = 1, span = 1;  // span: product of max(dim, 1), which bounds the strides
  for (int i = 0; i < ndims; ++i) {
    uint32_t d = be32(&dim_bytes[size_t(i) * 4]);
    shape.push_back(int64_t(d));
    if (__builtin_mul_overflow(span, uint64_t(std::max<uint32_t>(d, 1)), &span) || span > (uint64_t(1) << 48))
      fail(name, "dims product overflows (dim " + std::to_string(i) + " = " + std::to_string(d) + ")");
    if (__builtin_mul_overflow(numel, uint64_t(d), &numel) || numel > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(name, "dims product overflows (dim " + std::to_string(i) + " = " + std::to_string(d) + ")");
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(numel, uint64_t(type->size), &nbytes) ||
      nbytes > uint64_t(std::numeric_limits<int64_t>::max()))
    fail(name, "data size overflows for shape " + shape_str(shape));
  uint64_t header_bytes = 4 + uint64_t(ndims) * 4;
  if (nbytes > src.max_bytes())
    fail(name, "too little data: shape " + shape_str(shape) + " of " + type->name + " needs " + std::to_string(nbytes) +
                   " bytes, the " + (src.gzip() ? "compressed " : "") + "file has only " + std::to_string(size) +
                   " bytes");

  Tensor out = empty(shape, {.dtype = type->dtype});
  size_t n = size_t(numel);
  if (type->code == 0x09 || type->code == 0x0B) {  // widen to int32
    std::vector<uint8_t> raw(static_cast<size_t>(nbytes));
    size_t got = src.read(raw.data(), raw.size());
    if (got != raw.size())
      fail(name, "too little data: shape " + shape_str(shape) + " needs " + std::to_string(nbytes) + " bytes, got " +
                     std::to_string(got));
    int32_t* dst = static_cast<int32_t*>(out.raw_data());
    if (type->code == 0x09) {
      for (size_t i = 0; i < n; ++i) dst[i] = int8_t(raw[i]);
    } else {
      for (size_t i = 0; i < n; ++i) dst[i] = int16_t(uint16_t(raw[2 * i] << 8 | raw[2 * i + 1]));
    }
  } else {
    size_t got = nbytes ? src.read(out.raw_data(), size_t(nbytes)) : 0;
    if (got != nbytes)
      fail(name, "too little data: shape " + shape_str(shape) + " of " + type->name + " needs " +
                     std::to_string(nbytes) + " bytes after the " + std::to_string(header_bytes) +
                     "-byte header, got " + std::to_string(got));
    if (type->size == 4) {
      uint32_t* p = static_cast<uint32_t*>(out.raw_data());
      for (size_t i = 0; i < n; ++i) p[i] = __builtin_bswap32(p[i]);
    } else if (type->size == 8) {
      uint64_t* p = static_cast<uint64_t*>(out.raw_data());
      for (size_t i = 0; i < n; ++i) p[i] = __builtin_bswap64(p[i]);
    }
  }
  uint8_t extra[256];
  size_t more = src.read(extra, sizeof extra);
  if (more != 0)
    fail(name, "too much data: " + std::string(more == sizeof extra ? "at least " : "") + std::to_string(more) +
                   " bytes after the " + std::to_string(header_bytes + nbytes) + " bytes that shape " +
                   shape_str(shape) + " of " + type->name + " needs");
  return out;
}

Tensor read_idx(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a readable regular file");
  }
  size_t size = size_t(st.st_size);
  if (size == 0) {
    ::close(fd);
    return parse_idx(nullptr, 0, path);
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (addr == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(err));
  ::madvise(addr, size, MADV_SEQUENTIAL);
  struct Unmap {
    void* a;
    size_t n;
    ~Unmap() { ::munmap(a, n); }
  } guard{addr, size};
  return parse_idx(addr, size, path);
}

}  // namespace attn::data
