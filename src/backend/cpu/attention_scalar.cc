// src/backend/cpu/attention_scalar.cc — the scalar tiled attention (attention_tiles.h): float64, and float32
// and bf16 where no SIMD micro-kernels run (the Reference ISA). The same FlashAttention-2 tiling as the
// SIMD path of attention.cc (see there), on tiles packed per key block with plain loops; bf16 operands are
// widened into float32 copies and each result rounded once.
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/attention_tiles.h"
#include "backend/cpu/dispatch.h"

namespace attn::cpu::sdpa_tiles {

namespace {

template <typename T> struct Micro {
  void (*gemm)(const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t m, int64_t k, int64_t n,
               bool accumulate);
  T (*exp_row)(T* s, int64_t n, T m);
};

template <typename T>
void gemm_scalar(const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t m, int64_t k, int64_t n,
                 bool accumulate) {
  for (int64_t i = 0; i < m; ++i) {
    T* ci = c + i * ldc;
    if (!accumulate) std::fill(ci, ci + n, T(0));
    for (int64_t p = 0; p < k; ++p) {
      const T av = a[i * lda + p];
      const T* bp = b + p * ldb;
      for (int64_t j = 0; j < n; ++j) ci[j] += av * bp[j];
    }
  }
}

template <typename T> T exp_row_scalar(T* s, int64_t n, T m) {
  T sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = s[j] == -std::numeric_limits<T>::infinity() ? T(0) : std::exp(s[j] - m);
    sum += s[j];
  }
  return sum;
}

template <typename T> Micro<T> micro() {
  if constexpr (std::is_same_v<T, float>) {
    const SdpaKernels* t = nullptr;
    switch (active_isa()) {
      case Isa::Avx512: t = &avx512::sdpa_kernels(); break;
      case Isa::Avx2: t = &avx2::sdpa_kernels(); break;
      case Isa::Reference: break;
    }
    if (t) return {t->gemm, t->exp_row};
  }
  return {&gemm_scalar<T>, &exp_row_scalar<T>};
}

// rows (n, h, i0 .. i0 + br) x cols of a strided operand -> dst (br, ld), scaled; pad columns untouched.
template <typename T>
void pack_rows(const Op4<const T>& x, int64_t n, int64_t h, int64_t i0, int64_t br, int64_t cols, T scale, T* dst,
               int64_t ld) {
  for (int64_t r = 0; r < br; ++r) {
    const T* src = x.row(n, h, i0 + r);
    T* d = dst + r * ld;
    if (x.s3 == 1)
      for (int64_t c = 0; c < cols; ++c) d[c] = src[c] * scale;
    else
      for (int64_t c = 0; c < cols; ++c) d[c] = src[c * x.s3] * scale;
  }
}
// the transpose: dst (cols, ld) with dst[c][r] = x[i0 + r][c]; columns br .. ld zeroed.
template <typename T>
void pack_transposed(const Op4<const T>& x, int64_t n, int64_t h, int64_t i0, int64_t br, int64_t cols, T* dst,
                     int64_t ld) {
  if (br < ld)
    for (int64_t c = 0; c < cols; ++c) std::fill(dst + c * ld + br, dst + (c + 1) * ld, T(0));
  for (int64_t r = 0; r < br; ++r) {
    const T* src = x.row(n, h, i0 + r);
    for (int64_t c = 0; c < cols; ++c) dst[c * ld + r] = src[c * x.s3];
  }
}

}  // namespace

