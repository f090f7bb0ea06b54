// include/attn/autocast.h — mixed precision as torch.autocast("cpu", dtype=torch.bfloat16) does it.
//
//   {
//     attn::Autocast ac;                               // this thread, until ac leaves scope
//     Tensor logits = model.forward(x);               // Linear / matmul / conv / attention run in bf16
//     Tensor loss = attn::cross_entropy(logits, y);   // losses in float32
//   }
//   loss.backward();                                  // fp32 parameters get fp32 gradients
//   opt.step();                                       // fp32 master weights
//
// Which ops cast their floating inputs, and to what, is one table (src/ops/autocast.cc, PyTorch's
// CPU autocast lists): "lower precision" ops (matmul, mm, bmm, linear, conv1d/2d, attention) run on
// bf16 copies of their inputs and return bf16; "float32" ops (the losses) run on float32 copies.
// Every other op runs in the dtype of its inputs (bf16 in, bf16 out, with float32 statistics inside:
// softmax, layer_norm, reductions); mixed inputs promote to float32 as usual.
// The bf16 copy of a parameter (a leaf that requires grad) is made once and reused while its storage
// version is unchanged, i.e. once per optimizer step; the copies are dropped when the outermost
// Autocast of the thread ends. Autocast(kBFloat16, false) turns it off inside an enclosing scope.
#pragma once
#include "attn/dtype.h"

namespace attn {

class Autocast {
 public:
  explicit Autocast(DType dtype = kBFloat16, bool enabled = true);  // dtype: kBFloat16 (the only one)
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool prev_enabled_;
  DType prev_dtype_;
};

bool autocast_enabled();  // on this thread
DType autocast_dtype();   // the lower-precision dtype of the innermost scope

}  // namespace attn
