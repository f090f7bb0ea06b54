// tests/test_nn.cc — nn::Module machinery and layers against PyTorch fixtures
// (tests/make_module_fixtures.py -> tests/fixtures/modules*.safetensors).
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "attn/attn.h"

using namespace attn;

namespace {

const std::map<std::string, Tensor>& fixtures(const std::string& file) {
  static std::map<std::string, std::map<std::string, Tensor>> cache;
  auto it = cache.find(file);
  if (it == cache.end()) it = cache.emplace(file, io::load_safetensors(std::string(ATTN_FIXTURE_DIR) + "/" + file)).first;
  return it->second;
}

const Tensor& fx(const std::map<std::string, Tensor>& f, const std::string& key) {
  auto it = f.find(key);
  if (it == f.end()) throw std::runtime_error("fixture key missing: " + key);
  return it->second;
}

std::map<std::string, Tensor> sub_map(const std::map<std::string, Tensor>& f, const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (auto& [k, v] : f)
    if (k.compare(0, prefix.size(), prefix) == 0) out[k.substr(prefix.size())] = v;
  return out;
}

// Elementwise |a - b| <= atol + rtol * |b|, reporting the worst element. A NaN on either side fails
// (a fixture holding NaN would otherwise accept anything); equal infinities pass.
void expect_close(const Tensor& a, const Tensor& b, double rtol, double atol, const std::string& what) {
  ASSERT_TRUE(a.defined()) << what << ": result undefined";
  ASSERT_EQ(shape_str(a.shape()), shape_str(b.shape())) << what;
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double worst = 0;
  size_t wi = 0;
  size_t bad = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    if (va[i] == vb[i]) continue;  // also +-inf against itself
    double excess = std::abs(va[i] - vb[i]) - (atol + rtol * std::abs(vb[i]));
    if (!(excess <= 0)) {  // true for NaN in a or b
      ++bad;
      if (!(excess <= worst)) worst = excess, wi = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << va.size() << " elements differ; worst at " << wi
                     << ": got " << va[wi] << ", expected " << vb[wi];
}

// Loads "<name>.state.*", runs forward + backward with the stored upstream grad and compares the
// output, the input grad, every parameter grad and (BatchNorm training) the updated buffers.
// Runs on `device` (the module is moved there after loading; inputs follow).
void check_case(nn::Module& m, const std::string& name, bool train = true, double tol = 1e-5,
                const std::string& file = "modules.safetensors", Device device = kCPU) {
  SCOPED_TRACE(name + " on " + device_name(device));
  const auto& f = fixtures(file);
  m.load_state_dict(sub_map(f, name + ".state."));
  m.to(device);
  m.train(train);
  Tensor x = fx(f, name + ".input").to(device);
  bool float_input = is_floating(x.dtype());
  if (float_input) x = x.clone().requires_grad_(true);
  Tensor y = m.forward(x);
  EXPECT_EQ(y.device(), device);
  expect_close(y, fx(f, name + ".output"), tol, tol, name + " output");
  y.backward(fx(f, name + ".grad_output").to(device));
  if (float_input) expect_close(x.grad(), fx(f, name + ".grad_input"), tol, tol, name + " grad_input");
  auto grads = sub_map(f, name + ".grad.");
  for (auto& [pname, p] : m.named_parameters()) {
    auto it = grads.find(pname);
    if (it == grads.end()) continue;  // checked separately (e.g. the CNN's fc1.weight)
    expect_close(p.grad(), it->second, tol, tol, name + " grad of " + pname);
  }
  for (auto& [pname, g] : grads) EXPECT_NO_THROW(m.get_parameter(pname)) << "fixture grad for unknown " << pname;
  for (auto& [bname, expected] : sub_map(f, name + ".state_after."))
    expect_close(m.get_buffer(bname), expected, tol, tol, name + " buffer " + bname);
}

// A custom module with nested children, to check key names.
struct EncoderLayer : nn::Module {
  std::shared_ptr<nn::Linear> linear1 = register_module("linear1", nn::Linear(4, 8));
  std::shared_ptr<nn::Linear> linear2 = register_module("linear2", nn::Linear(8, 4));
  std::shared_ptr<nn::LayerNorm> norm = register_module("norm", nn::LayerNorm(4));
  Tensor forward(const Tensor& x) override { return norm->forward(x + linear2->forward(relu(linear1->forward(x)))); }
};
struct Encoder : nn::Module {
  std::shared_ptr<nn::ModuleList> layers = register_module("layers", nn::ModuleList(EncoderLayer(), EncoderLayer()));
  Tensor scale = register_buffer("scale", ones({1}));
  Tensor cache = register_buffer("cache", zeros({2}), /*persistent=*/false);
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (auto& l : *layers) h = l->forward(h);
    return h * scale;
  }
};
struct Model : nn::Module {
  std::shared_ptr<Encoder> encoder = register_module("encoder", std::make_shared<Encoder>());
  std::shared_ptr<nn::Linear> head = register_module("head", nn::Linear(4, 2, /*bias=*/false));
  Tensor forward(const Tensor& x) override { return head->forward(encoder->forward(x)); }
};

}  // namespace

