// src/backend/backend.h — the one narrow interface between ops and devices.
//
// Ops (src/ops/*.cc) do shapes, dtypes, broadcasting and autograd; a Backend only runs kernels on
// memory it owns. Each device has one folder with the same file names (backend/cpu/*.cc, later
// backend/cuda/*.cu). Kernels take TensorRef: a device pointer plus shape and element strides; no code
// outside a backend reads or writes through it (host data moves by copy_to_host / copy_from_host).
//
// Two kinds of entries:
//  - REQUIRED primitives (pure virtual): memory, host copies, check_index, elementwise, reductions, gemm,
//    layer_norm, indexing, conv/pool, random fills. A new backend implements these and runs everything.
//  - FUSED ops (virtual with a COMPOSITE DEFAULT written from the primitives in backend/composite.cc):
//    softmax, cross_entropy, sdpa, dropout, relu_dropout, adam_step (forward and backward). A backend
//    overrides one when a profile says the fused kernel pays (the CPU backend overrides them all). The
//    composites draw the same Philox numbers as the documented fused kernels: same dropout keep bits.
//
//   Backend& be = backend_for(t.device());
//   be.unary(UnaryOp::Exp, ref(x), ref(out), 0.0);
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "attn/dtype.h"
#include "attn/tensor.h"

namespace attn::backend {

struct TensorRef {
  void* data = nullptr;  // element 0
  DType dtype = kFloat32;
  Shape shape;
  Shape strides;  // in elements; 0 for broadcast dims
  int64_t numel() const { return numel_of(shape); }
  bool contiguous() const;
};
TensorRef ref(const Tensor& t);

enum class UnaryOp {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Sin, Cos, Square, Sign, Sigmoid, Tanh, Relu,
  LeakyRelu,   // alpha = negative slope
  GeluErf, GeluTanh, LogicalNot,
  PowScalar,   // x ** alpha
  ClampMin,    // max(x, alpha)
  ClampMax,    // min(x, alpha)
  MulScalar,   // x * alpha
  AddScalar,   // x + alpha
};
// Gradient of an elementwise function: gin = f'(x or y) * gout.
enum class UnaryGradOp {
  Sigmoid,     // uses y
  Tanh,        // uses y
  Relu,        // uses y (y > 0)
  LeakyRelu,   // uses x, alpha = slope
  GeluErf,     // uses x
  GeluTanh,    // uses x
};
enum class BinaryOp { Add, Sub, Mul, Div, Pow, Maximum, Minimum, Eq, Ne, Lt, Le, Gt, Ge, LogicalAnd, LogicalOr };
enum class ReduceOp { Sum, Mean, Max, Min };
// The ops Backend::binary_mixed takes.
inline bool is_mixed_binary_op(BinaryOp op) {
  return op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul || op == BinaryOp::Div ||
         op == BinaryOp::Maximum || op == BinaryOp::Minimum;
}

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;  // C(m, n) = alpha * op(A)(m, k) @ op(B)(k, n) + beta * C
  double alpha = 1.0, beta = 0.0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* c = nullptr;
  int64_t ldc = 0;
  int64_t batch = 1;  // strided batches
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  DType dtype = kFloat32;  // of A, B and C: kFloat32, kFloat64 or kBFloat16 (row-major)
  // kBFloat16 only: C (and the bias) are float32 instead of bfloat16. bf16 products accumulate in
  // float32 either way; a bf16 C is rounded to nearest even once, at the end.
  bool c_float32 = false;
  // Optional (n) row of C's dtype added to every row of C: C = alpha op(A) @ op(B) + bias. Single products
  // (batch 1) with beta == 0 only. A Linear's bias: the matmul primitive adds it as it writes C.
  const void* bias = nullptr;
};

struct Conv2dArgs {
  int64_t n, c_in, h, w, c_out, kh, kw, out_h, out_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
  DType dtype = kFloat32;
};
struct Pool2dArgs {
  int64_t n, c, h, w, out_h, out_w, kh, kw, stride_h, stride_w, pad_h, pad_w;
  bool count_include_pad = true;
  DType dtype = kFloat32;
};

struct AdamArgs {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled_weight_decay;  // AdamW
  bool amsgrad;
  int64_t step;  // after increment (1 for the first step)
};

