// attn/nn/normalization.h — BatchNorm1d, BatchNorm2d, LayerNorm (torch.nn names, parameters, buffers).
//
//   auto bn = std::make_shared<nn::BatchNorm2d>(32);                 // or BatchNorm2d({.num_features = 32,
//   Tensor y = (*bn)(x);        // (N, 32, H, W); training: batch stats,  .momentum = 0.01})
//   bn->eval();                 // now uses running_mean / running_var
//   // state_dict: weight, bias, running_mean, running_var, num_batches_tracked (int64, 0-d)
//
//   nn::LayerNorm ln({.normalized_shape = {512}});                   // (B, T, 512) -> (B, T, 512)
#pragma once
#include <optional>

#include "attn/nn/module.h"

namespace attn::nn {

struct BatchNormOptions {
  int64_t num_features = 0;
  double eps = 1e-5;
  // Running-stat update factor; nullopt means a cumulative moving average (1 / num_batches_tracked).
  std::optional<double> momentum = 0.1;
  bool affine = true;
  bool track_running_stats = true;
};

// Shared implementation; use BatchNorm1d / BatchNorm2d.
class BatchNorm : public Module {
 public:
  void reset_running_stats();
  void reset_parameters();
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  BatchNormOptions options;
  Tensor weight;               // (C) ones, or undefined without affine
  Tensor bias;                 // (C) zeros
  Tensor running_mean;         // (C) zeros, or undefined without track_running_stats
  Tensor running_var;          // (C) ones
  Tensor num_batches_tracked;  // () int64

 protected:
  BatchNorm(const BatchNormOptions& options, int64_t min_dim, int64_t max_dim);
  int64_t min_dim_, max_dim_;
};

// (N, C) or (N, C, L)
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(const BatchNormOptions& options) : BatchNorm(options, 2, 3) {}
  explicit BatchNorm1d(int64_t num_features) : BatchNorm1d(BatchNormOptions{.num_features = num_features}) {}
};

// (N, C, H, W)
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(const BatchNormOptions& options) : BatchNorm(options, 4, 4) {}
  explicit BatchNorm2d(int64_t num_features) : BatchNorm2d(BatchNormOptions{.num_features = num_features}) {}
};

struct LayerNormOptions {
  Shape normalized_shape;  // the trailing dims normalised over
  double eps = 1e-5;
  bool elementwise_affine = true;
  bool bias = true;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(const LayerNormOptions& options);
  explicit LayerNorm(int64_t dim) : LayerNorm(LayerNormOptions{.normalized_shape = {dim}}) {}
  void reset_parameters();
  Tensor forward(const Tensor& x) override;  // (*, normalized_shape) -> same
  std::string extra_repr() const override;

  LayerNormOptions options;
  Tensor weight;  // normalized_shape, ones
  Tensor bias;    // normalized_shape, zeros
};

}  // namespace attn::nn
