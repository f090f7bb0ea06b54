// tests/test_ops_table.cc — every op against PyTorch fixtures (outputs and input gradients).
//
// One test per case in tests/fixtures/ops.json (made by tests/make_fixtures.py); the op is called
// through its row in tests/op_table.h:
//   ./attn_tests --gtest_filter='Fixtures/OpFixture.MatchesPyTorch/conv2d*'
// Dropout in training mode is random, so it is checked statistically here instead.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "op_table.h"
#include "strict_backend.h"

namespace attn_test {
namespace {

// One instance per (device, case): the same body runs on the CPU and on the strict test device
// (tests/strict_backend.h), the latter also with the Backend's composite defaults for the fused ops.
struct DeviceCase {
  attn::Device device;
  bool composites;  // strict only: fused entries run Backend's composites
  std::string name;
};

void PrintTo(const DeviceCase& c, std::ostream* os) {
  *os << c.name << " on " << attn::device_name(c.device) << (c.composites ? " (composites)" : "");
}

std::vector<DeviceCase> fixture_cases(attn::Device device, bool composites = false) {
  std::string err;
  const Fixtures* fx = Fixtures::try_get(&err);
  if (!fx) return {{device, composites, "FixturesUnreadable"}};  // the test body reports the load error
  std::vector<DeviceCase> cases;
  for (const FixtureCase& c : fx->cases()) cases.push_back({device, composites, c.name});
  return cases;
}

std::string describe_inputs(const FixtureCase& c) {
  std::ostringstream os;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const InputSpec& s = c.inputs[i];
    os << "\n  in" << i << (s.name.empty() ? "" : " (" + s.name + ")") << ": " << s.desc
       << (s.grad ? ", requires grad" : "");
  }
  return os.str();
}

class OpFixture : public ::testing::TestWithParam<DeviceCase> {};

// Turns the strict backend's composite mode on for one test.
struct CompositeMode {
  explicit CompositeMode(bool on) : on_(on) { set_strict_composites(on_); }
  ~CompositeMode() { set_strict_composites(false); }
  bool on_;
};

TEST_P(OpFixture, MatchesPyTorch) {
  std::string err;
  const Fixtures* fx = Fixtures::try_get(&err);
  ASSERT_NE(fx, nullptr) << "cannot load the fixtures: " << err;
  const attn::Device device = GetParam().device;
  CompositeMode mode(GetParam().composites);
  const FixtureCase& c = fx->find(GetParam().name);
  SCOPED_TRACE("case " + c.name + " on " + attn::device_name(device) + ": op " + c.op + ", args " + c.args.dump() +
               describe_inputs(c));
  auto row = op_table().find(c.op);
  ASSERT_NE(row, op_table().end()) << "no row for op '" << c.op << "' in tests/op_table.h";

  std::vector<Tensor> in = fx->inputs(c, std::nullopt, device);
  std::vector<Tensor> outs;
  try {
    outs = row->second(Args(c, in)).v;
  } catch (const std::exception& e) {
    FAIL() << "forward threw: " << e.what();
  }
  ASSERT_EQ(outs.size(), c.outputs.size()) << "the op returned " << outs.size() << " outputs";

  std::vector<Tensor> roots, grads;
  for (size_t k = 0; k < outs.size(); ++k) {
    const OutputSpec& o = c.outputs[k];
    const std::string key = c.name + "/" + o.key;
    EXPECT_TRUE(tensors_close(outs[k], fx->tensor(key), c.rtol, c.atol, key));
    EXPECT_EQ(outs[k].device(), device) << key << " is on " << attn::device_name(outs[k].device());
    if (!o.grad) continue;
    if (!outs[k].requires_grad()) {
      ADD_FAILURE() << key << " does not require grad: the op recorded no backward";
      continue;
    }
    roots.push_back(outs[k]);
    grads.push_back(fx->tensor(c.name + "/grad_" + o.key).to(device));
  }
  if (roots.empty()) return;
  try {
    attn::autograd::backward(roots, grads);
  } catch (const std::exception& e) {
    FAIL() << "backward threw: " << e.what();
  }
  for (size_t i = 0; i < in.size(); ++i) {
    if (!c.inputs[i].grad) continue;
    const std::string key = c.name + "/grad_in" + std::to_string(i);
    Tensor g = in[i].grad();
    if (!g.defined()) {
      ADD_FAILURE() << key << ": no gradient reached input " << i;
      continue;
    }
    EXPECT_TRUE(tensors_close(g, fx->tensor(key), c.rtol, c.atol, key));
  }
}

std::string case_name(const ::testing::TestParamInfo<DeviceCase>& p) { return p.param.name; }
INSTANTIATE_TEST_SUITE_P(Fixtures, OpFixture, ::testing::ValuesIn(fixture_cases(attn::kCPU)), case_name);
INSTANTIATE_TEST_SUITE_P(StrictFixtures, OpFixture, ::testing::ValuesIn(fixture_cases(attn::kStrict)), case_name);
INSTANTIATE_TEST_SUITE_P(StrictCompositeFixtures, OpFixture,
                         ::testing::ValuesIn(fixture_cases(attn::kStrict, /*composites=*/true)), case_name);

// ---- the table and the fixtures cover each other and the public headers

TEST(OpTable, EveryCaseHasARowAndEveryRowHasCases) {
  const Fixtures& fx = Fixtures::get();
  std::set<std::string> used;
  for (const FixtureCase& c : fx.cases()) {
    EXPECT_TRUE(op_table().count(c.op)) << "case " << c.name << ": no row for op '" << c.op << "'";
    used.insert(c.op);
  }
  for (const auto& [op, fn] : op_table())
    EXPECT_TRUE(used.count(op)) << "row '" << op << "' has no fixture case: add cases to tests/make_fixtures.py";
  EXPECT_GT(fx.cases().size(), 300u);
}

// Every function declared in include/attn/ops.h and every view in tensor.h has a row (a row key is
// the function name, or starts with it and '_': max -> max_all, max_dim).
TEST(OpTable, CoversPublicHeaders) {
  auto read = [](const std::string& path) {
    std::ifstream f(path);
    EXPECT_TRUE(f.good()) << "cannot read " << path;
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  const std::string inc = std::string(ATTN_FIXTURE_DIR) + "/../../include/attn/";
  // "Tensor name(" at the start of a line (after `indent` spaces when allowed); std::regex is avoided
  // because GCC 12 warns inside <regex> under -fsanitize (-Werror=maybe-uninitialized).
  auto declared = [](const std::string& text, bool indented) {
    std::set<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (indented) line.erase(0, line.find_first_not_of(' '));
      for (const char* prefix : {"Tensor ", "std::pair<Tensor, Tensor> ", "std::vector<Tensor> ", "bool "}) {
        if (line.rfind(prefix, 0) != 0) continue;
        const std::string rest = line.substr(std::string(prefix).size());
        const size_t paren = rest.find('(');
        const std::string name = rest.substr(0, paren);
        if (paren != std::string::npos && !name.empty() &&
            name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == std::string::npos)
          out.insert(name);
      }
    }
    return out;
  };
  std::set<std::string> names = declared(read(inc + "ops.h"), false);
  const std::string tensor_h = read(inc + "tensor.h");
  size_t b = tensor_h.find("// ---- views and copies");
  ASSERT_NE(b, std::string::npos);
  size_t e = tensor_h.find("// ----", b + 10);
  for (const std::string& n : declared(tensor_h.substr(b, e - b), true)) names.insert(n);
  names.erase("expand_as");  // inline: expand(o.shape())
  EXPECT_GT(names.size(), 80u);
  for (const std::string& n : names) {
    bool found = false;
    for (const auto& [op, fn] : op_table())
      if (op == n || op.rfind(n + "_", 0) == 0) found = true;
    if (n == "to") found = op_table().count("to_dtype") > 0;
    EXPECT_TRUE(found) << n << " (public header) has no row in tests/op_table.h";
  }
}

// ---- the harness itself must be able to fail

TEST(FixtureHarness, TensorsCloseReportsTheWorstElement) {
  Tensor want = attn::from_vector<float>({1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}, {2, 3});
  Tensor got = attn::from_vector<float>({1.0f, 2.0f, 3.0f, 4.0f, 5.5f, 6.00001f}, {2, 3});
  EXPECT_TRUE(tensors_close(want, want.clone(), 1e-5, 1e-5, "same"));
  ::testing::AssertionResult r = tensors_close(got, want, 1e-5, 1e-5, "t");
  ASSERT_FALSE(r);
  const std::string msg = r.message();
  EXPECT_NE(msg.find("1 of 6 elements differ"), std::string::npos) << msg;
  EXPECT_NE(msg.find("worst at (1, 1)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("max abs diff 0.5"), std::string::npos) << msg;
  EXPECT_FALSE(tensors_close(got.to(attn::kFloat64), want, 1, 1, "dtype"));
  EXPECT_FALSE(tensors_close(got.view({3, 2}), want, 1, 1, "shape"));
  Tensor nan = attn::from_vector<float>({NAN}, {1});
  EXPECT_TRUE(tensors_close(nan, nan.clone(), 0, 0, "nan == nan"));
  EXPECT_FALSE(tensors_close(nan, attn::from_vector<float>({0.0f}, {1}), 1, 1, "nan vs 0"));
}

TEST(FixtureHarness, AWrongRowFailsItsCase) {
  const Fixtures& fx = Fixtures::get();
  const FixtureCase& c = fx.find("sub_bcast");
  std::vector<Tensor> outs = op_table().at("add")(Args(c, fx.inputs(c))).v;
  EXPECT_FALSE(tensors_close(outs[0], fx.tensor(c.name + "/out"), c.rtol, c.atol, "add on a sub case"));
}

// ---- dropout: random in training mode, so checked by its statistics

TEST(Dropout, TrainingStatisticsAndGradient) {
  const double p = 0.3;
  attn::manual_seed(1234);
  Tensor x = attn::full({200, 100}, 2.0, {.requires_grad = true});
  Tensor y = attn::dropout(x, p, true);
  ASSERT_EQ(y.shape(), x.shape());
  const std::vector<double> v = y.to_vector<double>();
  int64_t zeros = 0;
  double sum = 0;
  for (double a : v) {
    if (a == 0.0) ++zeros;
    else ASSERT_NEAR(a, 2.0 / (1.0 - p), 1e-5) << "kept elements are scaled by 1/(1-p)";
    sum += a;
  }
  const double n = double(v.size()), frac = double(zeros) / n, sigma = std::sqrt(p * (1 - p) / n);
  EXPECT_NEAR(frac, p, 6 * sigma) << "fraction of dropped elements";
  EXPECT_NEAR(sum / n, 2.0, 6 * 2.0 / (1 - p) * sigma) << "mean is preserved";
  // Rows get different masks (not one pattern repeated).
  std::vector<double> r0(v.begin(), v.begin() + 100), r1(v.begin() + 100, v.begin() + 200);
  EXPECT_NE(r0, r1);

  y.backward(attn::ones({200, 100}));
  ASSERT_TRUE(x.grad().defined());
  const std::vector<double> g = x.grad().to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i)
    ASSERT_NEAR(g[i], v[i] == 0.0 ? 0.0 : 1.0 / (1.0 - p), 1e-5) << "gradient uses the forward mask, at " << i;
}

TEST(Dropout, SeedReproducibleAndEdgeCases) {
  Tensor x = attn::randn({64, 32});
  attn::manual_seed(7);
  Tensor a = attn::dropout(x, 0.5, true);
  attn::manual_seed(7);
  Tensor b = attn::dropout(x, 0.5, true);
  Tensor c = attn::dropout(x, 0.5, true);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>()) << "same seed, same mask";
  EXPECT_NE(a.to_vector<float>(), c.to_vector<float>()) << "the generator advances";
  EXPECT_EQ(attn::dropout(x, 0.5, false).to_vector<float>(), x.to_vector<float>()) << "eval mode is identity";
  EXPECT_EQ(attn::dropout(x, 0.0, true).to_vector<float>(), x.to_vector<float>()) << "p = 0 is identity";
  for (float e : attn::dropout(x, 1.0, true).to_vector<float>()) ASSERT_EQ(e, 0.0f) << "p = 1 drops everything";
  EXPECT_THROW(attn::dropout(x, 1.5, true), std::exception) << "p outside [0, 1]";
  EXPECT_THROW(attn::dropout(x, -0.1, true), std::exception) << "p outside [0, 1]";
}

}  // namespace
}  // namespace attn_test
