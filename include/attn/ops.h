// attn/ops.h — differentiable operations, PyTorch names and semantics.
//
//   Tensor h = attn::relu(attn::linear(x, w1, b1));           // x: (B, 784), w1: (512, 784) -> (B, 512)
//   Tensor loss = attn::cross_entropy(logits, labels, {.label_smoothing = 0.1});
//   auto [vals, idx] = attn::max(logits, /*dim=*/1);           // (B,), (B,) int64
//
// Binary elementwise ops broadcast like NumPy; mixed dtypes promote (float64 > float32 > bfloat16 >
// int64 > int32 > uint8 > bool); a scalar operand takes the tensor's dtype.
#pragma once
#include <optional>
#include <utility>
#include <vector>

#include "attn/tensor.h"

namespace attn {

// ---- elementwise, broadcasting
Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);  // a + alpha * b
Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);  // true division: integer / bool operands give float32
Tensor pow(const Tensor& a, const Tensor& b);  // integers to negative integer powers throw
Tensor pow(const Tensor& a, double exponent);  // exponent 2 / 0.5 / -0.5: square / sqrt / rsqrt
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor square(const Tensor& x);
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& condition, const Tensor& a, double b);
// comparisons -> kBool, not differentiable
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
Tensor logical_not(const Tensor& x);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);

// ---- reductions; `dims` empty means all dims
Tensor sum(const Tensor& x, Shape dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, Shape dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, Shape dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, Shape dims = {}, bool keepdim = false);
Tensor max(const Tensor& x);  // over all elements, 0-d
Tensor min(const Tensor& x);
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);  // values, int64 indices
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
// The k largest (largest = false: smallest) entries along dim and their int64 indices, best first; ties
// go to the lower index, NaN ranks above every number (as PyTorch). Gradients flow to the chosen entries.
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor var(const Tensor& x, Shape dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor std(const Tensor& x, Shape dims = {}, int64_t correction = 1, bool keepdim = false);

// ---- linear algebra
Tensor matmul(const Tensor& a, const Tensor& b);  // torch.matmul: 1-d, 2-d, batched with broadcasting
Tensor mm(const Tensor& a, const Tensor& b);      // (n, k) @ (k, m)
Tensor bmm(const Tensor& a, const Tensor& b);     // (B, n, k) @ (B, k, m)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});  // x @ weight^T + bias

// ---- activations
enum class GeluApproximate { None, Tanh };
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor gelu(const Tensor& x, GeluApproximate approximate = GeluApproximate::None);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// ---- losses
enum class Reduction { None, Mean, Sum };
struct CrossEntropyOptions {
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  Reduction reduction = Reduction::Mean;
  Tensor weight = {};  // optional per-class weight (C,)
};
// input: (N, C) or (N, C, d1, ...) logits; target: (N) or (N, d1, ...) int64 class indices.
Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& o = {});
struct NllLossOptions {
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::Mean;
  Tensor weight = {};
};
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& o = {});
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);
struct BCEWithLogitsOptions {
  Reduction reduction = Reduction::Mean;
  Tensor weight = {};
  Tensor pos_weight = {};
};
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                        const BCEWithLogitsOptions& o = {});

// ---- regularisation, embeddings, normalisation
Tensor dropout(const Tensor& x, double p = 0.5, bool training = true);
// dropout(relu(x), p, training) fused into one pass each way: the same values, gradient and generator
// advance as the composite, and 2 bits per element saved for the backward instead of relu's output.
Tensor relu_dropout(const Tensor& x, double p = 0.5, bool training = true);
// weight: (num_embeddings, dim); indices: int32/int64 of any shape -> indices.shape + (dim,)
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx = -1);
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);
// x: (N, C, ...). In training, uses batch statistics and updates running_* (if defined) in place.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                  double eps = 1e-5);

