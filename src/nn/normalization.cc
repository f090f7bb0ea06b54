// src/nn/normalization.cc — BatchNorm1d/2d, LayerNorm, Embedding.
#include "attn/nn/normalization.h"

#include <stdexcept>

#include "attn/autograd.h"
#include "attn/nn/embedding.h"
#include "attn/nn/init.h"
#include "attn/ops.h"

namespace attn::nn {

// --------------------------------------------------------------------------------------- BatchNorm

BatchNorm::BatchNorm(const BatchNormOptions& o, int64_t min_dim, int64_t max_dim)
    : options(o), min_dim_(min_dim), max_dim_(max_dim) {
  if (o.num_features <= 0)
    throw std::invalid_argument(type_name() + ": num_features must be positive, got " + std::to_string(o.num_features));
  if (o.affine) {
    weight = register_parameter("weight", empty({o.num_features}));
    bias = register_parameter("bias", empty({o.num_features}));
  }
  if (o.track_running_stats) {
    running_mean = register_buffer("running_mean", zeros({o.num_features}));
    running_var = register_buffer("running_var", ones({o.num_features}));
    num_batches_tracked = register_buffer("num_batches_tracked", scalar_tensor(0, {.dtype = kInt64}));
  }
  reset_parameters();
}

void BatchNorm::reset_running_stats() {
  if (!options.track_running_stats) return;
  NoGradGuard ng;
  running_mean.zero_();
  running_var.fill_(1.0);
  num_batches_tracked.zero_();
}

void BatchNorm::reset_parameters() {
  reset_running_stats();
  if (options.affine) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

Tensor BatchNorm::forward(const Tensor& x) {
  if (x.dim() < min_dim_ || x.dim() > max_dim_ || x.size(1) != options.num_features) {
    std::string expected = max_dim_ == 4 ? "(N, C, H, W)" : "(N, C) or (N, C, L)";
    throw std::invalid_argument(type_name() + "(" + std::to_string(options.num_features) + "): input has shape " +
                                shape_str(x.shape()) + ", expected " + expected + " with C = " +
                                std::to_string(options.num_features));
  }
  double factor = options.momentum.value_or(0.0);
  if (is_training() && options.track_running_stats) {
    NoGradGuard ng;
    // counted on the device; only the cumulative average (momentum None) reads the count on the host
    num_batches_tracked.add_(ones({}, {.dtype = num_batches_tracked.dtype(), .device = num_batches_tracked.device()}));
    if (!options.momentum) factor = 1.0 / double(num_batches_tracked.item<int64_t>());
  }
  // Batch statistics in training, or when there are no running stats to use.
  bool use_batch_stats = is_training() || !running_mean.defined();
  bool pass_running = !is_training() || options.track_running_stats;
  return batch_norm(x, pass_running ? running_mean : Tensor(), pass_running ? running_var : Tensor(), weight, bias,
                    use_batch_stats, factor, options.eps);
}

std::string BatchNorm::extra_repr() const {
  return std::to_string(options.num_features) + ", eps=" + std::to_string(options.eps) + ", momentum=" +
         (options.momentum ? std::to_string(*options.momentum) : std::string("None")) +
         ", affine=" + (options.affine ? "True" : "False") +
         ", track_running_stats=" + (options.track_running_stats ? "True" : "False");
}

// --------------------------------------------------------------------------------------- LayerNorm

LayerNorm::LayerNorm(const LayerNormOptions& o) : options(o) {
  if (o.normalized_shape.empty()) throw std::invalid_argument("LayerNorm: normalized_shape must not be empty");
  for (int64_t d : o.normalized_shape)
    if (d <= 0) throw std::invalid_argument("LayerNorm: bad normalized_shape " + shape_str(o.normalized_shape));
  if (o.elementwise_affine) {
    weight = register_parameter("weight", empty(o.normalized_shape));
    bias = register_parameter("bias", o.bias ? empty(o.normalized_shape) : Tensor());
  }
  reset_parameters();
}

void LayerNorm::reset_parameters() {
  if (weight.defined()) init::ones_(weight);
  if (bias.defined()) init::zeros_(bias);
}

Tensor LayerNorm::forward(const Tensor& x) {
  const Shape& ns = options.normalized_shape;
  bool ok = x.dim() >= int64_t(ns.size());
  for (size_t i = 0; ok && i < ns.size(); ++i) ok = x.shape()[x.shape().size() - ns.size() + i] == ns[i];
  if (!ok)
    throw std::invalid_argument("LayerNorm(" + shape_str(ns) + "): input has shape " + shape_str(x.shape()) +
                                ", whose trailing dims must be " + shape_str(ns));
  return layer_norm(x, ns, weight, bias, options.eps);
}

std::string LayerNorm::extra_repr() const {
  return shape_str(options.normalized_shape) + ", eps=" + std::to_string(options.eps) +
         ", elementwise_affine=" + (options.elementwise_affine ? "True" : "False");
}

// --------------------------------------------------------------------------------------- Embedding

Embedding::Embedding(const EmbeddingOptions& o) : options(o) {
  if (o.num_embeddings <= 0 || o.embedding_dim <= 0)
    throw std::invalid_argument("Embedding: num_embeddings and embedding_dim must be positive, got " +
                                std::to_string(o.num_embeddings) + " and " + std::to_string(o.embedding_dim));
  if (o.padding_idx) {
    int64_t p = *o.padding_idx;
    if (p < -o.num_embeddings || p >= o.num_embeddings)
      throw std::invalid_argument("Embedding: padding_idx " + std::to_string(p) + " out of range for " +
                                  std::to_string(o.num_embeddings) + " embeddings");
    if (p < 0) options.padding_idx = p + o.num_embeddings;
  }
  weight = register_parameter("weight", empty({o.num_embeddings, o.embedding_dim}));
  reset_parameters();
}

void Embedding::reset_parameters() {
  init::normal_(weight);
  if (options.padding_idx) {
    NoGradGuard ng;
    weight.select(0, *options.padding_idx).zero_();
  }
}

Tensor Embedding::forward(const Tensor& indices) {
  if (is_floating(indices.dtype()))
    throw std::invalid_argument("Embedding: indices must be an integer tensor, got dtype " +
                                std::string(dtype_name(indices.dtype())));
  return embedding(weight, indices, options.padding_idx.value_or(-1));
}

std::string Embedding::extra_repr() const {
  std::string s = std::to_string(options.num_embeddings) + ", " + std::to_string(options.embedding_dim);
  if (options.padding_idx) s += ", padding_idx=" + std::to_string(*options.padding_idx);
  return s;
}

}  // namespace attn::nn
