// tests/op_table.h — one row per op: how to call the attn op for a fixture case.
//
//   {"leaky_relu", [](const Args& a) { return attn::leaky_relu(a[0], a.d("negative_slope", 0.01)); }},
//
// `a[i]` is the i-th op input (already viewed, a leaf requiring grad where the case says so),
// `a.named("weight")` an input by name (undefined Tensor if the case has none), and a.i/d/b/shape/…
// read the case's "args" (make_fixtures.py writes them with PyTorch's argument names). A row returns a
// Tensor, a pair (values, indices) or a vector of Tensors; they are compared with "<case>/out" (one
// output) or "<case>/out<k>". The same rows drive tests/test_ops_table.cc (values and gradients vs
// PyTorch) and the fixture part of tests/test_gradcheck.cc (finite differences in float64).
// Adding an op: add a row here and cases in tests/make_fixtures.py (same op key), then regenerate.
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "attn/ops.h"
#include "fixture_loader.h"

namespace attn_test {

// The outputs of a row.
struct Outs {
  std::vector<Tensor> v;
  Outs(Tensor t) : v{std::move(t)} {}  // NOLINT: implicit on purpose
  Outs(std::pair<Tensor, Tensor> p) : v{std::move(p.first), std::move(p.second)} {}  // NOLINT
  Outs(std::vector<Tensor> t) : v(std::move(t)) {}  // NOLINT
};

class Args {
 public:
  Args(const FixtureCase& c, std::vector<Tensor> in) : c_(c), in_(std::move(in)) {}
  const Tensor& operator[](size_t i) const {
    if (i >= in_.size())
      throw std::out_of_range("case " + c_.name + ": row reads input " + std::to_string(i) + " of " +
                              std::to_string(in_.size()));
    return in_[i];
  }
  size_t size() const { return in_.size(); }
  const std::vector<Tensor>& all() const { return in_; }
  Tensor named(const std::string& name) const {
    for (size_t i = 0; i < in_.size(); ++i)
      if (c_.inputs[i].name == name) return in_[i];
    return {};
  }
  bool has(const char* k) const { return c_.args.contains(k) && !c_.args.at(k).is_null(); }
  int64_t i(const char* k) const { return at(k).get<int64_t>(); }
  int64_t i(const char* k, int64_t def) const { return has(k) ? i(k) : def; }
  double d(const char* k) const { return at(k).get<double>(); }
  double d(const char* k, double def) const { return has(k) ? d(k) : def; }
  bool b(const char* k) const { return at(k).get<bool>(); }
  bool b(const char* k, bool def) const { return has(k) ? b(k) : def; }
  std::string s(const char* k, const std::string& def) const { return has(k) ? at(k).get<std::string>() : def; }
  Shape shape(const char* k) const { return at(k).get<Shape>(); }
  Shape shape(const char* k, Shape def) const { return has(k) ? shape(k) : def; }
  std::optional<double> opt_d(const char* k) const { return has(k) ? std::optional<double>(d(k)) : std::nullopt; }
  std::pair<int64_t, int64_t> pair(const char* k, std::pair<int64_t, int64_t> def) const {
    if (!has(k)) return def;
    Shape v = shape(k);
    if (v.size() != 2) throw std::invalid_argument("case " + c_.name + ": arg " + k + " is not a pair");
    return {v[0], v[1]};
  }
  attn::Reduction reduction() const {
    const std::string r = s("reduction", "mean");
    if (r == "none") return attn::Reduction::None;
    if (r == "sum") return attn::Reduction::Sum;
    if (r == "mean") return attn::Reduction::Mean;
    throw std::invalid_argument("case " + c_.name + ": unknown reduction " + r);
  }

