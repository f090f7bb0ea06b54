// src/nn/int8_linear.cc — int8 x int8 -> int32 products through oneDNN's matmul, see int8_linear.h.
//
// The weights are reordered once into the blocked layout oneDNN's brgemm kernels read (format "any"),
// so a step of decoding with a handful of rows does not repack them; one primitive per padded row count
// (padded_rows), all sharing those packed weights. The activations' per-row scales cannot be a oneDNN
// output scale (per output channel only), so the int32 result is rescaled here:
// y[m, n] = acc[m, n] * sx[m] * sw[n] + b[n].
#include "attn/nn/int8_linear.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "attn/autograd.h"
#include "attn/nn/linear.h"
#include "attn/nn/module.h"
#include "attn/nn/transformer.h"
#include "backend/cpu/onednn.h"

namespace attn::nn {

struct Int8Matrix::Kernel {
  dnnl::memory::desc weights_desc;  // blocked (K, N) s8
  dnnl::memory weights;             // q_ (or its 7-bit form) reordered into weights_desc
  float weight_factor = 1.0f;       // 2 where the kernel holds q_ / 2 (seven_bit_weights)
  std::map<int64_t, dnnl::matmul> by_rows;
};

namespace {

// Without VNNI (AVX2; AVX-512 before Cascade Lake) oneDNN multiplies s8 x s8 with vpmaddubsw on activations
// shifted to u8, whose pairwise sums saturate at int16 for full-range weights (255 * 127 * 2 > 32767): on a
// Zen 3 the int8 linear was off by 3x its output's size. There the kernel holds the weights at 7 bits
// (q / 2, rounded; scale doubled), which cannot saturate (255 * 64 * 2 < 32767), as oneDNN advises.
bool seven_bit_weights() {
  static const bool v = [] {
    const unsigned isa = unsigned(dnnl::get_effective_cpu_isa());
    const unsigned vnni_bits = unsigned(dnnl_cpu_isa_avx512_core_vnni & ~dnnl_cpu_isa_avx512_core) |
                               unsigned(dnnl_cpu_isa_avx2_vnni & ~dnnl_cpu_isa_avx2);
    return (isa & vnni_bits) == 0;
  }();
  return v;
}

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// The row count a product runs at: 1-4 as they are, then 8, 16, and above 16 a multiple of 16 and of 1/8
// of M's power of two (at most 12.5 % more rows). Each distinct M is a oneDNN primitive whose kernels
// are JIT-compiled at creation, and beam search's live rows and the encoder's batch x length take many
// values: one primitive per M had oneDNN compiling 208 brgemm kernels for 40 verses. Extra rows are zero.
int64_t padded_rows(int64_t M) {
  if (M <= 4) return M;
  if (M <= 16) return M <= 8 ? 8 : 16;
  const int64_t p = int64_t(1) << (63 - __builtin_clzll(uint64_t(M)));
  const int64_t step = std::max<int64_t>(16, p / 8);
  return (M + step - 1) / step * step;
}

dnnl::matmul::primitive_desc matmul_pd(int64_t M, int64_t K, int64_t N, const dnnl::memory::desc& weights) {
  const dnnl::memory::desc src({M, K}, dt::s8, tag::ab), dst({M, N}, dt::s32, tag::ab);
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), cpu::onednn_engine());
}

// Row m of x (K floats) -> q (K int8) and its scale max|x| / 127 (0 for a zero row; not finite when
// the row is, so the output row is NaN as the float32 product's would be).
float quantize_row(const float* x, int64_t K, int8_t* q) {
  float amax = 0.0f;
  for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
  if (!(amax > 0.0f) || !std::isfinite(amax)) {
    std::fill(q, q + K, int8_t(0));
    return std::isfinite(amax) ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  const float inv = 127.0f / amax;
  // adding and taking away 1.5 * 2^23 rounds to nearest even as lrintf does (|v| <= 127 here), and
  // vectorises where the lrintf call did not
  constexpr float kRound = 12582912.0f;
  for (int64_t k = 0; k < K; ++k) q[k] = int8_t(int32_t((x[k] * inv + kRound) - kRound));
  return amax / 127.0f;
}

}  // namespace

