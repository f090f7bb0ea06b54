// Recurrent modules against PyTorch (tests/make_rnn_fixtures.py): outputs, final states, input and
// every parameter gradient for RNN / LSTM / GRU (multi-layer, bidirectional, batch_first, proj_size,
// initial states, packed variable-length batches, unbatched) and the three cells.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/nn/rnn.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "fixture_loader.h"
#include "nn/rnn_onednn.h"

using namespace attn;
using nlohmann::json;

namespace {

struct RnnFixture {
  io::SafeTensorsFile file = io::SafeTensorsFile::open(std::string(ATTN_FIXTURE_DIR) + "/rnn.safetensors");
  Tensor get(const std::string& k) const { return file.get(k).clone(); }
  bool has(const std::string& k) const { return file.contains(k); }
  std::map<std::string, Tensor> with_prefix(const std::string& prefix) const {
    std::map<std::string, Tensor> m;
    for (const auto& k : file.keys())
      if (k.rfind(prefix, 0) == 0) m[k.substr(prefix.size())] = get(k);
    return m;
  }
};

nn::RNNOptions layer_options(const json& o) {
  nn::RNNOptions r;
  r.input_size = o.at("input_size");
  r.hidden_size = o.at("hidden_size");
  r.num_layers = o.value("num_layers", 1);
  r.nonlinearity = o.value("nonlinearity", "tanh") == "relu" ? nn::RNNNonlinearity::ReLU : nn::RNNNonlinearity::Tanh;
  r.bias = o.value("bias", true);
  r.batch_first = o.value("batch_first", false);
  r.dropout = o.value("dropout", 0.0);
  r.bidirectional = o.value("bidirectional", false);
  r.proj_size = o.value("proj_size", 0);
  return r;
}

nn::RNNCellOptions cell_options(const json& o) {
  nn::RNNCellOptions r;
  r.input_size = o.at("input_size");
  r.hidden_size = o.at("hidden_size");
  r.bias = o.value("bias", true);
  r.nonlinearity = o.value("nonlinearity", "tanh") == "relu" ? nn::RNNNonlinearity::ReLU : nn::RNNNonlinearity::Tanh;
  return r;
}

std::shared_ptr<nn::Module> make_module(const std::string& kind, const json& o) {
  if (kind == "rnn") return std::make_shared<nn::RNN>(layer_options(o));
  if (kind == "lstm") return std::make_shared<nn::LSTM>(layer_options(o));
  if (kind == "gru") return std::make_shared<nn::GRU>(layer_options(o));
  if (kind == "rnn_cell") return std::make_shared<nn::RNNCell>(cell_options(o));
  if (kind == "lstm_cell") return std::make_shared<nn::LSTMCell>(cell_options(o));
  if (kind == "gru_cell") return std::make_shared<nn::GRUCell>(cell_options(o));
  throw std::invalid_argument("unknown kind " + kind);
}

// Runs one case: padded or packed input -> {"output", "h_n", "c_n"} (the ones the module returns).
std::map<std::string, Tensor> run_case(nn::Module& m, const std::string& kind, const json& c,
                                       std::map<std::string, Tensor>& in) {
  Tensor x = in.at("x"), h0 = in.count("h0") ? in.at("h0") : Tensor(), c0 = in.count("c0") ? in.at("c0") : Tensor();
  std::map<std::string, Tensor> out;
  if (kind == "rnn_cell") out["h_n"] = dynamic_cast<nn::RNNCell&>(m).forward(x, h0);
  else if (kind == "gru_cell") out["h_n"] = dynamic_cast<nn::GRUCell&>(m).forward(x, h0);
  else if (kind == "lstm_cell") {
    nn::LSTMState s = dynamic_cast<nn::LSTMCell&>(m).forward(x, {h0, c0});
    out["h_n"] = s.h, out["c_n"] = s.c;
  } else if (c.at("lengths").is_null()) {
    if (kind == "lstm") {
      nn::LSTMOutput o = dynamic_cast<nn::LSTM&>(m).forward(x, {h0, c0});
      out["output"] = o.output, out["h_n"] = o.state.h, out["c_n"] = o.state.c;
    } else {
      nn::RNNOutput o = kind == "rnn" ? dynamic_cast<nn::RNN&>(m).forward(x, h0)
                                      : dynamic_cast<nn::GRU&>(m).forward(x, h0);
      out["output"] = o.output, out["h_n"] = o.h_n;
    }
  } else {
    const bool bf = c.at("options").value("batch_first", false);
    const int64_t T = x.size(bf ? 1 : 0);
    nn::PackedSequence p = nn::utils::pack_padded_sequence(
        x, c.at("lengths").get<std::vector<int64_t>>(), {.batch_first = bf, .enforce_sorted = c.at("enforce_sorted")});
    nn::PackedSequence po;
    if (kind == "lstm") {
      nn::PackedLSTMOutput o = dynamic_cast<nn::LSTM&>(m).forward(p, {h0, c0});
      po = o.output, out["h_n"] = o.state.h, out["c_n"] = o.state.c;
    } else {
      nn::PackedRNNOutput o = kind == "rnn" ? dynamic_cast<nn::RNN&>(m).forward(p, h0)
                                            : dynamic_cast<nn::GRU&>(m).forward(p, h0);
      po = o.output, out["h_n"] = o.h_n;
    }
    nn::utils::PaddedSequence padded = nn::utils::pad_packed_sequence(po, {.batch_first = bf, .total_length = T});
    EXPECT_EQ(padded.lengths, c.at("lengths").get<std::vector<int64_t>>());
    out["output"] = padded.padded;
  }
  return out;
}

}  // namespace

