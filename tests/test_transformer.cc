// Transformer modules against PyTorch (tests/make_transformer_fixtures.py): outputs, input gradients
// and every parameter gradient, for MultiheadAttention (padding, causal, cross, batch_first, Hugging
// Face's separate query/key/value layout), encoder and decoder layers (post-LN/ReLU, pre-LN/GELU) and
// the full nn.Transformer. Then: separate projections equal packed ones, incremental decoding with a
// key/value cache equals the causal forward, masks and the positional table built by ops.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/nn/transformer.h"
#include "attn/ops.h"
#include "attn/random.h"

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
    if (g[i] == w[i]) continue;
    double err = std::abs(g[i] - w[i]) - (atol + rtol * std::abs(w[i]));
    if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err, at = i;  // a NaN on either side fails
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
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::string kind = c["kind"];
    if (kind.rfind("mha", 0) == 0) {
      nn::MultiheadAttention mha({.embed_dim = c["embed_dim"], .num_heads = c["num_heads"],
                                  .batch_first = c.value("batch_first", false),
                                  .packed_projections = !c.value("separate_qkv", false)});
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

namespace {
// A separate-projection copy of a packed MultiheadAttention: query/key/value = in_proj_weight's row blocks.
std::map<std::string, Tensor> separate_state(const nn::MultiheadAttention& packed) {
  std::map<std::string, Tensor> st = packed.state_dict();
  const int64_t E = packed.options.embed_dim;
  const char* names[] = {"query", "key", "value"};
  for (int64_t i = 0; i < 3; ++i) {
    st[std::string(names[i]) + ".weight"] = st.at("in_proj_weight").narrow(0, i * E, E).contiguous();
    st[std::string(names[i]) + ".bias"] = st.at("in_proj_bias").narrow(0, i * E, E).contiguous();
  }
  st.erase("in_proj_weight");
  st.erase("in_proj_bias");
  return st;
}
}  // namespace

TEST(Transformer, SeparateProjectionsEqualPacked) {
  manual_seed(11);
  for (bool batch_first : {false, true}) {
    nn::MultiheadAttentionOptions o{.embed_dim = 16, .num_heads = 4, .batch_first = batch_first};
    nn::MultiheadAttention packed(o);
    o.packed_projections = false;
    nn::MultiheadAttention separate(o);
    EXPECT_THROW(separate.load_state_dict(packed.state_dict()), std::exception);  // the other layout's keys
    separate.load_state_dict(separate_state(packed));
    EXPECT_TRUE(separate.state_dict().count("query.weight") && !separate.state_dict().count("in_proj_weight"));
    auto seq = [&](int64_t len) { return batch_first ? randn({3, len, 16}) : randn({len, 3, 16}); };
    Tensor x = seq(5), mem = seq(7), v = seq(7);
    Tensor kpm = nn::padding_mask_from_lengths(from_vector<int64_t>({7, 2, 5}, {3}), 7);
    for (bool weights : {false, true}) {
      SCOPED_TRACE(std::string("batch_first ") + (batch_first ? "1" : "0") + " need_weights " + (weights ? "1" : "0"));
      nn::AttentionForwardOptions fo{.key_padding_mask = kpm, .need_weights = weights};
      auto a = packed.forward(x, mem, mem, fo), b = separate.forward(x, mem, mem, fo);  // cross: key is value
      EXPECT_TRUE(allclose(a.output, b.output, 1e-5, 1e-6));
      if (weights) {
        EXPECT_TRUE(allclose(a.weights, b.weights, 1e-5, 1e-6));
      }
      a = packed.forward(x, mem, v, fo), b = separate.forward(x, mem, v, fo);
      EXPECT_TRUE(allclose(a.output, b.output, 1e-5, 1e-6));
      fo.key_padding_mask = Tensor();
      fo.attn_mask = nn::causal_mask(5);
      a = packed.forward(x, x, x, fo), b = separate.forward(x, x, x, fo);  // self-attention
      EXPECT_TRUE(allclose(a.output, b.output, 1e-5, 1e-6));
    }
  }
}

// Steps of 1, 3, 1, 2, ... positions (several positions per step attend causally among themselves), 20
// positions in all: the cache grows past its first 16 slots.
TEST(Transformer, IncrementalSelfAttentionEqualsCausalForward) {
  manual_seed(12);
  for (bool packed : {true, false})
    for (bool batch_first : {false, true}) {
      SCOPED_TRACE(std::string("packed ") + (packed ? "1" : "0") + " batch_first " + (batch_first ? "1" : "0"));
      nn::MultiheadAttention mha({.embed_dim = 16, .num_heads = 2, .batch_first = batch_first,
                                  .packed_projections = packed});
      NoGradGuard ng;
      const int64_t L = 20, seq_dim = batch_first ? 1 : 0;
      Tensor x = batch_first ? randn({3, L, 16}) : randn({L, 3, 16});
      Tensor full = mha.forward(x, x, x, {.need_weights = false, .is_causal = true}).output;
      nn::KVCache cache;
      int64_t pos = 0;
      for (int64_t T : {1, 3, 1, 2, 5, 1, 4, 3}) {
        Tensor got = mha.forward_step(x.narrow(seq_dim, pos, T), cache);
        EXPECT_TRUE(allclose(got, full.narrow(seq_dim, pos, T), 1e-5, 1e-6))
            << "positions " << pos << ".." << pos + T - 1;
        pos += T;
      }
      ASSERT_EQ(pos, L);
      EXPECT_EQ(cache.length, L);
      EXPECT_GE(cache.capacity(), L);
      EXPECT_THROW(mha.forward_step(randn({3, 1, 8}), cache), std::invalid_argument);
      EXPECT_THROW(mha.forward_step(batch_first ? randn({2, 1, 16}) : randn({1, 2, 16}), cache), std::invalid_argument);
    }
}

// The decoder layer's forward_step (cached self-attention, memory projected once) equals forward() of
// the whole prefix under a causal mask, with source padding, both norm placements and layouts; rows
// selected between steps (as beam search does) follow.
TEST(Transformer, DecoderLayerForwardStepEqualsForward) {
  manual_seed(13);
  for (bool norm_first : {false, true})
    for (bool batch_first : {false, true}) {
      SCOPED_TRACE(std::string("norm_first ") + (norm_first ? "1" : "0") + " batch_first " + (batch_first ? "1" : "0"));
      nn::TransformerDecoderLayer layer({.d_model = 16, .nhead = 4, .dim_feedforward = 24, .dropout = 0.1,
                                         .activation = norm_first ? nn::Activation::GELU : nn::Activation::ReLU,
                                         .batch_first = batch_first, .norm_first = norm_first});
      layer.eval();
      NoGradGuard ng;
      const int64_t T = 6, S = 5, seq_dim = batch_first ? 1 : 0;
      Tensor tgt = batch_first ? randn({2, T, 16}) : randn({T, 2, 16});
      Tensor mem = batch_first ? randn({2, S, 16}) : randn({S, 2, 16});
      Tensor mkpm = nn::padding_mask_from_lengths(from_vector<int64_t>({5, 3}, {2}), S);
      Tensor full = layer.forward(tgt, mem, {.tgt_mask = nn::causal_mask(T), .memory_key_padding_mask = mkpm});
      nn::DecoderLayerCache cache = layer.start_cache(mem);
      for (int64_t t = 0; t < 3; ++t) {
        Tensor got = layer.forward_step(tgt.narrow(seq_dim, t, 1), cache, {.memory_key_padding_mask = mkpm});
        EXPECT_TRUE(allclose(got, full.narrow(seq_dim, t, 1), 1e-5, 1e-6)) << "step " << t;
      }
      // rows (1, 1, 0): the caches and the padding mask follow; the reference is the same rows' forward
      Tensor rows = from_vector<int64_t>({1, 1, 0}, {3});
      cache.select_rows(rows);
      Tensor mkpm3 = index_select(mkpm, 0, rows);
      Tensor full3 = index_select(full, batch_first ? 0 : 1, rows);
      Tensor tgt3 = index_select(tgt, batch_first ? 0 : 1, rows);
      for (int64_t t = 3; t < T; ++t) {
        Tensor got = layer.forward_step(tgt3.narrow(seq_dim, t, 1), cache, {.memory_key_padding_mask = mkpm3});
        EXPECT_TRUE(allclose(got, full3.narrow(seq_dim, t, 1), 1e-5, 1e-6)) << "step " << t;
      }
      EXPECT_THROW(layer.forward_step(tgt3.narrow(seq_dim, 0, 1), cache, {.memory_key_padding_mask = mkpm}),
                   std::invalid_argument);  // the padding mask has 2 rows, the caches 3
    }
}

TEST(Transformer, MasksAreBuiltByOps) {
  std::vector<bool> causal = nn::causal_mask(4).to_vector<bool>();
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(causal[size_t(i * 4 + j)], j > i) << i << ", " << j;
  EXPECT_EQ(nn::causal_mask(0).shape(), (Shape{0, 0}));
  EXPECT_THROW(nn::causal_mask(-1), std::invalid_argument);
  EXPECT_EQ(nn::padding_mask_from_lengths(from_vector<int64_t>({3, 0, 1}, {3}), 3).to_vector<bool>(),
            (std::vector<bool>{false, false, false, true, true, true, false, true, true}));
  EXPECT_EQ(nn::padding_mask(from_vector<int64_t>({5, 0, 7, 0}, {2, 2}), 0).to_vector<bool>(),
            (std::vector<bool>{false, true, false, true}));
  EXPECT_THROW(nn::padding_mask_from_lengths(zeros({2, 2}, {.dtype = kInt64}), 3), std::invalid_argument);
}

// The table, built by ops, equals the paper's formula evaluated in double per element and rounded to
// float, bit for bit (the values training runs used), for even and odd widths.
TEST(Transformer, PositionalTableEqualsTheScalarFormulaBitForBit) {
  for (auto [d, max_len] : std::vector<std::pair<int64_t, int64_t>>{{16, 50}, {15, 7}, {512, 1024}}) {
    nn::PositionalEncoding pe({.d_model = d, .max_len = max_len, .dropout = 0.0});
    std::vector<float> got = pe.pe.to_vector<float>();
    ASSERT_EQ(got.size(), size_t(d * max_len));
    size_t mismatches = 0;
    for (int64_t pos = 0; pos < max_len; ++pos)
      for (int64_t i = 0; i < d; i += 2) {
        double div = std::exp(double(i) * (-std::log(10000.0) / double(d)));
        mismatches += got[size_t(pos * d + i)] != float(std::sin(double(pos) * div));
        if (i + 1 < d) mismatches += got[size_t(pos * d + i + 1)] != float(std::cos(double(pos) * div));
      }
    EXPECT_EQ(mismatches, 0u) << "d_model " << d << ", max_len " << max_len;
  }
}
