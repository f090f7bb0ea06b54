// src/backend/cpu/amx_gemm.cc — see amx_gemm.h. Compiled with AMX and AVX-512 flags (CMakeLists.txt):
// nothing here may run before cpu_and_os_ready() (defined in gemm_bf16.cc, a baseline file) said yes,
// and this file uses no std templates, whose out-of-line copies the linker could share with baseline code.
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -Wmaybe-uninitialized flags.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "backend/cpu/amx_gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <cstdint>
#include <cstring>

namespace attn::cpu::amx {

using backend::GemmArgs;

namespace {

constexpr int64_t kTileRows = 16;  // rows of every tile
constexpr int64_t kTileK = 32;     // bf16 per A tile row (64 bytes)
constexpr int64_t kTileElems = kTileRows * kTileK;  // bf16 in one tile (1 KiB)
// C block per task (float32 accumulator 256 KiB in L2) and K slice (A strip 32 x 256: 16 KiB in L1;
// 256 measured 3-4 % faster than 512 or 1024 at 2048^3, 128 no better).
constexpr int64_t kMc = 256, kNc = 256, kKc = 256;

int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Every tile 16 rows x 64 bytes (palette 1).
void configure_tiles() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = kTileRows;
  }
  _tile_loadconfig(&cfg);
}

// op(A)(i, p) and op(B)(p, j) as bf16 bits.
uint16_t a_at(const GemmArgs& g, int64_t i, int64_t p) {
  const uint16_t* a = static_cast<const uint16_t*>(g.a);
  return g.trans_a ? a[p * g.lda + i] : a[i * g.lda + p];
}
uint16_t b_at(const GemmArgs& g, int64_t p, int64_t j) {
  const uint16_t* b = static_cast<const uint16_t*>(g.b);
  return g.trans_b ? b[j * g.ldb + p] : b[p * g.ldb + j];
}

// 16 x 16 32-bit words in registers, transposed: row r of the result is column r of the input.
void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // u[i + s]: column s of each 128-bit lane, rows i..i+3
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int s = 0; s < 4; ++s) {  // column 4 L + s gathers lane L of u[s], u[4 + s], u[8 + s], u[12 + s]
    const __m512i v0 = _mm512_shuffle_i32x4(u[s], u[4 + s], 0x88), v1 = _mm512_shuffle_i32x4(u[s], u[4 + s], 0xdd);
    const __m512i w0 = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0x88);
    const __m512i w1 = _mm512_shuffle_i32x4(u[8 + s], u[12 + s], 0xdd);
    r[s] = _mm512_shuffle_i32x4(v0, w0, 0x88);
    r[4 + s] = _mm512_shuffle_i32x4(v1, w1, 0x88);
    r[8 + s] = _mm512_shuffle_i32x4(v0, w0, 0xdd);
    r[12 + s] = _mm512_shuffle_i32x4(v1, w1, 0xdd);
  }
}

// Row q of the result: (x(2 q, j), x(2 q + 1, j)) for the 16 columns j of a row-major x (32 x 16 read).
void load_pairs(const uint16_t* x, int64_t ld, __m512i r[16]) {
  for (int q = 0; q < 16; ++q) {
    const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 2 * q * ld)));
    const __m512i hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + (2 * q + 1) * ld)));
    r[q] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
  }
}
void load_rows(const uint16_t* x, int64_t ld, __m512i r[16]) {  // 16 rows of 32 bf16
  for (int q = 0; q < 16; ++q) r[q] = _mm512_loadu_si512(x + q * ld);
}
void store_tile(const __m512i r[16], uint16_t* out) {
  for (int q = 0; q < 16; ++q) _mm512_store_si512(out + q * kTileK, r[q]);
}

// Packed B tile (nt, kt): row r holds (B(32 kt + 2 r, j), B(32 kt + 2 r + 1, j)) for the 16 columns
// j = 16 nt.. (AMX's VNNI pairs); zero past k and n.
void pack_b_tile(const GemmArgs& g, int64_t nt, int64_t kt, uint16_t* out) {
  const int64_t n0 = nt * 16, k0 = kt * kTileK;
  const uint16_t* b = static_cast<const uint16_t*>(g.b);
  __m512i r[16];
  if (n0 + 16 <= g.n && k0 + kTileK <= g.k) {
    if (!g.trans_b) {
      load_pairs(b + k0 * g.ldb + n0, g.ldb, r);
    } else {  // B^T stored (n, k): the pair for (r, j) is 32-bit word r of row j
      load_rows(b + n0 * g.ldb + k0, g.ldb, r);
      transpose16(r);
    }
    return store_tile(r, out);
  }
  for (int64_t q = 0; q < kTileRows; ++q)
    for (int64_t j = 0; j < 16; ++j)
      for (int64_t e = 0; e < 2; ++e) {
        const int64_t p = k0 + 2 * q + e, col = n0 + j;
        out[q * kTileK + 2 * j + e] = p < g.k && col < g.n ? b_at(g, p, col) : uint16_t(0);
      }
}