// ------------------------------------------------------------------------------------ Module API

// The fixture comparison itself: a NaN in the expected tensor (a broken fixture) or in the result fails,
// as does a wrong value; equal infinities and values within the tolerance pass.
TEST(ExpectClose, FailsOnNaNOnEitherSideAndOnWrongValues) {
  Tensor good = from_vector<double>({1.0, -2.0, INFINITY}, {3});
  expect_close(good, from_vector<double>({1.0 + 1e-9, -2.0, INFINITY}, {3}), 1e-6, 1e-6, "close");
  EXPECT_NONFATAL_FAILURE(expect_close(good, from_vector<double>({1.0, NAN, INFINITY}, {3}), 1e-6, 1e-6, "nan"),
                          "1 of 3 elements differ");
  EXPECT_NONFATAL_FAILURE(expect_close(from_vector<double>({NAN, -2.0, INFINITY}, {3}), good, 1e-6, 1e-6, "nan"),
                          "1 of 3 elements differ");
  EXPECT_NONFATAL_FAILURE(expect_close(good, from_vector<double>({1.1, -2.0, -INFINITY}, {3}), 1e-6, 1e-6, "off"),
                          "2 of 3 elements differ");
}

TEST(Module, DottedNamesLikePyTorch) {
  Model m;
  std::vector<std::string> names;
  for (auto& [n, p] : m.named_parameters()) names.push_back(n);
  std::vector<std::string> expected = {
      "encoder.layers.0.linear1.weight", "encoder.layers.0.linear1.bias", "encoder.layers.0.linear2.weight",
      "encoder.layers.0.linear2.bias",   "encoder.layers.0.norm.weight",   "encoder.layers.0.norm.bias",
      "encoder.layers.1.linear1.weight", "encoder.layers.1.linear1.bias", "encoder.layers.1.linear2.weight",
      "encoder.layers.1.linear2.bias",   "encoder.layers.1.norm.weight",   "encoder.layers.1.norm.bias",
      "head.weight"};
  EXPECT_EQ(names, expected);
  auto sd = m.state_dict();
  EXPECT_EQ(sd.size(), expected.size() + 1);  // + encoder.scale; the non-persistent cache is left out
  EXPECT_TRUE(sd.count("encoder.scale"));
  EXPECT_FALSE(sd.count("encoder.cache"));
  auto bufs = m.named_buffers();
  ASSERT_EQ(bufs.size(), 2u);
  EXPECT_EQ(bufs[1].first, "encoder.cache");
  std::vector<std::string> mods;
  for (auto& [n, mod] : m.named_modules()) mods.push_back(n);
  EXPECT_EQ(mods.front(), "");
  EXPECT_EQ(mods[1], "encoder");
  EXPECT_EQ(mods[2], "encoder.layers");
  EXPECT_EQ(mods[3], "encoder.layers.0");
  EXPECT_EQ(mods.size(), 1u + 1 + 1 + 2 * 4 + 1);
  EXPECT_EQ(m.get_submodule("encoder.layers.1.norm")->type_name(), "LayerNorm");
  EXPECT_TRUE(m.get_parameter("encoder.layers.1.linear2.bias").is_same(
      std::dynamic_pointer_cast<EncoderLayer>((*m.encoder->layers)[1])->linear2->bias));
  EXPECT_THROW(m.get_submodule("encoder.nope"), std::invalid_argument);
  EXPECT_EQ(m.num_parameters(), 2 * (4 * 8 + 8 + 8 * 4 + 4 + 4 + 4) + 8);
}