Int8Matrix::Int8Matrix(std::vector<int8_t> q, std::vector<float> scale, int64_t out_features, int64_t in_features)
    : q_(std::move(q)), scale_(std::move(scale)), out_(out_features), in_(in_features) {
  if (out_ <= 0 || in_ <= 0 || int64_t(q_.size()) != out_ * in_ || int64_t(scale_.size()) != out_)
    throw std::invalid_argument("Int8Matrix: " + std::to_string(q_.size()) + " values and " +
                                std::to_string(scale_.size()) + " scales do not make a (" + std::to_string(out_) +
                                ", " + std::to_string(in_) + ") matrix");
}

Int8Matrix::~Int8Matrix() = default;

std::shared_ptr<Int8Matrix> Int8Matrix::quantize(const Tensor& weight) {
  if (weight.dim() != 2 || weight.dtype() != kFloat32)
    throw std::invalid_argument("Int8Matrix::quantize: expects a float32 (out, in) weight, got " +
                                std::string(dtype_name(weight.dtype())) + " " + shape_str(weight.shape()));
  const Tensor w = weight.detach().contiguous();
  const int64_t N = w.size(0), K = w.size(1);
  const float* p = w.data_ptr<float>();
  std::vector<int8_t> q(size_t(N * K));
  std::vector<float> scale(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    const float* row = p + n * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
    if (!std::isfinite(amax))
      throw std::invalid_argument("Int8Matrix::quantize: row " + std::to_string(n) + " of the weight is not finite");
    scale[size_t(n)] = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t k = 0; k < K; ++k) q[size_t(n * K + k)] = int8_t(std::lrintf(row[k] * inv));
  }
  return std::make_shared<Int8Matrix>(std::move(q), std::move(scale), N, K);
}

std::shared_ptr<Int8Matrix> Int8Matrix::rows(int64_t first, int64_t count) const {
  if (first < 0 || count <= 0 || first + count > out_)
    throw std::out_of_range("Int8Matrix::rows: [" + std::to_string(first) + ", " + std::to_string(first + count) +
                            ") outside the " + std::to_string(out_) + " rows");
  std::lock_guard<std::mutex> lock(mutex_);
  auto& block = row_blocks_[{first, count}];
  if (!block)
    block = std::make_shared<Int8Matrix>(std::vector<int8_t>(q_.begin() + first * in_, q_.begin() + (first + count) * in_),
                                         std::vector<float>(scale_.begin() + first, scale_.begin() + first + count),
                                         count, in_);
  return block;
}

Tensor Int8Matrix::dequantize() const {
  Tensor w = empty({out_, in_});
  float* p = w.data_ptr<float>();
  for (int64_t n = 0; n < out_; ++n)
    for (int64_t k = 0; k < in_; ++k) p[n * in_ + k] = scale_[size_t(n)] * float(q_[size_t(n * in_ + k)]);
  return w;
}

Tensor Int8Matrix::linear(const Tensor& x_in, const Tensor& bias) const {
  if (x_in.dim() < 1 || x_in.size(-1) != in_ || x_in.dtype() != kFloat32 || x_in.device() != kCPU)
    throw std::invalid_argument("int8 linear: input " + std::string(dtype_name(x_in.dtype())) + " " +
                                shape_str(x_in.shape()) + ", expected float32 (*, " + std::to_string(in_) + ") on the CPU");
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != out_ || bias.dtype() != kFloat32))
    throw std::invalid_argument("int8 linear: bias " + shape_str(bias.shape()) + " must be float32 (" +
                                std::to_string(out_) + ")");
  const Tensor x = x_in.detach().contiguous();
  const int64_t M = x.numel() / in_, K = in_, N = out_;
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(N);
  Tensor y = empty(out_shape);
  if (M == 0) return y;

  // scratch from the caching allocator: no zero fill, no fresh pages at every decoding step; rows
  // quantized in parallel (serial, they were ~4 % of int8 beam search)
  const int64_t Mp = padded_rows(M);
  const Tensor xq_bytes = empty({Mp, K}, {.dtype = kUInt8}), acc_words = empty({Mp, N}, {.dtype = kInt32});
  int8_t* const xq = static_cast<int8_t*>(xq_bytes.raw_data());
  int32_t* const acc = static_cast<int32_t*>(acc_words.raw_data());
  std::vector<float> sx(static_cast<size_t>(M));
  const float* xp = x.data_ptr<float>();