 private:
  const json& at(const char* k) const {
    if (!c_.args.contains(k)) throw std::out_of_range("case " + c_.name + ": missing arg '" + k + "'");
    return c_.args.at(k);
  }
  const FixtureCase& c_;
  std::vector<Tensor> in_;
};

using OpFn = std::function<Outs(const Args&)>;

inline attn::Pool2dOptions pool_options(const Args& a) {
  attn::Pool2dOptions o{.kernel_size = a.pair("kernel_size", {2, 2}),
                        .padding = a.pair("padding", {0, 0}),
                        .ceil_mode = a.b("ceil_mode", false),
                        .count_include_pad = a.b("count_include_pad", true)};
  if (a.has("stride")) o.stride = a.pair("stride", {1, 1});
  return o;
}

// op key -> how to call it. Keys match OPS in tests/make_fixtures.py.
inline const std::map<std::string, OpFn>& op_table() {
  using namespace attn;
  using A = const Args&;
  static const std::map<std::string, OpFn> rows = {
      // ---- elementwise, broadcasting
      {"add", [](A a) { return attn::add(a[0], a[1], a.d("alpha", 1.0)); }},
      {"sub", [](A a) { return attn::sub(a[0], a[1], a.d("alpha", 1.0)); }},
      {"mul", [](A a) { return attn::mul(a[0], a[1]); }},
      {"div", [](A a) { return attn::div(a[0], a[1]); }},
      {"pow", [](A a) { return attn::pow(a[0], a[1]); }},
      {"maximum", [](A a) { return attn::maximum(a[0], a[1]); }},
      {"minimum", [](A a) { return attn::minimum(a[0], a[1]); }},
      {"add_scalar", [](A a) { return attn::add(a[0], a.d("other")); }},
      {"sub_scalar", [](A a) { return attn::sub(a[0], a.d("other")); }},
      {"mul_scalar", [](A a) { return attn::mul(a[0], a.d("other")); }},
      {"div_scalar", [](A a) { return attn::div(a[0], a.d("other")); }},
      {"rsub_scalar", [](A a) { return a.d("other") - a[0]; }},
      {"rdiv_scalar", [](A a) { return a.d("other") / a[0]; }},
      {"pow_scalar", [](A a) { return attn::pow(a[0], a.d("exponent")); }},
      {"neg", [](A a) { return attn::neg(a[0]); }},
      {"exp", [](A a) { return attn::exp(a[0]); }},
      {"log", [](A a) { return attn::log(a[0]); }},
      {"sqrt", [](A a) { return attn::sqrt(a[0]); }},
      {"rsqrt", [](A a) { return attn::rsqrt(a[0]); }},
      {"abs", [](A a) { return attn::abs(a[0]); }},
      {"sin", [](A a) { return attn::sin(a[0]); }},
      {"cos", [](A a) { return attn::cos(a[0]); }},
      {"square", [](A a) { return attn::square(a[0]); }},
      {"clamp", [](A a) { return attn::clamp(a[0], a.opt_d("min"), a.opt_d("max")); }},
      {"where", [](A a) { return attn::where(a[0], a[1], a[2]); }},
      {"where_scalar", [](A a) { return attn::where(a[0], a[1], a.d("other")); }},
      {"eq", [](A a) { return attn::eq(a[0], a[1]); }},
      {"ne", [](A a) { return attn::ne(a[0], a[1]); }},
      {"lt", [](A a) { return attn::lt(a[0], a[1]); }},
      {"le", [](A a) { return attn::le(a[0], a[1]); }},
      {"gt", [](A a) { return attn::gt(a[0], a[1]); }},
      {"ge", [](A a) { return attn::ge(a[0], a[1]); }},
      {"eq_scalar", [](A a) { return attn::eq(a[0], a.d("other")); }},
      {"ne_scalar", [](A a) { return attn::ne(a[0], a.d("other")); }},
      {"lt_scalar", [](A a) { return attn::lt(a[0], a.d("other")); }},
      {"le_scalar", [](A a) { return attn::le(a[0], a.d("other")); }},
      {"gt_scalar", [](A a) { return attn::gt(a[0], a.d("other")); }},
      {"ge_scalar", [](A a) { return attn::ge(a[0], a.d("other")); }},
      {"logical_not", [](A a) { return attn::logical_not(a[0]); }},
      {"logical_and", [](A a) { return attn::logical_and(a[0], a[1]); }},
      {"logical_or", [](A a) { return attn::logical_or(a[0], a[1]); }},
      // ---- reductions
      {"sum", [](A a) { return attn::sum(a[0], a.shape("dims", {}), a.b("keepdim", false)); }},
      {"mean", [](A a) { return attn::mean(a[0], a.shape("dims", {}), a.b("keepdim", false)); }},
      {"amax", [](A a) { return attn::amax(a[0], a.shape("dims", {}), a.b("keepdim", false)); }},
      {"amin", [](A a) { return attn::amin(a[0], a.shape("dims", {}), a.b("keepdim", false)); }},
      {"max_all", [](A a) { return attn::max(a[0]); }},
      {"min_all", [](A a) { return attn::min(a[0]); }},
      {"max_dim", [](A a) { return attn::max(a[0], a.i("dim"), a.b("keepdim", false)); }},
      {"min_dim", [](A a) { return attn::min(a[0], a.i("dim"), a.b("keepdim", false)); }},
      {"argmax", [](A a) { return attn::argmax(a[0], a.i("dim"), a.b("keepdim", false)); }},
      {"topk", [](A a) { return attn::topk(a[0], a.i("k"), a.i("dim"), a.b("largest", true)); }},
      {"argmin", [](A a) { return attn::argmin(a[0], a.i("dim"), a.b("keepdim", false)); }},
      {"var", [](A a) { return attn::var(a[0], a.shape("dims", {}), a.i("correction", 1), a.b("keepdim", false)); }},
      {"std", [](A a) { return attn::std(a[0], a.shape("dims", {}), a.i("correction", 1), a.b("keepdim", false)); }},
      // ---- linear algebra
      {"matmul", [](A a) { return attn::matmul(a[0], a[1]); }},
      {"mm", [](A a) { return attn::mm(a[0], a[1]); }},
      {"bmm", [](A a) { return attn::bmm(a[0], a[1]); }},
      {"linear", [](A a) { return attn::linear(a[0], a[1], a.size() > 2 ? a[2] : Tensor{}); }},
      // ---- activations
      {"sigmoid", [](A a) { return attn::sigmoid(a[0]); }},
      {"tanh", [](A a) { return attn::tanh(a[0]); }},
      {"relu", [](A a) { return attn::relu(a[0]); }},
      {"leaky_relu", [](A a) { return attn::leaky_relu(a[0], a.d("negative_slope", 0.01)); }},
      {"gelu",
       [](A a) {
         return attn::gelu(a[0], a.s("approximate", "none") == "tanh" ? GeluApproximate::Tanh : GeluApproximate::None);
       }},
      {"softmax", [](A a) { return attn::softmax(a[0], a.i("dim")); }},
      {"log_softmax", [](A a) { return attn::log_softmax(a[0], a.i("dim")); }},
      // ---- losses
      {"cross_entropy",
       [](A a) {
         return attn::cross_entropy(a[0], a[1],
                                    {.ignore_index = a.i("ignore_index", -100),
                                     .label_smoothing = a.d("label_smoothing", 0.0),
                                     .reduction = a.reduction(),
                                     .weight = a.named("weight")});
       }},
      {"nll_loss",
       [](A a) {
         return attn::nll_loss(a[0], a[1],
                               {.ignore_index = a.i("ignore_index", -100), .reduction = a.reduction(),
                                .weight = a.named("weight")});
       }},
      {"mse_loss", [](A a) { return attn::mse_loss(a[0], a[1], a.reduction()); }},
      {"binary_cross_entropy_with_logits",
       [](A a) {
         return attn::binary_cross_entropy_with_logits(
             a[0], a[1], {.reduction = a.reduction(), .weight = a.named("weight"), .pos_weight = a.named("pos_weight")});
       }},
      // ---- regularisation, embeddings, normalisation
      {"dropout", [](A a) { return attn::dropout(a[0], a.d("p"), a.b("training")); }},
      {"relu_dropout", [](A a) { return attn::relu_dropout(a[0], a.d("p"), a.b("training")); }},
      {"scaled_dot_product_attention",
       [](A a) {
         return attn::scaled_dot_product_attention(a[0], a[1], a[2],
                                                   {.attn_mask = a.named("attn_mask"),
                                                    .key_padding_mask = a.named("key_padding_mask"),
                                                    .is_causal = a.b("is_causal", false), .scale = a.opt_d("scale")});
       }},
      {"packed_scaled_dot_product_attention",
       [](A a) {
         const std::string src = a.s("sources", "q_k_v");  // qkv: one source; q_kv: q and [k | v]; q_k_v
         const Tensor& qs = a[0];
         const Tensor& ks = src == "qkv" ? a[0] : a[1];
         const Tensor& vs = src == "qkv" ? a[0] : src == "q_kv" ? a[1] : a[2];
         const Shape c = a.shape("columns");
         return attn::packed_scaled_dot_product_attention(
             {qs, c[0]}, {ks, c[1]}, {vs, c[2]}, a.i("num_heads"), a.i("embed_dim"),
             {.attn_mask = a.named("attn_mask"), .key_padding_mask = a.named("key_padding_mask"),
              .is_causal = a.b("is_causal", false), .scale = a.opt_d("scale")});
       }},
      {"embedding", [](A a) { return attn::embedding(a[0], a[1], a.i("padding_idx", -1)); }},
      {"layer_norm",
       [](A a) {
         return attn::layer_norm(a[0], a.shape("normalized_shape"), a.named("weight"), a.named("bias"),
                                 a.d("eps", 1e-5));
       }},
      {"batch_norm",
       [](A a) -> Outs {
         Tensor rm = a.named("running_mean"), rv = a.named("running_var");
         Tensor y = attn::batch_norm(a[0], rm, rv, a.named("weight"), a.named("bias"), a.b("training"),
                                     a.d("momentum", 0.1), a.d("eps", 1e-5));
         if (rm.defined()) return std::vector<Tensor>{y, rm, rv};  // running stats after the update
         return y;
       }},
      // ---- convolution and pooling
      {"conv1d",
       [](A a) {
         return attn::conv1d(a[0], a[1], a.size() > 2 ? a[2] : Tensor{},
                             {.stride = a.i("stride", 1), .padding = a.i("padding", 0),
                              .dilation = a.i("dilation", 1), .groups = a.i("groups", 1)});
       }},
      {"conv1d_max_over_time",  // inputs: x (B, T, E), then (weight, bias) per width
       [](A a) {
         std::vector<Tensor> w, b;
         for (size_t i = 1; i + 1 < a.size(); i += 2) w.push_back(a[i]), b.push_back(a[i + 1]);
         return attn::conv1d_max_over_time(a[0], w, b);
       }},
      {"conv2d",
       [](A a) {
         return attn::conv2d(a[0], a[1], a.size() > 2 ? a[2] : Tensor{},
                             {.stride = a.pair("stride", {1, 1}), .padding = a.pair("padding", {0, 0}),
                              .dilation = a.pair("dilation", {1, 1}), .groups = a.i("groups", 1)});
       }},
      {"max_pool2d", [](A a) { return attn::max_pool2d(a[0], pool_options(a)); }},
      {"avg_pool2d", [](A a) { return attn::avg_pool2d(a[0], pool_options(a)); }},
      // ---- joining, splitting, indexing
      {"cat", [](A a) { return attn::cat(a.all(), a.i("dim", 0)); }},
      {"stack", [](A a) { return attn::stack(a.all(), a.i("dim", 0)); }},
      {"split_size", [](A a) { return attn::split(a[0], a.i("split_size"), a.i("dim", 0)); }},
      {"split_sizes", [](A a) { return attn::split(a[0], std::vector<int64_t>(a.shape("sizes")), a.i("dim", 0)); }},
      {"chunk", [](A a) { return attn::chunk(a[0], a.i("chunks"), a.i("dim", 0)); }},
      {"gather", [](A a) { return attn::gather(a[0], a.i("dim"), a[1]); }},
      {"index_select", [](A a) { return attn::index_select(a[0], a.i("dim"), a[1]); }},
      {"masked_fill", [](A a) { return attn::masked_fill(a[0], a[1], a.d("value")); }},
      {"one_hot", [](A a) { return attn::one_hot(a[0], a.i("num_classes")); }},
      {"allclose",
       [](A a) {
         bool r = attn::allclose(a[0], a[1], a.d("rtol", 1e-5), a.d("atol", 1e-8));
         return attn::full({}, r ? 1.0 : 0.0, {.dtype = kBool, .device = a[0].device()});
       }},
      // ---- Tensor views and copies (tensor.h)
      {"view", [](A a) { return a[0].view(a.shape("shape")); }},
      {"reshape", [](A a) { return a[0].reshape(a.shape("shape")); }},
      {"permute", [](A a) { return a[0].permute(a.shape("dims")); }},
      {"transpose", [](A a) { return a[0].transpose(a.i("dim0"), a.i("dim1")); }},
      {"t", [](A a) { return a[0].t(); }},
      {"narrow", [](A a) { return a[0].narrow(a.i("dim"), a.i("start"), a.i("length")); }},
      {"slice", [](A a) { return a[0].slice(a.i("dim"), a.i("start"), a.i("end"), a.i("step", 1)); }},
      {"select", [](A a) { return a[0].select(a.i("dim"), a.i("index")); }},
      {"expand", [](A a) { return a[0].expand(a.shape("shape")); }},
      {"unsqueeze", [](A a) { return a[0].unsqueeze(a.i("dim")); }},
      {"squeeze_dim", [](A a) { return a[0].squeeze(a.i("dim")); }},
      {"squeeze", [](A a) { return a[0].squeeze(); }},
      {"flatten", [](A a) { return a[0].flatten(a.i("start_dim", 0), a.i("end_dim", -1)); }},
      {"contiguous", [](A a) { return a[0].contiguous(); }},
      {"clone", [](A a) { return a[0].clone(); }},
      {"to_dtype", [](A a) { return a[0].to(dtype_from_name(a.s("dtype", ""))); }},
      // ---- in place (tensor.h), forward only; a[0] is the case's private copy
      {"add_", [](A a) { Tensor x = a[0]; x.add_(a[1], a.d("alpha", 1.0)); return x; }},
      {"mul_", [](A a) { Tensor x = a[0]; x.mul_(a[1]); return x; }},
      {"mul_scalar_", [](A a) { Tensor x = a[0]; x.mul_(a.d("other")); return x; }},
      {"div_", [](A a) { Tensor x = a[0]; x.div_(a[1]); return x; }},
      {"clamp_", [](A a) { Tensor x = a[0]; x.clamp_(a.d("min"), a.d("max")); return x; }},
      {"masked_fill_", [](A a) { Tensor x = a[0]; x.masked_fill_(a[1], a.d("value")); return x; }},
      {"copy_", [](A a) { Tensor x = a[0]; x.copy_(a[1]); return x; }},
      {"fill_", [](A a) { Tensor x = a[0]; x.fill_(a.d("value")); return x; }},
      {"zero_", [](A a) { Tensor x = a[0]; x.zero_(); return x; }},
  };
  return rows;
}

}  // namespace attn_test