// Fused scaled-dot-product attention (owner: sdpa; ops/attention.cc, cpu/attention.cc). Shapes:
// q (N, H, L, D), k (N, H, S, D), v (N, H, S, Dv), out (N, H, L, Dv): any strides, dtype float32 or
// float64 (all four alike), or bfloat16 in the forward (float32 math, the output rounded once).
// logsumexp (N, H, L) contiguous, in the compute dtype (sdpa_compute_dtype): m + log(sum exp(s - m))
// per row, +inf for a row whose keys are all masked (its output is 0 and its gradients are 0).
// attn_mask: data null, or broadcast to (N, H, L, S) by strides (0 on broadcast dims); bool (true =
// take part, PyTorch's SDPA) or the compute dtype (added to the scores). key_padding_mask: data null, or
// (N, S) by strides; bool (true = ignore that key) or the compute dtype (added). Dropout keeps score (n, h, i, j)
// iff lane j%4 of philox4x32(seed, offset + ((n*H + h)*L + i)*ceil(S/4) + j/4), as a unit float, is
// < 1 - dropout_p (cpu::sdpa_keep); kept probabilities are scaled by 1/(1 - dropout_p).
struct SdpaArgs {
  int64_t n = 0, h = 0, l = 0, s = 0, d = 0, dv = 0;
  double scale = 1.0;
  bool is_causal = false;  // key j > query i is masked (top-left aligned, as torch.tril(ones(L, S)))
  double dropout_p = 0.0;
  uint64_t seed = 0, offset = 0;
  TensorRef attn_mask, key_padding_mask;
};
// The dtype attention computes in for q's dtype: float32 for bf16, else q's own.
inline DType sdpa_compute_dtype(DType q) { return q == kBFloat16 ? kFloat32 : q; }
// Bytes of dropout's packed keep bits for n elements: whole groups of 64 elements (8 bytes each).
inline int64_t dropout_keep_bytes(int64_t n) { return (n + 63) / 64 * 8; }