// Packed A tile (mt, kt): row r = op(A)(16 mt + r, 32 kt ..), zero past m and k.
void pack_a_tile(const GemmArgs& g, int64_t mt, int64_t kt, uint16_t* out) {
  const int64_t m0 = mt * kTileRows, k0 = kt * kTileK;
  const uint16_t* a = static_cast<const uint16_t*>(g.a);
  __m512i r[16];
  if (m0 + kTileRows <= g.m && k0 + kTileK <= g.k) {
    if (!g.trans_a) {
      load_rows(a + m0 * g.lda + k0, g.lda, r);
    } else {  // A^T stored (k, m): pairs of its rows, transposed
      load_pairs(a + k0 * g.lda + m0, g.lda, r);
      transpose16(r);
    }
    return store_tile(r, out);
  }
  for (int64_t q = 0; q < kTileRows; ++q)
    for (int64_t c = 0; c < kTileK; ++c) {
      const int64_t i = m0 + q, p = k0 + c;
      out[q * kTileK + c] = i < g.m && p < g.k ? a_at(g, i, p) : uint16_t(0);
    }
}

// acc (32 x 32 piece, row stride ld floats) (+)= A tiles x B tiles over kts k-tiles (each operand's
// second tile `next` elements after its first).
void micro_kernel(const uint16_t* a0, int64_t a_next, const uint16_t* b0, int64_t b_next, int64_t kts, float* acc,
                  int64_t ld, bool first) {
  const int64_t stride = ld * 4;
  if (first) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  } else {
    _tile_loadd(0, acc, stride);
    _tile_loadd(1, acc + 16, stride);
    _tile_loadd(2, acc + 16 * ld, stride);
    _tile_loadd(3, acc + 16 * ld + 16, stride);
  }
  const uint16_t *a1 = a0 + a_next, *b1 = b0 + b_next;
  for (int64_t kt = 0; kt < kts; ++kt) {  // each tile's loads placed just before its first use
    _tile_loadd(4, a0 + kt * kTileElems, 64);
    _tile_loadd(6, b0 + kt * kTileElems, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, b1 + kt * kTileElems, 64);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a1 + kt * kTileElems, 64);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, acc, stride);
  _tile_stored(1, acc + 16, stride);
  _tile_stored(2, acc + 16 * ld, stride);
  _tile_stored(3, acc + 16 * ld + 16, stride);
}

__m512 widen16(__m256i bits) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16)); }

// C piece (rows i0.., columns j0.., mv x nv) = alpha acc + beta C + bias, rounded to C's dtype.
void write_piece(const GemmArgs& g, const float* acc, int64_t ld, int64_t i0, int64_t j0, int64_t mv, int64_t nv) {
  const __m512 alpha = _mm512_set1_ps(float(g.alpha)), beta = _mm512_set1_ps(float(g.beta));
  const bool scale = g.alpha != 1.0, add_c = g.beta != 0.0;
  for (int64_t i = 0; i < mv; ++i)
    for (int64_t j = 0; j < nv; j += 16) {
      const __mmask16 mask = nv - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (nv - j)) - 1);
      __m512 v = _mm512_maskz_loadu_ps(mask, acc + i * ld + j);
      if (scale) v = _mm512_mul_ps(v, alpha);
      const int64_t at = (i0 + i) * g.ldc + j0 + j;
      if (g.c_float32) {
        float* c = static_cast<float*>(g.c) + at;
        if (add_c) v = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask, c), v);
        if (g.bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, static_cast<const float*>(g.bias) + j0 + j));
        _mm512_mask_storeu_ps(c, mask, v);
      } else {
        uint16_t* c = static_cast<uint16_t*>(g.c) + at;
        if (add_c) v = _mm512_fmadd_ps(beta, widen16(_mm256_maskz_loadu_epi16(mask, c)), v);
        if (g.bias)
          v = _mm512_add_ps(v, widen16(_mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(g.bias) + j0 + j)));
        _mm256_mask_storeu_epi16(c, mask, (__m256i)_mm512_cvtneps_pbh(v));  // nearest even, as BFloat16(float)
      }
    }
}

struct Layout {
  int64_t kt_count;  // k tiles of the packed operands (k rounded up to 32)
  int64_t mt_count;  // 16-row tiles of packed A (m rounded up to 32)
  int64_t nt_count;  // 16-column tiles of packed B (n rounded up to 32)
};
Layout layout_of(const GemmArgs& g) {
  return {round_up(g.k, kTileK) / kTileK, round_up(g.m, 32) / kTileRows, round_up(g.n, 32) / 16};
}

