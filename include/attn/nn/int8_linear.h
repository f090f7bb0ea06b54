// attn/nn/int8_linear.h — int8 weights for inference: y = x W^T + b with W quantised per output channel
// (symmetric: W[n, :] ~ scale[n] * q[n, :], q in [-127, 127]) and x quantised per row on the fly
// (symmetric int8), the product in int32 through oneDNN's matmul (AVX512-VNNI / AMX-INT8 kernels), then
// rescaled to float32. What CTranslate2 calls int8 compute.
//
//   auto w8 = nn::Int8Matrix::quantize(linear.weight);      // (out, in) float32 -> int8 + (out) scales
//   Tensor y = w8->linear(x, linear.bias);                   // x (*, in) float32 -> (*, out) float32
//   linear.int8 = w8;                                        // Linear::forward now runs the int8 product
//   nn::quantize_linears_int8(model);                        // every Linear and attention projection
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "attn/tensor.h"

namespace attn::nn {

class Module;

class Int8Matrix {
 public:
  // Per output channel: scale[n] = max_k |w[n, k]| / 127, q = round(w / scale) (0 where the row is 0).
  static std::shared_ptr<Int8Matrix> quantize(const Tensor& weight);  // (out, in) float32
  // From stored values: q (out * in) row-major, scale (out) finite and >= 0 (checked by the caller).
  Int8Matrix(std::vector<int8_t> q, std::vector<float> scale, int64_t out_features, int64_t in_features);
  ~Int8Matrix();

  // x (*, in) float32 -> (*, out) float32 (+ bias (out) when defined). No autograd.
  Tensor linear(const Tensor& x, const Tensor& bias) const;
  // Rows [first, first + count) as their own matrix (cached: an attention's q or k|v part of in_proj).
  std::shared_ptr<Int8Matrix> rows(int64_t first, int64_t count) const;
  Tensor dequantize() const;  // (out, in) float32: scale[n] * q[n, k]

  int64_t out_features() const { return out_; }
  int64_t in_features() const { return in_; }
  const std::vector<int8_t>& values() const { return q_; }
  const std::vector<float>& scales() const { return scale_; }

 private:
  struct Kernel;  // oneDNN primitives per row count and the weights in their blocked layout
  std::vector<int8_t> q_;
  std::vector<float> scale_;
  int64_t out_, in_;
  mutable std::mutex mutex_;
  mutable std::unique_ptr<Kernel> kernel_;
  mutable std::map<std::pair<int64_t, int64_t>, std::shared_ptr<Int8Matrix>> row_blocks_;
};

// Sets Linear::int8 and MultiheadAttention::in_proj_int8 of every Linear and packed attention
// projection under `root` (eval only: the int8 path has no gradients). Returns how many were quantised.
int64_t quantize_linears_int8(Module& root);

// True on CPUs without VNNI (AVX2; AVX-512 before Cascade Lake), where oneDNN's int8 products would
// saturate at int16 for full-range weights: there Int8Matrix multiplies with 7-bit weights (q / 2, scale
// doubled), so the products are exact but the weights' rounding error doubles. `attn info` prints it.
bool int8_uses_seven_bit_weights();

}  // namespace attn::nn
