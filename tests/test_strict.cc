// tests/test_strict.cc — the strict test device (strict_backend.h) catches host access, and one
// Transformer training step (embedding, nn::Transformer with dropout and masks, cross-entropy with
// ignore_index, backward, clip_grad_norm_, Adam) runs from one body on the CPU and on the strict device.
// The strict device runs the CPU's kernels, so its step is bit-identical to the CPU's; with the Backend's
// composite defaults for the fused ops (StrictComposite) it agrees within float32 rounding.
//   ./attn_tests --gtest_filter='*Strict*'
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "attn/attn.h"
#include "attn/nn/embedding.h"
#include "attn/nn/linear.h"
#include "attn/nn/transformer.h"
#include "attn/nn/utils.h"
#include "attn/optim/adam.h"
#include "strict_backend.h"

using namespace attn;

namespace {

TEST(StrictBackend, HostCopiesGoThroughTheBackend) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}, {.device = kStrict});
  EXPECT_EQ(x.device(), kStrict);
  EXPECT_FALSE(attn_test::strict_arena_open());  // closed between calls
  EXPECT_EQ(x.t().contiguous().to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ((x * 2.0).sum().item<double>(), 42.0);
  EXPECT_EQ(x.to(kCPU).to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(x.t().to(kCPU).to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(x.to(kCPU).to(kStrict).to_vector<float>(), x.to_vector<float>());
  EXPECT_NE(x.to_string().find("6"), std::string::npos);
  EXPECT_FALSE(attn_test::strict_arena_open());
  EXPECT_GT(attn_test::strict_arena_bytes_in_use(), 0u);
  // gradients cross devices through to(): the CPU leaf gets its gradient back on the CPU
  Tensor leaf = ones({3}, {.requires_grad = true});
  (leaf.to(kStrict) * 3.0).sum().backward();
  EXPECT_EQ(leaf.grad().device(), kCPU);
  EXPECT_EQ(leaf.grad().to_vector<float>(), (std::vector<float>{3, 3, 3}));
}

TEST(StrictBackend, IndexErrorsNameTheOpWithoutHostReads) {
  Tensor table = randn({5, 3}, {.device = kStrict});
  Tensor idx = from_vector<int64_t>({0, 4, 7, 1}, {4}, {.dtype = kInt64, .device = kStrict});
  try {
    embedding(table, idx);
    ADD_FAILURE() << "an out-of-range index was accepted";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("embedding"), std::string::npos) << msg;
    EXPECT_NE(msg.find("value 7 at flat position 2"), std::string::npos) << msg;
  }
  Tensor logits = randn({3, 4}, {.device = kStrict});
  Tensor target = from_vector<int64_t>({1, -100, 4}, {3}, {.dtype = kInt64, .device = kStrict});
  try {
    cross_entropy(logits, target);
    ADD_FAILURE() << "an out-of-range target was accepted";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cross_entropy"), std::string::npos) << msg;
    EXPECT_NE(msg.find("value 4 at flat position 2"), std::string::npos) << msg;  // -100 is ignore_index
  }
}

// A read through a raw pointer into strict memory, outside any backend call, must crash.
TEST(StrictBackendDeathTest, CatchesAHostRead) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor x = ones({16}, {.device = kStrict});
  const float* host_view = static_cast<const float*>(x.raw_data());
  EXPECT_DEATH(
      {
        volatile float v = host_view[3];
        (void)v;
      },
      "");
  EXPECT_DEATH({ static_cast<float*>(x.raw_data())[0] = 2.0f; }, "");
  EXPECT_EQ(x.to_vector<float>()[3], 1.0f);  // the same element through the backend
}

// ---- one Transformer training step per device

struct StepResult {
  std::vector<double> losses;
  std::vector<std::vector<float>> params;  // after the last step
  std::vector<std::vector<float>> grads;   // after the first backward (before clipping)
  double grad_norm = 0;
};

struct Seq2Seq : nn::Module {
  std::shared_ptr<nn::Embedding> src_emb, tgt_emb;
  std::shared_ptr<nn::Transformer> core;
  std::shared_ptr<nn::Linear> head;
  Seq2Seq() {
    src_emb = register_module("src_emb", nn::Embedding({.num_embeddings = 11, .embedding_dim = 16, .padding_idx = 0}));
    tgt_emb = register_module("tgt_emb", nn::Embedding({.num_embeddings = 11, .embedding_dim = 16, .padding_idx = 0}));
    core = register_module("core", nn::Transformer({.d_model = 16, .nhead = 2, .num_encoder_layers = 1,
                                                      .num_decoder_layers = 1, .dim_feedforward = 32, .dropout = 0.1,
                                                      .batch_first = true}));
    head = register_module("head", nn::Linear(16, 11));
  }
  Tensor forward(const Tensor&) override { throw std::logic_error("Seq2Seq: use run()"); }
  Tensor run(const Tensor& src, const Tensor& tgt, const Tensor& causal, const Tensor& src_pad, const Tensor& tgt_pad) {
    Tensor h = core->forward(src_emb->forward(src), tgt_emb->forward(tgt),
                             {.tgt_mask = causal, .src_key_padding_mask = src_pad, .tgt_key_padding_mask = tgt_pad,
                              .memory_key_padding_mask = src_pad});
    return head->forward(h);
  }
};