TEST(Module, SequentialNamesIndexingAndForward) {
  auto seq = std::make_shared<nn::Sequential>(nn::Linear(3, 4), nn::ReLU(), std::make_shared<nn::Linear>(4, 2));
  EXPECT_EQ(seq->size(), 3u);
  std::vector<std::string> names;
  for (auto& [n, p] : seq->named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ(seq->at<nn::Linear>(2)->options.out_features, 2);
  EXPECT_EQ((*seq)[-1].get(), (*seq)[2].get());
  EXPECT_THROW(seq->at<nn::Linear>(1), std::invalid_argument);
  EXPECT_THROW((*seq)[3], std::out_of_range);
  seq->push_back(nn::Tanh());
  Tensor x = randn({5, 3});
  Tensor y = (*seq)(x);
  EXPECT_EQ(shape_str(y.shape()), "(5, 2)");
  Tensor manual = tanh(linear(relu(linear(x, seq->at<nn::Linear>(0)->weight, seq->at<nn::Linear>(0)->bias)),
                              seq->at<nn::Linear>(2)->weight, seq->at<nn::Linear>(2)->bias));
  expect_close(y, manual, 1e-6, 1e-6, "sequential forward");
  std::ostringstream os;
  os << *seq;
  EXPECT_NE(os.str().find("(0): Linear(in_features=3, out_features=4, bias=True)"), std::string::npos) << os.str();
  seq->replace_module("3", std::make_shared<nn::Identity>());
  EXPECT_EQ((*seq)[3]->type_name(), "Identity");
}

TEST(Module, LoadStateDictStrictErrors) {
  Model m;
  auto sd = m.state_dict();
  // missing + unexpected, both listed
  auto bad = sd;
  bad.erase("head.weight");
  bad["encoder.extra"] = zeros({1});
  try {
    m.load_state_dict(bad);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("Missing key(s) in state_dict: \"head.weight\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("Unexpected key(s) in state_dict: \"encoder.extra\""), std::string::npos) << msg;
  }
  auto r = m.load_state_dict(bad, /*strict=*/false);
  EXPECT_EQ(r.missing_keys, std::vector<std::string>{"head.weight"});
  EXPECT_EQ(r.unexpected_keys, std::vector<std::string>{"encoder.extra"});
  // shape mismatch names the key and both shapes, strict or not
  auto wrong = sd;
  wrong["head.weight"] = zeros({3, 4});
  try {
    m.load_state_dict(wrong, false);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("head.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(3, 4)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(2, 4)"), std::string::npos) << msg;
  }
}

// A refused state_dict (a missing key in strict mode, or one mis-shaped tensor among good ones) copies
// nothing: the module keeps every value it had.
TEST(Module, RefusedLoadStateDictLeavesTheModuleUnchanged) {
  Model m;
  const auto before = m.state_dict();
  std::map<std::string, Tensor> before_copy;
  for (auto& [k, t] : before) before_copy.emplace(k, t.clone());
  auto other = before;
  for (auto& [k, t] : other) t = full(t.shape(), 7.0f);
  auto missing = other;
  missing.erase("head.weight");
  EXPECT_THROW(m.load_state_dict(missing), std::invalid_argument);
  auto misshaped = other;
  misshaped["head.weight"] = zeros({3, 4});
  EXPECT_THROW(m.load_state_dict(misshaped, /*strict=*/false), std::invalid_argument);
  for (auto& [k, t] : m.state_dict()) EXPECT_EQ(t.to_vector<float>(), before_copy.at(k).to_vector<float>()) << k;
}