template <typename T>
void forward_tiled(const SdpaArgs& a, const TensorRef& q_, const TensorRef& k_, const TensorRef& v_,
                  const TensorRef& out_, T* lse) {
  const Micro<T> mk = micro<T>();
  const Op4<const T> q(q_), k(k_), v(v_);
  const Op4<T> out(out_);
  const int64_t H = a.h, L = a.l, D = a.d, Dv = a.dv, dpad = pad16(D), dvpad = pad16(Dv);
  const int64_t nqb = (L + kBr - 1) / kBr, work = a.n * H * nqb;
  const Masker<T> masker(a);
  const T scale = T(a.scale), ninf = -std::numeric_limits<T>::infinity();
  const bool drop = a.dropout_p > 0;
  const T keep_scale = drop ? T(1.0 / (1.0 - a.dropout_p)) : T(1);
#pragma omp parallel if (work > 1 && worth_threads<T>(a))
  {
    std::vector<T> qs(size_t(kBr * dpad), T(0)), kt(size_t(std::max<int64_t>(D, 1) * kBc)),
        vp(size_t(kBc * dvpad), T(0)), st(size_t(kBr * kBc)), o(size_t(kBr * dvpad)), m(kBr), l(kBr);
    std::vector<T> kbias(kBc);
    std::vector<uint8_t> keep(kBc);
    const T* kb = masker.has_key_bias() ? kbias.data() : nullptr;
#pragma omp for schedule(static)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t nh = w / nqb, n = nh / H, h = nh % H, i0 = (w % nqb) * kBr, br = std::min(kBr, L - i0);
      pack_rows(q, n, h, i0, br, D, scale, qs.data(), dpad);
      std::fill(o.begin(), o.end(), T(0));
      std::fill(m.begin(), m.end(), ninf);
      std::fill(l.begin(), l.end(), T(0));
      const int64_t j_end = key_end(a, i0, br);
      for (int64_t j0 = 0; j0 < j_end; j0 += kBc) {
        const int64_t bc = std::min(kBc, j_end - j0), bcp = pad16(bc);
        pack_transposed(k, n, h, j0, bc, D, kt.data(), bcp);  // (D, bcp)
        pack_rows(v, n, h, j0, bc, Dv, T(1), vp.data(), dvpad);
        mk.gemm(qs.data(), dpad, kt.data(), bcp, st.data(), bcp, br, D, bcp, false);  // (br, bcp)
        if (kb) masker.key_bias(n, j0, bc, kbias.data());
        for (int64_t r = 0; r < br; ++r) {
          T* s = st.data() + r * bcp;
          masker.apply(s, n, h, i0 + r, j0, bc, kb);
          std::fill(s + bc, s + bcp, ninf);
          T mx = m[size_t(r)];
          for (int64_t c = 0; c < bc; ++c) mx = std::max(mx, s[c]);
          if (mx == ninf) {  // every key so far masked
            std::fill(s, s + bcp, T(0));
            continue;
          }
          const T alpha = m[size_t(r)] == ninf ? T(0) : std::exp(m[size_t(r)] - mx);
          l[size_t(r)] = l[size_t(r)] * alpha + mk.exp_row(s, bcp, mx);
          m[size_t(r)] = mx;
          if (alpha != T(1))
            for (int64_t e = 0; e < Dv; ++e) o[size_t(r * dvpad + e)] *= alpha;
          if (drop) {
            sdpa_keep_row(a, (nh * L) + i0 + r, j0, bc, keep.data());
            for (int64_t c = 0; c < bc; ++c) s[c] = keep[size_t(c)] ? s[c] * keep_scale : T(0);
          }
        }
        mk.gemm(st.data(), bcp, vp.data(), dvpad, o.data(), dvpad, br, bc, dvpad, true);  // O += P V
      }
      for (int64_t r = 0; r < br; ++r) {
        const T lr = l[size_t(r)], inv = lr > 0 ? T(1) / lr : T(0);
        T* dst = out.row(n, h, i0 + r);
        for (int64_t e = 0; e < Dv; ++e) dst[e * out.s3] = o[size_t(r * dvpad + e)] * inv;
        lse[nh * L + i0 + r] = lr > 0 ? m[size_t(r)] + std::log(lr) : std::numeric_limits<T>::infinity();
      }
    }
  }
}

