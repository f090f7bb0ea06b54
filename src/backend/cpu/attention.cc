// src/backend/cpu/attention.cc — fused scaled-dot-product attention, FlashAttention-2 style (attention.h).
//
// Forward, per (n, h, block of up to 64 query rows): for each block of up to 64 keys, S = (scale Q) Kᵀ
// (tile product), masks applied while the tile is hot (bool/float attn_mask and key padding read through
// their strides, causal by index), online softmax (running max m and sum l per row), O += P V; at the end
// O /= l and logsumexp = m + log l is stored. Backward, per (n, h): P is recomputed per tile from Q, K and
// logsumexp; dV += Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − rowsum(dO ∘ O)), dQ += scale dS K, dK += scale dSᵀ Q.
// Dropout regenerates its keep-mask from Philox (attention.h), so nothing (L, S) is ever stored.
//
// Tiles are packed (any input strides) into zero-padded buffers whose column counts are multiples of 16,
// so the float32 micro-kernels (attention_simd.inc) run full vectors only; bf16 operands are widened into
// them as they are packed (float32 math, each result rounded once). float64 and the Reference ISA take the
// scalar path (attention_scalar.cc). Rows whose keys are all masked: output 0, logsumexp +inf, grads 0.
#include "backend/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/cpu/attention_tiles.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/random_simd.h"

namespace attn::cpu {

namespace {

using namespace sdpa_tiles;

// ---- float32 with the SIMD micro-kernels (attention_simd.inc). Per (n, h) head, K and V are packed once:
// K row-major (S16, dpad) and transposed per key block (dpad, 64), V row-major (forward) or transposed
// (backward), with vectorised W x W transposes; the key padding of batch n (and the -inf of the pad
// columns beyond S) becomes one additive bias row; causal limits the key range of a query block and masks
// by index inside the tiles that cross the diagonal. The backward computes dS once per tile and takes
// dV += Pᵀ dO and dK += dSᵀ Q with "aᵀ b" micro-kernels (a's columns broadcast), so no tile is transposed.
// Working memory per thread: O(S D) for the packed head and the dK, dV accumulators, O(64 x 64) tiles.

// rows [r0, r0 + rows) x cols of a strided operand -> dst (rows, ld); pad columns (up to ld) zeroed
inline void pack_rows_f32(const Op4<const float>& x, int64_t n, int64_t h, int64_t r0, int64_t rows, int64_t cols,
                          float* dst, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x.row(n, h, r0 + r);
    float* d = dst + r * ld;
    if (x.s3 == 1) std::copy(src, src + cols, d);
    else
      for (int64_t c = 0; c < cols; ++c) d[c] = src[c * x.s3];
    std::fill(d + cols, d + ld, 0.f);
  }
}

// rows [r0, r0 + rows) of a strided operand as a row-major view: in place when its columns are unit-stride
// and a multiple of 16 (vector loads of the padded width stay inside each row), else packed into buf (ld).
struct View {
  const float* p;
  int64_t ld;
  const float* row(int64_t r) const { return p + r * ld; }
};
inline bool in_place(const Op4<const float>& x, int64_t cols) { return x.s3 == 1 && cols % 16 == 0; }
inline View view_rows(const Op4<const float>& x, int64_t n, int64_t h, int64_t r0, int64_t rows, int64_t cols,
                      float* buf, int64_t ld) {
  if (in_place(x, cols)) return {x.row(n, h, r0), x.s2};
  pack_rows_f32(x, n, h, r0, rows, cols, buf, ld);
  return {buf, ld};
}
inline View view_rows(const SdpaKernels&, const Op4<const float>& x, int64_t n, int64_t h, int64_t r0, int64_t rows,
                      int64_t cols, float* buf, int64_t ld) {
  return view_rows(x, n, h, r0, rows, cols, buf, ld);
}
// bf16 rows are always widened into buf (exact), pad columns zeroed
inline View view_rows(const SdpaKernels&, const Op4<const BFloat16>& x, int64_t n, int64_t h, int64_t r0,
                      int64_t rows, int64_t cols, float* buf, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    const BFloat16* src = x.row(n, h, r0 + r);
    float* d = buf + r * ld;
    if (x.s3 == 1) widen_bf16(reinterpret_cast<const uint16_t*>(src), d, cols);
    else
      for (int64_t c = 0; c < cols; ++c) d[c] = float(src[c * x.s3]);
    std::fill(d + cols, d + ld, 0.f);
  }
  return {buf, ld};
}
// the transpose of rows [0, s_used) of a view (cols a multiple of 16) into key blocks (cols, 64) at dst,
// columns up to pad16 zero; tmp: 16 x cols
void transpose_keys(const SdpaKernels& mk, const View& x, int64_t s_used, int64_t cols, float* dst, float* tmp) {
  for (int64_t j0 = 0; j0 < s_used; j0 += kBc) {
    const int64_t rows = std::min(kBc, s_used - j0), full = rows / 16 * 16;
    float* d = dst + (j0 / kBc) * cols * kBc;
    if (full) mk.transpose(x.row(j0), x.ld, d, kBc, full, cols);
    if (full < rows) {
      for (int64_t r = 0; r < 16; ++r) {
        float* t = tmp + r * cols;
        if (full + r < rows) std::copy(x.row(j0 + full + r), x.row(j0 + full + r) + cols, t);
        else std::fill(t, t + cols, 0.f);
      }
      mk.transpose(tmp, cols, d + full, kBc, 16, cols);
    }
  }
}