TEST(Module, LoadStateDictCopiesInPlaceAndConvertsDtype) {
  Model a, b;
  Tensor handle = b.head->weight;  // e.g. held by an optimizer
  std::map<std::string, Tensor> sd;
  for (auto& [k, v] : a.state_dict()) sd[k] = v.to(kFloat64) + 0.0;  // float64 copies
  b.load_state_dict(sd);
  EXPECT_EQ(b.head->weight.dtype(), kFloat32);
  EXPECT_TRUE(handle.is_same(b.head->weight));
  expect_close(handle, a.head->weight, 0, 0, "loaded weight");
  Tensor x = randn({3, 4});
  expect_close(b(x), a(x), 1e-6, 1e-6, "same outputs after load");
  // round trip through the safetensors format
  auto file = io::SafeTensorsFile::from_bytes(io::serialize_safetensors(a.state_dict()));
  std::map<std::string, Tensor> loaded;
  for (auto& k : file.keys()) loaded[k] = file.get(k);
  Model c;
  c.load_state_dict(loaded);
  expect_close(c(x), a(x), 0, 0, "after safetensors round trip");
}

TEST(Module, TrainEvalZeroGradFreezeApplyTo) {
  Model m;
  EXPECT_TRUE(m.encoder->layers->at<EncoderLayer>(1)->norm->is_training());
  m.eval();
  for (auto* mod : m.modules()) EXPECT_FALSE(mod->is_training());
  m.train();
  EXPECT_TRUE(m.head->is_training());

  Tensor loss = m(randn({3, 4})).sum();
  loss.backward();
  for (auto& p : m.parameters()) EXPECT_TRUE(p.grad().defined());
  m.zero_grad(/*set_to_none=*/false);
  for (auto& p : m.parameters()) EXPECT_EQ(sum(abs(p.grad())).item(), 0.0);
  m.zero_grad();
  for (auto& p : m.parameters()) EXPECT_FALSE(p.grad().defined());

  m.encoder->requires_grad_(false);
  EXPECT_EQ(m.num_parameters(/*only_trainable=*/true), 8);
  m(randn({3, 4})).sum().backward();
  EXPECT_TRUE(m.head->weight.grad().defined());
  EXPECT_FALSE(m.encoder->layers->at<EncoderLayer>(0)->linear1->weight.grad().defined());
  m.requires_grad_(true);

  int linears = 0;
  m.apply([&](nn::Module& mod) {
    if (auto* l = dynamic_cast<nn::Linear*>(&mod)) {
      ++linears;
      nn::init::zeros_(l->weight);
    }
  });
  EXPECT_EQ(linears, 5);
  EXPECT_EQ(sum(abs(m.head->weight)).item(), 0.0);

  Tensor handle = m.head->weight;
  m.to(kFloat64);
  EXPECT_EQ(handle.dtype(), kFloat64);
  EXPECT_EQ(m.encoder->scale.dtype(), kFloat64);
  EXPECT_TRUE(handle.requires_grad());
  Tensor y = m(randn({2, 4}, {.dtype = kFloat64}));
  EXPECT_EQ(y.dtype(), kFloat64);
  y.sum().backward();
  EXPECT_EQ(handle.grad().dtype(), kFloat64);
}

TEST(Module, RegistrationErrors) {
  nn::Linear l(2, 3);
  EXPECT_THROW(l.register_parameter("weight", zeros({1})), std::invalid_argument);
  EXPECT_THROW(l.register_buffer("a.b", zeros({1})), std::invalid_argument);
  EXPECT_THROW(l.forward(zeros({4, 5})), std::invalid_argument);
  nn::Module plain;
  EXPECT_THROW(plain.forward(zeros({1})), std::logic_error);
  nn::Linear nb(2, 3, false);
  EXPECT_EQ(nb.named_parameters().size(), 1u);
  EXPECT_FALSE(nb.bias.defined());
}

