// src/nn/init.cc — torch.nn.init equivalents.
#include "attn/nn/init.h"

#include <cmath>
#include <stdexcept>

#include "attn/autograd.h"

namespace attn::nn::init {

namespace {
void check(const Tensor& t, const char* fn) {
  if (!t.defined()) throw std::invalid_argument(std::string("nn::init::") + fn + ": undefined tensor");
  if (!is_floating(t.dtype()))
    throw std::invalid_argument(std::string("nn::init::") + fn + ": tensor has dtype " + dtype_name(t.dtype()) +
                                ", expected floating point");
}
}  // namespace

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "conv1d" || nl == "conv2d" || nl == "conv3d" || nl == "conv_transpose1d" ||
      nl == "conv_transpose2d" || nl == "sigmoid")
    return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nl == "selu") return 3.0 / 4.0;
  throw std::invalid_argument("nn::init::calculate_gain: unsupported nonlinearity \"" + nl + "\"");
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  if (!t.defined() || t.dim() < 2)
    throw std::invalid_argument("nn::init: fan in and fan out cannot be computed for a tensor with fewer than 2 "
                                "dims, got shape " + (t.defined() ? shape_str(t.shape()) : std::string("undefined")));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

Tensor& uniform_(Tensor& t, double a, double b) {
  check(t, "uniform_");
  NoGradGuard ng;
  t.uniform_(a, b);
  return t;
}

Tensor& normal_(Tensor& t, double mean, double std) {
  check(t, "normal_");
  NoGradGuard ng;
  t.normal_(mean, std);
  return t;
}

Tensor& constant_(Tensor& t, double value) {
  if (!t.defined()) throw std::invalid_argument("nn::init::constant_: undefined tensor");
  NoGradGuard ng;
  t.fill_(value);
  return t;
}

Tensor& zeros_(Tensor& t) { return constant_(t, 0.0); }
Tensor& ones_(Tensor& t) { return constant_(t, 1.0); }

Tensor& xavier_uniform_(Tensor& t, double gain) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  double std = gain * std::sqrt(2.0 / double(fan_in + fan_out));
  double a = std::sqrt(3.0) * std;
  return uniform_(t, -a, a);
}

Tensor& xavier_normal_(Tensor& t, double gain) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  double std = gain * std::sqrt(2.0 / double(fan_in + fan_out));
  return normal_(t, 0.0, std);
}

namespace {
double kaiming_std(const Tensor& t, double a, FanMode mode, const std::string& nl) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  int64_t fan = mode == FanMode::FanIn ? fan_in : fan_out;
  if (fan == 0) throw std::invalid_argument("nn::init::kaiming: tensor with shape " + shape_str(t.shape()) +
                                            " has zero fan");
  return calculate_gain(nl, a) / std::sqrt(double(fan));
}
}  // namespace

Tensor& kaiming_uniform_(Tensor& t, double a, FanMode mode, const std::string& nl) {
  double bound = std::sqrt(3.0) * kaiming_std(t, a, mode, nl);
  return uniform_(t, -bound, bound);
}

Tensor& kaiming_normal_(Tensor& t, double a, FanMode mode, const std::string& nl) {
  return normal_(t, 0.0, kaiming_std(t, a, mode, nl));
}

}  // namespace attn::nn::init
