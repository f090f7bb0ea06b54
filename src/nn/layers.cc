// src/nn/layers.cc — Linear, Flatten, Dropout, Conv1d, Conv2d, MaxPool2d, AvgPool2d.
#include <cmath>
#include <stdexcept>

#include "attn/nn/conv.h"
#include "attn/nn/init.h"
#include "attn/nn/int8_linear.h"
#include "attn/nn/linear.h"
#include "attn/nn/pooling.h"
#include "attn/ops.h"

namespace attn::nn {

namespace {
std::string b2s(bool b) { return b ? "True" : "False"; }

// PyTorch's default for Linear/Conv: kaiming_uniform_(a=sqrt(5)) on the weight, U(+-1/sqrt(fan_in)) bias.
void default_init(Tensor& weight, Tensor& bias) {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    auto [fan_in, fan_out] = init::calculate_fan_in_and_fan_out(weight);
    double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

void check_positive(const std::string& who, const char* what, int64_t v) {
  if (v <= 0) throw std::invalid_argument(who + ": " + what + " must be positive, got " + std::to_string(v));
}
}  // namespace

// ------------------------------------------------------------------------------------------ Linear

Linear::Linear(const LinearOptions& o) : options(o) {
  check_positive("Linear", "in_features", o.in_features);
  check_positive("Linear", "out_features", o.out_features);
  weight = register_parameter("weight", empty({o.out_features, o.in_features}));
  bias = register_parameter("bias", o.bias ? empty({o.out_features}) : Tensor());
  reset_parameters();
}

void Linear::reset_parameters() { default_init(weight, bias); }

Tensor Linear::forward(const Tensor& x) {
  if (x.dim() < 1 || x.size(-1) != options.in_features)
    throw std::invalid_argument("Linear(in_features=" + std::to_string(options.in_features) +
                                "): input has shape " + shape_str(x.shape()) + ", expected (*, " +
                                std::to_string(options.in_features) + ")");
  if (int8) {
    if (is_training()) throw std::logic_error("Linear: int8 weights are for inference (call eval())");
    return int8->linear(x, bias);
  }
  return linear(x, weight, bias);
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(options.in_features) + ", out_features=" +
         std::to_string(options.out_features) + ", bias=" + b2s(options.bias);
}

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(options.start_dim) + ", end_dim=" + std::to_string(options.end_dim);
}

Dropout::Dropout(double p) : p(p) {
  if (p < 0.0 || p > 1.0) throw std::invalid_argument("Dropout: p must be in [0, 1], got " + std::to_string(p));
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training()); }

std::string Dropout::extra_repr() const { return "p=" + std::to_string(p); }

// ------------------------------------------------------------------------------------------ Conv1d

Conv1d::Conv1d(const Conv1dOptions& o) : options(o) {
  check_positive("Conv1d", "in_channels", o.in_channels);
  check_positive("Conv1d", "out_channels", o.out_channels);
  check_positive("Conv1d", "kernel_size", o.kernel_size);
  check_positive("Conv1d", "groups", o.groups);
  if (o.in_channels % o.groups || o.out_channels % o.groups)
    throw std::invalid_argument("Conv1d: in_channels (" + std::to_string(o.in_channels) + ") and out_channels (" +
                                std::to_string(o.out_channels) + ") must be divisible by groups (" +
                                std::to_string(o.groups) + ")");
  weight = register_parameter("weight", empty({o.out_channels, o.in_channels / o.groups, o.kernel_size}));
  bias = register_parameter("bias", o.bias ? empty({o.out_channels}) : Tensor());
  reset_parameters();
}

void Conv1d::reset_parameters() { default_init(weight, bias); }

Tensor Conv1d::forward(const Tensor& x) {
  if (x.dim() != 3 || x.size(1) != options.in_channels)
    throw std::invalid_argument("Conv1d(in_channels=" + std::to_string(options.in_channels) +
                                "): input has shape " + shape_str(x.shape()) + ", expected (N, " +
                                std::to_string(options.in_channels) + ", L)");
  return conv1d(x, weight, bias,
                attn::Conv1dOptions{.stride = options.stride, .padding = options.padding,
                                    .dilation = options.dilation, .groups = options.groups});
}