// One kMc x kNc block of C (rows i0.., columns j0..): K slices of 32 x 32 micro-kernels into acc (L2);
// each piece of C is written as soon as its last slice is summed (still in L1).
void run_block(const GemmArgs& g, const Layout& lay, const uint16_t* ap, const uint16_t* b_panel, int64_t i0,
               int64_t j0, float* acc) {
  const int64_t mv = min64(kMc, g.m - i0), nv = min64(kNc, g.n - j0);
  const int64_t mp = round_up(mv, 32), np = round_up(nv, 32), ld = np, next = lay.kt_count * kTileElems;
  for (int64_t k0 = 0; k0 < g.k; k0 += kKc) {
    const int64_t kts = round_up(min64(kKc, g.k - k0), kTileK) / kTileK;
    const bool last = k0 + kKc >= g.k;
    for (int64_t ii = 0; ii < mp; ii += 32) {
      const uint16_t* a0 = ap + (i0 + ii) / kTileRows * next + k0 / kTileK * kTileElems;
      for (int64_t jj = 0; jj < np; jj += 32) {
        const uint16_t* b0 = b_panel + jj / 16 * next + k0 / kTileK * kTileElems;
        float* piece = acc + ii * ld + jj;
        micro_kernel(a0, next, b0, next, kts, piece, ld, k0 == 0);
        if (last) write_piece(g, piece, ld, i0 + ii, j0 + jj, min64(32, mv - ii), min64(32, nv - jj));
      }
    }
  }
}

// B panel (columns j0 .. j0 + kNc, all of k) packed by the thread that runs its blocks, reading each
// source row front to back; it stays in that thread's L2 for the blocks below it.
void pack_b_panel(const GemmArgs& g, const Layout& lay, int64_t j0, uint16_t* panel) {
  const int64_t nts = min64(kNc / 16, lay.nt_count - j0 / 16), kts = lay.kt_count;
  for (int64_t t = 0; t < nts * kts; ++t) {
    const int64_t kt = g.trans_b ? t % kts : t / nts, nt = g.trans_b ? t / kts : t % nts;
    pack_b_tile(g, j0 / 16 + nt, kt, panel + (nt * kts + kt) * kTileElems);
  }
}

// Per thread: the float32 accumulator block and one packed B panel.
size_t per_thread_bytes(const Layout& lay) {
  return size_t(kMc * kNc * 4) + size_t(kNc / 16 * lay.kt_count * kTileElems * 2);
}

}  // namespace

size_t workspace_bytes(const GemmArgs& g, int threads) {
  const Layout lay = layout_of(g);
  return size_t(lay.mt_count * lay.kt_count * kTileElems * 2) + size_t(threads) * per_thread_bytes(lay);
}

void gemm_bf16(const GemmArgs& g, void* workspace, int threads) {
  const Layout lay = layout_of(g);
  uint16_t* ap = static_cast<uint16_t*>(workspace);
  char* per_thread = reinterpret_cast<char*>(ap + lay.mt_count * lay.kt_count * kTileElems);
  const int64_t mb = (g.m + kMc - 1) / kMc, nb = (g.n + kNc - 1) / kNc, a_tiles = lay.mt_count * lay.kt_count;
#pragma omp parallel num_threads(threads)
  {
    configure_tiles();
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    float* acc = reinterpret_cast<float*>(per_thread + size_t(tid) * per_thread_bytes(lay));
    uint16_t* b_panel = reinterpret_cast<uint16_t*>(acc + kMc * kNc);
    // A packed once by all threads, in the order that reads each source row once, front to back
#pragma omp for schedule(static)
    for (int64_t t = 0; t < a_tiles; ++t) {
      const int64_t kt = g.trans_a ? t / lay.mt_count : t % lay.kt_count;
      const int64_t mt = g.trans_a ? t % lay.mt_count : t / lay.kt_count;
      pack_a_tile(g, mt, kt, ap + (mt * lay.kt_count + kt) * kTileElems);
    }
    // each thread a contiguous run of blocks, column-major: consecutive blocks share their B panel
    const int64_t blocks = mb * nb, first = blocks * tid / team, end = blocks * (tid + 1) / team;
    for (int64_t blk = first, packed = -1; blk < end; ++blk) {
      const int64_t j0 = (blk / mb) * kNc;
      if (j0 != packed) pack_b_panel(g, lay, packed = j0, b_panel);
      run_block(g, lay, ap, b_panel, (blk % mb) * kMc, j0, acc);
    }
    _tile_release();
  }
}

}  // namespace attn::cpu::amx
