// src/io/zip.cc — strict zip reader for torch.save archives; see zip.h. Layout per PKWARE's APPNOTE
// (end of central directory, zip64 locator and record, central headers, local headers).
#include "io/zip.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "io/printable.h"

namespace attn::io {

namespace {

constexpr uint32_t kEocdSig = 0x06054b50, kZip64LocatorSig = 0x07064b50, kZip64EocdSig = 0x06064b50;
constexpr uint32_t kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;
constexpr size_t kEocdSize = 22, kCentralSize = 46, kLocalSize = 30, kZip64LocatorSize = 20, kZip64EocdSize = 56;

uint64_t rd(const uint8_t* p, int n) {  // little-endian, n bytes
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

[[noreturn]] void fail(const std::string& file, const std::string& entry, const std::string& what) {
  std::string msg = "zip archive '" + file + "'";
  if (!entry.empty()) msg += ", entry '" + printable(entry) + "'";
  throw std::runtime_error(msg + ": " + what);
}

struct Directory {
  uint64_t count = 0, offset = 0, size = 0;
};

// Finds the end-of-central-directory record (the last one whose comment reaches the end of the file)
// and, when its fields overflow, the zip64 record.
Directory find_directory(const uint8_t* d, size_t n, const std::string& file) {
  if (n < kEocdSize) fail(file, "", "file is " + std::to_string(n) + " bytes, too short for a zip archive");
  size_t lowest = n - kEocdSize > 0xffff ? n - kEocdSize - 0xffff : 0;
  size_t eocd = SIZE_MAX;
  for (size_t pos = n - kEocdSize + 1; pos-- > lowest;) {
    if (rd(d + pos, 4) == kEocdSig && pos + kEocdSize + rd(d + pos + 20, 2) == n) {
      eocd = pos;
      break;
    }
  }
  if (eocd == SIZE_MAX) fail(file, "", "no end-of-central-directory record: not a zip archive, or truncated");
  if (rd(d + eocd + 4, 2) != 0 || rd(d + eocd + 6, 2) != 0) fail(file, "", "multi-disk archives are not supported");
  Directory dir{rd(d + eocd + 10, 2), rd(d + eocd + 16, 4), rd(d + eocd + 12, 4)};
  if (dir.count != 0xffff && dir.offset != 0xffffffff && dir.size != 0xffffffff) return dir;
  if (eocd < kZip64LocatorSize || rd(d + eocd - kZip64LocatorSize, 4) != kZip64LocatorSig)
    fail(file, "", "end-of-central-directory fields overflow but there is no zip64 locator");
  uint64_t rec = rd(d + eocd - kZip64LocatorSize + 8, 8);
  if (n < kZip64EocdSize || rec > n - kZip64EocdSize || rd(d + rec, 4) != kZip64EocdSig)
    fail(file, "", "zip64 end-of-central-directory record at " + std::to_string(rec) + " is missing or outside the file");
  return Directory{rd(d + rec + 32, 8), rd(d + rec + 48, 8), rd(d + rec + 40, 8)};
}

// Central-directory fields that read 0xffffffff live in the zip64 extra field (id 1), in this order.
void apply_zip64_extra(const uint8_t* extra, size_t len, uint64_t& usize, uint64_t& csize, uint64_t& offset,
                       const std::string& file, const std::string& name) {
  size_t pos = 0;
  while (pos + 4 <= len) {
    uint64_t id = rd(extra + pos, 2), sz = rd(extra + pos + 2, 2);
    if (pos + 4 + sz > len) fail(file, name, "extra field runs past its header");
    if (id == 1) {
      const uint8_t* f = extra + pos + 4;
      size_t used = 0;
      for (uint64_t* v : {&usize, &csize, &offset}) {
        if (*v != 0xffffffff) continue;
        if (used + 8 > sz) fail(file, name, "zip64 extra field is too short");
        *v = rd(f + used, 8);
        used += 8;
      }
      return;
    }
    pos += 4 + sz;
  }
  if (usize == 0xffffffff || csize == 0xffffffff || offset == 0xffffffff)
    fail(file, name, "sizes overflow 32 bits but the entry has no zip64 extra field");
}

struct Span {
  size_t header, end;  // [local header, end of data)
  size_t index;
};

}  // namespace

ZipArchive ZipArchive::parse(const uint8_t* d, size_t n, const std::string& file) {
  Directory dir = find_directory(d, n, file);
  if (dir.offset > n || dir.size > n - dir.offset)
    fail(file, "", "central directory [" + std::to_string(dir.offset) + ", +" + std::to_string(dir.size) +
                       ") is outside the file (" + std::to_string(n) + " bytes)");
  if (dir.count > dir.size / kCentralSize)
    fail(file, "", std::to_string(dir.count) + " entries cannot fit a central directory of " +
                       std::to_string(dir.size) + " bytes");
  ZipArchive zip;
  std::vector<Span> spans;
  size_t pos = dir.offset, end = dir.offset + dir.size;
  for (uint64_t i = 0; i < dir.count; ++i) {
    if (end - pos < kCentralSize || rd(d + pos, 4) != kCentralSig)
      fail(file, "", "central directory entry " + std::to_string(i) + " is damaged");
    const uint8_t* c = d + pos;
    uint64_t flags = rd(c + 8, 2), method = rd(c + 10, 2), crc = rd(c + 16, 4);
    uint64_t csize = rd(c + 20, 4), usize = rd(c + 24, 4), local = rd(c + 42, 4);
    size_t name_len = rd(c + 28, 2), extra_len = rd(c + 30, 2), comment_len = rd(c + 32, 2);
    if (end - pos - kCentralSize < name_len + extra_len + comment_len)
      fail(file, "", "central directory entry " + std::to_string(i) + " runs past the directory");
    std::string name(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    apply_zip64_extra(c + kCentralSize + name_len, extra_len, usize, csize, local, file, name);
    pos += kCentralSize + name_len + extra_len + comment_len;
    if (flags & 1) fail(file, name, "encrypted entries are not supported");
    if (method != 0) fail(file, name, "compression method " + std::to_string(method) + " (torch.save stores entries uncompressed)");
    if (csize != usize)
      fail(file, name, "stored entry claims " + std::to_string(csize) + " compressed but " + std::to_string(usize) + " bytes");
    if (local > n || n - local < kLocalSize || rd(d + local, 4) != kLocalSig)
      fail(file, name, "local header at " + std::to_string(local) + " is missing or outside the file");
    const uint8_t* l = d + local;
    size_t lname = rd(l + 26, 2), lextra = rd(l + 28, 2);
    if (n - local - kLocalSize < lname + lextra) fail(file, name, "local header runs past the end of the file");
    if (std::string(reinterpret_cast<const char*>(l + kLocalSize), lname) != name)
      fail(file, name, "local header names another entry");
    if (!(rd(l + 6, 2) & 8)) {  // no data descriptor: the local header repeats the sizes
      uint64_t lc = rd(l + 18, 4), lu = rd(l + 22, 4);
      if ((lc != 0xffffffff && lc != csize) || (lu != 0xffffffff && lu != usize))
        fail(file, name, "local header says " + std::to_string(lu) + " bytes, the central directory " + std::to_string(usize));
    }
    size_t data = local + kLocalSize + lname + lextra;
    if (usize > n - data)
      fail(file, name, "data [" + std::to_string(data) + ", +" + std::to_string(usize) + ") runs past the end of the file (" +
                           std::to_string(n) + " bytes)");
    if (data + usize > dir.offset) fail(file, name, "data runs into the central directory");
    if (zip.by_name_.count(name)) fail(file, name, "duplicate entry");
    zip.by_name_[name] = zip.entries_.size();
    spans.push_back({size_t(local), size_t(data + usize), zip.entries_.size()});
    zip.entries_.push_back({name, data, size_t(usize), uint32_t(crc)});
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.header < b.header; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].header < spans[i - 1].end)
      fail(file, zip.entries_[spans[i - 1].index].name,
           "data overlaps entry '" + printable(zip.entries_[spans[i].index].name) + "'");
  for (const Entry& e : zip.entries_) {
    uint32_t crc = uint32_t(crc32_z(0L, d + e.data_offset, e.size));
    if (crc != e.crc32) fail(file, e.name, "CRC-32 mismatch: the entry's data is damaged");
  }
  return zip;
}

const ZipArchive::Entry* ZipArchive::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

}  // namespace attn::io