std::string Conv1d::extra_repr() const {
  std::string s = std::to_string(options.in_channels) + ", " + std::to_string(options.out_channels) +
                  ", kernel_size=(" + std::to_string(options.kernel_size) + ",), stride=(" +
                  std::to_string(options.stride) + ",)";
  if (options.padding) s += ", padding=(" + std::to_string(options.padding) + ",)";
  if (options.dilation != 1) s += ", dilation=(" + std::to_string(options.dilation) + ",)";
  if (options.groups != 1) s += ", groups=" + std::to_string(options.groups);
  if (!options.bias) s += ", bias=False";
  return s;
}

// ------------------------------------------------------------------------------------------ Conv2d

Conv2d::Conv2d(const Conv2dOptions& o) : options(o) {
  check_positive("Conv2d", "in_channels", o.in_channels);
  check_positive("Conv2d", "out_channels", o.out_channels);
  check_positive("Conv2d", "kernel_size", o.kernel_size.first);
  check_positive("Conv2d", "kernel_size", o.kernel_size.second);
  check_positive("Conv2d", "groups", o.groups);
  if (o.in_channels % o.groups || o.out_channels % o.groups)
    throw std::invalid_argument("Conv2d: in_channels (" + std::to_string(o.in_channels) + ") and out_channels (" +
                                std::to_string(o.out_channels) + ") must be divisible by groups (" +
                                std::to_string(o.groups) + ")");
  weight = register_parameter(
      "weight", empty({o.out_channels, o.in_channels / o.groups, o.kernel_size.first, o.kernel_size.second}));
  bias = register_parameter("bias", o.bias ? empty({o.out_channels}) : Tensor());
  reset_parameters();
}

void Conv2d::reset_parameters() { default_init(weight, bias); }

Tensor Conv2d::forward(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != options.in_channels)
    throw std::invalid_argument("Conv2d(in_channels=" + std::to_string(options.in_channels) +
                                "): input has shape " + shape_str(x.shape()) + ", expected (N, " +
                                std::to_string(options.in_channels) + ", H, W)");
  return conv2d(x, weight, bias,
                attn::Conv2dOptions{.stride = options.stride, .padding = options.padding,
                                    .dilation = options.dilation, .groups = options.groups});
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(options.in_channels) + ", " + std::to_string(options.out_channels) +
                  ", kernel_size=" + options.kernel_size.str() + ", stride=" + options.stride.str();
  if (options.padding != Size2(0)) s += ", padding=" + options.padding.str();
  if (options.dilation != Size2(1)) s += ", dilation=" + options.dilation.str();
  if (options.groups != 1) s += ", groups=" + std::to_string(options.groups);
  if (!options.bias) s += ", bias=False";
  return s;
}

// ----------------------------------------------------------------------------------------- pooling

Tensor MaxPool2d::forward(const Tensor& x) {
  Pool2dOptions o{.kernel_size = options.kernel_size, .padding = options.padding, .ceil_mode = options.ceil_mode};
  if (options.stride) o.stride = std::pair<int64_t, int64_t>(*options.stride);
  return max_pool2d(x, o);
}

std::string MaxPool2d::extra_repr() const {
  return "kernel_size=" + options.kernel_size.str() +
         ", stride=" + (options.stride ? *options.stride : options.kernel_size).str() +
         ", padding=" + options.padding.str() + ", ceil_mode=" + b2s(options.ceil_mode);
}

Tensor AvgPool2d::forward(const Tensor& x) {
  Pool2dOptions o{.kernel_size = options.kernel_size, .padding = options.padding, .ceil_mode = options.ceil_mode,
                  .count_include_pad = options.count_include_pad};
  if (options.stride) o.stride = std::pair<int64_t, int64_t>(*options.stride);
  return avg_pool2d(x, o);
}

std::string AvgPool2d::extra_repr() const {
  return "kernel_size=" + options.kernel_size.str() +
         ", stride=" + (options.stride ? *options.stride : options.kernel_size).str() +
         ", padding=" + options.padding.str();
}

}  // namespace attn::nn