// Scratch of one thread, kept across calls (grown, never shrunk).
struct Scratch {
  std::vector<float> buf;
  float* get(size_t n) {
    if (buf.size() < n) buf.assign(n, 0.f);
    return buf.data();
  }
};
thread_local Scratch tl_scratch;

struct Layout {  // sizes of one head's packed operands
  int64_t S16, nkb, dpad, dvpad;
  explicit Layout(const SdpaArgs& a)
      : S16(pad16(a.s)), nkb((a.s + kBc - 1) / kBc), dpad(pad16(a.d)), dvpad(pad16(a.dv)) {}
};

// the bias row of batch n: key padding (0 / -inf or the float mask) and -inf for columns >= S, nkb*64 long
void make_bias(const Masker<float>& masker, const SdpaArgs& a, int64_t n, int64_t len, float* bias) {
  if (masker.has_key_bias()) masker.key_bias(n, 0, a.s, bias);
  else std::fill(bias, bias + a.s, 0.f);
  std::fill(bias + a.s, bias + len, -std::numeric_limits<float>::infinity());
}

}  // namespace

void sdpa_keep_scales(const SdpaArgs& a, int64_t row, int64_t j0, int64_t count, float keep_scale, float* mult) {
  if (active_isa() == Isa::Avx512 && j0 % 4 == 0) {
    const uint64_t base = sdpa_row_counter(a, row);
    // keep iff float(word >> 8) 2^-24 < 1 - p (in double) iff (word >> 8) < ceil((1 - p) 2^24)
    const uint32_t keep_below24 = uint32_t(std::ceil((1.0 - a.dropout_p) * 16777216.0));
    for (int64_t c = 0; c < count; c += 64)
      avx512::keep_scales64(a.seed, base + uint64_t((j0 + c) / 4), keep_below24, keep_scale, mult + c);
    return;
  }
  sdpa_for_each_keep(a, row, j0, count, [&](int64_t c, bool kept) { mult[c] = kept ? keep_scale : 0.f; });
}

