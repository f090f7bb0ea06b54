// LoRA adapters (attn/models/lora.h) against peft (tests/make_lora_fixtures.py): peft's saved adapter loads
// onto the tiny BERT and gives peft's logits, loss, every lora_A / lora_B gradient and merged logits; f64
// gradcheck of LoraLinear; save / load / merge / unmerge round trip; bad adapters are clear errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/models/bert.h"
#include "attn/models/lora.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "fixture_loader.h"
#include "gradcheck.h"
#include "temp_dir.h"

using namespace attn;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(ATTN_FIXTURE_DIR) + "/hf_models";

std::shared_ptr<models::BertForSequenceClassification> tiny_bert() {
  auto clf = models::BertForSequenceClassification::from_pretrained(kDir + "/bert_tiny");
  clf->eval();
  return clf;
}

Tensor logits_of(models::BertForSequenceClassification& clf, const io::SafeTensorsFile& f) {
  return clf.forward(f.get("input_ids").clone(), {.attention_mask = f.get("attention_mask").clone()});
}

TEST(Lora, PeftAdapterGivesPeftLogitsLossGradientsAndMergedLogits) {
  auto clf = tiny_bert();
  auto lora = models::LoraModel::load(*clf, kDir + "/bert_tiny_lora", models::hf_named(clf->hf_parameters()));
  ASSERT_EQ(lora.targets.size(), 4u);  // query and value of 2 layers
  EXPECT_EQ(lora.targets[0].hf_name, "bert.encoder.layer.0.attention.self.query");
  EXPECT_DOUBLE_EQ(lora.targets[0].layer->scaling, 2.0);
  const auto f = io::SafeTensorsFile::open(kDir + "/bert_tiny_lora.safetensors");
  Tensor logits = logits_of(*clf, f);
  EXPECT_TRUE(attn_test::tensors_close(logits, f.get("logits").clone(), 1e-4, 2e-5, "logits"));
  Tensor loss = cross_entropy(logits, f.get("labels").clone());
  EXPECT_NEAR(loss.item(), f.get("loss").clone().item(), 1e-5);
  loss.backward();
  for (const auto& t : lora.targets)
    for (const auto& [part, lin] : {std::pair{"lora_A", t.layer->lora_A}, std::pair{"lora_B", t.layer->lora_B}}) {
      const std::string key = "grad/base_model.model." + t.hf_name + "." + part + ".weight";
      ASSERT_TRUE(f.contains(key)) << key;
      EXPECT_TRUE(attn_test::tensors_close(lin->weight.grad(), f.get(key).clone(), 1e-4, 2e-5, key));
    }
  for (const auto& t : lora.targets) EXPECT_FALSE(t.layer->weight.grad().defined()) << t.name << ": base is frozen";
  NoGradGuard ng;
  lora.merge();
  EXPECT_TRUE(attn_test::tensors_close(logits_of(*clf, f), f.get("merged_logits").clone(), 1e-4, 2e-5, "merged"));
}

TEST(Lora, LoraLinearGradcheckInFloat64) {
  manual_seed(3);
  nn::Linear base(5, 4);
  base.to(kFloat64);
  models::LoraLinear layer(base, 2, 6.0, 0.0);
  EXPECT_EQ(layer.lora_A->weight.dtype(), kFloat64);
  { NoGradGuard ng; layer.lora_B->weight.copy_(randn({4, 2}, {.dtype = kFloat64})); }  // B = 0 hides A's gradient
  Tensor x = randn({3, 5}, {.dtype = kFloat64, .requires_grad = true});
  EXPECT_TRUE(attn_test::gradcheck([&](const std::vector<Tensor>& v) { return std::vector<Tensor>{layer.forward(v[0])}; },
                                   {x, layer.lora_A->weight, layer.lora_B->weight}));
  // y = W x + b + (alpha / r) B A x, written out
  Tensor want = add(linear(x, base.weight, base.bias), mm(mm(x, layer.lora_A->weight.t()), layer.lora_B->weight.t()) * 3.0);
  EXPECT_TRUE(attn_test::tensors_close(layer.forward(x), want, 1e-12, 1e-12, "formula"));
}

