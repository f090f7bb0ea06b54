// src/core/tensor.cc — metadata, factories, printing and element access.
#include "attn/tensor.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "attn/autograd.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "ops/op_utils.h"

namespace attn {

std::string shape_str(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  if (s.size() == 1) r += ",";
  return r + ")";
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    st[d] = acc;
    acc *= std::max<int64_t>(shape[d], 1);
  }
  return st;
}

int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  return n;
}

int64_t wrap_dim(int64_t dim, int64_t ndim) {
  int64_t n = std::max<int64_t>(ndim, 1);
  if (dim < -n || dim >= n)
    throw std::out_of_range("dimension " + std::to_string(dim) + " is out of range for a tensor of " +
                            std::to_string(ndim) + " dims");
  return dim < 0 ? dim + n : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape r(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (x != y && x != 1 && y != 1)
      throw std::invalid_argument("shapes " + shape_str(a) + " and " + shape_str(b) + " cannot be broadcast");
    r[i] = x == 1 ? y : x;
  }
  return r;
}

// ---- metadata
int64_t Tensor::size(int64_t d) const { return impl_->shape[wrap_dim(d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return impl_->strides[wrap_dim(d, dim())]; }
int64_t Tensor::numel() const { return numel_of(impl_->shape); }
bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (impl_->shape[d] != 1 && impl_->strides[d] != expected) return false;
    expected *= impl_->shape[d];
  }
  return true;
}
void* Tensor::raw_data() const {
  return static_cast<char*>(impl_->storage->data) + impl_->offset * int64_t(element_size(impl_->dtype));
}

// Host reads go through the backend: convert on the device, then one copy_to_host (any strides).
template <typename T> std::vector<T> Tensor::to_vector() const {
  Tensor c = detach().to(dtype_of<T>::value);
  backend::Backend& be = ops::be(c);
  if constexpr (std::is_same_v<T, bool>) {  // std::vector<bool> has no data()
    std::unique_ptr<bool[]> buf(new bool[size_t(std::max<int64_t>(c.numel(), 1))]);
    be.copy_to_host(ops::ref(c), buf.get());
    return std::vector<bool>(buf.get(), buf.get() + c.numel());
  } else {
    std::vector<T> out(size_t(c.numel()));
    if (!out.empty()) be.copy_to_host(ops::ref(c), out.data());
    return out;
  }
}
template <typename T> T Tensor::item() const {
  if (numel() != 1)
    throw std::invalid_argument("item(): tensor of shape " + shape_str(shape()) + " has " +
                                std::to_string(numel()) + " elements, not 1");
  return to_vector<T>()[0];
}
double Tensor::item() const { return item<double>(); }

#define ATTN_INSTANTIATE(T)                                  \
  template std::vector<T> Tensor::to_vector<T>() const;      \
  template T Tensor::item<T>() const;
ATTN_INSTANTIATE(float)
ATTN_INSTANTIATE(double)
ATTN_INSTANTIATE(int32_t)
ATTN_INSTANTIATE(int64_t)
ATTN_INSTANTIATE(bool)
ATTN_INSTANTIATE(uint8_t)
ATTN_INSTANTIATE(BFloat16)
#undef ATTN_INSTANTIATE

std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype());
  if (requires_grad()) os << ", requires_grad";
  os << ")\n";
  std::vector<double> v = to_vector<double>();
  int64_t n = int64_t(v.size()), last = dim() ? size(-1) : 1;
  int64_t shown = std::min<int64_t>(n, 1000);
  os << "[";
  for (int64_t i = 0; i < shown; ++i) {
    if (i && last && i % last == 0) os << "\n ";
    os << v[i] << (i + 1 < n ? " " : "");
  }
  if (shown < n) os << "...";
  os << "]";
  return os.str();
}

// ---- factories
Tensor empty(Shape shape, TensorOptions o) {
  int64_t span = 1;  // product of max(dim, 1): bounds every stride, so none of them overflows
  for (int64_t v : shape) {
    if (v < 0) throw std::invalid_argument("empty: negative dimension in shape " + shape_str(shape));
    if (__builtin_mul_overflow(span, std::max<int64_t>(v, 1), &span) || span > (int64_t(1) << 48))
      throw std::invalid_argument("empty: shape " + shape_str(shape) + " is too large");
  }
  auto impl = std::make_shared<TensorImpl>();
  int64_t n = numel_of(shape);
  impl->storage = std::make_shared<Storage>(size_t(std::max<int64_t>(n, 1)) * element_size(o.dtype), o.device);
  impl->strides = contiguous_strides(shape);
  impl->shape = std::move(shape);
  impl->dtype = o.dtype;
  if (o.requires_grad) {
    if (!is_floating(o.dtype)) throw std::invalid_argument("only floating point tensors can require grad");
    impl->requires_grad = true;
  }
  return Tensor(std::move(impl));
}