namespace {

constexpr int64_t kNoCausal = std::numeric_limits<int64_t>::max() / 4;

// a float32 operand's row as float* (only taken for float32 operands; bf16 ones accumulate in scratch)
inline float* as_f32(float* p) { return p; }
inline float* as_f32(BFloat16*) { return nullptr; }

// E: the element type of q, k, v and out (float, or BFloat16 widened into the packed tiles; the math is
// float32 either way and a bf16 output row is rounded once, from the same float32 values).
template <typename E>
void forward_simd(const SdpaKernels& mk, const SdpaArgs& a, const TensorRef& q_, const TensorRef& k_,
                  const TensorRef& v_, const TensorRef& out_, float* lse) {
  constexpr bool kF32 = std::is_same_v<E, float>;
  const Op4<const E> q(q_), k(k_), v(v_);
  const Op4<E> out(out_);
  const int64_t H = a.h, L = a.l, D = a.d, Dv = a.dv;
  const Layout ly(a);
  const int64_t dpad = ly.dpad, dvpad = ly.dvpad, S16 = ly.S16, nkb = ly.nkb, blen = nkb * kBc;
  const int64_t nqb = (L + kBr - 1) / kBr, heads = a.n * H;
  const Masker<float> masker(a);
  const float scale = float(a.scale), ninf = -std::numeric_limits<float>::infinity();
  const bool drop = a.dropout_p > 0;
  const float keep_scale = drop ? float(1.0 / (1.0 - a.dropout_p)) : 1.f;
  const bool threads = heads * nqb > 1 && worth_threads<float>(a);
  // one work item per head when there are heads enough for the threads, else per (head, query block)
  const int64_t chunks = !threads || heads >= 2 * omp_get_max_threads() ? 1 : nqb, qb_per = (nqb + chunks - 1) / chunks;
  const int64_t work = heads * chunks;
  // scratch: kt (nkb, dpad, 64) | kv rows (S16, max(dpad, dvpad)) | vp (S16, dvpad) | bias | qs | st | o | m | l | keep
  const size_t n_kt = size_t(nkb * dpad * kBc), n_kr = size_t(S16 * std::max(dpad, dvpad)),
               n_vp = size_t(S16 * dvpad), n_b = size_t(blen), n_qs = size_t(kBr * dpad), n_st = size_t(kBr * kBc),
               n_o = size_t(kBr * dvpad);
  const size_t total = n_kt + n_kr + n_vp + n_b + n_qs + n_st + n_o + 3 * size_t(kBr) + 16;
#pragma omp parallel if (threads)
  {
    float* base = tl_scratch.get(total);
    float *kt = base, *kr = kt + n_kt, *vp = kr + n_kr, *bias = vp + n_vp, *qs = bias + n_b, *st = qs + n_qs,
          *o = st + n_st, *m = o + n_o, *l = m + kBr;
    std::vector<float> keep(drop ? size_t(kBc) : 0);  // keep_scale or 0 per key of a tile row
#pragma omp for schedule(static)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t nh = w / chunks, n = nh / H, h = nh % H, qb0 = (w % chunks) * qb_per,
                    qb1 = std::min(nqb, qb0 + qb_per);
      if (qb0 >= qb1) continue;
      // keys the query blocks of this item can see
      const int64_t s_used = a.is_causal ? std::min(a.s, qb1 * kBr) : a.s;
      transpose_keys(mk, view_rows(mk, k, n, h, 0, s_used, D, kr, dpad), s_used, dpad, kt, qs);
      const View vv = view_rows(mk, v, n, h, 0, s_used, Dv, vp, dvpad);
      make_bias(masker, a, n, blen, bias);
      for (int64_t qb = qb0; qb < qb1; ++qb) {
        const int64_t i0 = qb * kBr, br = std::min(kBr, L - i0);
        const View qv = view_rows(mk, q, n, h, i0, br, D, qs, dpad);
        std::fill(m, m + br, ninf);
        std::fill(l, l + br, 0.f);
        const int64_t j_end = key_end(a, i0, br);
        // one key block: the exact softmax, normalised before P V, which then writes the output rows
        // (float32), or o (bf16: rounded from there)
        const bool direct = j_end <= kBc && Dv % 16 == 0 && (!kF32 || out.s3 == 1);
        if (!direct) std::fill(o, o + br * dvpad, 0.f);
        for (int64_t j0 = 0; j0 < j_end; j0 += kBc) {
          const int64_t bc = std::min(kBc, j_end - j0), bcp = pad16(bc);
          mk.gemm(qv.p, qv.ld, kt + (j0 / kBc) * dpad * kBc, kBc, st, bcp, br, D, bcp, false);  // (br, bcp)
          mk.score_tile(st, bcp, br, bcp, scale, bias + j0, a.is_causal ? i0 - j0 + 1 : kNoCausal);
          if (masker.has_attn_mask())
            for (int64_t r = 0; r < br; ++r) masker.apply_attn_mask(st + r * bcp, n, h, i0 + r, j0, bc);
          mk.softmax_tile(st, bcp, br, bcp, m, l, o, dvpad, dvpad);
          if (direct) mk.scale_rows(st, bcp, br, bcp, l);
          if (drop)
            for (int64_t r = 0; r < br; ++r) {
              sdpa_keep_scales(a, (nh * L) + i0 + r, j0, bc, keep_scale, keep.data());
              float* sr = st + r * bcp;
              for (int64_t c = 0; c < bc; ++c) sr[c] *= keep[size_t(c)];
            }
          if (direct && kF32)
            mk.gemm(st, bcp, vv.row(j0), vv.ld, reinterpret_cast<float*>(out.row(n, h, i0)), out.s2, br, bc, Dv, false);
          else mk.gemm(st, bcp, vv.row(j0), vv.ld, o, dvpad, br, bc, dvpad, !direct);  // O += P V
        }
        if (direct) {
          for (int64_t r = 0; r < br; ++r) {
            if constexpr (!kF32) store_row(out.row(n, h, i0 + r), out.s3, o + r * dvpad, Dv);
            lse[nh * L + i0 + r] = l[r] > 0 ? m[r] + std::log(l[r]) : std::numeric_limits<float>::infinity();
          }
          continue;
        }
        for (int64_t r = 0; r < br; ++r) {
          const float lr = l[r], inv = lr > 0 ? 1.f / lr : 0.f;
          float* orow = o + r * dvpad;
          for (int64_t e = 0; e < Dv; ++e) orow[e] *= inv;
          store_row(out.row(n, h, i0 + r), out.s3, orow, Dv);
          lse[nh * L + i0 + r] = lr > 0 ? m[r] + std::log(lr) : std::numeric_limits<float>::infinity();
        }
      }
    }
  }
}

