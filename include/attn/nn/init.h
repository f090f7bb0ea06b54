// attn/nn/init.h — parameter initialisation (torch.nn.init), drawing from the global generator.
//
//   attn::manual_seed(0);
//   nn::init::kaiming_uniform_(linear->weight, std::sqrt(5.0));   // PyTorch's Linear/Conv default
//   nn::init::zeros_(linear->bias);
//   nn::init::xavier_uniform_(w, nn::init::calculate_gain("tanh"));
//
// All functions write in place without recording autograd history and return their argument.
#pragma once
#include <string>
#include <utility>

#include "attn/tensor.h"

namespace attn::nn::init {

enum class FanMode { FanIn, FanOut };

// torch.nn.init.calculate_gain: "linear", "conv1d", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu",
// "selu". `param` is the negative slope for leaky_relu (default 0.01).
double calculate_gain(const std::string& nonlinearity, double param = 0.01);
// (fan_in, fan_out) of a weight with >= 2 dims: (out, in, *kernel) -> (in * k, out * k).
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

Tensor& uniform_(Tensor& t, double a = 0.0, double b = 1.0);
Tensor& normal_(Tensor& t, double mean = 0.0, double std = 1.0);
Tensor& constant_(Tensor& t, double value);
Tensor& zeros_(Tensor& t);
Tensor& ones_(Tensor& t);
Tensor& xavier_uniform_(Tensor& t, double gain = 1.0);
Tensor& xavier_normal_(Tensor& t, double gain = 1.0);
// `a`: negative slope of the rectifier after this layer (only with "leaky_relu").
Tensor& kaiming_uniform_(Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                         const std::string& nonlinearity = "leaky_relu");
Tensor& kaiming_normal_(Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                        const std::string& nonlinearity = "leaky_relu");

// rvalue conveniences: init::zeros_(module->bias) works on a temporary handle too.
inline Tensor& uniform_(Tensor&& t, double a = 0.0, double b = 1.0) { return uniform_(t, a, b); }
inline Tensor& normal_(Tensor&& t, double mean = 0.0, double std = 1.0) { return normal_(t, mean, std); }
inline Tensor& zeros_(Tensor&& t) { return zeros_(t); }
inline Tensor& ones_(Tensor&& t) { return ones_(t); }

}  // namespace attn::nn::init
