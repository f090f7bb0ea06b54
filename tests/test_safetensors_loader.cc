// tests/test_safetensors_loader.cc — safetensors header parsing is linear in the number of entries:
// a 200,000-entry (~16 MB) header parses in seconds (it took minutes while the duplicate-key check
// rescanned the enclosing object after every entry), duplicates among them are still found.
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "attn/io/safetensors.h"

using attn::io::SafeTensorsFile;

namespace {

// {"tensor.000000.weight.<padding>": {"dtype":"F32","shape":[1],"data_offsets":[4i,4i+4]}, ...}, ~80 bytes each.
std::string many_entries_file(size_t n, bool duplicate_last) {
  std::string header = "{";
  char buf[160];
  for (size_t i = 0; i < n; ++i) {
    size_t name = duplicate_last && i == n - 1 ? 7 : i;
    std::snprintf(buf, sizeof buf, "%s\"layers.%06zu.attention.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}",
                  i ? "," : "", name, 4 * i, 4 * i + 4);
    header += buf;
  }
  header += "}";
  uint64_t len = header.size();
  std::string file(8, '\0');
  std::memcpy(file.data(), &len, 8);
  file += header;
  std::string data(4 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    float v = float(i);
    std::memcpy(data.data() + 4 * i, &v, 4);
  }
  return file + data;
}

}  // namespace

TEST(SafeTensorsLoader, TwoHundredThousandEntryHeaderParsesInLinearTime) {
  const size_t n = 200000;
  std::string bytes = many_entries_file(n, false);
  EXPECT_GT(bytes.size(), size_t(16) << 20);  // the 16 MB header of the issue
  SafeTensorsFile f = SafeTensorsFile::from_bytes(std::move(bytes), "many.safetensors");
  ASSERT_EQ(f.keys().size(), n);
  attn::Tensor t = f.get("layers.123456.attention.weight");
  EXPECT_EQ(t.shape(), attn::Shape{1});
  EXPECT_EQ(t.item<float>(), 123456.0f);
}

TEST(SafeTensorsLoader, DuplicateAmongManyEntriesIsNamed) {
  try {
    SafeTensorsFile::from_bytes(many_entries_file(20000, true), "dup.safetensors");
    ADD_FAILURE() << "duplicate key accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("dup.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'layers.000007.attention.weight': duplicate key"), std::string::npos) << e.what();
  }
}