// The dropout of one backward tile, rows [0, br) of score rows row0 + r: pd = P ∘ keep (its pad columns
// zeroed) and dP ∘= keep, keep[c] = keep_scale or 0; returns pd.
const float* drop_tile(const SdpaArgs& a, int64_t row0, int64_t j0, int64_t br, int64_t bc, int64_t bcp,
                       float keep_scale, const float* st, float* dp, float* pd, float* keep) {
  for (int64_t r = 0; r < br; ++r) {
    sdpa_keep_scales(a, row0 + r, j0, bc, keep_scale, keep);
    const float* sr = st + r * bcp;
    float *pr = pd + r * bcp, *gr = dp + r * bcp;
    for (int64_t c = 0; c < bc; ++c) {
      pr[c] = sr[c] * keep[c];
      gr[c] *= keep[c];
    }
    std::fill(pr + bc, pr + bcp, 0.f);
  }
  return pd;
}

// Rows [0, S) of one head's key (or value) gradient: zeros from s_used on (keys no query sees: causal,
// S > L), below it the scratch accumulator `acc` (ld) rounded into them, or nothing where the rows
// themselves accumulated (acc null).
template <typename E>
void store_key_grads(const Op4<E>& g, int64_t n, int64_t h, int64_t S, int64_t s_used, int64_t cols,
                     const float* acc, int64_t ld) {
  for (int64_t j = 0; j < S; ++j) {
    E* dst = g.row(n, h, j);
    if (j >= s_used)
      for (int64_t e = 0; e < cols; ++e) dst[e * g.s3] = E(0.f);
    else if (acc) store_row(dst, g.s3, acc + j * ld, cols);
  }
}

