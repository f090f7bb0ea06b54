// tests/test_gradcheck.cc — autograd vs central differences in float64 (see tests/gradcheck.h).
//
// Two tables: the rows below (inputs made here, independent of PyTorch) cover every differentiable
// op with broadcasting and non-contiguous inputs; then every fixture case of tests/op_table.h that
// has float inputs is re-run in float64 and gradchecked as well.
//   ./attn_tests --gtest_filter='*Gradcheck*conv*'
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "gradcheck.h"
#include "op_table.h"

namespace attn_test {
namespace {

using attn::Tensor;
using V = std::vector<Tensor>;

// ---- inputs: float64 leaves made from a seeded std::mt19937_64, optionally viewed first
struct G {
  enum Kind { Randn, Pos, Away0, Uniform, Int, Bool } kind = Randn;
  Shape shape;
  double lo = 0, hi = 1;
  int64_t high = 0;
  std::vector<std::function<Tensor(const Tensor&)>> views;
  std::string desc;
  bool grad = true;  // float inputs: a leaf that requires grad, else a constant
  G(Kind k, Shape s, double lo_ = 0, double hi_ = 1, int64_t high_ = 0)
      : kind(k), shape(std::move(s)), lo(lo_), hi(hi_), high(high_) {}
  G nograd() const {
    G g = *this;
    g.grad = false;
    return g;
  }
  G tr(int64_t a = 0, int64_t b = 1) const {
    G g = *this;
    g.views.push_back([a, b](const Tensor& t) { return t.transpose(a, b); });
    g.desc += ".transpose(" + std::to_string(a) + ", " + std::to_string(b) + ")";
    return g;
  }
  G sl(int64_t dim, int64_t start, int64_t end, int64_t step) const {
    G g = *this;
    g.views.push_back([=](const Tensor& t) { return t.slice(dim, start, end, step); });
    g.desc += ".slice(" + std::to_string(dim) + ", " + std::to_string(start) + ", " + std::to_string(end) + ", " +
              std::to_string(step) + ")";
    return g;
  }
  G perm(Shape dims) const {
    G g = *this;
    g.views.push_back([dims](const Tensor& t) { return t.permute(dims); });
    g.desc += ".permute(...)";
    return g;
  }
};
G R(Shape s) { return {G::Randn, s}; }                                    // N(0, 1)
G P(Shape s) { return {G::Pos, s}; }                                      // U[0.5, 2)
G Z(Shape s) { return {G::Away0, s}; }                                    // |x| >= 0.1 (no kink nearby)
G U(Shape s, double lo, double hi) { return {G::Uniform, s, lo, hi}; }    // U[lo, hi)
G I(Shape s, int64_t high) { return {G::Int, s, 0, 1, high}; }            // int64 in [0, high), no grad
G B(Shape s) { return {G::Bool, s}; }                                     // bool, no grad
G K(Shape s) { return R(s).nograd(); }                                    // N(0, 1) float64 constant
G PK(Shape s) { return P(s).nograd(); }                                   // U[0.5, 2) float64 constant
G Iv(Shape s, std::vector<int64_t> v) {                                  // fixed int64 values
  G g{G::Int, s};
  g.views.push_back([v, s](const Tensor&) { return attn::from_vector<int64_t>(v, s); });
  return g;
}

Tensor make(const G& g, std::mt19937_64& rng) {
  const int64_t n = attn::numel_of(g.shape);
  Tensor t;
  if (g.kind == G::Int || g.kind == G::Bool) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    std::uniform_int_distribution<int64_t> d(0, g.kind == G::Bool ? 1 : g.high - 1);
    for (auto& e : v) e = d(rng);
    t = attn::from_vector<int64_t>(v, g.shape);
    if (g.kind == G::Bool) t = t.to(attn::kBool);
  } else {
    std::vector<double> v(static_cast<size_t>(n));
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> ud;
    for (auto& e : v) {
      switch (g.kind) {
        case G::Pos: e = 0.5 + 1.5 * ud(rng); break;
        case G::Away0: { double r = nd(rng); e = (r < 0 ? -1 : 1) * (0.1 + std::fabs(r)); break; }
        case G::Uniform: e = g.lo + (g.hi - g.lo) * ud(rng); break;
        default: e = nd(rng);
      }
    }
    t = attn::from_vector<double>(v, g.shape);
  }
  for (const auto& view : g.views) t = view(t);
  if (attn::is_floating(t.dtype()) && g.grad) {
    t = t.detach();
    t.requires_grad_(true);
  }
  return t;
}

struct GRow {
  std::string name;
  GradFn fn;
  std::vector<G> in;
  GRow(std::string n, std::function<Tensor(const V&)> f, std::vector<G> i)
      : name(std::move(n)), fn([f](const V& x) { return V{f(x)}; }), in(std::move(i)) {}
  GRow(std::string n, GradFn f, std::vector<G> i) : name(std::move(n)), fn(std::move(f)), in(std::move(i)) {}
};

using namespace attn;  // NOLINT: the rows read like PyTorch

const std::vector<GRow>& gradcheck_rows() {
  static const std::vector<GRow> rows = {
      // ---- elementwise, broadcasting
      {"add_bcast_alpha", [](const V& x) { return add(x[0], x[1], 2.5); }, {R({2, 1, 4}), R({3, 1})}},
      {"sub_noncontig", [](const V& x) { return sub(x[0], x[1]); }, {R({4, 3}).tr(), R({3, 8}).sl(1, 0, 8, 2)}},
      {"mul_bcast_0d", [](const V& x) { return mul(x[0], x[1]); }, {R({3, 4}), R({})}},
      {"mul_same_input", [](const V& x) { return mul(x[0], x[0]); }, {R({3, 4})}},
      {"div_bcast", [](const V& x) { return div(x[0], x[1]); }, {R({2, 3}), P({3})}},
      {"div_noncontig", [](const V& x) { return div(x[0], x[1]); }, {R({4, 3}).tr(), P({4, 3}).tr()}},
      {"pow_tensor", [](const V& x) { return attn::pow(x[0], x[1]); }, {P({3, 4}), U({4}, -1, 2)}},
      {"pow_scalar3", [](const V& x) { return attn::pow(x[0], 3.0); }, {R({3, 4}).tr()}},
      {"pow_scalar_frac", [](const V& x) { return attn::pow(x[0], -1.5); }, {P({3, 4})}},
      {"maximum_bcast", [](const V& x) { return maximum(x[0], x[1]); }, {R({2, 1, 4}), R({3, 1})}},
      {"minimum_noncontig", [](const V& x) { return minimum(x[0], x[1]); }, {R({4, 3}).tr(), R({4})}},
      {"scalar_ops",
       [](const V& x) { return add(mul(sub(div(x[0], 4.0), 1.0), 3.0), 2.0); }, {R({3, 4})}},
      {"rsub_rdiv", [](const V& x) { return (2.0 - x[0]) * (3.0 / x[1]); }, {R({3, 4}), P({3, 4})}},
      {"operators_bcast", [](const V& x) { return -(x[0] + x[1]) * x[0] / x[2] - x[1]; },
       {R({2, 3}), R({3}), P({2, 1})}},
      {"neg", [](const V& x) { return neg(x[0]); }, {R({3, 4}).tr()}},
      {"exp", [](const V& x) { return attn::exp(x[0]); }, {R({3, 4}).tr()}},
      {"log", [](const V& x) { return attn::log(x[0]); }, {P({3, 4}).sl(0, 0, 3, 2)}},
      {"sqrt", [](const V& x) { return attn::sqrt(x[0]); }, {P({3, 4})}},
      {"rsqrt", [](const V& x) { return rsqrt(x[0]); }, {P({3, 4}).tr()}},
      {"abs", [](const V& x) { return attn::abs(x[0]); }, {Z({3, 4}).tr()}},
      {"sin", [](const V& x) { return attn::sin(x[0]); }, {R({3, 4}).tr()}},
      {"cos", [](const V& x) { return attn::cos(x[0]); }, {R({3, 4})}},
      {"square", [](const V& x) { return square(x[0]); }, {R({3, 4}).tr()}},
      {"clamp_both", [](const V& x) { return clamp(x[0], -0.5, 0.75); }, {U({4, 5}, -2, 2)}},
      {"clamp_min_noncontig", [](const V& x) { return clamp(x[0], 0.1, std::nullopt); }, {R({4, 5}).tr()}},
      {"clamp_max", [](const V& x) { return clamp(x[0], std::nullopt, -0.1); }, {R({4, 5})}},
      {"where_bcast", [](const V& x) { return where(x[0], x[1], x[2]); }, {B({3, 1}), R({2, 1, 4}), R({4})}},
      {"where_scalar_noncontig", [](const V& x) { return where(x[0], x[1], 1.5); }, {B({3, 4}), R({4, 3}).tr()}},
      // ---- activations
      {"sigmoid", [](const V& x) { return attn::sigmoid(x[0]); }, {R({3, 4}).tr()}},
      {"tanh", [](const V& x) { return attn::tanh(x[0]); }, {R({3, 4})}},
      {"relu", [](const V& x) { return relu(x[0]); }, {Z({3, 4}).tr()}},
      {"leaky_relu", [](const V& x) { return leaky_relu(x[0], 0.2); }, {Z({3, 4})}},
      {"gelu", [](const V& x) { return gelu(x[0]); }, {U({4, 5}, -4, 4).tr()}},
      {"gelu_tanh", [](const V& x) { return gelu(x[0], GeluApproximate::Tanh); }, {U({4, 5}, -4, 4)}},
      {"softmax_last", [](const V& x) { return softmax(x[0], -1); }, {R({3, 5})}},
      {"softmax_dim0_noncontig", [](const V& x) { return softmax(x[0], 0); }, {R({5, 3}).tr()}},
      {"log_softmax_mid", [](const V& x) { return log_softmax(x[0], 1); }, {R({2, 3, 4})}},
      {"log_softmax_noncontig", [](const V& x) { return log_softmax(x[0], -1); }, {R({5, 3}).tr()}},
      // ---- reductions
      {"sum_all", [](const V& x) { return sum(x[0]); }, {R({3, 4, 2})}},
      {"sum_dims_keepdim_noncontig", [](const V& x) { return sum(x[0], {0, -1}, true); },
       {R({4, 3, 2}).perm({2, 0, 1})}},
      {"mean_dim", [](const V& x) { return mean(x[0], {1}); }, {R({3, 4, 2})}},
      {"mean_all_noncontig", [](const V& x) { return mean(x[0]); }, {R({6, 4}).sl(0, 1, 6, 2).tr()}},
      {"amax_dims", [](const V& x) { return amax(x[0], {0, 2}); }, {R({3, 4, 2})}},
      {"amin_keepdim_noncontig", [](const V& x) { return amin(x[0], {-1}, true); }, {R({4, 3}).tr()}},
      {"max_all", [](const V& x) { return attn::max(x[0]); }, {R({3, 4})}},
      {"min_all", [](const V& x) { return attn::min(x[0]); }, {R({4, 3}).tr()}},
      {"max_dim", [](const V& x) { return attn::max(x[0], 1).first; }, {R({3, 4, 2})}},
      {"min_dim_keepdim_noncontig", [](const V& x) { return attn::min(x[0], 0, true).first; }, {R({4, 3}).tr()}},
      {"var_all", [](const V& x) { return var(x[0]); }, {R({3, 4})}},
      {"var_dim_corr0", [](const V& x) { return var(x[0], {1}, 0, true); }, {R({3, 4}).tr()}},
      {"std_dims", [](const V& x) { return attn::std(x[0], {0, 2}); }, {R({3, 4, 2})}},
      {"std_noncontig", [](const V& x) { return attn::std(x[0], {-1}, 1); }, {R({5, 3}).tr()}},
      // ---- linear algebra
      {"matmul_1d_1d", [](const V& x) { return matmul(x[0], x[1]); }, {R({5}), R({5})}},
      {"matmul_2d_1d", [](const V& x) { return matmul(x[0], x[1]); }, {R({3, 5}), R({5})}},
      {"matmul_1d_3d", [](const V& x) { return matmul(x[0], x[1]); }, {R({5}), R({2, 5, 4})}},
      {"matmul_bcast_batch", [](const V& x) { return matmul(x[0], x[1]); }, {R({2, 1, 3, 5}), R({3, 5, 4})}},
      {"matmul_noncontig", [](const V& x) { return matmul(x[0], x[1]); }, {R({5, 3}).tr(), R({4, 5}).tr()}},
      {"mm_noncontig", [](const V& x) { return mm(x[0], x[1]); }, {R({5, 3}).tr(), R({5, 8}).sl(1, 0, 8, 2)}},
      {"bmm_noncontig", [](const V& x) { return bmm(x[0], x[1]); }, {R({2, 5, 3}).tr(1, 2), R({5, 2, 4}).tr(0, 1)}},
      {"linear_bias_3d", [](const V& x) { return linear(x[0], x[1], x[2]); }, {R({2, 4, 5}), R({3, 5}), R({3})}},
      {"linear_nobias_noncontig", [](const V& x) { return linear(x[0], x[1]); }, {R({5, 4}).tr(), R({5, 3}).tr()}},
      // ---- losses
      {"cross_entropy", [](const V& x) { return cross_entropy(x[0], x[1]); }, {R({6, 5}), I({6}, 5)}},
      {"cross_entropy_all_options",
       [](const V& x) {
         return cross_entropy(x[0], x[1], {.ignore_index = 2, .label_smoothing = 0.2, .weight = x[2]});
       },
       {R({6, 5}), Iv({6}, {0, 2, 4, 2, 1, 3}), PK({5})}},
      {"cross_entropy_weight_sum_noncontig",
       [](const V& x) { return cross_entropy(x[0], x[1], {.reduction = Reduction::Sum, .weight = x[2]}); },
       {R({5, 6}).tr(), Iv({6}, {0, -100, 4, 2, 1, 3}), PK({5})}},
      {"cross_entropy_spatial_none",
       [](const V& x) { return cross_entropy(x[0], x[1], {.label_smoothing = 0.1, .reduction = Reduction::None}); },
       {R({2, 4, 3}), I({2, 3}, 4)}},
      {"nll_loss_weight_ignore",
       [](const V& x) { return nll_loss(x[0], x[1], {.ignore_index = 1, .weight = x[2]}); },
       {R({6, 5}), Iv({6}, {0, 1, 4, 2, 1, 3}), PK({5})}},
      {"nll_loss_spatial_sum", [](const V& x) { return nll_loss(x[0], x[1], {.reduction = Reduction::Sum}); },
       {R({2, 4, 3}), I({2, 3}, 4)}},
      {"mse_loss_both", [](const V& x) { return mse_loss(x[0], x[1]); }, {R({3, 4}).tr(), R({4, 3})}},
      {"mse_loss_none", [](const V& x) { return mse_loss(x[0], x[1], Reduction::None); }, {R({3, 4}), R({3, 4})}},
      {"bce_logits_weight_pos_weight",
       [](const V& x) {
         return binary_cross_entropy_with_logits(x[0], x[1], {.weight = x[2], .pos_weight = x[3]});
       },
       {U({3, 4}, -5, 5), U({3, 4}, 0, 1).nograd(), PK({3, 1}), PK({4})}},
      {"bce_logits_sum_noncontig",
       [](const V& x) { return binary_cross_entropy_with_logits(x[0], x[1], {.reduction = Reduction::Sum}); },
       {R({4, 3}).tr(), U({3, 4}, 0, 1).nograd()}},
      // ---- dropout: a fixed seed inside fn gives the same mask on every evaluation
      {"dropout_fixed_seed",
       [](const V& x) {
         manual_seed(99);
         return dropout(x[0], 0.4, true);
       },
       {R({4, 6}).tr()}},
      // ---- fused attention: odd sizes over several key blocks, masks, dropout with a fixed seed
      {"sdpa_causal_noncontig",
       [](const V& x) { return scaled_dot_product_attention(x[0], x[1], x[2], {.is_causal = true}); },
       {R({2, 5, 2, 3}).perm({0, 2, 1, 3}), R({2, 2, 6, 3}), R({2, 2, 3, 6}).tr(2, 3)}},
      {"sdpa_masks_long_keys",
       [](const V& x) {
         return scaled_dot_product_attention(x[0], x[1], x[2], {.attn_mask = x[3], .key_padding_mask = x[4], .scale = 0.7});
       },
       {R({1, 2, 3, 4}), R({1, 2, 70, 4}), R({1, 2, 70, 2}), K({3, 70}), B({1, 70})}},
      {"sdpa_dropout_fixed_seed",
       [](const V& x) {
         manual_seed(7);
         return scaled_dot_product_attention(x[0], x[1], x[2], {.dropout_p = 0.3});
       },
       {R({1, 2, 4, 3}), R({1, 2, 5, 3}), R({1, 2, 5, 3})}},
      {"packed_sdpa_self_causal_transposed",  // one [q | k | v] source, seen through a transpose
       [](const V& x) {
         return packed_scaled_dot_product_attention({x[0], 0}, {x[0], 6}, {x[0], 12}, 2, 6, {.is_causal = true});
       },
       {R({5, 2, 18}).tr()}},
      {"packed_sdpa_kv_dropout_uncovered",  // q and a [k | v] source with a column no block reads
       [](const V& x) {
         manual_seed(11);
         return packed_scaled_dot_product_attention({x[0], 1}, {x[1], 0}, {x[1], 4}, 2, 4,
                                                    {.key_padding_mask = x[2], .dropout_p = 0.25});
       },
       {R({2, 3, 5}), R({2, 6, 8}), B({2, 6})}},
      {"packed_sdpa_overlapping_blocks",  // q and v read the same columns: their gradients add up
       [](const V& x) { return packed_scaled_dot_product_attention({x[0], 0}, {x[0], 3}, {x[0], 0}, 3, 6); },
       {R({1, 4, 9})}},
      // ---- embedding, normalisation
      {"embedding_repeat", [](const V& x) { return embedding(x[0], x[1]); },
       {R({4, 3}), Iv({2, 5}, {0, 1, 1, 3, 0, 3, 3, 2, 0, 1})}},
      // (padding_idx is not gradchecked: like PyTorch, its row reads the weight but gets no gradient)
      {"embedding_noncontig", [](const V& x) { return embedding(x[0], x[1]); },
       {R({3, 5}).tr(), Iv({6}, {0, 2, 1, 2, 4, 3})}},
      {"layer_norm_affine", [](const V& x) { return layer_norm(x[0], {6}, x[1], x[2]); }, {R({4, 6}), P({6}), R({6})}},
      {"layer_norm_2dims_noncontig", [](const V& x) { return layer_norm(x[0], {3, 4}, x[1], x[2], 1e-3); },
       {R({2, 4, 3}).tr(1, 2), P({3, 4}), R({3, 4})}},
      {"layer_norm_noaffine", [](const V& x) { return layer_norm(x[0], {5}); }, {R({3, 5})}},
      {"batch_norm_train_4d",
       [](const V& x) { return batch_norm(x[0], Tensor{}, Tensor{}, x[1], x[2], true, 0.1, 1e-3); },
       {R({3, 2, 3, 2}), P({2}), R({2})}},
      {"batch_norm_train_2d_noncontig",
       [](const V& x) { return batch_norm(x[0], Tensor{}, Tensor{}, x[1], x[2], true); },
       {R({3, 6}).tr(), P({3}), R({3})}},
      {"batch_norm_eval",
       [](const V& x) { return batch_norm(x[0], x[3], x[4], x[1], x[2], false); },
       {R({4, 3, 2}), P({3}), R({3}), K({3}), PK({3})}},
      // ---- convolution and pooling
      {"conv1d_all_options",
       [](const V& x) { return conv1d(x[0], x[1], x[2], {.stride = 2, .padding = 2, .dilation = 2, .groups = 2}); },
       {R({2, 4, 9}), R({6, 2, 3}), R({6})}},
      {"conv1d_noncontig_nobias", [](const V& x) { return conv1d(x[0], x[1]); }, {R({2, 7, 3}).tr(1, 2), R({4, 3, 3})}},
      {"conv2d", [](const V& x) { return conv2d(x[0], x[1], x[2]); }, {R({2, 3, 5, 5}), R({4, 3, 3, 3}), R({4})}},
      {"conv2d_all_options",
       [](const V& x) {
         return conv2d(x[0], x[1], x[2], {.stride = {2, 3}, .padding = {2, 1}, .dilation = {2, 1}, .groups = 2});
       },
       {R({1, 4, 8, 7}), R({4, 2, 3, 2}), R({4})}},
      {"conv2d_depthwise_noncontig",
       [](const V& x) { return conv2d(x[0], x[1], Tensor{}, {.stride = {2, 2}, .padding = {1, 1}, .groups = 3}); },
       {R({1, 5, 4, 3}).perm({0, 3, 1, 2}), R({3, 1, 3, 3})}},
      {"max_pool2d_k3s2p1_ceil",
       [](const V& x) {
         return max_pool2d(x[0], {.kernel_size = {3, 3}, .stride = {{2, 2}}, .padding = {1, 1}, .ceil_mode = true});
       },
       {R({1, 2, 6, 6})}},
      {"max_pool2d_noncontig", [](const V& x) { return max_pool2d(x[0], {.kernel_size = {2, 3}, .stride = {{1, 2}}}); },
       {R({2, 1, 7, 6}).tr(2, 3)}},
      {"avg_pool2d_ceil_pad_nocount",
       [](const V& x) {
         return avg_pool2d(x[0], {.kernel_size = {3, 3}, .stride = {{2, 2}}, .padding = {1, 1}, .ceil_mode = true,
                                  .count_include_pad = false});
       },
       {R({1, 2, 6, 6})}},
      {"avg_pool2d_noncontig", [](const V& x) { return avg_pool2d(x[0]); }, {R({1, 2, 6, 4}).tr(2, 3)}},
      // ---- joining, splitting, indexing
      {"cat_noncontig", [](const V& x) { return cat({x[0], x[1], x[2]}, -1); }, {R({3, 2}).tr(), R({2, 4}), R({2, 1})}},
      {"stack", [](const V& x) { return stack({x[0], x[1]}, 1); }, {R({2, 3}), R({3, 2}).tr()}},
      {"split_sizes", GradFn([](const V& x) { return split(x[0], std::vector<int64_t>{1, 3, 2}, 0); }), {R({6, 2})}},
      {"split_size_noncontig", GradFn([](const V& x) { return split(x[0], 2, -1); }), {R({5, 3}).tr()}},
      {"chunk", GradFn([](const V& x) { return chunk(x[0], 3, 0); }), {R({7, 2})}},
      {"gather", [](const V& x) { return gather(x[0], 1, x[1]); }, {R({3, 5}), I({3, 4}, 5)}},
      {"gather_noncontig_dim0", [](const V& x) { return gather(x[0], 0, x[1]); }, {R({3, 4}).tr(), I({6, 3}, 4)}},
      {"index_select_repeat", [](const V& x) { return index_select(x[0], 0, x[1]); },
       {R({5, 3}), Iv({4}, {4, 0, 4, 2})}},
      {"index_select_noncontig", [](const V& x) { return index_select(x[0], -1, x[1]); },
       {R({5, 3}).tr(), Iv({3}, {2, 0, 2})}},
      {"masked_fill_bcast", [](const V& x) { return masked_fill(x[0], x[1], 0.5); }, {R({2, 3, 4}), B({3, 1})}},
      // ---- views
      {"view", [](const V& x) { return x[0].view({2, 6}) * x[1]; }, {R({3, 4}), R({6})}},
      {"reshape_noncontig", [](const V& x) { return x[0].reshape({-1}) * x[1]; }, {R({4, 3}).tr(), R({12})}},
      {"permute", [](const V& x) { return x[0].permute({2, 0, 1}) * x[1]; }, {R({2, 3, 4}), R({4, 1, 3})}},
      {"transpose_t", [](const V& x) { return x[0].transpose(-1, 0).t() * x[1]; }, {R({3, 4}), R({3, 4})}},
      {"narrow_slice", [](const V& x) { return x[0].narrow(0, 1, 3).slice(1, 0, 6, 2) * x[1]; },
       {R({5, 6}), R({3, 3})}},
      {"select", [](const V& x) { return x[0].select(-1, 2) * x[0].select(0, 1).sum(); }, {R({2, 3, 4})}},
      {"expand", [](const V& x) { return x[0].expand({2, 3, 4}) * x[1]; }, {R({3, 1}), R({2, 3, 4})}},
      {"unsqueeze_squeeze", [](const V& x) { return x[0].unsqueeze(1).squeeze(-1).squeeze() * x[1]; },
       {R({3, 1, 4}), R({3, 4})}},
      {"flatten_contiguous_clone", [](const V& x) { return x[0].flatten(1, 2).contiguous().clone() * x[1]; },
       {R({2, 4, 3}).tr(1, 2), R({12})}},
      // ---- composites: shared inputs, several paths to one leaf
      {"attention_block",
       [](const V& x) {
         Tensor s = softmax(matmul(x[0], x[1].transpose(-2, -1)) * (1.0 / std::sqrt(4.0)), -1);  // (B, T, T)
         return matmul(s, x[2]);                                                              // (B, T, 4)
       },
       {R({2, 3, 4}), R({2, 3, 4}), R({2, 3, 4})}},
      {"mlp_block",
       [](const V& x) { return cross_entropy(linear(gelu(linear(x[0], x[1], x[2])), x[3]), x[4]); },
       {R({4, 5}), R({6, 5}), R({6}), R({3, 6}), I({4}, 3)}},
      {"shared_input", [](const V& x) { return attn::exp(x[0]) * x[0] + sum(x[0], {0}, true) / x[0].select(0, 0); },
       {P({3, 4})}},
  };
  return rows;
}

std::vector<std::string> row_names() {
  std::vector<std::string> n;
  for (const GRow& r : gradcheck_rows()) n.push_back(r.name);
  return n;
}

class GradcheckRow : public ::testing::TestWithParam<std::string> {};

TEST_P(GradcheckRow, MatchesFiniteDifferences) {
  const GRow* row = nullptr;
  for (const GRow& r : gradcheck_rows())
    if (r.name == GetParam()) row = &r;
  ASSERT_NE(row, nullptr);
  std::mt19937_64 rng(std::hash<std::string>{}(row->name) & 0xffffffu);
  V in;
  for (const G& g : row->in) in.push_back(make(g, rng));
  EXPECT_TRUE(gradcheck(row->fn, in)) << "row " << row->name;
}

INSTANTIATE_TEST_SUITE_P(Table, GradcheckRow, ::testing::ValuesIn(row_names()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// ---- every fixture case with float inputs, re-run in float64

std::vector<std::string> fixture_gradcheck_names() {
  std::string err;
  const Fixtures* fx = Fixtures::try_get(&err);
  if (!fx) return {"FixturesUnreadable"};
  std::vector<std::string> n;
  for (const FixtureCase& c : fx->cases())
    // to(): a float32 round trip. embedding's padding_idx row is read but, like PyTorch, gets no
    // gradient by definition, so finite differences disagree there.
    if (c.any_input_grad() && c.op != "to_dtype" && !c.args.contains("padding_idx")) n.push_back(c.name);
  return n;
}

class FixtureGradcheck : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureGradcheck, MatchesFiniteDifferences) {
  std::string err;
  const Fixtures* fx = Fixtures::try_get(&err);
  ASSERT_NE(fx, nullptr) << "cannot load the fixtures: " << err;
  const FixtureCase& c = fx->find(GetParam());
  auto row = op_table().find(c.op);
  ASSERT_NE(row, op_table().end()) << "no row for op '" << c.op << "' in tests/op_table.h";
  const V in = fx->inputs(c, attn::kFloat64);
  const OpFn& fn = row->second;
  EXPECT_TRUE(gradcheck(GradFn([&](const V& x) { return fn(Args(c, x)).v; }), in))
      << "case " << c.name << " (op " << c.op << ", args " << c.args.dump() << ") in float64";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureGradcheck, ::testing::ValuesIn(fixture_gradcheck_names()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// ---- the checker itself must catch wrong gradients

TEST(Gradcheck, DetectsAWrongGradient) {
  Tensor x = attn::from_vector<double>({0.3, -1.2, 2.0, 0.7}, {2, 2});
  x.requires_grad_(true);
  // y = x * x computed as a detached product times a tracked x: autograd sees only half the gradient.
  auto wrong = [](const V& v) { return mul(v[0].detach(), v[0]); };
  EXPECT_FALSE(gradcheck(wrong, {x}));
  auto right = [](const V& v) { return mul(v[0], v[0]); };
  EXPECT_TRUE(gradcheck(right, {x}));
}

TEST(Gradcheck, RejectsFloat32AndExpandedInputs) {
  Tensor f = attn::randn({3}, {.requires_grad = true});
  EXPECT_FALSE(gradcheck([](const V& v) { return v[0] * 2.0; }, {f}));
  Tensor e = attn::from_vector<double>({1.0, 2.0}, {2, 1}).expand({2, 3}).detach();
  e.requires_grad_(true);
  EXPECT_FALSE(gradcheck([](const V& v) { return v[0] * 2.0; }, {e}));
}

}  // namespace
}  // namespace attn_test