template <typename T>
void backward_tiled(const SdpaArgs& a, const TensorRef& q_, const TensorRef& k_, const TensorRef& v_,
                   const TensorRef& out_, const T* lse, const TensorRef& gout_, const TensorRef& gq_,
                   const TensorRef& gk_, const TensorRef& gv_) {
  const Micro<T> mk = micro<T>();
  const Op4<const T> q(q_), k(k_), v(v_), out(out_), gout(gout_);
  const Op4<T> gq(gq_), gk(gk_), gv(gv_);
  const int64_t H = a.h, L = a.l, S = a.s, D = a.d, Dv = a.dv, dpad = pad16(D), dvpad = pad16(Dv);
  const int64_t work = a.n * H;
  const Masker<T> masker(a);
  const T scale = T(a.scale), ninf = -std::numeric_limits<T>::infinity(), inf = -ninf;
  const bool drop = a.dropout_p > 0;
  const T keep_scale = drop ? T(1.0 / (1.0 - a.dropout_p)) : T(1);
#pragma omp parallel if (work > 1 && worth_threads<T>(a))
  {
    std::vector<T> qs(size_t(kBr * dpad), T(0)), dos(size_t(kBr * dvpad), T(0)), dr(kBr), dq(size_t(kBr * dpad));
    std::vector<T> kt(size_t(std::max<int64_t>(D, 1) * kBc)), kp(size_t(kBc * dpad), T(0)),
        vt(size_t(std::max<int64_t>(Dv, 1) * kBc)), st(size_t(kBr * kBc)), dp(size_t(kBr * kBc)),
        tt(size_t(kBc * kBr));
    std::vector<T> dk(size_t(S * dpad)), dv(size_t(S * dvpad));  // this (n, h)'s dK, dV accumulators
    std::vector<T> kbias(kBc);
    std::vector<uint8_t> keep(kBc);
    const T* kb = masker.has_key_bias() ? kbias.data() : nullptr;
#pragma omp for schedule(static)
    for (int64_t nh = 0; nh < work; ++nh) {
      const int64_t n = nh / H, h = nh % H;
      std::fill(dk.begin(), dk.end(), T(0));
      std::fill(dv.begin(), dv.end(), T(0));
      for (int64_t i0 = 0; i0 < L; i0 += kBr) {
        const int64_t br = std::min(kBr, L - i0);
        pack_rows(q, n, h, i0, br, D, scale, qs.data(), dpad);
        pack_rows(gout, n, h, i0, br, Dv, T(1), dos.data(), dvpad);
        for (int64_t r = 0; r < br; ++r) {  // D_i = rowsum(dO ∘ O)
          const T* orow = out.row(n, h, i0 + r);
          T acc = 0;
          for (int64_t e = 0; e < Dv; ++e) acc += dos[size_t(r * dvpad + e)] * orow[e * out.s3];
          dr[size_t(r)] = acc;
        }
        std::fill(dq.begin(), dq.end(), T(0));
        const int64_t j_end = key_end(a, i0, br);
        for (int64_t j0 = 0; j0 < j_end; j0 += kBc) {
          const int64_t bc = std::min(kBc, j_end - j0), bcp = pad16(bc);
          pack_transposed(k, n, h, j0, bc, D, kt.data(), bcp);   // (D, bcp)
          pack_rows(k, n, h, j0, bc, D, T(1), kp.data(), dpad);  // (bc, dpad)
          pack_transposed(v, n, h, j0, bc, Dv, vt.data(), bcp);  // (Dv, bcp)
          mk.gemm(qs.data(), dpad, kt.data(), bcp, st.data(), bcp, br, D, bcp, false);   // S
          mk.gemm(dos.data(), dvpad, vt.data(), bcp, dp.data(), bcp, br, Dv, bcp, false);  // dP = dO Vᵀ
          if (kb) masker.key_bias(n, j0, bc, kbias.data());
          for (int64_t r = 0; r < br; ++r) {
            T* s = st.data() + r * bcp;
            T* g = dp.data() + r * bcp;
            const T lr = lse[nh * L + i0 + r];
            if (lr == inf) {
              std::fill(s, s + bcp, T(0));
            } else {
              masker.apply(s, n, h, i0 + r, j0, bc, kb);
              std::fill(s + bc, s + bcp, ninf);
              mk.exp_row(s, bcp, lr);  // P
            }
            if (drop) sdpa_keep_row(a, nh * L + i0 + r, j0, bc, keep.data());
            for (int64_t c = 0; c < bc; ++c) {
              const T ks = drop ? (keep[size_t(c)] ? keep_scale : T(0)) : T(1);
              tt[size_t(c * kBr + r)] = s[c] * ks;             // dropped P, transposed
              s[c] = s[c] * (g[c] * ks - dr[size_t(r)]);       // dS = P ∘ (dP − D)
            }
          }
          // dV += Pᵀ dO
          mk.gemm(tt.data(), kBr, dos.data(), dvpad, dv.data() + j0 * dvpad, dvpad, bc, br, dvpad, true);
          // dQ += dS K (scaled at the end)
          mk.gemm(st.data(), bcp, kp.data(), dpad, dq.data(), dpad, br, bc, dpad, true);
          for (int64_t r = 0; r < br; ++r)
            for (int64_t c = 0; c < bc; ++c) tt[size_t(c * kBr + r)] = st[size_t(r * bcp + c)];
          // dK += dSᵀ (scale Q)
          mk.gemm(tt.data(), kBr, qs.data(), dpad, dk.data() + j0 * dpad, dpad, bc, br, dpad, true);
        }
        for (int64_t r = 0; r < br; ++r) {
          T* dst = gq.row(n, h, i0 + r);
          for (int64_t e = 0; e < D; ++e) dst[e * gq.s3] = dq[size_t(r * dpad + e)] * scale;
        }
      }
      for (int64_t j = 0; j < S; ++j) {
        T* dst = gk.row(n, h, j);
        for (int64_t e = 0; e < D; ++e) dst[e * gk.s3] = dk[size_t(j * dpad + e)];
        T* dst2 = gv.row(n, h, j);
        for (int64_t e = 0; e < Dv; ++e) dst2[e * gv.s3] = dv[size_t(j * dvpad + e)];
      }
    }
  }
}

