// The load-following OpenMP team (src/backend/cpu/thread_budget.h, docs/threading.md): the policy, the
// /proc/stat parsing, and the property that makes it safe: a training step, the reductions, layer-norm
// backward, a convolution and the GEMM shapes oneDNN splits differently give the same bits with a team
// of one thread as with the full team (the user's count, here 2, cuts the partitions).
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <functional>
#include <vector>

#include "attn/autograd.h"
#include "attn/models/translator.h"
#include "attn/nn/conv.h"
#include "attn/nn/linear.h"
#include "attn/nn/normalization.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "backend/cpu/thread_budget.h"

using namespace attn;

TEST(ThreadBudget, TeamShrinksWhenOurThreadsWaitAndTriesAgain) {
  using cpu::team_for_load, cpu::LoadSample;
  EXPECT_EQ(team_for_load(2, 2, LoadSample{.others = 0.0, .waited = 0.01}), 2);
  EXPECT_EQ(team_for_load(2, 2, LoadSample{.others = 0.8, .waited = 0.05}), 2);  // busy, but not in our way
  EXPECT_EQ(team_for_load(2, 2, LoadSample{.others = 0.7, .waited = 0.4}), 2);   // a burst of waiting ...
  EXPECT_EQ(team_for_load(2, 2, LoadSample{.others = 0.7, .waited = 0.4, .trying = true}), 1);  // ... after a shrink
  EXPECT_EQ(team_for_load(2, 2, LoadSample{.others = 0.9, .waited = 0.6}), 1);   // a spinning process
  EXPECT_EQ(team_for_load(2, 1, LoadSample{.others = 1.0, .waited = 0.0}), 1);   // stays at one ...
  EXPECT_EQ(team_for_load(2, 1, LoadSample{.others = 1.0, .waited = 0.0, .probe_due = true}), 2);  // ... tries
  EXPECT_EQ(team_for_load(2, 1, LoadSample{.others = 0.2, .waited = 0.0}), 2);   // the others left
  EXPECT_EQ(team_for_load(2, 2, LoadSample{.others = 3.0, .waited = 1.5}), 1);   // never below one
  EXPECT_EQ(team_for_load(4, 4, LoadSample{.others = 1.7, .waited = 0.6}), 2);
  EXPECT_EQ(team_for_load(4, 2, LoadSample{.others = 0.1, .waited = 0.0}), 4);
  EXPECT_EQ(team_for_load(1, 1, LoadSample{.others = 0.0, .waited = 0.0}), 1);
}

TEST(ThreadBudget, BusyTicksOfOurCpusFromProcStat) {
  const char* text =
      "cpu  30 2 10 500 9 4 6 8 0 0\n"
      "cpu0 10 1 5 200 7 2 3 4 0 0\n"
      "cpu1 20 1 5 300 2 2 3 4 0 0\n"
      "intr 12345 0 0 0\n";
  EXPECT_EQ(cpu::busy_ticks_of(text, 0b01, true), 10 + 1 + 5 + 2 + 3 + 4);  // idle and iowait left out
  EXPECT_EQ(cpu::busy_ticks_of(text, 0b11, true), 25 + 35);
  EXPECT_EQ(cpu::busy_ticks_of(text, 0b11, false), 24 + 34);  // niced time left out
  EXPECT_EQ(cpu::busy_ticks_of(text, 0b100, true), -1);
}

namespace {

void append(std::vector<std::vector<float>>& out, const Tensor& t) {
  ASSERT_TRUE(t.defined());
  out.push_back(t.contiguous().to_vector<float>());
}

// Everything the partitions touch, computed with a team of `team` threads (partition count 2).
std::vector<std::vector<float>> compute_with_team(int team) {
  omp_set_num_threads(2);
  cpu::follow_load();  // 2 is the user's count: the partition count
  const int before = cpu::set_team_override(team);
  std::vector<std::vector<float>> out;
  manual_seed(11);
  Tensor probe = zeros({1});  // allocates: the override applies from here
  EXPECT_EQ(omp_get_max_threads(), team);
  {  // a Transformer training step with dropout: layer-norm backward, softmax, attention, GEMMs, Adam's inputs
    models::Translator m({.vocab_size = 300, .d_model = 128, .nhead = 4, .num_encoder_layers = 1,
                          .num_decoder_layers = 1, .dim_feedforward = 1024, .dropout = 0.1, .max_len = 64});
    m.train();
    Tensor src = randint(4, 300, {8, 24}), tgt_in = randint(4, 300, {8, 20}), tgt_out = randint(4, 300, {8, 20});
    Tensor loss = cross_entropy(m.forward(src, tgt_in).flatten(0, 1), tgt_out.flatten(), {.label_smoothing = 0.1});
    loss.backward();
    append(out, loss);
    for (const Tensor& p : m.parameters()) append(out, p.grad());
  }
  {  // the product dnnl_sgemm splits over k with two threads (A @ B^T, k = 2048, 32 rows) and layer norm
    nn::Linear fc({.in_features = 2048, .out_features = 512});
    nn::LayerNorm ln(512);
    Tensor x = randn({32, 2048}, {.requires_grad = true});
    Tensor y = ln(fc(x));
    y.backward(randn(y.shape()));
    append(out, y);
    append(out, x.grad());
    append(out, ln.weight.grad());
    append(out, fc.weight.grad());
  }
  {  // reductions split in two when there are fewer outputs than threads
    Tensor v = randn({1 << 20});
    append(out, v.sum());
    append(out, randn({3, 200000}).sum({1}));
  }
  {  // a convolution's weight gradient (oneDNN's partial sums)
    nn::Conv2d conv({.in_channels = 8, .out_channels = 16, .kernel_size = 3, .padding = 1});
    Tensor x = randn({16, 8, 28, 28});
    Tensor y = conv(x);
    y.backward(randn(y.shape()));
    append(out, conv.weight.grad());
  }
  cpu::set_team_override(before);
  cpu::follow_load();
  return out;
}

}  // namespace

TEST(ThreadBudget, ResultsDoNotDependOnTheTeam) {
  const int saved = omp_get_max_threads();
  const auto full = compute_with_team(2), one = compute_with_team(1);
  ASSERT_EQ(full.size(), one.size());
  for (size_t i = 0; i < full.size(); ++i) {
    ASSERT_EQ(full[i].size(), one[i].size()) << "result " << i;
    EXPECT_EQ(std::memcmp(full[i].data(), one[i].data(), full[i].size() * sizeof(float)), 0)
        << "result " << i << " differs between a team of 2 and a team of 1";
  }
  omp_set_num_threads(saved);
}
