// src/backend/cpu/onednn.cc — see onednn.h.
#include "backend/cpu/onednn.h"

namespace attn::cpu {

dnnl::engine& onednn_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& onednn_stream() {
  thread_local dnnl::stream s(onednn_engine());
  return s;
}

dnnl::primitive_attr gemm_scale_and_sum(double alpha, double beta) {
  dnnl::primitive_attr attr;
  if (alpha != 1.0) attr.set_output_scales(0, {float(alpha)});
  if (beta != 0.0) {
    dnnl::post_ops po;
    po.append_sum(float(beta));
    attr.set_post_ops(po);
  }
  return attr;
}

}  // namespace attn::cpu