TEST(Rnn, ParityWithPyTorch) {
  RnnFixture fx;
  json cases = json::parse(fx.file.metadata().at("cases"));
  ASSERT_GE(cases.size(), 26u);
  for (const auto& c : cases) {
    const std::string name = c.at("name"), kind = c.at("kind");
    SCOPED_TRACE(name);
    std::shared_ptr<nn::Module> m = make_module(kind, c.at("options"));
    m->load_state_dict(fx.with_prefix(name + "/param/"));  // strict: PyTorch's names and shapes
    m->train(c.at("train").get<bool>());
    std::map<std::string, Tensor> in = fx.with_prefix(name + "/in/");
    for (auto& [k, v] : in) v.requires_grad_(true);
    std::map<std::string, Tensor> out = run_case(*m, kind, c, in);
    std::map<std::string, Tensor> want = fx.with_prefix(name + "/out/");
    ASSERT_EQ(out.size(), want.size());
    std::vector<Tensor> roots, grads;
    for (auto& [k, w] : want) {
      ASSERT_TRUE(out.count(k)) << k;
      EXPECT_TRUE(attn_test::tensors_close(out.at(k), w, 1e-4, 2e-5, name + " " + k));
      roots.push_back(out.at(k));
      grads.push_back(fx.get(name + "/grad_out/" + k));
    }
    autograd::backward(roots, grads);
    for (auto& [k, g] : fx.with_prefix(name + "/grad_in/"))
      EXPECT_TRUE(attn_test::tensors_close(in.at(k).grad(), g, 2e-4, 5e-5, name + " grad of " + k));
    auto grads_want = fx.with_prefix(name + "/grad_param/");
    EXPECT_EQ(grads_want.size(), m->named_parameters().size());
    for (auto& [k, p] : m->named_parameters()) {
      ASSERT_TRUE(grads_want.count(k)) << name << ": PyTorch has no parameter " << k;
      EXPECT_TRUE(attn_test::tensors_close(p.grad(), grads_want.at(k), 2e-4, 5e-5, name + " grad of " + k));
    }
  }
}

