// src/backend/cpu/rnn_gates_ref.cc — the scalar reference of rnn_gates.h (the oracle of the per-ISA
// tests, and the build used when the CPU has neither AVX2 nor AVX-512), and the run-time choice.
#include <algorithm>
#include <cmath>

#include "backend/cpu/dispatch.h"
#include "backend/cpu/rnn_gates.h"

namespace attn::cpu {

namespace ref {
namespace {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float bias_at(const float* b, int64_t i) { return b ? b[i] : 0.0f; }
float add_at(const float* p, int64_t i) { return p ? p[i] : 0.0f; }

void rnn_forward(int64_t rows, int64_t H, bool relu, const float* gx, const float* gh, const float* b, float* h_new) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < H; ++j) {
      const float pre = gx[r * H + j] + (gh[r * H + j] + bias_at(b, j));
      h_new[r * H + j] = relu ? std::max(pre, 0.0f) : std::tanh(pre);
    }
}

void rnn_backward(int64_t rows, int64_t H, bool relu, const float* dh, const float* dh_add, const float* y,
                  float* dpre) {
  for (int64_t k = 0; k < rows * H; ++k) {
    const float d = dh[k] + add_at(dh_add, k);
    dpre[k] = relu ? (y[k] > 0 ? d : 0.0f) : d * (1.0f - y[k] * y[k]);
  }
}

void lstm_forward(int64_t rows, int64_t H, const float* gx, const float* gh, const float* b, const float* c_prev,
                  float* act, float* c_new, float* h_new) {
  const int64_t G = 4 * H;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < H; ++j) {
      float a[4];
      for (int64_t k = 0; k < 4; ++k) {
        const float pre = gx[r * G + k * H + j] + (gh[r * G + k * H + j] + bias_at(b, k * H + j));
        a[k] = k == 2 ? std::tanh(pre) : sigmoid(pre);
        act[r * G + k * H + j] = a[k];
      }
      const float c = a[1] * c_prev[r * H + j] + a[0] * a[2];
      c_new[r * H + j] = c;
      h_new[r * H + j] = a[3] * std::tanh(c);
    }
}

void lstm_backward(int64_t rows, int64_t H, const float* dh, const float* dh_add, float* dc, const float* act,
                   const float* c_prev, const float* c_new, float* dgates) {
  const int64_t G = 4 * H;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < H; ++j) {
      const int64_t s = r * H + j;
      const float* a = act + r * G + j;
      const float i = a[0], f = a[H], g = a[2 * H], o = a[3 * H];
      const float d = dh[s] + add_at(dh_add, s), tc = std::tanh(c_new[s]);
      const float dct = dc[s] + d * o * (1 - tc * tc);
      float* dg = dgates + r * G + j;
      dg[0] = dct * g * (i * (1 - i));
      dg[H] = dct * c_prev[s] * (f * (1 - f));
      dg[2 * H] = dct * i * (1 - g * g);
      dg[3 * H] = d * tc * (o * (1 - o));
      dc[s] = dct * f;
    }
}

void gru_forward(int64_t rows, int64_t H, const float* gx, const float* gh, const float* b, const float* h_prev,
                 float* act, float* ghn, float* h_new) {
  const int64_t G = 3 * H;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < H; ++j) {
      const float* x = gx + r * G + j;
      const float* h = gh + r * G + j;
      float* a = act + r * G + j;
      const float rg = sigmoid(x[0] + (h[0] + bias_at(b, j)));
      const float z = sigmoid(x[H] + (h[H] + bias_at(b, H + j)));
      const float hn = h[2 * H] + bias_at(b, 2 * H + j);
      const float n = std::tanh(x[2 * H] + rg * hn);
      a[0] = rg, a[H] = z, a[2 * H] = n;
      if (ghn) ghn[r * H + j] = hn;
      h_new[r * H + j] = n + z * (h_prev[r * H + j] - n);
    }
}

void gru_backward(int64_t rows, int64_t H, float* dh, const float* dh_add, const float* act, const float* ghn,
                  const float* h_prev, float* dgx, float* dgh) {
  const int64_t G = 3 * H;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < H; ++j) {
      const int64_t s = r * H + j;
      const float* a = act + r * G + j;
      const float rg = a[0], z = a[H], n = a[2 * H];
      const float d = dh[s] + add_at(dh_add, s);
      const float dnp = d * (1 - z) * (1 - n * n);
      const float dr = dnp * ghn[s] * (rg * (1 - rg)), dz = d * (h_prev[s] - n) * (z * (1 - z));
      float *dx = dgx + r * G + j, *dhh = dgh + r * G + j;
      dx[0] = dhh[0] = dr;
      dx[H] = dhh[H] = dz;
      dx[2 * H] = dnp;
      dhh[2 * H] = dnp * rg;
      dh[s] = d * z;
    }
}

}  // namespace

const RnnGateTable& rnn_gate_table() {
  static const RnnGateTable t{&rnn_forward, &rnn_backward, &lstm_forward, &lstm_backward, &gru_forward, &gru_backward};
  return t;
}

}  // namespace ref

const RnnGateTable& rnn_gates() {
  switch (active_isa()) {
    case Isa::Avx512: return avx512::rnn_gate_table();
    case Isa::Avx2: return avx2::rnn_gate_table();
    case Isa::Reference: break;
  }
  return ref::rnn_gate_table();
}

}  // namespace attn::cpu