// Philox blocks an SDPA dropout draws (the generator's reservation).
inline uint64_t sdpa_dropout_blocks(const SdpaArgs& a) {
  return uint64_t(a.n * a.h * a.l) * uint64_t((a.s + 3) / 4);
}

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceType type() const = 0;

  // memory
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* p, size_t nbytes) = 0;
  // Returns memory kept for reuse (freed blocks a caching allocator holds) to the system; memory in use
  // is untouched. By default there is none.
  virtual void empty_cache() {}
  virtual void copy(const TensorRef& src, const TensorRef& dst) = 0;  // same shape; converts dtype
  virtual void fill(const TensorRef& dst, double value) = 0;
  // The only ways between host memory and this device's memory: src (any strides, this device) to
  // host_dst (src.numel() elements of src.dtype, row-major), and host_src (dst.numel() elements of
  // dst.dtype, row-major) into dst (any strides, this device). Both return when the host side is done.
  virtual void copy_to_host(const TensorRef& src, void* host_dst) = 0;
  virtual void copy_from_host(const void* host_src, const TensorRef& dst) = 0;
  // Waits for every queued kernel (a device with a stream); the CPU runs kernels synchronously.
  virtual void synchronize() {}
  // A hint that `refs` are read soon by a kernel that splits their leading dims evenly over its
  // threads (a decoding step's attention over its key/value caches): a device may start moving them
  // closer while the kernels before run. No result depends on it; by default it is ignored.
  virtual void prefetch_hint(const std::vector<TensorRef>& refs) { (void)refs; }

  // Index validation inside a kernel: status (int64 (2), this device) = {flat position, value} of the
  // first index v (row-major order) with !(0 <= v < n) and v != allowed (when has_allowed), else {-1, 0}.
  // The op reads status once (one sync) and throws naming itself.
  virtual void check_index(const TensorRef& index, int64_t n, bool has_allowed, int64_t allowed,
                           const TensorRef& status) = 0;

  // elementwise; inputs already broadcast to out.shape (stride 0); out contiguous. unary and
  // unary_backward also take bf16 (all operands bf16 and contiguous): float32 math, one rounding to bf16
  virtual void unary(UnaryOp op, const TensorRef& x, const TensorRef& out, double alpha) = 0;
  virtual void unary_backward(UnaryGradOp op, const TensorRef& x_or_y, const TensorRef& grad_out,
                              const TensorRef& grad_in, double alpha) = 0;
  virtual void binary(BinaryOp op, const TensorRef& a, const TensorRef& b, const TensorRef& out) = 0;
  // out = a op b for is_mixed_binary_op ops on contiguous operands of out's shape, each of
  // a, b, out float32 or bf16 in any mix (autocast's residual adds and gradient sums): float32 math, a
  // bf16 out rounded once. The default widens copies and runs binary.
  virtual void binary_mixed(BinaryOp op, const TensorRef& a, const TensorRef& b, const TensorRef& out);
  virtual void where(const TensorRef& cond, const TensorRef& a, const TensorRef& b, const TensorRef& out) = 0;

  // reductions: out has x's rank with size 1 on reduced dims; out contiguous
  virtual void reduce(ReduceOp op, const TensorRef& x, const TensorRef& out) = 0;
  // values/indices: x's shape with size 1 at `dim`; indices int64
  virtual void arg_reduce(ReduceOp op, const TensorRef& x, int64_t dim, const TensorRef& values,
                          const TensorRef& indices) = 0;
  // the k best along dim, best first (ties: lower index; NaN above every number); values/indices
  // contiguous, x's shape with k at dim; indices int64
  virtual void topk(const TensorRef& x, int64_t dim, int64_t k, bool largest, const TensorRef& values,
                    const TensorRef& indices) = 0;

  // matrix multiply (row-major, strided batches)
  virtual void gemm(const GemmArgs& args) = 0;

  // rows = all dims but the last; x, y contiguous
  virtual void softmax(const TensorRef& x, const TensorRef& y, bool log);
  virtual void softmax_backward(const TensorRef& y, const TensorRef& grad_y, const TensorRef& grad_x,
                                bool log);
  // x: (rows, d) contiguous; weight/bias (d) or null data; mean/rstd: (rows) float32/64
  virtual void layer_norm(const TensorRef& x, const TensorRef& weight, const TensorRef& bias, double eps,
                          const TensorRef& y, const TensorRef& mean, const TensorRef& rstd) = 0;
  virtual void layer_norm_backward(const TensorRef& grad_y, const TensorRef& x, const TensorRef& weight,
                                   const TensorRef& mean, const TensorRef& rstd, const TensorRef& grad_x,
                                   const TensorRef& grad_weight, const TensorRef& grad_bias) = 0;
  // fused softmax cross-entropy (owner: nnops). x: (rows, C) contiguous float logits; target: (rows)
  // int64/int32 class indices, each in [0, C) or == ignore_index (checked by the ops layer); weight: (C)
  // or null data. loss (rows), dtype of x (float32 for bf16 x, whose math is float32 on the widened logits;
  // weight and grad_loss float32 then too, grad_x bf16, each value rounded once): with logp = log_softmax(x),
  // ε = label_smoothing,
  //   loss[r] = (1-ε)·(-w[t]·logp[t]) + ε/C·(-Σ_c w[c]·logp[c]),  0 where t == ignore_index.
  virtual void cross_entropy(const TensorRef& x, const TensorRef& target, const TensorRef& weight,
                             int64_t ignore_index, double label_smoothing, const TensorRef& loss);
  // grad_x[r, c] = grad_loss[r]·((1-ε)·w[t]·(p[c] - δ(c,t)) + ε/C·(W·p[c] - w[c])), p = softmax(x),
  // W = Σ_c w[c]; rows with t == ignore_index get 0. grad_loss: (rows), any stride (0 = broadcast).
  virtual void cross_entropy_backward(const TensorRef& x, const TensorRef& target, const TensorRef& weight,
                                      int64_t ignore_index, double label_smoothing, const TensorRef& grad_loss,
                                      const TensorRef& grad_x);

  // fused attention (SdpaArgs above). grad_q/k/v: contiguous, shapes of q/k/v, overwritten.
  virtual void sdpa_forward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                            const TensorRef& out, const TensorRef& logsumexp);
  virtual void sdpa_backward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                             const TensorRef& out, const TensorRef& logsumexp, const TensorRef& grad_out,
                             const TensorRef& grad_q, const TensorRef& grad_k, const TensorRef& grad_v);

  // indexing; index int64 (int32 accepted)
  virtual void gather(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) = 0;
  virtual void scatter_add(const TensorRef& out, int64_t dim, const TensorRef& index, const TensorRef& src) = 0;
  virtual void index_select(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) = 0;
  virtual void index_add(const TensorRef& out, int64_t dim, const TensorRef& index, const TensorRef& src) = 0;

  // convolution (NCHW, weight OIHW), all operands contiguous of a.dtype; bias / grad_bias may have
  // null data (no bias), grad_x / grad_weight null data when not needed
  virtual void conv2d(const Conv2dArgs& a, const TensorRef& x, const TensorRef& weight, const TensorRef& bias,
                      const TensorRef& y) = 0;
  virtual void conv2d_backward(const Conv2dArgs& a, const TensorRef& x, const TensorRef& weight,
                               const TensorRef& grad_y, const TensorRef& grad_x, const TensorRef& grad_weight,
                               const TensorRef& grad_bias) = 0;
  // pooling (contiguous NCHW); max pooling writes int64 argmax (flat h*w index within the plane) for the
  // backward
  virtual void max_pool2d(const Pool2dArgs& a, const TensorRef& x, const TensorRef& y, const TensorRef& indices) = 0;
  virtual void max_pool2d_backward(const Pool2dArgs& a, const TensorRef& grad_y, const TensorRef& indices,
                                   const TensorRef& grad_x) = 0;
  virtual void avg_pool2d(const Pool2dArgs& a, const TensorRef& x, const TensorRef& y) = 0;
  virtual void avg_pool2d_backward(const Pool2dArgs& a, const TensorRef& grad_y, const TensorRef& grad_x) = 0;

  // random: fills out (contiguous float) from Philox(seed, counter...)
  virtual void uniform(const TensorRef& out, double lo, double hi, uint64_t seed, uint64_t counter) = 0;
  virtual void normal(const TensorRef& out, double mean, double std, uint64_t seed, uint64_t counter) = 0;
  // Inverted dropout in one pass over contiguous x: u = the uniform(0, 1) draw `uniform` would make for
  // element i, keep_i = u < 1 - p, out = x * (keep_i ? 1 / (1 - p) : 0) (x, out: same dtype and shape;
  // bf16: float32 draws and product, the scale rounded to bf16 first, the product rounded once).
  // keep: uint8, contiguous, dropout_keep_bytes(n) bytes, bit i % 8 of byte i / 8 (0 past n).
  virtual void dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
                       const TensorRef& keep);
  // grad_x = grad_out * (keep_i ? 1 / (1 - p) : 0), the factor rounded to the dtype as in the forward.
  virtual void dropout_backward(const TensorRef& grad_out, const TensorRef& keep, double p,
                                const TensorRef& grad_x);
  // dropout(relu(x)) in one pass: the values and draws of dropout on relu(x) (ReLU keeps NaN), and pass
  // (keep's layout) bit i = !(relu(x_i) <= 0), ReLU's backward rule. The backward is the composite's:
  // grad_x = pass_i ? grad_out * (keep_i ? 1 / (1 - p) : 0) : 0.
  virtual void relu_dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
                            const TensorRef& keep, const TensorRef& pass);
  virtual void relu_dropout_backward(const TensorRef& grad_out, const TensorRef& keep, const TensorRef& pass,
                                     double p, const TensorRef& grad_x);

  // optimizers: update param, exp_avg, exp_avg_sq (and max_exp_avg_sq if amsgrad) in place
  virtual void adam_step(const AdamArgs& a, const TensorRef& param, const TensorRef& grad,
                         const TensorRef& exp_avg, const TensorRef& exp_avg_sq,
                         const TensorRef& max_exp_avg_sq);
};

Backend& backend_for(Device d);
// Makes `backend` (not owned; must outlive its use) the backend of a non-CPU device type, e.g. the test
// suite's strict backend; a null backend unregisters it.
void register_backend(DeviceType type, Backend* backend);

}  // namespace attn::backend
