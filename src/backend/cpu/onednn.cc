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

}  // namespace attn::cpu
