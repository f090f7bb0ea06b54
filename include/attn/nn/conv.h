// attn/nn/conv.h — Conv1d and Conv2d (torch.nn.Conv1d / Conv2d; zero padding).
//
//   auto conv = std::make_shared<nn::Conv2d>(nn::Conv2dOptions{
//       .in_channels = 1, .out_channels = 32, .kernel_size = {3, 3}, .padding = 1});
//   Tensor y = (*conv)(x);          // x: (N, 1, 28, 28) -> y: (N, 32, 28, 28)
//   // conv->weight: (32, 1, 3, 3), conv->bias: (32)
//
// Sizes take one number for both dims (`.padding = 1`) or a pair (`.kernel_size = {3, 5}`).
#pragma once
#include <utility>

#include "attn/nn/module.h"
#include "attn/ops.h"

namespace attn::nn {

// (height, width) pair that also accepts a single number.
struct Size2 {
  int64_t first = 0, second = 0;
  constexpr Size2() = default;
  constexpr Size2(int64_t v) : first(v), second(v) {}  // NOLINT: implicit on purpose
  constexpr Size2(int64_t a, int64_t b) : first(a), second(b) {}
  constexpr Size2(std::pair<int64_t, int64_t> p) : first(p.first), second(p.second) {}  // NOLINT
  operator std::pair<int64_t, int64_t>() const { return {first, second}; }
  bool operator==(const Size2&) const = default;
  std::string str() const {
    std::string s = "(";
    s += std::to_string(first);
    s += ", ";
    s += std::to_string(second);
    s += ")";
    return s;
  }
};

struct Conv1dOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel_size = 1;
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

// weight: (out_channels, in_channels / groups, kernel_size); default init like PyTorch
// (kaiming_uniform_(a=sqrt(5)), bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups * k).
class Conv1d : public Module {
 public:
  explicit Conv1d(const Conv1dOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& x) override;  // (N, C_in, L) -> (N, C_out, L_out)
  std::string extra_repr() const override;

  Conv1dOptions options;
  Tensor weight;
  Tensor bias;
};

struct Conv2dOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  Size2 kernel_size = 1;
  Size2 stride = 1;
  Size2 padding = 0;
  Size2 dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

// weight: (out_channels, in_channels / groups, kH, kW)
class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& x) override;  // (N, C_in, H, W) -> (N, C_out, H_out, W_out)
  std::string extra_repr() const override;

  Conv2dOptions options;
  Tensor weight;
  Tensor bias;
};

}  // namespace attn::nn
