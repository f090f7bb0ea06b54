// tests/test_optim.cc — optimizers, LR schedulers and gradient clipping against PyTorch trajectories
// (tests/make_module_fixtures.py -> tests/fixtures/optim.safetensors).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "attn/attn.h"

using namespace attn;

namespace {

const std::map<std::string, Tensor>& ofx() {
  static auto f = io::load_safetensors(std::string(ATTN_FIXTURE_DIR) + "/optim.safetensors");
  return f;
}
const Tensor& get(const std::string& key) {
  auto it = ofx().find(key);
  if (it == ofx().end()) throw std::runtime_error("fixture key missing: " + key);
  return it->second;
}

void expect_close(const Tensor& a, const Tensor& b, double rtol, double atol, const std::string& what) {
  ASSERT_TRUE(a.defined()) << what;
  ASSERT_EQ(shape_str(a.shape()), shape_str(b.shape())) << what;
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  for (size_t i = 0; i < va.size(); ++i)
    if (!(std::abs(va[i] - vb[i]) <= atol + rtol * std::abs(vb[i]))) {
      ADD_FAILURE() << what << ": element " << i << " got " << va[i] << ", expected " << vb[i];
      return;
    }
}

constexpr int kSteps = 20;

struct Params {
  Tensor w = get("init.w").clone().requires_grad_(true);
  Tensor b = get("init.b").clone().requires_grad_(true);
  std::vector<Tensor> list() const { return {w, b}; }
  void set_grads(int t) {
    w.set_grad(get("grad" + std::to_string(t) + ".w").clone());
    b.set_grad(get("grad" + std::to_string(t) + ".b").clone());
  }
  void expect_step(const std::string& cfg, int t) {
    expect_close(w, get(cfg + ".step" + std::to_string(t) + ".w"), 1e-5, 1e-6, cfg + " step " + std::to_string(t) + " w");
    expect_close(b, get(cfg + ".step" + std::to_string(t) + ".b"), 1e-5, 1e-6, cfg + " step " + std::to_string(t) + " b");
  }
};

using MakeOpt = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>;

// Same configurations as OPTIM_CONFIGS in make_module_fixtures.py.
std::vector<std::pair<std::string, MakeOpt>> configs() {
  using namespace optim;
  return {
      {"sgd", [](auto ps) { return std::make_unique<SGD>(ps, SGDOptions{.lr = 0.1}); }},
      {"sgd_momentum",
       [](auto ps) {
         return std::make_unique<SGD>(ps, SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
       }},
      {"sgd_nesterov",
       [](auto ps) {
         return std::make_unique<SGD>(ps, SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true});
       }},
      {"adam", [](auto ps) { return std::make_unique<Adam>(ps, AdamOptions{.lr = 1e-2}); }},
      {"adam_betas",
       [](auto ps) { return std::make_unique<Adam>(ps, AdamOptions{.lr = 3e-2, .betas = {0.8, 0.99}, .eps = 1e-6}); }},
      {"adam_wd_amsgrad",
       [](auto ps) { return std::make_unique<Adam>(ps, AdamOptions{.lr = 1e-2, .weight_decay = 0.1, .amsgrad = true}); }},
      {"adamw", [](auto ps) { return std::make_unique<AdamW>(ps, AdamWOptions{.lr = 1e-2, .weight_decay = 0.1}); }},
      {"adamw_amsgrad", [](auto ps) { return std::make_unique<AdamW>(ps, AdamWOptions{.lr = 2e-2, .amsgrad = true}); }},
  };
}

}  // namespace

TEST(Optim, TrajectoriesMatchPyTorch) {
  for (auto& [name, make] : configs()) {
    SCOPED_TRACE(name);
    Params p;
    auto opt = make(p.list());
    for (int t = 0; t < kSteps; ++t) {
      p.set_grads(t);
      opt->step();
      p.expect_step(name, t);
    }
  }
}

