// tests/strict_backend.cc — the strict test device (strict_backend.h): an mmap'd arena that is
// PROT_NONE outside backend calls; every entry opens it, runs the CPU kernel, and closes it again.
// With set_strict_composites(true) the fused entries run the Backend base class's composites instead
// of the CPU's fused kernels (the composites then face the same op table).
#include "strict_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <new>

#include "backend/backend.h"

namespace attn_test {

namespace {

using namespace attn::backend;  // Backend, TensorRef, the op enums and argument structs
namespace backend = attn::backend;
using attn::DeviceType;

// One reserved region; blocks are carved first-fit (lowest address) from freed ranges, else from the
// top. [base, base + mapped) has been handed out at least once; only that part is ever mprotect'ed.
class Arena {
 public:
  static constexpr size_t kReserve = size_t(64) << 30;  // address space only (MAP_NORESERVE)
  static constexpr size_t kAlign = 64;

  Arena() {
    void* p = mmap(nullptr, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("strict backend: mmap of the arena");
      std::abort();
    }
    base_ = static_cast<char*>(p);
    page_ = size_t(sysconf(_SC_PAGESIZE));
  }

  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    if (depth_++ == 0) protect(0, mapped_, PROT_READ | PROT_WRITE);
  }
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--depth_ == 0) protect(0, mapped_, PROT_NONE);
  }
  bool is_open() {
    std::lock_guard<std::mutex> lock(mu_);
    return depth_ > 0;
  }

  void* allocate(size_t n) {
    n = (std::max<size_t>(n, 1) + kAlign - 1) / kAlign * kAlign;
    std::lock_guard<std::mutex> lock(mu_);
    in_use_ += n;
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < n) continue;
      const size_t off = it->first, len = it->second;
      free_.erase(it);
      if (len > n) free_.emplace(off + n, len - n);
      return base_ + off;
    }
    if (top_ + n > kReserve) throw std::bad_alloc();
    const size_t off = top_;
    top_ += n;
    if (top_ > mapped_) {  // newly used pages: readable now if a call is running
      const size_t grown = (top_ + page_ - 1) / page_ * page_;
      if (depth_ > 0) protect(mapped_, grown - mapped_, PROT_READ | PROT_WRITE);
      mapped_ = grown;
    }
    return base_ + off;
  }

  void deallocate(void* p, size_t n) {
    if (!p) return;
    n = (std::max<size_t>(n, 1) + kAlign - 1) / kAlign * kAlign;
    std::lock_guard<std::mutex> lock(mu_);
    in_use_ -= n;
    size_t off = size_t(static_cast<char*>(p) - base_), len = n;
    auto next = free_.lower_bound(off);
    if (next != free_.end() && next->first == off + len) {  // merge with the following free range
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {  // and with the preceding one
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        off = prev->first;
        len += prev->second;
        free_.erase(prev);
      }
    }
    if (off + len == top_)
      top_ = off;  // give the tail back to the top
    else
      free_.emplace(off, len);
  }

  size_t in_use() {
    std::lock_guard<std::mutex> lock(mu_);
    return in_use_;
  }

 private:
  void protect(size_t off, size_t len, int prot) {
    if (len == 0) return;
    if (mprotect(base_ + off, len, prot) != 0) {
      std::perror("strict backend: mprotect");
      std::abort();
    }
  }

  char* base_ = nullptr;
  size_t page_ = 4096, mapped_ = 0, top_ = 0, in_use_ = 0;
  int depth_ = 0;
  std::mutex mu_;
  std::map<size_t, size_t> free_;  // offset -> length
};

Arena& arena() {
  static Arena* a = new Arena();  // never destroyed: tensors may outlive static destruction
  return *a;
}

// Keeps the arena readable for the duration of one backend call (calls nest).
struct Open {
  Open() { arena().open(); }
  ~Open() { arena().close(); }
  Open(const Open&) = delete;
  Open& operator=(const Open&) = delete;
};

bool use_composites = false;

class StrictBackend final : public Backend {
 public:
  DeviceType type() const override { return DeviceType::Strict; }
  void* allocate(size_t nbytes) override { return arena().allocate(nbytes); }
  void deallocate(void* p, size_t nbytes) override { arena().deallocate(p, nbytes); }
  void synchronize() override {}
  void check_index(const TensorRef& index, int64_t n, bool has_allowed, int64_t allowed,
                   const TensorRef& status) override {
    Open open;
    cpu().check_index(index, n, has_allowed, allowed, status);
  }