// Three steps of teacher-forced training from seed 7 with every tensor on `device`.
StepResult train_steps(Device device, bool composites) {
  attn_test::set_strict_composites(composites);
  manual_seed(7);
  Seq2Seq model;
  model.to(device);
  model.train();
  optim::Adam opt(model.parameters(), {.lr = 1e-2, .weight_decay = 0.01});
  const int64_t N = 2, S = 5, T = 4;
  Tensor src = from_vector<int64_t>({3, 4, 5, 6, 0, 7, 8, 2, 0, 0}, {N, S}, {.dtype = kInt64, .device = device});
  Tensor tgt_in = from_vector<int64_t>({1, 5, 6, 7, 1, 9, 3, 0}, {N, T}, {.dtype = kInt64, .device = device});
  Tensor tgt_out = from_vector<int64_t>({5, 6, 7, 2, 9, 3, 2, -100}, {N * T}, {.dtype = kInt64, .device = device});
  std::vector<float> causal_host(size_t(T * T));
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j) causal_host[size_t(i * T + j)] = j > i ? -INFINITY : 0.0f;
  Tensor causal = from_vector<float>(causal_host, {T, T}, {.device = device});
  Tensor src_pad = eq(src, 0.0), tgt_pad = eq(tgt_in, 0.0);
  StepResult r;
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    Tensor logits = model.run(src, tgt_in, causal, src_pad, tgt_pad);  // (N, T, V)
    Tensor loss = cross_entropy(logits.reshape({N * T, 11}), tgt_out, {.label_smoothing = 0.1});
    loss.backward();
    if (step == 0)
      for (const Tensor& p : model.parameters()) r.grads.push_back(p.grad().to_vector<float>());
    r.grad_norm = nn::utils::clip_grad_norm_(model.parameters(), 0.5);
    opt.step();
    r.losses.push_back(loss.item<double>());
  }
  for (const Tensor& p : model.parameters()) {
    EXPECT_EQ(p.device(), device);
    r.params.push_back(p.to_vector<float>());
  }
  attn_test::set_strict_composites(false);
  return r;
}

struct StepCase {
  Device device;
  bool composites;
};

void PrintTo(const StepCase& c, std::ostream* os) {
  *os << device_name(c.device) << (c.composites ? " (composites)" : "");
}

class TransformerStepOn : public ::testing::TestWithParam<StepCase> {};

TEST_P(TransformerStepOn, MatchesTheCpuStep) {
  const StepCase c = GetParam();
  const StepResult want = train_steps(kCPU, false);
  const StepResult got = train_steps(c.device, c.composites);
  ASSERT_EQ(got.losses.size(), 3u);
  EXPECT_LT(got.losses[2], got.losses[0]) << "three Adam steps on one batch should lower the loss";
  EXPECT_GT(got.grad_norm, 0.0);
  ASSERT_EQ(got.params.size(), want.params.size());
  if (!c.composites) {  // the same kernels in the same order: bit-identical
    EXPECT_EQ(got.losses, want.losses);
    EXPECT_EQ(got.grad_norm, want.grad_norm);
    for (size_t i = 0; i < want.params.size(); ++i) EXPECT_EQ(got.params[i], want.params[i]) << "parameter " << i;
    return;
  }
  for (size_t s = 0; s < want.losses.size(); ++s) EXPECT_NEAR(got.losses[s], want.losses[s], 1e-4) << "step " << s;
  EXPECT_NEAR(got.grad_norm, want.grad_norm, 1e-4 * want.grad_norm);
  // Composites: gradients of the first step within float32 rounding. (Parameters after Adam are not
  // compared: Adam normalises each update, so the noise in a gradient that is 0 in exact arithmetic, such
  // as the key projection's bias, moves a weight by up to lr either way.)
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (size_t i = 0; i < want.grads.size(); ++i)
    for (size_t j = 0; j < want.grads[i].size(); ++j)
      ASSERT_NEAR(got.grads[i][j], want.grads[i][j], 1e-5 + 1e-4 * std::abs(want.grads[i][j]))
          << "gradient of parameter " << i << " element " << j;
}

INSTANTIATE_TEST_SUITE_P(Devices, TransformerStepOn,
                         ::testing::Values(StepCase{kCPU, false}, StepCase{kStrict, false}, StepCase{kStrict, true}),
                         [](const ::testing::TestParamInfo<StepCase>& p) {
                           return std::string(p.param.device == kCPU ? "Cpu" : "Strict") +
                                  (p.param.composites ? "Composite" : "");
                         });

}  // namespace