Tensor full(Shape shape, double value, TensorOptions o) {
  bool rg = o.requires_grad;
  o.requires_grad = false;
  Tensor t = empty(std::move(shape), o);
  ops::be(t).fill(ops::ref(t), value);
  if (rg) t.requires_grad_(true);
  return t;
}
Tensor zeros(Shape shape, TensorOptions o) { return full(std::move(shape), 0.0, o); }
Tensor ones(Shape shape, TensorOptions o) { return full(std::move(shape), 1.0, o); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, {.dtype = t.dtype(), .device = t.device()}); }
Tensor scalar_tensor(double value, TensorOptions o) { return full({}, value, o); }

Tensor arange(double start, double end, double step, TensorOptions o) {
  if (step == 0) throw std::invalid_argument("arange: step must be nonzero");
  int64_t n = std::max<int64_t>(0, int64_t(std::ceil((end - start) / step)));
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + double(i) * step;
  return from_vector(v, {n}, {.dtype = kFloat64, .device = o.device}).to(o.dtype);
}
Tensor arange(int64_t end, TensorOptions o) { return arange(0.0, double(end), 1.0, o); }

Tensor rand(Shape shape, TensorOptions o) {
  bool rg = o.requires_grad;
  o.requires_grad = false;
  Tensor t = empty(std::move(shape), o);
  t.uniform_(0.0, 1.0);
  if (rg) t.requires_grad_(true);
  return t;
}
Tensor randn(Shape shape, TensorOptions o) {
  bool rg = o.requires_grad;
  o.requires_grad = false;
  Tensor t = empty(std::move(shape), o);
  t.normal_(0.0, 1.0);
  if (rg) t.requires_grad_(true);
  return t;
}
Tensor randint(int64_t low, int64_t high, Shape shape, TensorOptions o) {
  if (high <= low) throw std::invalid_argument("randint: high must be greater than low");
  Tensor u = rand(std::move(shape), {.dtype = kFloat64, .device = o.device});
  std::vector<double> v = u.to_vector<double>();
  std::vector<int64_t> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = low + std::min<int64_t>(high - low - 1, int64_t(v[i] * double(high - low)));
  return from_vector(r, u.shape(), {.dtype = kInt64, .device = o.device}).to(o.dtype);
}
Tensor randperm(int64_t n, TensorOptions o) {
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  Generator& g = default_generator();
  uint64_t seed = g.seed(), counter = g.reserve(uint64_t(n));
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates with Philox draws
    Philox4 r = philox4x32(seed, counter + uint64_t(i));
    uint64_t x = (uint64_t(r.v[0]) << 32) | r.v[1];
    std::swap(p[i], p[int64_t(x % uint64_t(i + 1))]);
  }
  return from_vector(p, {n}, {.dtype = kInt64, .device = o.device}).to(o.dtype);
}

void empty_cache(Device device) { backend::backend_for(device).empty_cache(); }

template <typename T> Tensor from_vector(const std::vector<T>& values, Shape shape, TensorOptions o) {
  if (numel_of(shape) != int64_t(values.size()))
    throw std::invalid_argument("from_vector: " + std::to_string(values.size()) + " values do not fill shape " +
                                shape_str(shape));
  // allocated on the target device, filled by one copy_from_host, then converted there
  Tensor t = empty(std::move(shape), {.dtype = dtype_of<T>::value, .device = o.device});
  if constexpr (std::is_same_v<T, bool>) {
    std::unique_ptr<bool[]> buf(new bool[std::max<size_t>(values.size(), 1)]);
    for (size_t i = 0; i < values.size(); ++i) buf[i] = values[i];
    if (!values.empty()) ops::be(t).copy_from_host(buf.get(), ops::ref(t));
  } else if (!values.empty()) {
    ops::be(t).copy_from_host(values.data(), ops::ref(t));
  }
  t = t.to(o.dtype);
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, Shape, TensorOptions);
template Tensor from_vector<double>(const std::vector<double>&, Shape, TensorOptions);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, Shape, TensorOptions);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, Shape, TensorOptions);
template Tensor from_vector<bool>(const std::vector<bool>&, Shape, TensorOptions);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, Shape, TensorOptions);
template Tensor from_vector<BFloat16>(const std::vector<BFloat16>&, Shape, TensorOptions);

