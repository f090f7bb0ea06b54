// attn/nn/activation.h — activation modules (torch.nn.ReLU, ...), thin wrappers over attn/ops.h.
//
//   auto act = std::make_shared<nn::GELU>(GeluApproximate::Tanh);
//   Tensor y = (*act)(x);                                  // same shape as x
//   nn::LogSoftmax lsm(/*dim=*/1);                         // (N, C) -> (N, C)
#pragma once
#include "attn/nn/module.h"
#include "attn/ops.h"

namespace attn::nn {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return attn::relu(x); }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return attn::sigmoid(x); }
};

class Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return attn::tanh(x); }
};

class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : negative_slope(negative_slope) {}
  Tensor forward(const Tensor& x) override { return attn::leaky_relu(x, negative_slope); }
  std::string extra_repr() const override { return "negative_slope=" + std::to_string(negative_slope); }
  double negative_slope;
};

class GELU : public Module {
 public:
  explicit GELU(GeluApproximate approximate = GeluApproximate::None) : approximate(approximate) {}
  Tensor forward(const Tensor& x) override { return attn::gelu(x, approximate); }
  std::string extra_repr() const override {
    return approximate == GeluApproximate::Tanh ? "approximate='tanh'" : "approximate='none'";
  }
  GeluApproximate approximate;
};

class Softmax : public Module {
 public:
  explicit Softmax(int64_t dim) : dim(dim) {}
  Tensor forward(const Tensor& x) override { return attn::softmax(x, dim); }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim); }
  int64_t dim;
};

class LogSoftmax : public Module {
 public:
  explicit LogSoftmax(int64_t dim) : dim(dim) {}
  Tensor forward(const Tensor& x) override { return attn::log_softmax(x, dim); }
  std::string extra_repr() const override { return "dim=" + std::to_string(dim); }
  int64_t dim;
};

}  // namespace attn::nn
