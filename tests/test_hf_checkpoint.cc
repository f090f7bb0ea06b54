// tests/test_hf_checkpoint.cc — Hugging Face model directories (io/hf_checkpoint.h): every weights
// layout gives the same tensors (fixtures from tests/make_hf_fixtures.py), fp16/bf16 convert to fp32,
// key reports, and damaged configs / indexes as errors naming the file and key.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "attn/io/hf_checkpoint.h"
#include "expect_error.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using attn::Tensor;
using attn::io::HFCheckpoint;
using attn::io::HFConfig;

namespace {

const std::string kHF = std::string(ATTN_FIXTURE_DIR) + "/hf/";

std::vector<float> values(const Tensor& t) {
  Tensor c = t.contiguous();
  EXPECT_EQ(c.dtype(), attn::kFloat32);
  const float* p = static_cast<const float*>(c.raw_data());
  return std::vector<float>(p, p + c.numel());
}

// Every tensor of `dir` equals the one in `ref` within a relative `tol` (0: bit for bit).
void expect_same_weights(const std::string& dir, const std::string& ref, float tol) {
  SCOPED_TRACE(dir);
  HFCheckpoint a = HFCheckpoint::open(kHF + dir), b = HFCheckpoint::open(kHF + ref);
  ASSERT_EQ(a.keys(), b.keys());
  ASSERT_GT(a.keys().size(), 10u);
  for (const auto& key : a.keys()) {
    Tensor x = a.get(key), y = b.get(key);
    ASSERT_EQ(x.shape(), y.shape()) << key;
    EXPECT_EQ(a.shape(key), x.shape()) << key;
    if (y.dtype() != attn::kFloat32) {  // integer buffers, if any
      EXPECT_EQ(x.dtype(), y.dtype()) << key;
      continue;
    }
    std::vector<float> u = values(x), v = values(y);
    for (size_t i = 0; i < u.size(); ++i)
      if (!(std::fabs(u[i] - v[i]) <= tol * std::fabs(v[i]) + (tol > 0 ? 1e-7f : 0.f))) {
        ADD_FAILURE() << key << "[" << i << "]: " << u[i] << " vs " << v[i];
        break;
      }
  }
}

}  // namespace

TEST(HFCheckpoint, EveryWeightsLayoutGivesTheSameTensors) {
  expect_same_weights("bert_st_sharded", "bert_st", 0);
  expect_same_weights("bert_bin", "bert_st", 0);
  expect_same_weights("bert_bin_sharded", "bert_st", 0);
  expect_same_weights("gpt2_bin", "gpt2_st", 0);
  EXPECT_EQ(HFCheckpoint::open(kHF + "bert_bin_sharded").weights_file(), kHF + "bert_bin_sharded/pytorch_model.bin.index.json");
  EXPECT_EQ(HFCheckpoint::open(kHF + "bert_st").weights_file(), kHF + "bert_st/model.safetensors");
}

TEST(HFCheckpoint, HalfPrecisionConvertsToFloat32OnLoad) {
  expect_same_weights("bert_st_fp16", "bert_st", 1.0f / 2048);  // fp16: 11-bit significand
  expect_same_weights("gpt2_bin_bf16", "gpt2_st", 1.0f / 256);  // bf16: 8-bit significand
  HFCheckpoint ck = HFCheckpoint::open(kHF + "gpt2_bin_bf16");
  EXPECT_EQ(ck.get("transformer.wte.weight").dtype(), attn::kFloat32);
}

TEST(HFCheckpoint, ConfigAccessors) {
  HFCheckpoint ck = HFCheckpoint::open(kHF + "bert_st");
  const HFConfig& c = ck.config();
  EXPECT_EQ(c.get_int("hidden_size", 1, 1 << 16), 8);
  EXPECT_EQ(c.get_string("model_type"), "bert");
  EXPECT_EQ(c.get_strings("architectures"), std::vector<std::string>{"BertModel"});
  EXPECT_NEAR(c.get_float("layer_norm_eps", 0, 1), 1e-12, 1e-20);
  EXPECT_EQ(c.get_int("no_such_key", 0, 10, 7), 7);
  EXPECT_FALSE(c.has("no_such_key"));
  expect_error([&] { c.get_int("no_such_key", 0, 10); }, {"config.json", "no_such_key", "missing"});
  expect_error([&] { c.get_int("hidden_size", 16, 32); }, {"config.json", "hidden_size", "out of range [16, 32]"});
  expect_error([&] { c.get_string("hidden_size"); }, {"hidden_size", "must be a string"});
  expect_error([&] { c.get_int("model_type", 0, 1); }, {"model_type", "must be an integer"});
  expect_error([&] { c.get_bool("model_type"); }, {"model_type", "true or false"});
}