// ------------------------------------------------------------------------------ initialisation

TEST(Init, PyTorchDefaultsAndReproducibility) {
  manual_seed(7);
  nn::Linear a(400, 300);
  manual_seed(7);
  nn::Linear b(400, 300);
  expect_close(a.weight, b.weight, 0, 0, "same seed, same weights");
  double bound = 1.0 / std::sqrt(400.0);
  auto w = a.weight.to_vector<double>();
  double mx = 0, s2 = 0, s1 = 0;
  for (double v : w) mx = std::max(mx, std::abs(v)), s1 += v, s2 += v * v;
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.99 * bound);
  double n = double(w.size());
  EXPECT_NEAR(std::sqrt(s2 / n), bound / std::sqrt(3.0), 0.01 * bound);  // U(-b, b) has std b/sqrt(3)
  EXPECT_NEAR(s1 / n, 0.0, 0.01 * bound);
  for (double v : a.bias.to_vector<double>()) EXPECT_LE(std::abs(v), bound);

  nn::Conv2d c({.in_channels = 8, .out_channels = 16, .kernel_size = {3, 3}, .padding = 1});
  EXPECT_EQ(shape_str(c.weight.shape()), "(16, 8, 3, 3)");
  double cb = 1.0 / std::sqrt(8.0 * 9.0);
  for (double v : c.weight.to_vector<double>()) EXPECT_LE(std::abs(v), cb);
  for (double v : c.bias.to_vector<double>()) EXPECT_LE(std::abs(v), cb);

  nn::BatchNorm2d bn(5);
  EXPECT_EQ(sum(bn.weight).item(), 5.0);
  EXPECT_EQ(sum(bn.bias).item(), 0.0);
  EXPECT_EQ(bn.num_batches_tracked.dtype(), kInt64);
  nn::Embedding e({.num_embeddings = 1000, .embedding_dim = 64, .padding_idx = -1});
  EXPECT_EQ(*e.options.padding_idx, 999);
  EXPECT_EQ(sum(abs(e.weight.select(0, 999))).item(), 0.0);
  EXPECT_NEAR(attn::std(e.weight).item(), 1.0, 0.02);
}

