// attn/nn/linear.h — Linear, Identity, Flatten, Dropout (torch.nn.Linear, ...).
//
//   auto fc = std::make_shared<nn::Linear>(784, 10);                // or nn::Linear({.in_features = 784,
//   Tensor y = (*fc)(x);                                            //   .out_features = 10, .bias = false})
//   // x: (B, 784) -> y: (B, 10); fc->weight: (10, 784), fc->bias: (10)
//   nn::Flatten flat;                                               // (N, C, H, W) -> (N, C*H*W)
//   nn::Dropout drop(0.1);                                          // identity in eval()
#pragma once
#include <memory>

#include "attn/nn/module.h"

namespace attn::nn {

class Int8Matrix;  // attn/nn/int8_linear.h

struct LinearOptions {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = true;
};

// y = x @ weight^T + bias. weight: (out, in) ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_(a=sqrt(5))),
// bias: (out) ~ U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& options);
  Linear(int64_t in_features, int64_t out_features, bool bias = true)
      : Linear(LinearOptions{in_features, out_features, bias}) {}
  void reset_parameters();
  Tensor forward(const Tensor& x) override;  // (*, in) -> (*, out)
  std::string extra_repr() const override;

  LinearOptions options;
  Tensor weight;  // (out, in)
  Tensor bias;    // (out) or undefined
  // Set by quantize_linears_int8 (inference): forward runs the int8 product of int8_linear.h instead.
  std::shared_ptr<const Int8Matrix> int8;
};

class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
};

struct FlattenOptions {
  int64_t start_dim = 1;
  int64_t end_dim = -1;
};
class Flatten : public Module {
 public:
  explicit Flatten(const FlattenOptions& options = {}) : options(options) {}
  Tensor forward(const Tensor& x) override { return x.flatten(options.start_dim, options.end_dim); }
  std::string extra_repr() const override;
  FlattenOptions options;
};

// Zeroes elements with probability p and scales the rest by 1/(1-p) while training; identity in eval.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  double p;
};

}  // namespace attn::nn