TEST(HFCheckpoint, KeyReportNamesMissingUnexpectedAndMisShapedKeys) {
  HFCheckpoint ck = HFCheckpoint::open(kHF + "bert_bin");
  std::map<std::string, attn::Shape> expected;
  for (const auto& k : ck.keys()) expected[k] = ck.shape(k);
  EXPECT_TRUE(ck.check_keys(expected).ok());
  expected.erase("pooler.dense.bias");
  expected["pooler.extra.weight"] = {8};
  expected["embeddings.word_embeddings.weight"] = {41, 8};
  attn::io::KeyReport r = ck.check_keys(expected);
  EXPECT_EQ(r.missing, std::vector<std::string>{"pooler.extra.weight"});
  EXPECT_EQ(r.unexpected, std::vector<std::string>{"pooler.dense.bias"});
  ASSERT_EQ(r.mis_shaped.size(), 1u);
  expect_error([&] { r.throw_if_any(); },
               {"pytorch_model.bin", "pooler.extra.weight", "pooler.dense.bias", "embeddings.word_embeddings.weight",
                "(40, 8)", "(41, 8)"});
  expect_error([&] { ck.get("nope"); }, {"pytorch_model.bin", "nope"});
}

TEST(HFCheckpoint, DamagedConfigsAreErrorsNamingFileAndKey) {
  attn_test::TempDir d("attn_hf");
  fs::copy_file(kHF + "bert_st/model.safetensors", d.file("model.safetensors"));
  expect_error([&] { HFCheckpoint::open(d.path); }, {"config.json", "missing"});
  std::ifstream in(kHF + "bert_st/config.json");
  const std::string good((std::istreambuf_iterator<char>(in)), {});
  auto with = [&](const std::string& key, const std::string& value) {
    std::string text = good;
    size_t at = text.find("\"" + key + "\"");
    EXPECT_NE(at, std::string::npos) << key;
    size_t colon = text.find(':', at), end = text.find_first_of(",\n}", colon);
    return text.substr(0, colon + 1) + " " + value + text.substr(end);
  };
  struct Case { std::string key, value, message; };
  for (const Case& c : std::vector<Case>{{"hidden_size", "-8", "out of range"},
                                         {"hidden_size", "1e12", "out of range"},
                                         {"hidden_size", "8.5", "must be an integer"},
                                         {"vocab_size", "\"big\"", "must be an integer"},
                                         {"num_hidden_layers", "100000", "out of range"},
                                         {"num_attention_heads", "3", "do not divide"},
                                         {"max_position_embeddings", "0", "out of range"},
                                         {"layer_norm_eps", "5", "out of range"},
                                         {"hidden_dropout_prob", "-0.1", "out of range"},
                                         {"model_type", "7", "must be a string"}}) {
    d.write("config.json", with(c.key, c.value));
    expect_error([&] { HFCheckpoint::open(d.path); }, {"config.json", c.key, c.message});
  }
  for (const std::string& bad : {std::string("[1, 2]"), std::string("{\"a\": "), std::string(""),
                                 std::string(10000, '[') + std::string(10000, ']')}) {
    d.write("config.json", bad);
    expect_error([&] { HFCheckpoint::open(d.path); }, {"config.json"});
  }
  expect_error([] { HFConfig::parse("{\"n_head\": 4, \"n_embd\": 10}", "c.json"); }, {"c.json", "n_head", "do not divide"});
}

TEST(HFCheckpoint, DamagedIndexesAndMissingWeightsAreErrors) {
  attn_test::TempDir d("attn_hf");
  fs::copy_file(kHF + "bert_st/config.json", d.file("config.json"));
  expect_error([&] { HFCheckpoint::open(d.path); }, {"no weights"});
  expect_error([&] { HFCheckpoint::open(d.file("nowhere")); }, {"nowhere", "not a model directory"});
  fs::copy_file(kHF + "bert_st_sharded/model-00001-of-00002.safetensors", d.file("model-00001-of-00002.safetensors"));
  const std::string index = "model.safetensors.index.json";
  d.write(index, R"({"metadata": {}})");
  expect_error([&] { HFCheckpoint::open(d.path); }, {index, "weight_map", "missing"});
  d.write(index, R"({"weight_map": {"pooler.dense.bias": "../bert_st/model.safetensors"}})");
  expect_error([&] { HFCheckpoint::open(d.path); }, {index, "pooler.dense.bias", "not a file name"});
  d.write(index, R"({"weight_map": {"pooler.dense.bias": 3}})");
  expect_error([&] { HFCheckpoint::open(d.path); }, {index, "pooler.dense.bias", "file name string"});
  d.write(index, R"({"weight_map": {"no.such.tensor": "model-00001-of-00002.safetensors"}})");
  expect_error([&] { HFCheckpoint::open(d.path); }, {index, "no.such.tensor", "has no tensor"});
  d.write(index, R"({"weight_map": {"a": "model-00002-of-00002.safetensors"}})");
  expect_error([&] { HFCheckpoint::open(d.path); }, {"model-00002-of-00002.safetensors", "cannot open"});
  // A truncated weights file.
  fs::remove(d.file(index));
  std::ifstream in(kHF + "bert_bin/pytorch_model.bin", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  d.write("pytorch_model.bin", bytes.substr(0, bytes.size() / 2));
  expect_error([&] { HFCheckpoint::open(d.path); }, {"pytorch_model.bin"});
}