TEST(Init, Functions) {
  EXPECT_DOUBLE_EQ(nn::init::calculate_gain("relu"), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(nn::init::calculate_gain("tanh"), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(nn::init::calculate_gain("leaky_relu", 0.2), std::sqrt(2.0 / 1.04));
  Tensor w = empty({256, 128, 3});
  auto [fi, fo] = nn::init::calculate_fan_in_and_fan_out(w);
  EXPECT_EQ(fi, 384);
  EXPECT_EQ(fo, 768);
  nn::init::xavier_uniform_(w);
  double xb = std::sqrt(6.0 / (384 + 768));
  EXPECT_LE(max(abs(w)).item(), xb);
  EXPECT_GT(max(abs(w)).item(), 0.99 * xb);
  nn::init::kaiming_normal_(w, 0, nn::init::FanMode::FanOut, "relu");
  EXPECT_NEAR(attn::std(w).item(), std::sqrt(2.0 / 768), 0.01 * std::sqrt(2.0 / 768));
  nn::init::normal_(w, 3.0, 0.5);
  EXPECT_NEAR(mean(w).item(), 3.0, 0.01);
  nn::init::ones_(w);
  EXPECT_EQ(sum(w).item(), double(w.numel()));
  Tensor v = zeros({3});
  EXPECT_THROW(nn::init::xavier_uniform_(v), std::invalid_argument);
  EXPECT_THROW(nn::init::calculate_gain("swish"), std::invalid_argument);
}

// ------------------------------------------------------------------------ layers vs. PyTorch

// The layer parity tests run once per device: the CPU and the strict test device (strict_backend.h).
class LayersOn : public ::testing::TestWithParam<Device> {
 protected:
  Device dev() const { return GetParam(); }
};
INSTANTIATE_TEST_SUITE_P(Cpu, LayersOn, ::testing::Values(kCPU), [](const auto&) { return std::string("Cpu"); });
INSTANTIATE_TEST_SUITE_P(Strict, LayersOn, ::testing::Values(kStrict),
                         [](const auto&) { return std::string("Strict"); });

TEST_P(LayersOn, Linear) {
  nn::Linear a(5, 3);
  check_case(a, "linear", true, 1e-5, "modules.safetensors", dev());
  nn::Linear b({.in_features = 5, .out_features = 3, .bias = false});
  check_case(b, "linear_nobias", true, 1e-5, "modules.safetensors", dev());
}

TEST_P(LayersOn, Conv1d) {
  nn::Conv1d a({.in_channels = 3, .out_channels = 4, .kernel_size = 3, .stride = 2, .padding = 1});
  check_case(a, "conv1d", true, 1e-5, "modules.safetensors", dev());
  nn::Conv1d b({.in_channels = 4, .out_channels = 6, .kernel_size = 3, .dilation = 2, .groups = 2, .bias = false});
  check_case(b, "conv1d_groups", true, 1e-5, "modules.safetensors", dev());
}

TEST_P(LayersOn, Conv2d) {
  nn::Conv2d a({.in_channels = 3, .out_channels = 4, .kernel_size = {3, 2}, .stride = {2, 1}, .padding = {1, 0}});
  check_case(a, "conv2d", true, 1e-5, "modules.safetensors", dev());
  nn::Conv2d b({.in_channels = 4, .out_channels = 6, .kernel_size = 3, .padding = 2, .dilation = 2, .groups = 2});
  check_case(b, "conv2d_groups", true, 1e-5, "modules.safetensors", dev());
}

TEST_P(LayersOn, BatchNorm) {
  nn::BatchNorm1d a(4);
  check_case(a, "bn1d_train", true, 1e-5, "modules.safetensors", dev());
  EXPECT_EQ(a.num_batches_tracked.item<int64_t>(), 4);
  nn::BatchNorm1d b({.num_features = 4, .momentum = 0.2});
  check_case(b, "bn1d_3d_train", true, 1e-5, "modules.safetensors", dev());
  nn::BatchNorm1d c({.num_features = 4, .momentum = std::nullopt});
  check_case(c, "bn1d_cma_train", true, 1e-5, "modules.safetensors", dev());
  nn::BatchNorm1d d(4);
  check_case(d, "bn1d_eval", false, 1e-5, "modules.safetensors", dev());
  nn::BatchNorm2d e(3);
  check_case(e, "bn2d_train", true, 1e-5, "modules.safetensors", dev());
  nn::BatchNorm2d f({.num_features = 3, .eps = 1e-3});
  check_case(f, "bn2d_eval", false, 1e-5, "modules.safetensors", dev());
  Tensor before = f.running_mean.clone();
  f.eval();
  f(randn({2, 3, 4, 4}, {.device = dev()}));
  expect_close(f.running_mean, before, 0, 0, "eval leaves running stats alone");
  EXPECT_THROW(f(randn({2, 4, 4, 4}, {.device = dev()})), std::invalid_argument);
  EXPECT_THROW(a(randn({2, 4, 4, 4}, {.device = dev()})), std::invalid_argument);
}

TEST_P(LayersOn, LayerNormEmbeddingPooling) {
  nn::LayerNorm ln({.normalized_shape = {4, 5}});
  check_case(ln, "layernorm", true, 1e-5, "modules.safetensors", dev());
  EXPECT_THROW(ln(randn({2, 5, 4}, {.device = dev()})), std::invalid_argument);
  nn::Embedding emb({.num_embeddings = 10, .embedding_dim = 4, .padding_idx = 1});
  check_case(emb, "embedding", true, 1e-5, "modules.safetensors", dev());
  nn::MaxPool2d mp({.kernel_size = 2});
  check_case(mp, "maxpool2d", true, 1e-5, "modules.safetensors", dev());
  nn::MaxPool2d mp2({.kernel_size = 3, .stride = 2, .padding = 1});
  check_case(mp2, "maxpool2d_pad", true, 1e-5, "modules.safetensors", dev());
  nn::AvgPool2d ap({.kernel_size = 2});
  check_case(ap, "avgpool2d", true, 1e-5, "modules.safetensors", dev());
  nn::AvgPool2d ap2({.kernel_size = 3, .stride = 2, .padding = 1, .count_include_pad = false});
  check_case(ap2, "avgpool2d_pad", true, 1e-5, "modules.safetensors", dev());
}

TEST_P(LayersOn, SequentialModels) {
  nn::Sequential mlp(nn::Linear(6, 8), nn::ReLU(), nn::Linear(8, 8), nn::Tanh(), nn::Linear(8, 3));
  check_case(mlp, "mlp", true, 1e-5, "modules.safetensors", dev());
  nn::Sequential acts(nn::Linear(6, 8), nn::GELU(GeluApproximate::Tanh), nn::Linear(8, 8), nn::LeakyReLU(0.2),
                      nn::Linear(8, 8), nn::GELU(), nn::Linear(8, 8), nn::Sigmoid(), nn::Linear(8, 5),
                      nn::LogSoftmax(1));
  check_case(acts, "acts", true, 1e-5, "modules.safetensors", dev());
  nn::Sequential fs(nn::Flatten(), nn::Linear(12, 4), nn::Softmax(-1));
  check_case(fs, "flatten_softmax", true, 1e-5, "modules.safetensors", dev());
}

TEST_P(LayersOn, MnistCnn) {
  nn::Sequential cnn(nn::Conv2d({.in_channels = 1, .out_channels = 32, .kernel_size = {3, 3}, .padding = {1, 1}}),
                     nn::ReLU(), nn::MaxPool2d({.kernel_size = 2}),
                     nn::Conv2d({.in_channels = 32, .out_channels = 64, .kernel_size = 3, .padding = 1}),
                     nn::ReLU(), nn::MaxPool2d({.kernel_size = 2}), nn::Flatten(), nn::Linear(3136, 128),
                     nn::ReLU(), nn::Linear(128, 10));
  EXPECT_EQ(cnn.num_parameters(), 320 + 18496 + 401536 + 1290);
  const auto& f = fixtures("modules_cnn.safetensors");
  EXPECT_EQ(fx(f, "cnn.state.7.weight").dtype(), kBFloat16);  // stored bf16, loaded into float32
  check_case(cnn, "cnn", true, 1e-4, "modules_cnn.safetensors", dev());
  EXPECT_EQ(cnn.at<nn::Linear>(7)->weight.dtype(), kFloat32);
  // fc1.weight's gradient = grad_out^T @ input of fc1, from PyTorch's captured tensors
  Tensor expected = matmul(fx(f, "cnn.fc1_grad_output").to(kFloat64).t(), fx(f, "cnn.fc1_input").to(kFloat64));
  EXPECT_EQ(cnn.at<nn::Linear>(7)->weight.device(), dev());
  expect_close(cnn.at<nn::Linear>(7)->weight.grad(), expected, 1e-4, 1e-4, "cnn grad of 7.weight");
}

// Sequential runs ReLU -> MaxPool2d as MaxPool2d -> ReLU (src/nn/module.cc). Outputs and gradients must be
// bit-identical to the literal order, also for windows that are all negative or zero, for ties, NaN,
// padding, ceil_mode and overlapping windows.
TEST(Layers, SequentialReluMaxPoolOrderIsExact) {
  const std::vector<nn::MaxPool2dOptions> configs = {
      {.kernel_size = 2}, {.kernel_size = 3, .stride = nn::Size2{2, 2}, .padding = 1, .ceil_mode = true},
      {.kernel_size = {2, 3}, .stride = nn::Size2{1, 1}}};
  auto same_bits = [](const Tensor& a, const Tensor& b, const std::string& what) {
    ASSERT_EQ(a.shape(), b.shape()) << what;
    std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>();
    for (size_t i = 0; i < va.size(); ++i)
      ASSERT_TRUE(va[i] == vb[i] || (std::isnan(va[i]) && std::isnan(vb[i])))
          << what << " differs at " << i << ": " << va[i] << " vs " << vb[i];
  };
  for (size_t c = 0; c < configs.size(); ++c) {
    manual_seed(11);
    Tensor x0 = randn({2, 3, 7, 9});
    {
      NoGradGuard ng;
      x0.narrow(2, 0, 3).narrow(3, 0, 4).add_(full({3, 4}, -5.0));  // windows with no positive element
      x0.narrow(2, 3, 1).narrow(3, 0, 4).fill_(0.75);  // ties
      x0.narrow(2, 4, 2).narrow(3, 4, 2).fill_(0.0);   // zeros
      x0.narrow(0, 1, 1).narrow(1, 2, 1).narrow(2, 5, 1).narrow(3, 7, 1).fill_(std::nan(""));
    }
    Tensor g = randn({2, 3, 7, 9});  // upstream gradient source (cut to the output's shape below)
    auto pool = std::make_shared<nn::MaxPool2d>(configs[c]);
    nn::Sequential seq(nn::ReLU(), pool);
    Tensor xa = x0.clone().requires_grad_(), xb = x0.clone().requires_grad_();
    Tensor ya = seq.forward(xa);
    Tensor yb = pool->forward(relu(xb));  // the literal order
    same_bits(ya, yb, "output of config " + std::to_string(c));
    Tensor gy = g.narrow(2, 0, ya.size(2)).narrow(3, 0, ya.size(3)).contiguous();
    ya.backward(gy);
    yb.backward(gy);
    same_bits(xa.grad(), xb.grad(), "input gradient of config " + std::to_string(c));
  }
}

// Sequential runs ReLU -> Dropout as relu_dropout (src/nn/module.cc): in training the same draws, output
// and gradients bit for bit as the two modules one after the other; in eval the ReLU alone.
TEST(Layers, SequentialReluDropoutIsExact) {
  auto drop = std::make_shared<nn::Dropout>(0.3);
  nn::Sequential seq(nn::Linear(5, 300), nn::ReLU(), drop, nn::Linear(300, 2));
  auto lin1 = std::static_pointer_cast<nn::Linear>(seq[0]), lin2 = std::static_pointer_cast<nn::Linear>(seq[3]);
  Tensor x = randn({16, 5});
  for (bool training : {true, false}) {
    seq.train(training);
    manual_seed(21);
    Tensor ya = seq.forward(x);
    ya.sum().backward();
    const Tensor ga = lin1->weight.grad().clone();
    lin1->weight.set_grad(Tensor());
    lin1->bias.set_grad(Tensor());
    lin2->weight.set_grad(Tensor());
    lin2->bias.set_grad(Tensor());
    manual_seed(21);
    Tensor yb = lin2->forward(drop->forward(relu(lin1->forward(x))));  // the two modules in turn
    yb.sum().backward();
    const std::string mode = training ? "train" : "eval";
    expect_close(ya, yb, 0, 0, "output, " + mode);
    expect_close(ga, lin1->weight.grad(), 0, 0, "first layer's weight gradient, " + mode);
    lin1->weight.set_grad(Tensor());
    lin1->bias.set_grad(Tensor());
    lin2->weight.set_grad(Tensor());
    lin2->bias.set_grad(Tensor());
  }
}

TEST(Layers, DropoutModes) {
  manual_seed(3);
  nn::Dropout d(0.25);
  Tensor x = ones({100000});
  Tensor y = d(x);
  auto v = y.to_vector<float>();
  int64_t zeros_n = 0;
  for (float e : v) {
    if (e == 0.0f) ++zeros_n;
    else EXPECT_FLOAT_EQ(e, 1.0f / 0.75f);
  }
  EXPECT_NEAR(double(zeros_n) / double(v.size()), 0.25, 0.01);
  d.eval();
  expect_close(d(x), x, 0, 0, "dropout in eval");
  nn::Dropout none(0.0);
  expect_close(none(x), x, 0, 0, "dropout p=0");
  EXPECT_THROW(nn::Dropout(1.5), std::invalid_argument);
}
