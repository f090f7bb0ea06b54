// attn/tensor.h — the N-d strided tensor with reverse-mode autograd.
//
//   #include <attn/attn.h>
//   attn::Tensor w = attn::randn({784, 10}, {.requires_grad = true});   // (784, 10)
//   attn::Tensor x = attn::rand({32, 784});                              // (B, 784)
//   attn::Tensor loss = attn::matmul(x, w).relu().mean();
//   loss.backward();                                                     // w.grad(): (784, 10)
//
// A Tensor is a cheap handle (shared_ptr) to a TensorImpl; copies share data. Views (view, reshape of
// contiguous data, permute, transpose, narrow, slice, select, expand, unsqueeze, squeeze) share storage.
#pragma once
#include <atomic>
#include <functional>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "attn/dtype.h"

namespace attn {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "(2, 3)"

// A block of device memory. Views share one Storage; `version` counts in-place writes to it, so
// autograd can detect a saved tensor that was modified after it was saved.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device = kCPU;
  std::atomic<uint64_t> version{0};
  std::shared_ptr<void> owner;  // set for external memory (e.g. an mmap'd file); else allocator-owned
  Storage(size_t nbytes, Device device);                          // allocates (64-byte aligned, cached)
  Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> owner);  // wraps external
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct Node;
class Tensor;
using TensorHook = std::function<Tensor(const Tensor&)>;   // may return an undefined Tensor: keep grad
using PostAccumulateGradHook = std::function<void(Tensor&)>;  // gets the leaf after .grad was updated

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype = kFloat32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;            // null for leaves
  std::shared_ptr<TensorImpl> grad;         // accumulated gradient (leaves)
  std::weak_ptr<Node> grad_accumulator;     // leaves: the AccumulateGrad node, created lazily
  std::vector<TensorHook> hooks;            // leaves: run on the incoming gradient before accumulation
  std::vector<PostAccumulateGradHook> post_accumulate_grad_hooks;
};

struct TensorOptions {
  DType dtype = kFloat32;
  Device device = kCPU;
  bool requires_grad = false;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // ---- metadata
  const Shape& shape() const { return impl_->shape; }
  const Shape& sizes() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int64_t dim() const { return int64_t(impl_->shape.size()); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const;
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device; }
  int64_t storage_offset() const { return impl_->offset; }
  bool is_contiguous() const;
  size_t nbytes() const { return size_t(numel()) * element_size(dtype()); }
  void* raw_data() const;  // pointer to element 0 (at storage_offset)
  template <typename T> T* data_ptr() const;  // checks the dtype
  template <typename T> T item() const;       // single-element tensor -> value (converts)
  double item() const;
  template <typename T> std::vector<T> to_vector() const;  // row-major copy (converts)
  std::string to_string() const;
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- views and copies (differentiable)
  Tensor view(Shape shape) const;     // one dim may be -1; needs compatible strides
  Tensor reshape(Shape shape) const;  // a view when possible, else a copy
  Tensor permute(Shape dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;  // 2-d transpose
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(Shape shape) const;  // -1 keeps a dim; size-1 dims broadcast (stride 0)
  Tensor expand_as(const Tensor& o) const { return expand(o.shape()); }
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;  // self if already contiguous
  Tensor clone() const;
  Tensor to(DType t) const;   // self if same dtype
  Tensor to(Device d) const;  // self if same device

  // ---- autograd
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& requires_grad_(bool value = true);  // leaves only
  Tensor grad() const;                        // undefined if none yet
  void set_grad(const Tensor& g);
  const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  // Seeds with ones for a single-element tensor; else `gradient` must have this shape.
  void backward(const Tensor& gradient = {}, bool retain_graph = false) const;
  Tensor detach() const;  // shares storage, no history
  void register_hook(TensorHook hook);
  void register_post_accumulate_grad_hook(PostAccumulateGradHook hook);  // leaves only
  uint64_t version() const { return impl_->storage->version.load(); }
  void bump_version() const { impl_->storage->version.fetch_add(1); }

  // ---- in place; not recorded by autograd: they throw if autograd would need to record them
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // broadcasts src, converts dtype
  Tensor& add_(const Tensor& o, double alpha = 1.0);
  Tensor& sub_(const Tensor& o) { return add_(o, -1.0); }
  Tensor& mul_(const Tensor& o);
  Tensor& mul_(double s);
  Tensor& div_(const Tensor& o);
  Tensor& clamp_(double lo, double hi);
  Tensor& masked_fill_(const Tensor& mask, double value);
  Tensor& uniform_(double lo = 0.0, double hi = 1.0);  // uses the global generator (attn/random.h)
  Tensor& normal_(double mean = 0.0, double std = 1.0);

  // ---- method forms of common ops (see attn/ops.h)
  Tensor sum() const;
  Tensor sum(Shape dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(Shape dims, bool keepdim = false) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor abs() const;
  Tensor neg() const;
  Tensor pow(double e) const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor matmul(const Tensor& o) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);
Tensor operator-(const Tensor& a);

// ---- factories
Tensor empty(Shape shape, TensorOptions o = {});
Tensor zeros(Shape shape, TensorOptions o = {});
Tensor ones(Shape shape, TensorOptions o = {});
Tensor full(Shape shape, double value, TensorOptions o = {});
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor scalar_tensor(double value, TensorOptions o = {});  // 0-d
Tensor arange(double start, double end, double step = 1.0, TensorOptions o = {.dtype = kInt64});
Tensor arange(int64_t end, TensorOptions o = {.dtype = kInt64});
Tensor rand(Shape shape, TensorOptions o = {});    // U[0, 1)
Tensor randn(Shape shape, TensorOptions o = {});   // N(0, 1)
Tensor randint(int64_t low, int64_t high, Shape shape, TensorOptions o = {.dtype = kInt64});
Tensor randperm(int64_t n, TensorOptions o = {.dtype = kInt64});

// Hands the memory a device's allocator keeps for reuse (blocks of freed tensors) back to the system, as
// torch.cuda.empty_cache does; tensors in use are untouched. Module::to(dtype) does it as it converts.
void empty_cache(Device device = kCPU);

template <typename T> Tensor from_vector(const std::vector<T>& values, Shape shape, TensorOptions o = {.dtype = dtype_of<T>::value});
// Wraps memory owned by `owner` without copying (e.g. an mmap'd checkpoint). Read it, don't write it.
Tensor from_blob(void* data, Shape shape, DType dtype, std::shared_ptr<void> owner);

Shape contiguous_strides(const Shape& shape);
int64_t numel_of(const Shape& shape);
int64_t wrap_dim(int64_t dim, int64_t ndim);  // -1 -> ndim-1; throws on out of range
Shape broadcast_shapes(const Shape& a, const Shape& b);  // throws naming both shapes

// ---- element access helpers (templates)
template <typename T> T* Tensor::data_ptr() const {
  if (dtype_of<T>::value != dtype())
    throw std::invalid_argument(std::string("data_ptr: tensor has dtype ") + dtype_name(dtype()) +
                                ", asked for " + dtype_name(dtype_of<T>::value));
  return static_cast<T*>(raw_data());
}

}  // namespace attn
