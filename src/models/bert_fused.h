// src/models/bert_fused.h — BERT's encoder for inference (no autograd, eval mode, float32, CPU) as four
// oneDNN matmuls a layer, each on weights reordered once into the primitive's blocked layout and with its
// epilogue fused: [q|k|v] + bias (one GEMM, built from HF's separate query/key/value weights); out_proj
// + bias + residual; linear1 + bias + GELU; linear2 + bias + residual. What ONNX Runtime's BERT fusions
// do (Attention with packed QKV, BiasGelu, SkipLayerNormalization's residual add, MLAS pre-packed B).
//
//   FusedBertEncoder fused;                                  // a member of BertModel
//   if (FusedBertEncoder::applies(*encoder, x)) h = fused.forward(*encoder, x, key_padding_mask);
//
// The packed weights follow the parameters: each forward compares every source tensor's storage,
// offset and version with those packed, and repacks a layer whose weights changed (fine-tuning, LoRA
// merge, load), so the parameters stay the model's only state.
#pragma once
#include <map>
#include <memory>
#include <vector>

#include "attn/nn/transformer.h"
#include "attn/tensor.h"

namespace attn::models {

// y (M, out) = epilogue(x (M, in) @ W^T + b [+ residual (M, out)]), W stacked from one or more Linears.
class FusedLinear {
 public:
  enum class Epilogue { None, Gelu, GeluTanh, Relu, AddResidual };
  FusedLinear();
  ~FusedLinear();
  FusedLinear(FusedLinear&&) noexcept;
  // weights: (out_i, in) each, stacked along out; biases: all defined or all undefined.
  Tensor forward(const std::vector<Tensor>& weights, const std::vector<Tensor>& biases, Epilogue epilogue,
                 const Tensor& x, const Tensor& residual = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class FusedBertEncoder {
 public:
  // Whether forward can run: grad off (or nothing needs it), eval mode, float32 on the CPU, no autocast,
  // and every layer the plain post-LN block with plain nn::Linear projections (LoRA wrappers fall back).
  static bool applies(const nn::TransformerEncoder& encoder, const Tensor& x);
  // x (N, S, E) -> (N, S, E); key_padding_mask (N, S) bool, true at padding, or undefined.
  Tensor forward(const nn::TransformerEncoder& encoder, const Tensor& x, const Tensor& key_padding_mask);

 private:
  struct Layer {
    FusedLinear qkv, out, ff1, ff2;
  };
  std::vector<Layer> layers_;
};

}  // namespace attn::models
