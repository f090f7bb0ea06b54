// src/backend/cpu/rnn_gates.h — fused gate math of one RNN / LSTM / GRU time step (float32, row-major,
// contiguous rows), forward and backward, with an AVX-512 and an AVX2 build (rnn_gates_simd.inc,
// compiled inside kernels_avx512.cc / kernels_avx2.cc) and a scalar reference (rnn_gates_ref.cc),
// picked at run time with the ISA of dispatch.h (tests force one with set_isa_for_testing).
//
//   attn::cpu::rnn_gates().lstm_forward(rows, H, gx, gh, b_hh, c_prev, act, c_new, h_new);
//   // gx, gh (rows, 4H): x W_ih^T + b_ih and h W_hh^T of this step; b_hh (4H) or nullptr;
//   // act (rows, 4H) <- i, f, g, o activated; c_new (rows, H) <- f c_prev + i g (may alias c_prev);
//   // h_new (rows, H) <- o tanh(c_new)
//
// The recurrent and weight products stay GEMMs (the caller's); these kernels do the per-element work
// of a step in one pass instead of a dozen tensor ops, and allocate nothing. Gate orders are PyTorch's:
// LSTM i, f, g, o; GRU r, z, n with n = tanh(gx_n + r (gh_n + b_hn)), h' = (1 - z) n + z h.
#pragma once
#include <cstdint>

namespace attn::cpu {

struct RnnGateTable {
  // h_new = tanh or relu(gx + gh + b_hh); gx, gh, h_new (rows, H)
  void (*rnn_forward)(int64_t rows, int64_t H, bool relu, const float* gx, const float* gh, const float* b_hh,
                      float* h_new);
  // dpre = (dh + dh_add) * act'(y); y: the step's output; dh_add may be nullptr
  void (*rnn_backward)(int64_t rows, int64_t H, bool relu, const float* dh, const float* dh_add, const float* y,
                       float* dpre);
  void (*lstm_forward)(int64_t rows, int64_t H, const float* gx, const float* gh, const float* b_hh,
                       const float* c_prev, float* act, float* c_new, float* h_new);
  // dht = dh + dh_add (dh_add may be nullptr); dc (rows, H) in: dL/dc_new, out: dL/dc_prev;
  // dgates (rows, 4H) <- dL/d(pre-activations)
  void (*lstm_backward)(int64_t rows, int64_t H, const float* dh, const float* dh_add, float* dc, const float* act,
                        const float* c_prev, const float* c_new, float* dgates);
  // act (rows, 3H) <- r, z, n; ghn (rows, H) <- gh_n + b_hn (nullptr: not kept); h_new (rows, H)
  void (*gru_forward)(int64_t rows, int64_t H, const float* gx, const float* gh, const float* b_hh,
                      const float* h_prev, float* act, float* ghn, float* h_new);
  // dh (rows, H) in: dL/dh_new carried (plus dh_add, may be nullptr), out: the direct part dL/dh_new * z
  // (the caller adds dgh W_hh); dgx (rows, 3H) for gx, dgh (rows, 3H) for gh (dgh_n = dgx_n * r)
  void (*gru_backward)(int64_t rows, int64_t H, float* dh, const float* dh_add, const float* act, const float* ghn,
                       const float* h_prev, float* dgx, float* dgh);
};

const RnnGateTable& rnn_gates();  // the active ISA's build

namespace avx512 { const RnnGateTable& rnn_gate_table(); }
namespace avx2 { const RnnGateTable& rnn_gate_table(); }
namespace ref { const RnnGateTable& rnn_gate_table(); }

}  // namespace attn::cpu