// E as in forward_simd: bf16 q, k, v, out and dO are widened as they are packed, the float32 gradients are
// accumulated in scratch and each rounded once.
template <typename E>
void backward_simd(const SdpaKernels& mk, const SdpaArgs& a, const TensorRef& q_, const TensorRef& k_,
                   const TensorRef& v_, const TensorRef& out_, const float* lse, const TensorRef& gout_,
                   const TensorRef& gq_, const TensorRef& gk_, const TensorRef& gv_) {
  constexpr bool kF32 = std::is_same_v<E, float>;
  const Op4<const E> q(q_), k(k_), v(v_), out(out_), gout(gout_);
  const Op4<E> gq(gq_), gk(gk_), gv(gv_);
  const int64_t H = a.h, L = a.l, S = a.s, D = a.d, Dv = a.dv;
  const Layout ly(a);
  const int64_t dpad = ly.dpad, dvpad = ly.dvpad, S16 = ly.S16, nkb = ly.nkb, blen = nkb * kBc;
  const int64_t work = a.n * H;
  const Masker<float> masker(a);
  const float scale = float(a.scale);
  const bool drop = a.dropout_p > 0;
  const float keep_scale = drop ? float(1.0 / (1.0 - a.dropout_p)) : 1.f;
  // scratch: kt (nkb, dpad, 64) | vt (nkb, dvpad, 64) | kp (S16, dpad) | tmp rows (S16, dvpad) | dk (S16, dpad) |
  // dv (S16, dvpad) | bias | qs | dos | os | dq | st | dp | pd | dr
  const size_t n_kt = size_t(nkb * dpad * kBc), n_vt = size_t(nkb * dvpad * kBc), n_kp = size_t(S16 * dpad),
               n_vr = size_t(S16 * dvpad), n_b = size_t(blen), n_qs = size_t(kBr * dpad), n_do = size_t(kBr * dvpad),
               n_st = size_t(kBr * kBc);
  const size_t total = n_kt + n_vt + 2 * n_kp + 2 * n_vr + n_b + 2 * n_qs + 2 * n_do + 3 * n_st + size_t(kBr) + 16;
#pragma omp parallel if (work > 1 && worth_threads<float>(a))
  {
    float* base = tl_scratch.get(total);
    float *kt = base, *vt = kt + n_kt, *kp = vt + n_vt, *vr = kp + n_kp, *dk = vr + n_vr, *dv = dk + n_kp,
          *bias = dv + n_vr, *qs = bias + n_b, *dq = qs + n_qs, *dos = dq + n_qs, *os = dos + n_do, *st = os + n_do,
          *dp = st + n_st, *pd = dp + n_st, *dr = pd + n_st;
    std::vector<float> keep(drop ? size_t(kBc) : 0);  // keep_scale or 0 per key of a tile row
#pragma omp for schedule(static)
    for (int64_t nh = 0; nh < work; ++nh) {
      const int64_t n = nh / H, h = nh % H;
      const int64_t s_used = a.is_causal ? std::min(S, L) : S, s16 = pad16(s_used);  // keys some query sees
      const View kv = view_rows(mk, k, n, h, 0, s_used, D, kp, dpad);
      transpose_keys(mk, kv, s_used, dpad, kt, dq);
      transpose_keys(mk, view_rows(mk, v, n, h, 0, s_used, Dv, vr, dvpad), s_used, dvpad, vt, dos);
      make_bias(masker, a, n, blen, bias);
      (void)s16;
      // the gradient accumulators: float32 output rows themselves when they allow vector stores, else scratch
      const bool gq_in = kF32 && gq.s3 == 1 && D % 16 == 0, gk_in = kF32 && gk.s3 == 1 && D % 16 == 0,
                 gv_in = kF32 && gv.s3 == 1 && Dv % 16 == 0;
      float* dkp = gk_in ? as_f32(gk.row(n, h, 0)) : dk;
      float* dvp = gv_in ? as_f32(gv.row(n, h, 0)) : dv;
      const int64_t ldk = gk_in ? gk.s2 : dpad, ldv = gv_in ? gv.s2 : dvpad;
      for (int64_t i0 = 0; i0 < L; i0 += kBr) {
        const int64_t br = std::min(kBr, L - i0);
        const View qv = view_rows(mk, q, n, h, i0, br, D, qs, dpad),
                   gv_ = view_rows(mk, gout, n, h, i0, br, Dv, dos, dvpad),
                   ov = view_rows(mk, out, n, h, i0, br, Dv, os, dvpad);
        for (int64_t r = 0; r < br; ++r) dr[r] = mk.row_dot(gv_.row(r), ov.row(r), dvpad);  // rowsum(dO ∘ O)
        float* dqp = gq_in ? as_f32(gq.row(n, h, i0)) : dq;
        const int64_t ldq = gq_in ? gq.s2 : dpad;
        const float* lrow = lse + nh * L + i0;
        const int64_t j_end = key_end(a, i0, br);
        for (int64_t j0 = 0; j0 < j_end; j0 += kBc) {
          const int64_t bc = std::min(kBc, j_end - j0), bcp = pad16(bc), jb = j0 / kBc;
          mk.gemm(qv.p, qv.ld, kt + jb * dpad * kBc, kBc, st, bcp, br, D, bcp, false);  // S
          mk.score_tile(st, bcp, br, bcp, scale, bias + j0, a.is_causal ? i0 - j0 + 1 : kNoCausal);
          if (masker.has_attn_mask())
            for (int64_t r = 0; r < br; ++r) masker.apply_attn_mask(st + r * bcp, n, h, i0 + r, j0, bc);
          mk.prob_tile(st, bcp, br, bcp, lrow);                                           // P
          mk.gemm(gv_.p, gv_.ld, vt + jb * dvpad * kBc, kBc, dp, bcp, br, Dv, bcp, false);  // dP = dO Vᵀ
          // the P of dV += Pᵀ dO: dropped when dropout
          const float* pv = drop ? drop_tile(a, nh * L + i0, j0, br, bc, bcp, keep_scale, st, dp, pd, keep.data()) : st;
          mk.ds_tile(st, bcp, dp, bcp, br, bcp, dr, scale);  // dS = scale P ∘ (dP − D), into dp
          // the first query block that sees key block jb writes its dK, dV rows, later ones add
          const bool kv_acc = i0 / kBr != (a.is_causal ? jb : 0), q_acc = j0 > 0;
          mk.gemm_at(pv, bcp, gv_.p, gv_.ld, dvp + j0 * ldv, ldv, bc, br, dvpad, kv_acc);  // dV += Pᵀ dO
          mk.gemm(dp, bcp, kv.row(j0), kv.ld, dqp, ldq, br, bc, dpad, q_acc);             // dQ += dS K
          mk.gemm_at(dp, bcp, qv.p, qv.ld, dkp + j0 * ldk, ldk, bc, br, dpad, kv_acc);      // dK += dSᵀ Q
        }
        if (!gq_in)
          for (int64_t r = 0; r < br; ++r) store_row(gq.row(n, h, i0 + r), gq.s3, dq + r * dpad, D);
      }
      store_key_grads(gk, n, h, S, s_used, D, gk_in ? nullptr : dk, dpad);
      store_key_grads(gv, n, h, S, s_used, Dv, gv_in ? nullptr : dv, dvpad);
    }
  }
}

