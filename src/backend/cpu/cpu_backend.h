// src/backend/cpu/cpu_backend.h — the CPU implementation of backend::Backend.
// Fast kernels live in their own files (softmax.cc, layer_norm.cc, gemm.cc, conv.cc, …); this class
// routes to them. Generic strided loops here are also the fallback for non-contiguous operands.
#pragma once
#include <stdexcept>
#include <string>

#include "backend/backend.h"

namespace attn::cpu {

// The CpuBackend files' shared helpers: a ref's data as T*, and the error for a dtype a kernel lacks.
template <typename T> T* ptr(const backend::TensorRef& r) { return static_cast<T*>(r.data); }
[[noreturn]] inline void unsupported(const char* what, DType t) {
  throw std::invalid_argument(std::string(what) + ": dtype " + dtype_name(t) + " is not supported on cpu");
}

class CpuBackend final : public backend::Backend {
 public:
  using TensorRef = backend::TensorRef;
  DeviceType type() const override { return DeviceType::CPU; }
  void* allocate(size_t nbytes) override;
  void deallocate(void* p, size_t nbytes) override;
  void empty_cache() override;
  void copy(const TensorRef& src, const TensorRef& dst) override;
  void fill(const TensorRef& dst, double value) override;
  // The packed products prefetch the hinted bytes while they run (side_prefetch.h).
  void prefetch_hint(const std::vector<TensorRef>& refs) override;
  void copy_to_host(const TensorRef& src, void* host_dst) override;
  void copy_from_host(const void* host_src, const TensorRef& dst) override;
  void check_index(const TensorRef& index, int64_t n, bool has_allowed, int64_t allowed,
                   const TensorRef& status) override;
  void unary(backend::UnaryOp op, const TensorRef& x, const TensorRef& out, double alpha) override;
  void unary_backward(backend::UnaryGradOp op, const TensorRef& x_or_y, const TensorRef& grad_out,
                      const TensorRef& grad_in, double alpha) override;
  void binary(backend::BinaryOp op, const TensorRef& a, const TensorRef& b, const TensorRef& out) override;
  // bf16 operands widened in cache, block by block (elementwise_bf16.cc)
  void binary_mixed(backend::BinaryOp op, const TensorRef& a, const TensorRef& b, const TensorRef& out) override;
  void where(const TensorRef& cond, const TensorRef& a, const TensorRef& b, const TensorRef& out) override;
  void reduce(backend::ReduceOp op, const TensorRef& x, const TensorRef& out) override;
  void arg_reduce(backend::ReduceOp op, const TensorRef& x, int64_t dim, const TensorRef& values,
                  const TensorRef& indices) override;
  void topk(const TensorRef& x, int64_t dim, int64_t k, bool largest, const TensorRef& values,
            const TensorRef& indices) override;
  void gemm(const backend::GemmArgs& args) override;
  void softmax(const TensorRef& x, const TensorRef& y, bool log) override;
  void softmax_backward(const TensorRef& y, const TensorRef& grad_y, const TensorRef& grad_x, bool log) override;
  void layer_norm(const TensorRef& x, const TensorRef& weight, const TensorRef& bias, double eps,
                  const TensorRef& y, const TensorRef& mean, const TensorRef& rstd) override;
  void layer_norm_backward(const TensorRef& grad_y, const TensorRef& x, const TensorRef& weight,
                           const TensorRef& mean, const TensorRef& rstd, const TensorRef& grad_x,
                           const TensorRef& grad_weight, const TensorRef& grad_bias) override;
  // cross_entropy.cc
  void cross_entropy(const TensorRef& x, const TensorRef& target, const TensorRef& weight, int64_t ignore_index,
                     double label_smoothing, const TensorRef& loss) override;
  void cross_entropy_backward(const TensorRef& x, const TensorRef& target, const TensorRef& weight,
                              int64_t ignore_index, double label_smoothing, const TensorRef& grad_loss,
                              const TensorRef& grad_x) override;
  // attention.cc
  void sdpa_forward(const backend::SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                    const TensorRef& out, const TensorRef& logsumexp) override;
  void sdpa_backward(const backend::SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                     const TensorRef& out, const TensorRef& logsumexp, const TensorRef& grad_out,
                     const TensorRef& grad_q, const TensorRef& grad_k, const TensorRef& grad_v) override;
  void gather(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) override;
  void scatter_add(const TensorRef& out, int64_t dim, const TensorRef& index, const TensorRef& src) override;
  void index_select(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) override;
  void index_select_strided(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out);
  void index_add(const TensorRef& out, int64_t dim, const TensorRef& index, const TensorRef& src) override;
  void conv2d(const backend::Conv2dArgs& a, const TensorRef& x, const TensorRef& weight, const TensorRef& bias,
              const TensorRef& y) override;
  void conv2d_backward(const backend::Conv2dArgs& a, const TensorRef& x, const TensorRef& weight,
                       const TensorRef& grad_y, const TensorRef& grad_x, const TensorRef& grad_weight,
                       const TensorRef& grad_bias) override;
  void max_pool2d(const backend::Pool2dArgs& a, const TensorRef& x, const TensorRef& y,
                  const TensorRef& indices) override;
  void max_pool2d_backward(const backend::Pool2dArgs& a, const TensorRef& grad_y, const TensorRef& indices,
                           const TensorRef& grad_x) override;
  void avg_pool2d(const backend::Pool2dArgs& a, const TensorRef& x, const TensorRef& y) override;
  void avg_pool2d_backward(const backend::Pool2dArgs& a, const TensorRef& grad_y, const TensorRef& grad_x) override;
  void uniform(const TensorRef& out, double lo, double hi, uint64_t seed, uint64_t counter) override;
  void normal(const TensorRef& out, double mean, double std, uint64_t seed, uint64_t counter) override;
  void dropout_backward(const TensorRef& grad_out, const TensorRef& keep, double p, const TensorRef& grad_x) override;
  void relu_dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
                    const TensorRef& keep, const TensorRef& pass) override;
  void relu_dropout_backward(const TensorRef& grad_out, const TensorRef& keep, const TensorRef& pass, double p,
                             const TensorRef& grad_x) override;
  void dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
               const TensorRef& mask) override;
  void adam_step(const backend::AdamArgs& a, const TensorRef& param, const TensorRef& grad,
                 const TensorRef& exp_avg, const TensorRef& exp_avg_sq, const TensorRef& max_exp_avg_sq) override;
};

}  // namespace attn::cpu
