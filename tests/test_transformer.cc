// Transformer modules against PyTorch (tests/make_transformer_fixtures.py): outputs, input gradients
// and every parameter gradient, for MultiheadAttention (padding, causal, cross, batch_first), encoder
// and decoder layers (post-LN/ReLU, pre-LN/GELU) and the full nn.Transformer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/nn/transformer.h"
#include "attn/ops.h"

using namespace attn;
using nlohmann::json;

namespace {

struct Fixture {
  io::SafeTensorsFile file = io::SafeTensorsFile::open(std::string(ATTN_FIXTURE_DIR) + "/transformer.safetensors");
  Tensor get(const std::string& k) const { return file.get(k).clone(); }
  std::map<std::string, Tensor> with_prefix(const std::string& prefix) const {
    std::map<std::string, Tensor> m;
    for (const auto& k : file.keys())
      if (k.rfind(prefix, 0) == 0) m[k.substr(prefix.size())] = get(k);
    return m;
  }
};

void expect_close(const Tensor& got, const Tensor& want, const std::string& what, double atol = 2e-5, double rtol = 1e-4) {
  ASSERT_TRUE(got.defined()) << what << ": no tensor";
  ASSERT_EQ(got.shape(), want.shape()) << what;
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    double err = std::abs(g[i] - w[i]) - (atol + rtol * std::abs(w[i]));
    if (err > worst) worst = err, at = i;
  }
  EXPECT_LE(worst, 0.0) << what << ": mismatch at flat index " << at << ": got " << g[at] << ", want " << w[at];
}

void check_case(const Fixture& fx, const json& c, nn::Module& m,
                const std::function<Tensor(std::map<std::string, Tensor>&)>& run) {
  std::string name = c["name"];
  m.load_state_dict(fx.with_prefix(name + "/param/"));
  m.train();
  std::map<std::string, Tensor> in = fx.with_prefix(name + "/in/");
  for (auto& [k, v] : in)
    if (is_floating(v.dtype())) v.requires_grad_(true);
  Tensor out = run(in);
  expect_close(out, fx.get(name + "/out"), name + " output");
  out.backward(fx.get(name + "/grad_out"));
  for (auto& [k, v] : fx.with_prefix(name + "/grad_in/")) expect_close(in.at(k).grad(), v, name + " grad of input " + k);
  auto grads = fx.with_prefix(name + "/grad_param/");
  for (auto& [k, p] : m.named_parameters()) {
    auto it = grads.find(k);
    if (it == grads.end()) {
      EXPECT_TRUE(!p.grad().defined() || p.grad().abs().sum().item<double>() == 0.0) << name << ": " << k << " should get no gradient";
    } else {
      expect_close(p.grad(), it->second, name + " grad of parameter " + k, 5e-5, 2e-4);
    }
  }
}

}  // namespace

TEST(Transformer, ParityWithPyTorch) {
  Fixture fx;
  json cases = json::parse(fx.file.metadata().at("cases"));
  ASSERT_GE(cases.size(), 9u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::string kind = c["kind"];
    if (kind.rfind("mha", 0) == 0) {
      nn::MultiheadAttention mha({.embed_dim = c["embed_dim"], .num_heads = c["num_heads"],
                                  .batch_first = c.value("batch_first", false)});
      check_case(fx, c, mha, [&](std::map<std::string, Tensor>& i) {
        if (kind == "mha_weights")
          return mha.forward(i["q"], i["kv"], i["kv"], {.key_padding_mask = i["kpm"], .need_weights = true}).weights;
        if (kind == "mha_qkv") return mha.forward(i["q"], i["k"], i["v"], {.need_weights = false}).output;
        return mha.forward(i["x"], i["x"], i["x"], {.key_padding_mask = i.count("kpm") ? i["kpm"] : Tensor(),
                                                    .attn_mask = i.count("mask") ? i["mask"] : Tensor(),
                                                    .need_weights = false}).output;
      });
    } else if (kind == "enc_layer" || kind == "dec_layer") {
      nn::TransformerLayerOptions lo{.d_model = c["d_model"], .nhead = c["nhead"], .dim_feedforward = c["dim_feedforward"],
                                     .dropout = 0.0,
                                     .activation = c["activation"] == "gelu" ? nn::Activation::GELU : nn::Activation::ReLU,
                                     .norm_first = c["norm_first"]};
      if (kind == "enc_layer") {
        nn::TransformerEncoderLayer layer(lo);
        check_case(fx, c, layer, [&](std::map<std::string, Tensor>& i) {
          return layer.forward(i["x"], {.src_key_padding_mask = i["kpm"]});
        });
      } else {
        nn::TransformerDecoderLayer layer(lo);
        check_case(fx, c, layer, [&](std::map<std::string, Tensor>& i) {
          return layer.forward(i["tgt"], i["mem"], {.tgt_mask = i["tgt_mask"], .memory_key_padding_mask = i["mkpm"]});
        });
      }
    } else if (kind == "transformer") {
      nn::Transformer model({.d_model = c["d_model"], .nhead = c["nhead"], .num_encoder_layers = c["num_encoder_layers"],
                             .num_decoder_layers = c["num_decoder_layers"], .dim_feedforward = c["dim_feedforward"],
                             .dropout = 0.0});
      check_case(fx, c, model, [&](std::map<std::string, Tensor>& i) {
        return model.forward(i["src"], i["tgt"], {.tgt_mask = i["tgt_mask"], .src_key_padding_mask = i["skpm"],
                                                  .tgt_key_padding_mask = i["tkpm"], .memory_key_padding_mask = i["skpm"]});
      });
    } else {
      ADD_FAILURE() << "unknown case kind " << kind;
    }
  }
}

TEST(Transformer, PositionalEncodingMatchesPaper) {
  Fixture fx;
  nn::PositionalEncoding pe({.d_model = 16, .max_len = 50, .dropout = 0.0});
  expect_close(pe.pe, fx.get("positional_encoding/pe"), "pe", 1e-6, 1e-5);
  EXPECT_TRUE(pe.state_dict().empty());  // non-persistent buffer
  Tensor x = zeros({4, 2, 16});
  Tensor y = pe.forward(x, 3);
  expect_close(y.select(1, 1), pe.pe.narrow(0, 3, 4), "offset positions", 0, 0);
  EXPECT_THROW(pe.forward(zeros({4, 2, 15})), std::invalid_argument);
  EXPECT_THROW(pe.forward(x, 48), std::invalid_argument);
}

TEST(Transformer, BadShapesAndMasksAreClearErrors) {
  nn::MultiheadAttention mha({.embed_dim = 8, .num_heads = 2});
  Tensor x = randn({3, 2, 8});
  EXPECT_THROW(mha.forward(randn({3, 2, 6}), x, x), std::invalid_argument);
  EXPECT_THROW(mha.forward(x, x, x, {.key_padding_mask = zeros({3, 3}, {.dtype = kBool})}), std::invalid_argument);
  EXPECT_THROW(mha.forward(x, x, x, {.attn_mask = zeros({2, 3}, {.dtype = kBool})}), std::invalid_argument);
  EXPECT_THROW(nn::MultiheadAttention({.embed_dim = 10, .num_heads = 3}), std::invalid_argument);
  // is_causal equals an explicit causal mask
  Tensor a = mha.forward(x, x, x, {.need_weights = false, .is_causal = true}).output;
  Tensor b = mha.forward(x, x, x, {.attn_mask = nn::causal_mask(3), .need_weights = false}).output;
  EXPECT_TRUE(allclose(a, b, 1e-6, 1e-7));
}