TEST(Optim, StateDictResumesExactly) {
  for (auto& [name, make] : configs()) {
    SCOPED_TRACE(name);
    Params p;
    auto opt = make(p.list());
    for (int t = 0; t < 10; ++t) {
      p.set_grads(t);
      opt->step();
    }
    // through the safetensors format, as a checkpoint would
    auto file = io::SafeTensorsFile::from_bytes(io::serialize_safetensors(opt->state_dict()));
    std::map<std::string, Tensor> sd;
    for (auto& k : file.keys()) sd[k] = file.get(k);
    if (name.rfind("adam", 0) == 0) {
      EXPECT_TRUE(sd.count("state.0.exp_avg"));
      EXPECT_TRUE(sd.count("state.1.exp_avg_sq"));
      EXPECT_EQ(sd.at("state.0.step").item(), 10.0);
    }
    EXPECT_TRUE(sd.count("param_groups.0.lr"));
    Params q;
    q.w = p.w.detach().clone().requires_grad_(true);
    q.b = p.b.detach().clone().requires_grad_(true);
    auto resumed = make(q.list());
    resumed->set_lr(123.0);  // overwritten by the checkpoint
    resumed->load_state_dict(sd);
    EXPECT_NE(resumed->get_lr(), 123.0);
    for (int t = 10; t < kSteps; ++t) {
      q.set_grads(t);
      resumed->step();
      q.expect_step(name, t);
    }
  }
}

TEST(Optim, StateDictErrors) {
  Params p;
  optim::Adam opt(p.list(), {.lr = 0.1});
  p.set_grads(0);
  opt.step();
  auto sd = opt.state_dict();
  Params q;
  optim::Adam other({q.w}, {.lr = 0.1});
  EXPECT_THROW(other.load_state_dict(sd), std::invalid_argument);  // 1 param vs 2
  auto bad = sd;
  bad["state.0.exp_avg"] = zeros({2, 2});
  try {
    optim::Adam fresh(q.list(), {});
    fresh.load_state_dict(bad);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("state.0.exp_avg"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2, 2)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(4, 3)"), std::string::npos) << msg;
  }
  EXPECT_THROW(optim::Adam(p.list(), {.lr = -1}), std::invalid_argument);
  EXPECT_THROW(optim::Adam(p.list(), {.betas = {1.0, 0.9}}), std::invalid_argument);
  EXPECT_THROW(optim::SGD(p.list(), {.lr = 0.1, .nesterov = true}), std::invalid_argument);
  EXPECT_THROW(optim::SGD({p.w, p.w}, {.lr = 0.1}), std::invalid_argument);
}

TEST(Optim, ZeroGradAndSkipsParamsWithoutGrad) {
  Params p;
  optim::SGD opt(p.list(), {.lr = 0.1});
  p.set_grads(0);
  opt.zero_grad(/*set_to_none=*/false);
  EXPECT_EQ(sum(abs(p.w.grad())).item(), 0.0);
  opt.zero_grad();
  EXPECT_FALSE(p.w.grad().defined());
  Tensor before = p.w.clone();
  p.b.set_grad(ones({3}));
  opt.step();  // w has no grad: untouched
  expect_close(p.w, before, 0, 0, "w without grad");
  expect_close(p.b, get("init.b") - 0.1, 1e-6, 1e-6, "b");
}

TEST(Optim, ParamGroupsHaveTheirOwnOptions) {
  Params p;
  optim::SGD opt({{.params = {p.w}, .options = {.lr = 0.1}}, {.params = {p.b}, .options = {.lr = 0.01, .momentum = 0.5}}});
  ASSERT_EQ(opt.num_param_groups(), 2u);
  p.w.set_grad(ones({4, 3}));
  p.b.set_grad(ones({3}));
  opt.step();
  opt.step();
  expect_close(p.w, get("init.w") - 0.2, 1e-6, 1e-6, "group 0: plain SGD");
  expect_close(p.b, get("init.b") - 0.01 * (1 + 1.5), 1e-6, 1e-6, "group 1: momentum 0.5");
  opt.param_groups()[1].options.lr = 0.0;
  EXPECT_EQ(opt.get_lr(1), 0.0);
  EXPECT_THROW(opt.add_param_group({.params = {p.w}, .options = {}}), std::invalid_argument);  // already present
}

// ----------------------------------------------------------------------------------- schedulers