Tensor from_blob(void* data, Shape shape, DType dtype, std::shared_ptr<void> owner) {
  auto impl = std::make_shared<TensorImpl>();
  size_t n = size_t(numel_of(shape)) * element_size(dtype);
  impl->storage = std::make_shared<Storage>(data, n, kCPU, owner ? std::move(owner) : std::shared_ptr<void>(data, [](void*) {}));
  impl->strides = contiguous_strides(shape);
  impl->shape = std::move(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// ---- autograd accessors
Tensor& Tensor::requires_grad_(bool value) {
  if (value && !is_floating(dtype()))
    throw std::invalid_argument(std::string("requires_grad_: only floating point tensors can require grad, not ") +
                                dtype_name(dtype()));
  if (!is_leaf()) {
    if (!value) throw std::invalid_argument("requires_grad_(false) on a non-leaf tensor; use detach()");
    return *this;
  }
  impl_->requires_grad = value;
  return *this;
}
Tensor Tensor::grad() const { return impl_->grad ? Tensor(impl_->grad) : Tensor(); }
void Tensor::set_grad(const Tensor& g) {
  if (g.defined() && g.shape() != shape())
    throw std::invalid_argument("set_grad: gradient shape " + shape_str(g.shape()) + " != tensor shape " +
                                shape_str(shape()));
  impl_->grad = g.defined() ? g.impl_ptr() : nullptr;
}
void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  Tensor g = gradient;
  if (!g.defined()) {
    if (numel() != 1)
      throw std::invalid_argument("backward: grad can be implicitly created only for single-element outputs; "
                                  "this tensor has shape " + shape_str(shape()));
    g = ones(shape(), {.dtype = dtype(), .device = device()});
  }
  autograd::backward({*this}, {g}, retain_graph);
}
Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}
void Tensor::register_hook(TensorHook hook) {
  if (!requires_grad()) throw std::invalid_argument("register_hook: tensor does not require grad");
  if (is_leaf()) impl_->hooks.push_back(std::move(hook));
  else impl_->grad_fn->pre_hooks.push_back(std::move(hook));
}
void Tensor::register_post_accumulate_grad_hook(PostAccumulateGradHook hook) {
  if (!is_leaf() || !requires_grad())
    throw std::invalid_argument("register_post_accumulate_grad_hook: only for leaves that require grad");
  impl_->post_accumulate_grad_hooks.push_back(std::move(hook));
}

// ---- method forms
Tensor Tensor::sum() const { return attn::sum(*this); }
Tensor Tensor::sum(Shape dims, bool keepdim) const { return attn::sum(*this, std::move(dims), keepdim); }
Tensor Tensor::mean() const { return attn::mean(*this); }
Tensor Tensor::mean(Shape dims, bool keepdim) const { return attn::mean(*this, std::move(dims), keepdim); }
Tensor Tensor::exp() const { return attn::exp(*this); }
Tensor Tensor::log() const { return attn::log(*this); }
Tensor Tensor::sqrt() const { return attn::sqrt(*this); }
Tensor Tensor::abs() const { return attn::abs(*this); }
Tensor Tensor::neg() const { return attn::neg(*this); }
Tensor Tensor::pow(double e) const { return attn::pow(*this, e); }
Tensor Tensor::relu() const { return attn::relu(*this); }
Tensor Tensor::sigmoid() const { return attn::sigmoid(*this); }
Tensor Tensor::tanh() const { return attn::tanh(*this); }
Tensor Tensor::softmax(int64_t d) const { return attn::softmax(*this, d); }
Tensor Tensor::log_softmax(int64_t d) const { return attn::log_softmax(*this, d); }
Tensor Tensor::matmul(const Tensor& o) const { return attn::matmul(*this, o); }
Tensor Tensor::argmax(int64_t d, bool keepdim) const { return attn::argmax(*this, d, keepdim); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator/(const Tensor& a, double b) { return div(a, b); }
Tensor operator+(double a, const Tensor& b) { return add(b, a); }
Tensor operator-(double a, const Tensor& b) { return add(neg(b), a); }
Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
Tensor operator/(double a, const Tensor& b) { return mul(pow(b, -1.0), a); }
Tensor operator-(const Tensor& a) { return neg(a); }

}  // namespace attn
