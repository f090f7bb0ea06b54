// src/models/bert_fused.cc — BERT's inference encoder on fused oneDNN matmuls, see bert_fused.h.
//
// Why: the module path (nn::Linear + gelu + add) spends ~14 % of MiniLM's embedding time outside the
// GEMMs on one thread: filling C with the bias rows before dnnl_sgemm (4.5 %), GELU over the (M, 1536)
// activations (4 %), the two residual adds (1.7 %), and three q/k/v GEMMs where one would do. The
// matmul primitive adds the bias, applies GELU or adds the residual as it writes each C tile.
#include "models/bert_fused.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <mutex>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "attn/autocast.h"
#include "attn/autograd.h"
#include "attn/nn/linear.h"
#include "attn/nn/normalization.h"
#include "attn/ops.h"
#include "backend/cpu/onednn.h"
#include "backend/cpu/source_stamp.h"

namespace attn::models {

namespace {
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// Where a packed source was read from: a changed storage, offset or version means repack.
using cpu::SourceStamp;
using cpu::stamp;

bool plain_linear(const std::shared_ptr<nn::Linear>& l) { return l && typeid(*l) == typeid(nn::Linear); }
}  // namespace

struct FusedLinear::Impl {
  std::mutex mu;
  std::vector<SourceStamp> stamps;  // weights then biases, as packed
  Epilogue epilogue = Epilogue::None;
  int64_t in = 0, out = 0;
  Tensor bias;  // (out) contiguous, undefined without
  // W^T reordered into each blocked layout a primitive asked for (oneDNN may choose the layout by M)
  std::vector<dnnl::memory> packs;
  struct Prepared {
    dnnl::matmul prim;
    dnnl::memory packed;  // the entry of `packs` in this primitive's weights layout
  };
  std::map<int64_t, Prepared> by_rows;  // one primitive per row count M

  dnnl::matmul::primitive_desc primitive_desc(int64_t M) const {
    const dnnl::memory::desc src({M, in}, dt::f32, tag::ab), dst({M, out}, dt::f32, tag::ab);
    const dnnl::memory::desc w({in, out}, dt::f32, tag::any);
    dnnl::post_ops po;
    if (epilogue == Epilogue::Gelu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
    if (epilogue == Epilogue::GeluTanh) po.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_tanh, 0.f, 0.f);
    if (epilogue == Epilogue::Relu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    if (epilogue == Epilogue::AddResidual) po.append_binary(dnnl::algorithm::binary_add, dst);
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    const auto desc = bias.defined() ? dnnl::matmul::desc(src, w, dnnl::memory::desc({1, out}, dt::f32, tag::ab), dst)
                                     : dnnl::matmul::desc(src, w, dst);
    return dnnl::matmul::primitive_desc(desc, attr, cpu::onednn_engine());
  }

  // W (out, in) = the stacked weights in layout `desc`: packed once per layout, reordered from W^T.
  dnnl::memory packed_in(const std::vector<Tensor>& weights, const dnnl::memory::desc& desc) {
    for (const dnnl::memory& m : packs)
      if (m.get_desc() == desc) return m;
    NoGradGuard ng;
    const Tensor w = (weights.size() == 1 ? weights[0] : cat(weights, 0)).detach().contiguous();  // (out, in)
    dnnl::engine& eng = cpu::onednn_engine();
    const dnnl::memory::desc plain({in, out}, dt::f32, dnnl::memory::dims{1, in});  // W^T, a view of W
    dnnl::memory src(plain, eng, w.raw_data());
    dnnl::memory packed(desc, eng);
    dnnl::stream& s = cpu::onednn_stream();
    dnnl::reorder(src, packed).execute(s, src, packed);
    s.wait();
    packs.push_back(packed);
    return packed;
  }

  // Drops what was packed from other weights (or another epilogue), then the primitive for M.
  Prepared prepare(const std::vector<Tensor>& weights, const std::vector<Tensor>& biases, Epilogue e, int64_t M) {
    std::vector<SourceStamp> now;
    for (const Tensor& w : weights) now.push_back(stamp(w));
    for (const Tensor& b : biases) now.push_back(stamp(b));
    if (now != stamps || e != epilogue || packs.empty()) {
      NoGradGuard ng;
      stamps = now;
      epilogue = e;
      in = weights[0].size(1);
      out = 0;
      for (const Tensor& w : weights) out += w.size(0);
      bias = biases.empty() || !biases[0].defined()
                 ? Tensor()
                 : (biases.size() == 1 ? biases[0] : cat(biases, 0)).detach().contiguous();
      by_rows.clear();
      packs.clear();
    }
    auto it = by_rows.find(M);
    if (it != by_rows.end()) return it->second;
    if (by_rows.size() >= 64) by_rows.clear();  // many row counts (varied batch lengths): bounded cache
    const auto pd = primitive_desc(M);
    return by_rows.emplace(M, Prepared{dnnl::matmul(pd), packed_in(weights, pd.weights_desc())}).first->second;
  }
};

FusedLinear::FusedLinear() : impl_(std::make_unique<Impl>()) {}
FusedLinear::~FusedLinear() = default;
FusedLinear::FusedLinear(FusedLinear&&) noexcept = default;

Tensor FusedLinear::forward(const std::vector<Tensor>& weights, const std::vector<Tensor>& biases, Epilogue epilogue,
                            const Tensor& x_in, const Tensor& residual) {
  const Tensor x = x_in.contiguous();  // (M, in)
  if (weights.empty() || x.dim() != 2 || x.dtype() != kFloat32 || x.size(1) != weights[0].size(1))
    throw std::invalid_argument("FusedLinear: input " + shape_str(x.shape()) + " does not match the weights");
  const int64_t M = x.size(0);
  Impl::Prepared prepared;
  Tensor bias;
  int64_t out = 0;
  {
    const std::lock_guard lock(impl_->mu);
    prepared = impl_->prepare(weights, biases, epilogue, M);
    bias = impl_->bias;
    out = impl_->out;
  }
  Tensor y = empty({M, out});
  dnnl::engine& eng = cpu::onednn_engine();
  const dnnl::memory::desc src_d({M, x.size(1)}, dt::f32, tag::ab), dst_d({M, out}, dt::f32, tag::ab);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::memory(src_d, eng, x.raw_data())},
                                             {DNNL_ARG_WEIGHTS, prepared.packed},
                                             {DNNL_ARG_DST, dnnl::memory(dst_d, eng, y.raw_data())}};
  if (bias.defined()) args.emplace(DNNL_ARG_BIAS, dnnl::memory({{1, out}, dt::f32, tag::ab}, eng, bias.raw_data()));
  Tensor res;
  if (epilogue == Epilogue::AddResidual) {
    res = residual.contiguous();
    if (res.shape() != Shape{M, out} || res.dtype() != kFloat32)
      throw std::invalid_argument("FusedLinear: residual " + shape_str(residual.shape()) + " must be (" +
                                  std::to_string(M) + ", " + std::to_string(out) + ") float32");
    args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, dnnl::memory(dst_d, eng, res.raw_data()));
  }
  dnnl::stream& s = cpu::onednn_stream();
  prepared.prim.execute(s, args);
  s.wait();
  return y;
}