const SdpaKernels* simd_kernels() {
  switch (active_isa()) {
    case Isa::Avx512: return &avx512::sdpa_kernels();
    case Isa::Avx2: return &avx2::sdpa_kernels();
    case Isa::Reference: break;
  }
  return nullptr;
}

void check(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("sdpa (cpu): ") + what);
}
void check_args(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v, const TensorRef& out,
                const TensorRef& lse) {
  check(q.shape == Shape{a.n, a.h, a.l, a.d} && k.shape == Shape{a.n, a.h, a.s, a.d} &&
            v.shape == Shape{a.n, a.h, a.s, a.dv} && out.shape == Shape{a.n, a.h, a.l, a.dv},
        "q, k, v, out shapes do not match the args");
  const DType ct = backend::sdpa_compute_dtype(q.dtype);
  check(k.dtype == q.dtype && v.dtype == q.dtype && out.dtype == q.dtype && lse.dtype == ct,
        "q, k, v, out must share one dtype, logsumexp its compute dtype");
  check(lse.contiguous() && lse.numel() == a.n * a.h * a.l, "logsumexp must be contiguous (N, H, L)");
  check(q.dtype == kFloat32 || q.dtype == kFloat64 || q.dtype == kBFloat16, "dtype must be float32, float64 or bfloat16");
  check(!a.attn_mask.data || (a.attn_mask.strides.size() == 4 &&
                              (a.attn_mask.dtype == kBool || a.attn_mask.dtype == ct)),
        "attn_mask must be a 4-d bool or compute-dtype ref");
  check(!a.key_padding_mask.data || (a.key_padding_mask.strides.size() == 2 &&
                                     (a.key_padding_mask.dtype == kBool || a.key_padding_mask.dtype == ct)),
        "key_padding_mask must be a 2-d bool or compute-dtype ref");
}