namespace {
void check_schedule(const std::string& name, const std::function<std::unique_ptr<optim::LRScheduler>(optim::Optimizer&)>& make,
                    int64_t epochs = 30) {
  SCOPED_TRACE(name);
  Tensor p1 = zeros({1}, {.requires_grad = true}), p2 = zeros({1}, {.requires_grad = true});
  optim::SGD opt({{.params = {p1}, .options = {.lr = 0.5}}, {.params = {p2}, .options = {.lr = 0.1}}});
  auto sched = make(opt);
  auto expected = get("sched." + name).to_vector<double>();  // (30, 2)
  for (int64_t t = 0; t < epochs; ++t) {
    for (size_t g = 0; g < 2; ++g)
      EXPECT_NEAR(opt.get_lr(g), expected[size_t(t) * 2 + g], 1e-12 + 1e-10 * std::abs(expected[size_t(t) * 2 + g]))
          << "epoch " << t << " group " << g;
    EXPECT_EQ(sched->get_last_lr()[0], opt.get_lr(0));
    opt.step();
    sched->step();
  }
}
}  // namespace

TEST(LRScheduler, MatchPyTorch) {
  using namespace optim;
  check_schedule("step", [](Optimizer& o) { return std::make_unique<StepLR>(o, StepLROptions{.step_size = 3, .gamma = 0.5}); });
  check_schedule("multistep", [](Optimizer& o) {
    return std::make_unique<MultiStepLR>(o, MultiStepLROptions{.milestones = {12, 5}, .gamma = 0.3});
  });
  check_schedule("exponential", [](Optimizer& o) { return std::make_unique<ExponentialLR>(o, 0.9); });
  check_schedule("cosine", [](Optimizer& o) {
    return std::make_unique<CosineAnnealingLR>(o, CosineAnnealingLROptions{.T_max = 10, .eta_min = 0.01});
  });
  check_schedule("linear", [](Optimizer& o) {
    return std::make_unique<LinearLR>(o, LinearLROptions{.start_factor = 0.25, .end_factor = 1.0, .total_iters = 8});
  });
  check_schedule("warmup_cosine", [](Optimizer& o) {
    auto warm = std::make_shared<LinearLR>(o, LinearLROptions{.start_factor = 0.1, .total_iters = 5});
    auto cos = std::make_shared<CosineAnnealingLR>(o, CosineAnnealingLROptions{.T_max = 20, .eta_min = 1e-3});
    return std::make_unique<SequentialLR>(o, std::vector<std::shared_ptr<LRScheduler>>{warm, cos},
                                          std::vector<int64_t>{5});
  });
  check_schedule(
      "warmup_cosine",
      [](Optimizer& o) {
        return std::make_unique<WarmupCosineLR>(
            o, WarmupCosineLROptions{.warmup_steps = 5, .total_steps = 25, .eta_min = 1e-3, .warmup_start_factor = 0.1});
      },
      26);
  check_schedule("noam", [](Optimizer& o) {
    return std::make_unique<NoamLR>(o, NoamLROptions{.d_model = 512, .warmup_steps = 10});
  });
}

TEST(LRScheduler, LinearWarmupAndStateDict) {
  Tensor p = zeros({1}, {.requires_grad = true});
  optim::AdamW opt({p}, {.lr = 1.0});
  optim::LinearWarmup warm(opt, {.warmup_steps = 4});
  std::vector<double> seen;
  for (int i = 0; i < 6; ++i) {
    seen.push_back(opt.get_lr());
    warm.step();
  }
  EXPECT_EQ(seen, (std::vector<double>{0.0, 0.25, 0.5, 0.75, 1.0, 1.0}));

  optim::SGD sgd({p}, {.lr = 0.5});
  optim::CosineAnnealingLR a(sgd, {.T_max = 10});
  for (int i = 0; i < 3; ++i) a.step();
  auto sd = a.state_dict();
  EXPECT_EQ(sd.at("last_epoch").item(), 3.0);
  optim::SGD sgd2({p}, {.lr = 0.5});
  optim::CosineAnnealingLR b(sgd2, {.T_max = 10});
  b.load_state_dict(sd);
  EXPECT_EQ(sgd2.get_lr(), sgd.get_lr());
  a.step();
  b.step();
  EXPECT_EQ(sgd2.get_lr(), sgd.get_lr());
  EXPECT_THROW(optim::WarmupCosineLR(sgd, {.warmup_steps = 5, .total_steps = 5}), std::invalid_argument);
}

