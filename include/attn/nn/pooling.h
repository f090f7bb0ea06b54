// attn/nn/pooling.h — MaxPool2d and AvgPool2d (torch.nn.MaxPool2d / AvgPool2d).
//
//   nn::MaxPool2d pool({.kernel_size = 2});             // stride defaults to kernel_size
//   Tensor y = pool(x);                                 // (N, C, 28, 28) -> (N, C, 14, 14)
//   nn::AvgPool2d avg({.kernel_size = 3, .stride = 1, .padding = 1, .count_include_pad = false});
#pragma once
#include <optional>

#include "attn/nn/conv.h"

namespace attn::nn {

struct MaxPool2dOptions {
  Size2 kernel_size = 2;
  std::optional<Size2> stride = {};  // default: kernel_size
  Size2 padding = 0;
  bool ceil_mode = false;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const MaxPool2dOptions& options = {}) : options(options) {}
  Tensor forward(const Tensor& x) override;  // (N, C, H, W) -> (N, C, H_out, W_out)
  std::string extra_repr() const override;
  MaxPool2dOptions options;
};

struct AvgPool2dOptions {
  Size2 kernel_size = 2;
  std::optional<Size2> stride = {};  // default: kernel_size
  Size2 padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const AvgPool2dOptions& options = {}) : options(options) {}
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  AvgPool2dOptions options;
};

}  // namespace attn::nn