// One query per head (a decoding step over a key/value cache): scores as row dots against the keys in
// place (no transposed key blocks, no padding of the keys to 64), one softmax, then P V. Taken when
// there is no dropout, attention mask or causal flag and keys, values and output rows are unit-stride
// with widths that are multiples of 16; returns false otherwise (the tiled path runs). bf16 (E) keys and
// values are widened per head into the thread's scratch first, and the output row rounded once.
template <typename E>
bool forward_one_query(const SdpaKernels& mk, const SdpaArgs& a, const TensorRef& q_, const TensorRef& k_,
                       const TensorRef& v_, const TensorRef& out_, float* lse) {
  constexpr bool kF32 = std::is_same_v<E, float>;
  const Op4<const E> q(q_), k(k_), v(v_);
  const Op4<E> out(out_);
  const Masker<float> masker(a);
  if (a.l != 1 || a.dropout_p > 0 || a.is_causal || masker.has_attn_mask() || a.d % 16 || a.dv % 16 ||
      q.s3 != 1 || k.s3 != 1 || v.s3 != 1 || out.s3 != 1)
    return false;
  const int64_t H = a.h, S = a.s, S16 = pad16(S), heads = a.n * H, D = a.d, Dv = a.dv;
  const float scale = float(a.scale), ninf = -std::numeric_limits<float>::infinity();
  // scratch: scores | key bias | (bf16) q row | keys (S, D) | values (S, Dv) | output row
  const size_t n_wide = kF32 ? 0 : size_t(D + S * D + S * Dv + Dv);
#pragma omp parallel if (heads > 1 && worth_threads<float>(a))
  {
    float* s = tl_scratch.get(size_t(2 * S16) + n_wide);
    float *bias = s + S16, *qw = bias + S16, *kw = qw + D, *vw = kw + S * D, *ow = vw + S * Dv;
#pragma omp for schedule(static)
    for (int64_t nh = 0; nh < heads; ++nh) {
      const int64_t n = nh / H, h = nh % H;
      if (masker.has_key_bias()) masker.key_bias(n, 0, S, bias);
      else std::fill(bias, bias + S, 0.f);
      // float32 rows: the operands in place; bf16: their widened copies
      const float *qr, *kr, *vr;
      int64_t ldk, ldv;
      if constexpr (kF32) {
        qr = q.row(n, h, 0), kr = k.row(n, h, 0), vr = v.row(n, h, 0), ldk = k.s2, ldv = v.s2;
      } else {
        qr = view_rows(mk, q, n, h, 0, 1, D, qw, D).p;
        kr = view_rows(mk, k, n, h, 0, S, D, kw, D).p;
        vr = view_rows(mk, v, n, h, 0, S, Dv, vw, Dv).p;
        ldk = D, ldv = Dv;
      }
      float mx = ninf;
      for (int64_t j = 0; j < S; ++j) {
        s[j] = mk.row_dot(qr, kr + j * ldk, D) * scale + bias[j];
        mx = std::max(mx, s[j]);
      }
      std::fill(s + S, s + S16, ninf);
      float* o = kF32 ? reinterpret_cast<float*>(out.row(n, h, 0)) : ow;
      if (mx == ninf) {  // every key masked: zeros, as the tiled path
        std::fill(o, o + Dv, 0.f);
        if constexpr (!kF32) store_row(out.row(n, h, 0), 1, o, Dv);
        lse[nh] = std::numeric_limits<float>::infinity();
        continue;
      }
      const float l = mk.exp_row(s, S16, mx), inv = 1.f / l;
      for (int64_t j = 0; j < S; ++j) s[j] *= inv;
      mk.gemm(s, S16, vr, ldv, o, out.s2, 1, S, Dv, false);  // (1, S) @ (S, Dv)
      if constexpr (!kF32) store_row(out.row(n, h, 0), 1, o, Dv);
      lse[nh] = mx + std::log(l);
    }
  }
  return true;
}

}  // namespace