// ------------------------------------------------------------------------------- clip_grad_norm_

TEST(ClipGradNorm, MatchesPyTorch) {
  const double cases[][2] = {{1.0, 2.0}, {100.0, 2.0}, {0.5, INFINITY}, {1.0, 3.0}, {2.0, 1.0}};
  for (int k = 0; k < 5; ++k) {
    SCOPED_TRACE("case " + std::to_string(k));
    std::string c = "clip" + std::to_string(k);
    Tensor a = zeros({4, 3}, {.requires_grad = true}), b = zeros({5}, {.requires_grad = true});
    Tensor none = zeros({2}, {.requires_grad = true});  // no grad: ignored
    a.set_grad(get(c + ".grad0").clone());
    b.set_grad(get(c + ".grad1").clone());
    double norm = nn::utils::clip_grad_norm_({a, none, b}, cases[k][0], cases[k][1]);
    EXPECT_NEAR(norm, get(c + ".norm").item(), 1e-5 * get(c + ".norm").item());
    expect_close(a.grad(), get(c + ".clipped0"), 1e-5, 1e-6, c + " grad 0");
    expect_close(b.grad(), get(c + ".clipped1"), 1e-5, 1e-6, c + " grad 1");
  }
  Tensor a = zeros({2}, {.requires_grad = true});
  EXPECT_EQ(nn::utils::clip_grad_norm_({a}, 1.0), 0.0);
  a.set_grad(from_vector<float>({NAN, 1.0f}, {2}));
  EXPECT_THROW(nn::utils::clip_grad_norm_({a}, 1.0, 2.0, /*error_if_nonfinite=*/true), std::runtime_error);
  a.set_grad(from_vector<float>({-3.0f, 0.5f}, {2}));
  nn::utils::clip_grad_value_({a}, 1.0);
  expect_close(a.grad(), from_vector<float>({-1.0f, 0.5f}, {2}), 0, 0, "clip_grad_value_");
}

// A model moved to another dtype after some steps (Module::to): the optimizer's state follows the
// parameters (converted on the next step, as PyTorch's load_state_dict casts), and the run continues
// as one that had float64 state from the start.
TEST(Optim, StateFollowsModuleTo) {
  for (const std::string kind : {"Adam", "AdamW", "SGD"}) {
    auto run = [&](bool move_midway) {
      manual_seed(3);
      auto net = std::make_shared<nn::Sequential>(nn::Linear(4, 5), nn::Tanh(), nn::Linear(5, 2));
      if (!move_midway) net->to(kFloat64);
      std::unique_ptr<optim::Optimizer> opt;
      const auto params = net->parameters();
      if (kind == "Adam") opt = std::make_unique<optim::Adam>(params, optim::AdamOptions{.lr = 0.05});
      else if (kind == "AdamW") opt = std::make_unique<optim::AdamW>(params, optim::AdamWOptions{.lr = 0.05});
      else opt = std::make_unique<optim::SGD>(params, optim::SGDOptions{.lr = 0.05, .momentum = 0.9});
      Tensor x = randn({8, 4}, {.dtype = kFloat64}), y = randn({8, 2}, {.dtype = kFloat64});
      for (int step = 0; step < 4; ++step) {
        if (move_midway && step == 2) net->to(kFloat64);
        DType dt = net->parameters()[0].dtype();
        opt->zero_grad();
        mse_loss(net->forward(x.to(dt)), y.to(dt)).backward();
        opt->step();
      }
      for (auto& p : net->parameters())
        for (auto& [name, buf] : opt->state_of(p)->buffers) EXPECT_EQ(buf.dtype(), kFloat64) << kind << " " << name;
      return net->parameters()[0].clone();
    };
    Tensor moved = run(true), f64 = run(false);
    // the first two steps ran in float32: close to, not equal to, the all-float64 run
    EXPECT_LT(max(abs(sub(moved, f64))).item(), 1e-4) << kind;
  }
}