template void forward_tiled<float>(const SdpaArgs&, const TensorRef&, const TensorRef&, const TensorRef&,
                                   const TensorRef&, float*);
template void forward_tiled<double>(const SdpaArgs&, const TensorRef&, const TensorRef&, const TensorRef&,
                                    const TensorRef&, double*);
template void backward_tiled<float>(const SdpaArgs&, const TensorRef&, const TensorRef&, const TensorRef&,
                                    const TensorRef&, const float*, const TensorRef&, const TensorRef&,
                                    const TensorRef&, const TensorRef&);
template void backward_tiled<double>(const SdpaArgs&, const TensorRef&, const TensorRef&, const TensorRef&,
                                     const TensorRef&, const double*, const TensorRef&, const TensorRef&,
                                     const TensorRef&, const TensorRef&);

namespace {
// A contiguous float32 (N, H, R, C) ref over buf, sized for `shape`.
TensorRef dense(std::vector<float>& buf, const Shape& shape) {
  buf.resize(size_t(shape[0] * shape[1] * shape[2] * shape[3]));
  return TensorRef{buf.data(), kFloat32, shape, {shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1}};
}
// r (bf16, any strides) widened into buf (exact)
TensorRef widened(const TensorRef& r, std::vector<float>& buf) {
  const TensorRef d = dense(buf, r.shape);
  const Op4<const BFloat16> x(r);
  const Op4<float> y(d);
  for (int64_t n = 0; n < r.shape[0]; ++n)
    for (int64_t h = 0; h < r.shape[1]; ++h)
      for (int64_t i = 0; i < r.shape[2]; ++i)
        for (int64_t c = 0; c < r.shape[3]; ++c) y.row(n, h, i)[c] = float(x.row(n, h, i)[c * x.s3]);
  return d;
}
// the float32 values of d (dense) rounded into r (bf16, any strides)
void narrow_into(const TensorRef& d, const TensorRef& r) {
  const Op4<const float> x(d);
  const Op4<BFloat16> y(r);
  for (int64_t n = 0; n < r.shape[0]; ++n)
    for (int64_t h = 0; h < r.shape[1]; ++h)
      for (int64_t i = 0; i < r.shape[2]; ++i) store_row(y.row(n, h, i), y.s3, x.row(n, h, i), r.shape[3]);
}
}  // namespace

void forward_bf16_widened(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                          const TensorRef& out, float* lse) {
  std::vector<float> qb, kb, vb, ob;
  const TensorRef o32 = dense(ob, out.shape);
  forward_tiled<float>(a, widened(q, qb), widened(k, kb), widened(v, vb), o32, lse);
  narrow_into(o32, out);
}

void backward_bf16_widened(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                           const TensorRef& out, const float* lse, const TensorRef& gout, const TensorRef& gq,
                           const TensorRef& gk, const TensorRef& gv) {
  std::vector<float> qb, kb, vb, ob, gb, gqb, gkb, gvb;
  const TensorRef gq32 = dense(gqb, gq.shape), gk32 = dense(gkb, gk.shape), gv32 = dense(gvb, gv.shape);
  backward_tiled<float>(a, widened(q, qb), widened(k, kb), widened(v, vb), widened(out, ob), lse, widened(gout, gb),
                        gq32, gk32, gv32);
  narrow_into(gq32, gq);
  narrow_into(gk32, gk);
  narrow_into(gv32, gv);
}

}  // namespace attn::cpu::sdpa_tiles