void sdpa_forward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v, const TensorRef& out,
                  const TensorRef& logsumexp) {
  check_args(a, q, k, v, out, logsumexp);
  if (a.n * a.h * a.l == 0) return;
  const SdpaKernels* mk = q.dtype != kFloat64 && a.s > 0 ? simd_kernels() : nullptr;
  float* lse = static_cast<float*>(logsumexp.data);
  if (q.dtype == kBFloat16) {
    if (!mk) forward_bf16_widened(a, q, k, v, out, lse);
    else if (!forward_one_query<BFloat16>(*mk, a, q, k, v, out, lse)) forward_simd<BFloat16>(*mk, a, q, k, v, out, lse);
    return;
  }
  if (mk && forward_one_query<float>(*mk, a, q, k, v, out, lse)) return;
  if (mk) forward_simd<float>(*mk, a, q, k, v, out, lse);
  else if (q.dtype == kFloat32) forward_tiled<float>(a, q, k, v, out, lse);
  else forward_tiled<double>(a, q, k, v, out, static_cast<double*>(logsumexp.data));
}

void sdpa_backward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                   const TensorRef& out, const TensorRef& logsumexp, const TensorRef& grad_out, const TensorRef& grad_q,
                   const TensorRef& grad_k, const TensorRef& grad_v) {
  check_args(a, q, k, v, out, logsumexp);
  check(grad_out.shape == out.shape && grad_q.shape == q.shape && grad_k.shape == k.shape && grad_v.shape == v.shape,
        "gradient shapes do not match");
  check(grad_out.dtype == q.dtype && grad_q.dtype == q.dtype && grad_k.dtype == q.dtype && grad_v.dtype == q.dtype,
        "gradients must have q's dtype");
  if (a.n * a.h == 0) return;
  const SdpaKernels* mk = q.dtype != kFloat64 && a.s > 0 ? simd_kernels() : nullptr;
  const float* lse = static_cast<const float*>(logsumexp.data);
  if (q.dtype == kBFloat16) {
    if (mk) backward_simd<BFloat16>(*mk, a, q, k, v, out, lse, grad_out, grad_q, grad_k, grad_v);
    else backward_bf16_widened(a, q, k, v, out, lse, grad_out, grad_q, grad_k, grad_v);
  } else if (mk) {
    backward_simd<float>(*mk, a, q, k, v, out, lse, grad_out, grad_q, grad_k, grad_v);
  } else if (q.dtype == kFloat32) {
    backward_tiled<float>(a, q, k, v, out, lse, grad_out, grad_q, grad_k, grad_v);
  } else {
    backward_tiled<double>(a, q, k, v, out, static_cast<const double*>(logsumexp.data), grad_out, grad_q, grad_k,
                           grad_v);
  }
}

// ---- the CpuBackend entries
void CpuBackend::sdpa_forward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                              const TensorRef& out, const TensorRef& logsumexp) {
  cpu::sdpa_forward(a, q, k, v, out, logsumexp);
}
void CpuBackend::sdpa_backward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                               const TensorRef& out, const TensorRef& logsumexp, const TensorRef& grad_out,
                               const TensorRef& grad_q, const TensorRef& grad_k, const TensorRef& grad_v) {
  cpu::sdpa_backward(a, q, k, v, out, logsumexp, grad_out, grad_q, grad_k, grad_v);
}
}  // namespace attn::cpu