// The same cases' forwards with nothing recorded: the layers' dense inputs run on oneDNN's inference
// primitives (src/nn/rnn_onednn.cc), packed inputs and the cells on attn's loop; all must match PyTorch.
TEST(Rnn, ParityWithPyTorchInference) {
  RnnFixture fx;
  json cases = json::parse(fx.file.metadata().at("cases"));
  const int prev = nn::detail::set_onednn_rnn(nn::detail::kOnednnRnnOn);
  int64_t dense_layer_cases = 0;
  const int64_t before = nn::detail::onednn_rnn_forwards();
  for (const auto& c : cases) {
    const std::string name = c.at("name"), kind = c.at("kind");
    if (c.at("train").get<bool>() && c.at("options").value("dropout", 0.0) > 0.0) continue;  // random masks
    SCOPED_TRACE(name);
    std::shared_ptr<nn::Module> m = make_module(kind, c.at("options"));
    m->load_state_dict(fx.with_prefix(name + "/param/"));
    m->eval();
    std::map<std::string, Tensor> in = fx.with_prefix(name + "/in/");
    NoGradGuard no_grad;
    std::map<std::string, Tensor> out = run_case(*m, kind, c, in);
    for (auto& [k, w] : fx.with_prefix(name + "/out/")) {
      ASSERT_TRUE(out.count(k)) << k;
      EXPECT_TRUE(attn_test::tensors_close(out.at(k), w, 1e-4, 2e-5, name + " " + k));
    }
    if (kind.find("cell") == std::string::npos && c.at("lengths").is_null()) ++dense_layer_cases;
  }
  EXPECT_GE(dense_layer_cases, 10);
  EXPECT_EQ(nn::detail::onednn_rnn_forwards() - before, dense_layer_cases) << "every dense layer case on oneDNN";
  nn::detail::set_onednn_rnn(prev);
}

TEST(Rnn, ParameterNamesAndShapesArePyTorchs) {
  nn::LSTM lstm({.input_size = 3, .hidden_size = 6, .num_layers = 2, .bidirectional = true, .proj_size = 2});
  std::map<std::string, Shape> want = {
      {"weight_ih_l0", {24, 3}}, {"weight_hh_l0", {24, 2}}, {"bias_ih_l0", {24}}, {"bias_hh_l0", {24}},
      {"weight_hr_l0", {2, 6}}, {"weight_ih_l0_reverse", {24, 3}}, {"weight_hh_l0_reverse", {24, 2}},
      {"bias_ih_l0_reverse", {24}}, {"bias_hh_l0_reverse", {24}}, {"weight_hr_l0_reverse", {2, 6}},
      {"weight_ih_l1", {24, 4}}, {"weight_hh_l1", {24, 2}}, {"bias_ih_l1", {24}}, {"bias_hh_l1", {24}},
      {"weight_hr_l1", {2, 6}}, {"weight_ih_l1_reverse", {24, 4}}, {"weight_hh_l1_reverse", {24, 2}},
      {"bias_ih_l1_reverse", {24}}, {"bias_hh_l1_reverse", {24}}, {"weight_hr_l1_reverse", {2, 6}}};
  auto params = lstm.named_parameters();
  ASSERT_EQ(params.size(), want.size());
  for (auto& [k, p] : params) {
    ASSERT_TRUE(want.count(k)) << k;
    EXPECT_EQ(p.shape(), want.at(k)) << k;
  }
  nn::GRUCell cell({.input_size = 3, .hidden_size = 5, .bias = false});
  auto cp = cell.named_parameters();
  ASSERT_EQ(cp.size(), 2u);
  EXPECT_EQ(cp[0].first, "weight_ih");
  EXPECT_EQ(cp[0].second.shape(), (Shape{15, 3}));
  EXPECT_EQ(cp[1].first, "weight_hh");
}

TEST(Rnn, InitIsUniformWithinOneOverSqrtHidden) {
  manual_seed(7);
  nn::GRU gru({.input_size = 10, .hidden_size = 16, .num_layers = 2});
  const double bound = 1.0 / 4.0;
  for (auto& [k, p] : gru.named_parameters()) {
    const double lo = amin(p).item<double>(), hi = amax(p).item<double>();
    EXPECT_GE(lo, -bound) << k;
    EXPECT_LE(hi, bound) << k;
    if (p.numel() >= 48) {
      EXPECT_GT(hi - lo, 1.5 * bound) << k << ": values should fill the interval";
    }
  }
}
