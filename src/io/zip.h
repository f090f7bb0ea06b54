// src/io/zip.h — a strict reader of the zip archives torch.save writes (stored entries, zip64).
//
//   ZipArchive zip = ZipArchive::parse(bytes, size, "pytorch_model.bin");  // throws on bad input
//   const ZipArchive::Entry* e = zip.find("archive/data.pkl");            // bytes + e->data_offset
//
// Only stored (uncompressed) entries are accepted, as torch writes them. Every entry is checked
// against its local header, the file bounds, its neighbours (no overlaps) and its CRC-32, so an
// archive whose entries lie about their sizes is an error naming the file and the entry.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace attn::io {

class ZipArchive {
 public:
  struct Entry {
    std::string name;
    size_t data_offset = 0;  // of the entry's bytes in the archive
    size_t size = 0;
    uint32_t crc32 = 0;
  };
  static ZipArchive parse(const uint8_t* data, size_t size, const std::string& file);
  const std::vector<Entry>& entries() const { return entries_; }
  const Entry* find(const std::string& name) const;  // nullptr if absent

 private:
  std::vector<Entry> entries_;
  std::map<std::string, size_t> by_name_;
};

}  // namespace attn::io