// ---- attention
// torch.nn.functional.scaled_dot_product_attention, fused: one tiled kernel (online softmax, backward
// recomputing the probabilities), so no (L, S) scores, masks or dropout masks are materialised.
//
//   Tensor o = attn::scaled_dot_product_attention(q, k, v, {.is_causal = true});   // q (N, H, L, D),
//   Tensor c = attn::scaled_dot_product_attention(q, k, v, {.key_padding_mask = pad,  // k (N, H, S, D),
//                                                           .dropout_p = 0.1});       // v (N, H, S, Dv)
//                                                                                     // -> (N, H, L, Dv)
// Rows whose keys are all masked give 0 (and zero gradients), where PyTorch's composite gives NaN.
struct SdpaOptions {
  Tensor attn_mask = {};          // broadcastable to (N, H, L, S): bool (true = take part, as PyTorch's
                                  // SDPA) or float (added to the scores); read through broadcast strides
  Tensor key_padding_mask = {};   // (N, S): bool (true = ignore that key, as nn.MultiheadAttention) or float (added)
  double dropout_p = 0.0;         // on the attention probabilities, whenever > 0; kept ones scaled by 1/(1-p)
  bool is_causal = false;         // query i sees keys j <= i (top-left aligned); attn_mask must be empty
  std::optional<double> scale = {};  // default 1/sqrt(D)
};
Tensor scaled_dot_product_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                                    const SdpaOptions& o = {});

// The same attention read straight out of packed projections (FlashAttention's qkv-packed form; what
// MultiheadAttention runs): query, key and value are `embed_dim` columns of (N, L|S, C) tensors, starting
// at `column`, split into `num_heads` heads of embed_dim / num_heads. Blocks of one source tensor (the
// same Tensor object) that do not overlap are one input of the graph, and the backward writes that
// source's gradient whole, instead of the zero-padded per-block gradients (summed afterwards) of
// chunk() + scaled_dot_product_attention. Columns of a source outside every block get zero gradient.
//
//   Tensor qkv = linear(x, in_proj_weight, in_proj_bias);                   // (N, L, 3E)
//   Tensor ctx = packed_scaled_dot_product_attention({qkv, 0}, {qkv, E}, {qkv, 2 * E}, H, E,
//                                                    {.is_causal = true});  // (N, H, L, E / H)
// The result's memory is (N, L, H, E / H), so merging the heads (permute + reshape to (N, L, E)) is a view.
struct HeadBlock {
  Tensor source;       // (N, L|S, C), any strides
  int64_t column = 0;  // the block is source[..., column : column + embed_dim]
};
Tensor packed_scaled_dot_product_attention(const HeadBlock& query, const HeadBlock& key, const HeadBlock& value,
                                           int64_t num_heads, int64_t embed_dim, const SdpaOptions& o = {});

// ---- convolution and pooling
struct Conv1dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
};
struct Conv2dOptions {
  std::pair<int64_t, int64_t> stride = {1, 1};
  std::pair<int64_t, int64_t> padding = {0, 0};
  std::pair<int64_t, int64_t> dilation = {1, 1};
  int64_t groups = 1;
};
// x: (N, C_in, L); weight: (C_out, C_in/groups, K); bias: (C_out) or undefined
Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, const Conv1dOptions& o = {});
// A Kim text CNN's pooled features: cat_i amax_t relu(conv1d(x.transpose(1, 2), weights[i], biases[i])),
// x (B, T, E) channels last, weights[i] (F_i, E, k_i), biases empty or [i] (F_i) / undefined -> (B, sum F_i).
// One fused pass (shared im2col, backward only at each max's steps); src/ops/conv_max_over_time.cc.
Tensor conv1d_max_over_time(const Tensor& x, const std::vector<Tensor>& weights, const std::vector<Tensor>& biases = {});
// x: (N, C_in, H, W); weight: (C_out, C_in/groups, kH, kW)
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, const Conv2dOptions& o = {});
struct Pool2dOptions {
  std::pair<int64_t, int64_t> kernel_size = {2, 2};
  std::optional<std::pair<int64_t, int64_t>> stride = {};  // default: kernel_size
  std::pair<int64_t, int64_t> padding = {0, 0};
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg_pool2d only
};
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& o = {});
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& o = {});

// ---- joining, splitting, indexing
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// index_select written into `out` (PyTorch's out=): out has x's shape with index.numel() at dim, and
// either may be a strided view (e.g. the filled part of a preallocated buffer); they must not overlap.
// Not differentiable: refuses operands that require grad while grad mode is on.
void index_select_out(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);  // mask broadcasts to x

// ---- utilities
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);
Tensor one_hot(const Tensor& indices, int64_t num_classes);  // int64 out

}  // namespace attn
