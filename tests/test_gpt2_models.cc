// GPT-2 against Hugging Face transformers (tests/make_hf_model_fixtures.py): a tiny randomly initialised
// GPT2LMHeadModel saved by save_pretrained — logits, LM loss and every parameter's gradient (the tied head
// included); greedy generation token-identical to transformers' generate (with and without a repetition
// penalty); the logits processors equal to transformers'; the key/value cache equal to the full forward;
// seeded sampling.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/models/gpt2.h"
#include "attn/ops.h"
#include "fixture_loader.h"

using namespace attn;

namespace {

const std::string kDir = std::string(ATTN_FIXTURE_DIR) + "/hf_models";

struct Gpt2Fixture : ::testing::Test {
  io::SafeTensorsFile f = io::SafeTensorsFile::open(kDir + "/gpt2_tiny.safetensors");
  std::shared_ptr<models::GPT2LMHeadModel> model = models::GPT2LMHeadModel::from_pretrained(kDir + "/gpt2_tiny");
  Tensor get(const std::string& k) const { return f.get(k).clone(); }
  void SetUp() override { model->eval(); }
};

TEST_F(Gpt2Fixture, LogitsLossAndEveryGradientMatchTransformers) {
  const Tensor ids = get("input_ids");
  Tensor logits = model->forward(ids);
  EXPECT_TRUE(attn_test::tensors_close(logits, get("logits"), 1e-4, 2e-5, "logits"));
  // HF's causal LM loss: position t predicts token t + 1
  const int64_t N = ids.size(0), T = ids.size(1), V = logits.size(2);
  Tensor loss = cross_entropy(logits.narrow(1, 0, T - 1).reshape({N * (T - 1), V}),
                              ids.narrow(1, 1, T - 1).reshape({N * (T - 1)}));
  EXPECT_NEAR(loss.item(), get("loss").item(), 1e-5);
  loss.backward();
  size_t compared = 0;
  for (const auto& [key, param, layout] : model->hf_parameters()) {
    ASSERT_TRUE(f.contains("grad/" + key)) << key;
    // HF's Conv1D weights are stored (in, out): their gradients too
    const Tensor g = layout == nn::VarBuilder::Transposed ? param.grad().t() : param.grad();
    EXPECT_TRUE(attn_test::tensors_close(g.contiguous(), get("grad/" + key), 1e-4, 2e-5, "grad " + key));
    ++compared;
  }
  EXPECT_EQ(compared, model->parameters().size());  // the head is wte itself: no extra parameter
  size_t hf_grads = 0;
  for (const auto& k : f.keys()) hf_grads += k.rfind("grad/", 0) == 0;
  EXPECT_EQ(compared, hf_grads);
}

TEST_F(Gpt2Fixture, ShardedSafetensorsGiveTheSameModel) {  // model.safetensors.index.json + 3 shards
  auto sharded = models::GPT2LMHeadModel::from_pretrained(kDir + "/gpt2_tiny_sharded");
  sharded->eval();
  EXPECT_TRUE(attn_test::tensors_close(sharded->forward(get("input_ids")), get("logits"), 1e-4, 2e-5, "sharded logits"));
}

TEST_F(Gpt2Fixture, GreedyGenerationIsTokenIdenticalToTransformersGenerate) {
  const Tensor prompt = get("prompt");
  for (bool cache : {true, false}) {
    Tensor out = model->generate(prompt, {.max_new_tokens = 12, .use_cache = cache});
    EXPECT_EQ(out.to_vector<int64_t>(), get("greedy").to_vector<int64_t>()) << "use_cache " << cache;
    Tensor rep = model->generate(prompt, {.max_new_tokens = 12, .repetition_penalty = 1.5, .use_cache = cache});
    EXPECT_EQ(rep.to_vector<int64_t>(), get("greedy_rep").to_vector<int64_t>()) << "use_cache " << cache;
  }
}

TEST_F(Gpt2Fixture, CachedStepsEqualTheFullForward) {
  const Tensor ids = get("input_ids");  // (2, 8)
  NoGradGuard ng;
  const Tensor full = model->forward(ids);
  models::GPT2Cache cache;
  std::vector<Tensor> steps = {model->forward_step(ids.narrow(1, 0, 3), cache)};  // a prefix, then one at a time
  for (int64_t t = 3; t < ids.size(1); ++t) steps.push_back(model->forward_step(ids.narrow(1, t, 1), cache));
  EXPECT_EQ(cache.length(), ids.size(1));
  EXPECT_TRUE(attn_test::tensors_close(cat(steps, 1), full, 1e-5, 1e-5, "cached logits"));
}

TEST_F(Gpt2Fixture, RightPaddingLeavesTheTokensLogitsUnchanged) {
  const Tensor ids = get("input_ids");  // (2, 8); row 1 cut to 5 tokens and right-padded
  NoGradGuard ng;
  Tensor padded = ids.clone();
  padded.select(0, 1).narrow(0, 5, 3).fill_(0);
  Tensor mask = ones({2, 8}, {.dtype = kInt64});
  mask.select(0, 1).narrow(0, 5, 3).fill_(0);
  const Tensor got = model->forward(padded, mask);
  const Tensor row1 = model->forward(ids.narrow(0, 1, 1).narrow(1, 0, 5));  // (1, 5, V) alone, unpadded
  EXPECT_TRUE(attn_test::tensors_close(got.narrow(0, 1, 1).narrow(1, 0, 5).contiguous(), row1, 1e-5, 1e-5, "padded row"));
  EXPECT_TRUE(attn_test::tensors_close(got.narrow(0, 0, 1).contiguous(), get("logits").narrow(0, 0, 1).contiguous(),
                                       1e-4, 2e-5, "full row"));
}

TEST_F(Gpt2Fixture, SamplingWithTheCacheEqualsWithoutAndIsSeeded) {
  const Tensor prompt = get("prompt");
  models::GenerationOptions o{.max_new_tokens = 15, .do_sample = true, .temperature = 0.9, .top_k = 20,
                              .top_p = 0.9, .repetition_penalty = 1.2, .seed = 7};
  const auto a = model->generate(prompt, o).to_vector<int64_t>();
  o.use_cache = false;
  EXPECT_EQ(model->generate(prompt, o).to_vector<int64_t>(), a);
  o.use_cache = true;
  EXPECT_EQ(model->generate(prompt, o).to_vector<int64_t>(), a);
  bool differs = false;
  for (uint64_t seed = 8; seed < 12 && !differs; ++seed) {
    o.seed = seed;
    differs = model->generate(prompt, o).to_vector<int64_t>() != a;
  }
  EXPECT_TRUE(differs) << "sampling ignores its seed";
  // top_k = 1 leaves only the argmax: sampling is greedy decoding
  const auto greedy = model->generate(prompt, {.max_new_tokens = 12}).to_vector<int64_t>();
  EXPECT_EQ(model->generate(prompt, {.max_new_tokens = 12, .do_sample = true, .top_k = 1, .seed = 3}).to_vector<int64_t>(),
            greedy);
}

TEST_F(Gpt2Fixture, StopsAtEosAndPadsFinishedRows) {
  const Tensor prompt = get("prompt");  // (2, 5)
  const std::vector<int64_t> greedy = get("greedy").to_vector<int64_t>();  // (2, 17)
  const int64_t L = 17, eos = greedy[5];  // row 0's first generated token: row 0 ends at once
  for (int64_t t = 5; t < L; ++t) ASSERT_NE(greedy[size_t(L + t)], eos) << "row 1 must not hit the EOS";
  const auto v = model->generate(prompt, {.max_new_tokens = 12, .eos_token_id = eos, .pad_token_id = 0})
                     .to_vector<int64_t>();
  ASSERT_EQ(v.size(), greedy.size());
  for (int64_t t = 0; t < L; ++t) {
    EXPECT_EQ(v[size_t(t)], t <= 5 ? greedy[size_t(t)] : 0) << "row 0 pads after its EOS, t " << t;
    EXPECT_EQ(v[size_t(L + t)], greedy[size_t(L + t)]) << "row 1 goes on, t " << t;
  }
}

TEST_F(Gpt2Fixture, LogitsProcessorsMatchTransformers) {
  const auto cases = nlohmann::json::parse(f.metadata().at("processor_cases"));
  const Tensor scores = get("proc/scores"), ids = get("proc/input_ids");
  for (const auto& [name, c] : cases.items()) {
    models::GenerationOptions o{.temperature = c.value("temperature", 1.0), .top_k = c.value("top_k", 0),
                                .top_p = c.value("top_p", 1.0), .repetition_penalty = c.value("repetition_penalty", 1.0)};
    EXPECT_TRUE(attn_test::tensors_close(models::process_logits(scores, ids, o), get("proc/" + name), 1e-6, 1e-6,
                                         "processor " + name));
  }
  EXPECT_THROW(models::process_logits(scores, ids, {.temperature = 0}), std::invalid_argument);
}

TEST_F(Gpt2Fixture, BadInputsAreClearErrors) {
  EXPECT_THROW(model->forward(zeros({1, 33}, {.dtype = kInt64})), std::invalid_argument);  // > n_positions
  EXPECT_THROW(model->generate(get("prompt"), {.max_new_tokens = 40}), std::invalid_argument);
  EXPECT_THROW(model->forward(zeros({4}, {.dtype = kInt64})), std::invalid_argument);
}

}  // namespace