TEST(Lora, SaveLoadMergeUnmergeRoundTrip) {
  manual_seed(5);
  auto clf = tiny_bert();
  const Tensor base_query = clf->bert->encoder->get_parameter("layers.1.self_attn.query.weight").clone();
  models::freeze(*clf, "bert.*");
  auto lora = models::LoraModel::apply(*clf, {.r = 2, .alpha = 4, .dropout = 0.1,
                                              .target_pattern = "attention.self.query|*.self.key|linear1"},
                                       models::hf_named(clf->hf_parameters()));
  ASSERT_EQ(lora.targets.size(), 6u);
  EXPECT_EQ(lora.targets.back().hf_name, "bert.encoder.layer.1.intermediate.dense");
  EXPECT_NO_THROW(clf->get_parameter("bert.encoder.layers.0.self_attn.query.lora_A.weight"));
  int64_t trainable = 0;
  for (const auto& [name, p] : clf->named_parameters())
    if (p.requires_grad()) {
      ++trainable;
      EXPECT_TRUE(name.find("lora_") != std::string::npos || name.rfind("classifier.", 0) == 0) << name;
    }
  EXPECT_EQ(trainable, 6 * 2 + 2);
  { NoGradGuard ng; for (auto& p : lora.parameters()) p.copy_(randn(p.shape()) * 0.5); }
  clf->eval();
  const auto f = io::SafeTensorsFile::open(kDir + "/bert_tiny_lora.safetensors");
  NoGradGuard ng;
  const Tensor adapted = logits_of(*clf, f);
  EXPECT_GT(max(abs(sub(adapted, logits_of(*tiny_bert(), f)))).item(), 1e-3);  // the adapters do something
  attn_test::TempDir tmp("attn_lora");
  lora.save(tmp.path + "/adapter");
  auto again = tiny_bert();
  auto loaded = models::LoraModel::load(*again, tmp.path + "/adapter", models::hf_named(again->hf_parameters()));
  EXPECT_EQ(loaded.config.target_modules, lora.config.target_modules);
  EXPECT_DOUBLE_EQ(loaded.config.dropout, 0.1);
  EXPECT_TRUE(attn_test::tensors_close(logits_of(*again, f), adapted, 0, 0, "loaded"));
  loaded.merge();
  EXPECT_TRUE(attn_test::tensors_close(logits_of(*again, f), adapted, 0, 1e-5, "merged"));
  loaded.unmerge();
  EXPECT_TRUE(attn_test::tensors_close(again->bert->encoder->get_parameter("layers.1.self_attn.query.weight"),
                                       base_query, 0, 1e-6, "unmerged"));
  EXPECT_TRUE(attn_test::tensors_close(logits_of(*again, f), adapted, 0, 1e-5, "unmerged logits"));
}

TEST(Lora, BadAdaptersAndPatternsAreClearErrors) {
  auto clf = tiny_bert();
  auto hf = models::hf_named(clf->hf_parameters());
  try {
    models::LoraModel::apply(*clf, {.r = 2, .target_pattern = "no_such_module"}, hf);
    FAIL();
  } catch (const std::invalid_argument& e) { EXPECT_NE(std::string(e.what()).find("no_such_module"), std::string::npos); }
  EXPECT_THROW(models::LoraModel::apply(*clf, {.r = 0, .target_pattern = "query"}, hf), std::invalid_argument);
  attn_test::TempDir tmp("attn_lora");
  fs::copy(kDir + "/bert_tiny_lora", tmp.path + "/a");
  io::save_safetensors(tmp.path + "/a/adapter_model.safetensors",
                       {{"base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight", zeros({4, 16})}});
  auto fresh = tiny_bert();
  try {
    models::LoraModel::load(*fresh, tmp.path + "/a", models::hf_named(fresh->hf_parameters()));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("query.lora_B.weight"), std::string::npos) << e.what();
  }
  std::ofstream(tmp.path + "/a/adapter_config.json") << R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": true, "target_modules": ["query"]})";
  auto fresh2 = tiny_bert();
  EXPECT_THROW(models::LoraModel::load(*fresh2, tmp.path + "/a", models::hf_named(fresh2->hf_parameters())),
               std::invalid_argument);
}

// adapter_config.json's reader (also fuzzed: tests/fuzz/fuzz_lora_config.cc): absurd or ill-typed fields
// are errors naming the file and the key, never a huge allocation or a float-to-int overflow.
TEST(Lora, AdapterConfigFieldsAreChecked) {
  const std::string ok = R"("peft_type": "LORA", "lora_dropout": 0.1, "target_modules": ["query", "value"])";
  const models::LoraConfig c = models::parse_adapter_config("{" + ok + R"(, "r": 4, "lora_alpha": 8})", "a.json");
  EXPECT_EQ(c.r, 4);
  EXPECT_EQ(c.alpha, 8.0);
  EXPECT_EQ(c.dropout, 0.1);
  EXPECT_EQ(c.target_modules, (std::vector<std::string>{"query", "value"}));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{" + ok + R"(, "r": 0, "lora_alpha": 8})", "'r'"},
      {"{" + ok + R"(, "r": 100000000000, "lora_alpha": 8})", "'r'"},
      {"{" + ok + R"(, "r": 1e300, "lora_alpha": 8})", "'r'"},
      {"{" + ok + R"(, "r": 4.5, "lora_alpha": 8})", "'r'"},
      {"{" + ok + R"(, "r": 4, "lora_alpha": "8"})", "'lora_alpha'"},
      {"{" + ok + R"(, "r": 4, "lora_alpha": 1e999})", "a.json"},
      {R"({"r": 4, "lora_alpha": 8, "lora_dropout": 1.0, "target_modules": ["q"]})", "'lora_dropout'"},
      {R"({"r": 4, "lora_alpha": 8, "target_modules": []})", "'target_modules'"},
      {R"({"r": 4, "lora_alpha": 8, "target_modules": [""]})", "'target_modules'"},
      {R"({"r": 4, "lora_alpha": 8, "target_modules": [1]})", "a.json"},
      {R"({"r": 4, "lora_alpha": 8})", "target_modules"},
      {R"({"peft_type": "IA3", "r": 4, "lora_alpha": 8, "target_modules": ["q"]})", "IA3"},
      {"[1, 2]", "a.json"},
      {"{\"r\": 4", "a.json"},
  };
  for (const auto& [text, part] : bad) {
    try {
      models::parse_adapter_config(text, "a.json");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("a.json"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
