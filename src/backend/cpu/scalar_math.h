// src/backend/cpu/scalar_math.h — scalar definitions of the elementwise functions and their
// derivatives: the generic (strided) path and the reference for the vectorized kernels.
#pragma once
#include <cmath>
#include <type_traits>

#include "backend/backend.h"

namespace attn::cpu {

template <typename T> inline T gelu_erf(T x) { return T(0.5) * x * (T(1) + std::erf(x * T(M_SQRT1_2))); }
template <typename T> inline T gelu_tanh(T x) {
  const T k = T(0.7978845608028654);  // sqrt(2/pi)
  return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
}
template <typename T> inline T gelu_erf_grad(T x) {
  const T cdf = T(0.5) * (T(1) + std::erf(x * T(M_SQRT1_2)));
  const T pdf = std::exp(T(-0.5) * x * x) * T(0.3989422804014327);  // 1/sqrt(2 pi)
  return cdf + x * pdf;
}
template <typename T> inline T gelu_tanh_grad(T x) {
  const T k = T(0.7978845608028654), c = T(0.044715);
  const T t = std::tanh(k * (x + c * x * x * x));
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * k * (T(1) + T(3) * c * x * x);
}
template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

template <typename T> inline T unary_scalar(backend::UnaryOp op, T x, T a) {
  using backend::UnaryOp;
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return T(1) / std::sqrt(x);
    case UnaryOp::Abs:
      if constexpr (std::is_unsigned_v<T>) return x;
      else if constexpr (std::is_floating_point_v<T>) return std::fabs(x);
      else return x < T(0) ? T(-x) : x;
    case UnaryOp::Sin: return std::sin(x);
    case UnaryOp::Cos: return std::cos(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Sign: return T((x > T(0)) - (x < T(0)));
    case UnaryOp::Sigmoid: return sigmoid(x);
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Relu: return x < T(0) ? T(0) : x;  // NaN and -0 stay, as in torch (and the float32 kernels)
    case UnaryOp::LeakyRelu: return x > T(0) ? x : x * a;
    case UnaryOp::GeluErf: return gelu_erf(x);
    case UnaryOp::GeluTanh: return gelu_tanh(x);
    case UnaryOp::LogicalNot: return T(x == T(0));
    case UnaryOp::PowScalar: return std::pow(x, a);
    case UnaryOp::ClampMin: return std::isnan(x) ? x : (x < a ? a : x);
    case UnaryOp::ClampMax: return std::isnan(x) ? x : (x > a ? a : x);
    case UnaryOp::MulScalar: return x * a;
    case UnaryOp::AddScalar: return x + a;
  }
  return x;
}

// d(out)/d(in) * g, from x or y as UnaryGradOp says.
template <typename T> inline T unary_grad_scalar(backend::UnaryGradOp op, T v, T g, T a) {
  using backend::UnaryGradOp;
  switch (op) {
    case UnaryGradOp::Sigmoid: return g * v * (T(1) - v);
    case UnaryGradOp::Tanh: return g * (T(1) - v * v);
    case UnaryGradOp::Relu: return v <= T(0) ? T(0) : g;  // NaN y passes g, as torch's threshold_backward
    case UnaryGradOp::LeakyRelu: return v > T(0) ? g : g * a;
    case UnaryGradOp::GeluErf: return g * gelu_erf_grad(v);
    case UnaryGradOp::GeluTanh: return g * gelu_tanh_grad(v);
  }
  return g;
}

}  // namespace attn::cpu
