// src/backend/cpu/onednn.h — the one oneDNN CPU engine of the process and a stream per thread,
// shared by the primitives of gemm.cc (matmul) and conv.cc (convolution, reorders).
//
//   dnnl::memory m(desc, attn::cpu::onednn_engine(), ptr);
//   prim.execute(attn::cpu::onednn_stream(), {{DNNL_ARG_SRC, m}, ...});
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

namespace attn::cpu {

dnnl::engine& onednn_engine();
dnnl::stream& onednn_stream();  // the calling thread's (in-order, CPU)

// A matmul's C = alpha * (A B) + beta * C as oneDNN attributes: an output scale and a sum post-op
// (shared by the float32 and bf16 GEMMs).
dnnl::primitive_attr gemm_scale_and_sum(double alpha, double beta);

}  // namespace attn::cpu