// ---- the encoder
bool FusedBertEncoder::applies(const nn::TransformerEncoder& encoder, const Tensor& x) {
  if (encoder.is_training() || autocast_enabled() || x.dim() != 3 || x.dtype() != kFloat32 || x.device() != kCPU)
    return false;
  if (grad_enabled()) {
    if (x.requires_grad()) return false;
    for (const Tensor& p : encoder.parameters())
      if (p.requires_grad()) return false;
  }
  for (const auto& m : *encoder.layers) {
    const auto l = std::dynamic_pointer_cast<nn::TransformerEncoderLayer>(m);
    if (!l) return false;
    const nn::TransformerLayerOptions& o = l->options;
    if (o.norm_first || !o.batch_first || o.packed_projections) return false;
    if (o.activation != nn::Activation::GELU && o.activation != nn::Activation::GELUTanh &&
        o.activation != nn::Activation::ReLU)
      return false;
    const nn::MultiheadAttention& a = *l->self_attn;
    if (!plain_linear(a.query) || !plain_linear(a.key) || !plain_linear(a.value) || !plain_linear(a.out_proj) ||
        !plain_linear(l->linear1) || !plain_linear(l->linear2))
      return false;
  }
  return true;
}

Tensor FusedBertEncoder::forward(const nn::TransformerEncoder& encoder, const Tensor& x_in, const Tensor& kpm) {
  NoGradGuard ng;
  using E_ = FusedLinear::Epilogue;
  const int64_t N = x_in.size(0), S = x_in.size(1), E = x_in.size(2), M = N * S;
  if (layers_.size() != encoder.layers->size()) layers_.resize(encoder.layers->size());
  Tensor x = x_in.contiguous().view({M, E});
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto l = encoder.layers->at<nn::TransformerEncoderLayer>(int64_t(i));
    const nn::MultiheadAttention& a = *l->self_attn;
    Layer& f = layers_[i];
    const E_ act = l->options.activation == nn::Activation::GELU       ? E_::Gelu
                   : l->options.activation == nn::Activation::GELUTanh ? E_::GeluTanh
                                                                       : E_::Relu;
    // one [q | k | v] GEMM: (M, 3E), the heads of each read in place by the attention kernel
    const Tensor qkv = f.qkv.forward({a.query->weight, a.key->weight, a.value->weight},
                                     {a.query->bias, a.key->bias, a.value->bias}, E_::None, x)
                           .view({N, S, 3 * E});
    Tensor ctx = packed_scaled_dot_product_attention({qkv, 0}, {qkv, E}, {qkv, 2 * E}, a.options.num_heads, E,
                                                     {.key_padding_mask = kpm});  // (N, H, S, D) over (N, S, H, D)
    ctx = ctx.permute({0, 2, 1, 3}).reshape({M, E});
    const Tensor h = l->norm1->forward(f.out.forward({a.out_proj->weight}, {a.out_proj->bias}, E_::AddResidual, ctx, x));
    const Tensor ff = f.ff1.forward({l->linear1->weight}, {l->linear1->bias}, act, h);  // (M, dim_feedforward)
    x = l->norm2->forward(f.ff2.forward({l->linear2->weight}, {l->linear2->bias}, E_::AddResidual, ff, h));
  }
  if (encoder.norm) x = encoder.norm->forward(x);
  return x.view({N, S, E});
}

}  // namespace attn::models