  void copy(const TensorRef& src, const TensorRef& dst) override {
    Open open;
    cpu().copy(src, dst);
  }
  void fill(const TensorRef& dst, double value) override {
    Open open;
    cpu().fill(dst, value);
  }
  void copy_to_host(const TensorRef& src, void* host_dst) override {
    Open open;
    cpu().copy_to_host(src, host_dst);
  }
  void copy_from_host(const void* host_src, const TensorRef& dst) override {
    Open open;
    cpu().copy_from_host(host_src, dst);
  }
  void unary(UnaryOp op, const TensorRef& x, const TensorRef& out, double alpha) override {
    Open open;
    cpu().unary(op, x, out, alpha);
  }
  void unary_backward(UnaryGradOp op, const TensorRef& x_or_y, const TensorRef& grad_out, const TensorRef& grad_in,
                      double alpha) override {
    Open open;
    cpu().unary_backward(op, x_or_y, grad_out, grad_in, alpha);
  }
  void binary(BinaryOp op, const TensorRef& a, const TensorRef& b, const TensorRef& out) override {
    Open open;
    cpu().binary(op, a, b, out);
  }
  void where(const TensorRef& cond, const TensorRef& a, const TensorRef& b, const TensorRef& out) override {
    Open open;
    cpu().where(cond, a, b, out);
  }
  void reduce(ReduceOp op, const TensorRef& x, const TensorRef& out) override {
    Open open;
    cpu().reduce(op, x, out);
  }
  void arg_reduce(ReduceOp op, const TensorRef& x, int64_t dim, const TensorRef& values,
                  const TensorRef& indices) override {
    Open open;
    cpu().arg_reduce(op, x, dim, values, indices);
  }
  void topk(const TensorRef& x, int64_t dim, int64_t k, bool largest, const TensorRef& values,
            const TensorRef& indices) override {
    Open open;
    cpu().topk(x, dim, k, largest, values, indices);
  }
  void gemm(const GemmArgs& args) override {
    Open open;
    cpu().gemm(args);
  }
  void softmax(const TensorRef& x, const TensorRef& y, bool log) override {
    Open open;
    if (use_composites) return Backend::softmax(x, y, log);
    cpu().softmax(x, y, log);
  }
  void softmax_backward(const TensorRef& y, const TensorRef& grad_y, const TensorRef& grad_x, bool log) override {
    Open open;
    if (use_composites) return Backend::softmax_backward(y, grad_y, grad_x, log);
    cpu().softmax_backward(y, grad_y, grad_x, log);
  }
  void layer_norm(const TensorRef& x, const TensorRef& weight, const TensorRef& bias, double eps, const TensorRef& y,
                  const TensorRef& mean, const TensorRef& rstd) override {
    Open open;
    cpu().layer_norm(x, weight, bias, eps, y, mean, rstd);
  }
  void layer_norm_backward(const TensorRef& grad_y, const TensorRef& x, const TensorRef& weight, const TensorRef& mean,
                           const TensorRef& rstd, const TensorRef& grad_x, const TensorRef& grad_weight,
                           const TensorRef& grad_bias) override {
    Open open;
    cpu().layer_norm_backward(grad_y, x, weight, mean, rstd, grad_x, grad_weight, grad_bias);
  }
  void cross_entropy(const TensorRef& x, const TensorRef& target, const TensorRef& weight, int64_t ignore_index,
                     double label_smoothing, const TensorRef& loss) override {
    Open open;
    if (use_composites) return Backend::cross_entropy(x, target, weight, ignore_index, label_smoothing, loss);
    cpu().cross_entropy(x, target, weight, ignore_index, label_smoothing, loss);
  }
  void cross_entropy_backward(const TensorRef& x, const TensorRef& target, const TensorRef& weight,
                              int64_t ignore_index, double label_smoothing, const TensorRef& grad_loss,
                              const TensorRef& grad_x) override {
    Open open;
    if (use_composites)
      return Backend::cross_entropy_backward(x, target, weight, ignore_index, label_smoothing, grad_loss, grad_x);
    cpu().cross_entropy_backward(x, target, weight, ignore_index, label_smoothing, grad_loss, grad_x);
  }
  void sdpa_forward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v, const TensorRef& out,
                    const TensorRef& logsumexp) override {
    Open open;
    if (use_composites) return Backend::sdpa_forward(a, q, k, v, out, logsumexp);
    cpu().sdpa_forward(a, q, k, v, out, logsumexp);
  }
  void sdpa_backward(const SdpaArgs& a, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                     const TensorRef& out, const TensorRef& logsumexp, const TensorRef& grad_out,
                     const TensorRef& grad_q, const TensorRef& grad_k, const TensorRef& grad_v) override {
    Open open;
    if (use_composites) return Backend::sdpa_backward(a, q, k, v, out, logsumexp, grad_out, grad_q, grad_k, grad_v);
    cpu().sdpa_backward(a, q, k, v, out, logsumexp, grad_out, grad_q, grad_k, grad_v);
  }
  void gather(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) override {
    Open open;
    cpu().gather(x, dim, index, out);
  }
  void scatter_add(const TensorRef& out, int64_t dim, const TensorRef& index, const TensorRef& src) override {
    Open open;
    cpu().scatter_add(out, dim, index, src);
  }
  void index_select(const TensorRef& x, int64_t dim, const TensorRef& index, const TensorRef& out) override {
    Open open;
    cpu().index_select(x, dim, index, out);
  }
  void index_add(const TensorRef& out, int64_t dim, const TensorRef& index, const TensorRef& src) override {
    Open open;
    cpu().index_add(out, dim, index, src);
  }
  void conv2d(const Conv2dArgs& a, const TensorRef& x, const TensorRef& weight, const TensorRef& bias,
              const TensorRef& y) override {
    Open open;
    cpu().conv2d(a, x, weight, bias, y);
  }
  void conv2d_backward(const Conv2dArgs& a, const TensorRef& x, const TensorRef& weight, const TensorRef& grad_y,
                       const TensorRef& grad_x, const TensorRef& grad_weight, const TensorRef& grad_bias) override {
    Open open;
    cpu().conv2d_backward(a, x, weight, grad_y, grad_x, grad_weight, grad_bias);
  }
  void max_pool2d(const Pool2dArgs& a, const TensorRef& x, const TensorRef& y, const TensorRef& indices) override {
    Open open;
    cpu().max_pool2d(a, x, y, indices);
  }
  void max_pool2d_backward(const Pool2dArgs& a, const TensorRef& grad_y, const TensorRef& indices,
                           const TensorRef& grad_x) override {
    Open open;
    cpu().max_pool2d_backward(a, grad_y, indices, grad_x);
  }
  void avg_pool2d(const Pool2dArgs& a, const TensorRef& x, const TensorRef& y) override {
    Open open;
    cpu().avg_pool2d(a, x, y);
  }
  void avg_pool2d_backward(const Pool2dArgs& a, const TensorRef& grad_y, const TensorRef& grad_x) override {
    Open open;
    cpu().avg_pool2d_backward(a, grad_y, grad_x);
  }
  void uniform(const TensorRef& out, double lo, double hi, uint64_t seed, uint64_t counter) override {
    Open open;
    cpu().uniform(out, lo, hi, seed, counter);
  }
  void normal(const TensorRef& out, double mean, double std, uint64_t seed, uint64_t counter) override {
    Open open;
    cpu().normal(out, mean, std, seed, counter);
  }
  void dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
               const TensorRef& keep) override {
    Open open;
    if (use_composites) return Backend::dropout(x, p, seed, counter, out, keep);
    cpu().dropout(x, p, seed, counter, out, keep);
  }
  void dropout_backward(const TensorRef& grad_out, const TensorRef& keep, double p, const TensorRef& grad_x) override {
    Open open;
    if (use_composites) return Backend::dropout_backward(grad_out, keep, p, grad_x);
    cpu().dropout_backward(grad_out, keep, p, grad_x);
  }
  void relu_dropout(const TensorRef& x, double p, uint64_t seed, uint64_t counter, const TensorRef& out,
                    const TensorRef& keep, const TensorRef& pass) override {
    Open open;
    if (use_composites) return Backend::relu_dropout(x, p, seed, counter, out, keep, pass);
    cpu().relu_dropout(x, p, seed, counter, out, keep, pass);
  }
  void relu_dropout_backward(const TensorRef& grad_out, const TensorRef& keep, const TensorRef& pass, double p,
                             const TensorRef& grad_x) override {
    Open open;
    if (use_composites) return Backend::relu_dropout_backward(grad_out, keep, pass, p, grad_x);
    cpu().relu_dropout_backward(grad_out, keep, pass, p, grad_x);
  }
  void adam_step(const AdamArgs& a, const TensorRef& param, const TensorRef& grad, const TensorRef& exp_avg,
                 const TensorRef& exp_avg_sq, const TensorRef& max_exp_avg_sq) override {
    Open open;
    if (use_composites) return Backend::adam_step(a, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq);
    cpu().adam_step(a, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq);
  }

 private:
  static Backend& cpu() { return backend::backend_for(attn::kCPU); }
};

const bool registered = [] {
  static StrictBackend* strict = new StrictBackend();  // never destroyed, like the arena
  backend::register_backend(DeviceType::Strict, strict);
  return true;
}();

}  // namespace

size_t strict_arena_bytes_in_use() {
  (void)registered;
  return arena().in_use();
}
bool strict_arena_open() { return arena().is_open(); }
void set_strict_composites(bool on) { use_composites = on; }

}  // namespace attn_test