#pragma omp parallel for schedule(static) if (M * K >= (1 << 14))
  for (int64_t m = 0; m < M; ++m) sx[size_t(m)] = quantize_row(xp + m * K, K, xq + m * K);
  std::fill(xq + M * K, xq + Mp * K, int8_t(0));

  {
    std::lock_guard<std::mutex> lock(mutex_);  // the kernel map; the product itself runs on oneDNN's threads
    using dnnl::memory;
    dnnl::engine& eng = cpu::onednn_engine();
    dnnl::stream& stream = cpu::onednn_stream();
    try {
      if (!kernel_) {
        kernel_ = std::make_unique<Kernel>();
        const memory::desc any({K, N}, dt::s8, tag::any);
        kernel_->weights_desc = matmul_pd(Mp, K, N, any).weights_desc();
        std::vector<int8_t> q7;
        if (seven_bit_weights()) {
          q7.resize(q_.size());
          for (size_t i = 0; i < q_.size(); ++i) q7[i] = int8_t(std::lrintf(0.5f * float(q_[i])));
          kernel_->weight_factor = 2.0f;
        }
        int8_t* q = q7.empty() ? const_cast<int8_t*>(q_.data()) : q7.data();
        memory plain(memory::desc({K, N}, dt::s8, tag::ba), eng, q);  // (N, K) rows
        kernel_->weights = memory(kernel_->weights_desc, eng);
        dnnl::reorder(plain, kernel_->weights).execute(stream, plain, kernel_->weights);
        stream.wait();  // q7 ends with this block
      }
      auto it = kernel_->by_rows.find(Mp);
      if (it == kernel_->by_rows.end())
        it = kernel_->by_rows.emplace(Mp, dnnl::matmul(matmul_pd(Mp, K, N, kernel_->weights_desc))).first;
      memory src(memory::desc({Mp, K}, dt::s8, tag::ab), eng, xq);
      memory dst(memory::desc({Mp, N}, dt::s32, tag::ab), eng, acc);
      it->second.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, kernel_->weights}, {DNNL_ARG_DST, dst}});
      stream.wait();
    } catch (const dnnl::error& e) {
      throw std::runtime_error("int8 linear (" + std::to_string(M) + " x " + std::to_string(K) + " x " +
                               std::to_string(N) + "): oneDNN failed: " + e.what());
    }
  }
  float* yp = y.data_ptr<float>();
  const Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  const float* sw = scale_.data();
#pragma omp parallel for schedule(static) if (M * N > (1 << 16))
  for (int64_t m = 0; m < M; ++m) {
    const int32_t* a = acc + m * N;
    float* out = yp + m * N;
    const float s = sx[size_t(m)] * kernel_->weight_factor;
    if (bp) {
      for (int64_t n = 0; n < N; ++n) out[n] = float(a[n]) * s * sw[n] + bp[n];
    } else {
      for (int64_t n = 0; n < N; ++n) out[n] = float(a[n]) * s * sw[n];
    }
  }
  return y;
}

bool int8_uses_seven_bit_weights() { return seven_bit_weights(); }

int64_t quantize_linears_int8(Module& root) {
  NoGradGuard ng;
  int64_t count = 0;
  for (const auto& [name, m] : root.named_modules()) {
    if (m->is_training())
      throw std::logic_error("quantize_linears_int8: " + (name.empty() ? std::string("the model") : name) +
                             " is in training mode (int8 weights are for inference: call eval() first)");
    if (auto* l = dynamic_cast<Linear*>(m)) {
      l->int8 = Int8Matrix::quantize(l->weight);
      ++count;
    } else if (auto* a = dynamic_cast<MultiheadAttention*>(m); a && a->options.packed_projections) {
      a->in_proj_int8 = Int8Matrix::quantize(a->in_proj_weight);
      ++count;
    }
  }
  return count;
}

}  // namespace attn::nn
