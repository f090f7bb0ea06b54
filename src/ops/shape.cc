// src/ops/shape.cc — joining (cat, stack) and splitting (split, chunk) along a dim.
//
//   Tensor qkv = attn::cat({q, k, v}, -1);                 // 3 × (B, T, C) -> (B, T, 3C)
//   Tensor batch = attn::stack({a, b}, 0);                 // 2 × (3, 4) -> (2, 3, 4)
//   auto parts = attn::split(qkv, 768, -1);                // views: 3 × (B, T, 768)
//   auto heads = attn::chunk(x, 4, 1);                     // PyTorch's chunk sizes: ceil(n / 4) each
#include <string>

#include "ops/op_utils.h"

namespace attn {

using autograd::record;

namespace {
// PyTorch skips legacy empty tensors of shape (0,) in cat.
bool skipped_in_cat(const Tensor& t) { return t.dim() == 1 && t.size(0) == 0; }
}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) ops::fail("cat: expected a non-empty list of tensors");
  const Tensor* first = nullptr;
  DType dt = tensors[0].defined() ? tensors[0].dtype() : kFloat32;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (!t.defined()) ops::fail("cat: tensor at position " + std::to_string(i) + " is undefined");
    if (t.dim() == 0)
      ops::fail("cat: zero-dimensional tensor (at position " + std::to_string(i) + ") cannot be concatenated");
    dt = ops::promote_types(dt, t.dtype());
    if (!first && !skipped_in_cat(t)) first = &t;
  }
  if (!first) {  // all of shape (0,)
    NoGradGuard ng;
    return ops::empty_out({0}, dt, tensors[0].device());
  }
  dim = wrap_dim(dim, first->dim());
  Shape shape = first->shape();
  int64_t total = 0;
  size_t first_pos = size_t(first - tensors.data());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (skipped_in_cat(t) && first->dim() != 1) continue;
    bool ok = t.dim() == first->dim();
    for (int64_t d = 0; ok && d < t.dim(); ++d) ok = d == dim || t.size(d) == first->size(d);
    if (!ok)
      ops::fail("cat: sizes of tensors must match except in dimension " + std::to_string(dim) + "; got " +
                shape_str(first->shape()) + " at position " + std::to_string(first_pos) + " and " +
                shape_str(t.shape()) + " at position " + std::to_string(i));
    ops::check_same_device(*first, t, "cat");
    total += t.size(dim);
  }
  shape[dim] = total;
  Tensor out = ops::empty_out(shape, dt, first->device());
  std::vector<int64_t> offsets(tensors.size(), -1), sizes(tensors.size(), 0);
  std::vector<DType> dtypes(tensors.size());
  {
    NoGradGuard ng;
    int64_t off = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      dtypes[i] = t.dtype();
      if (skipped_in_cat(t) && first->dim() != 1) continue;
      offsets[i] = off;
      sizes[i] = t.size(dim);
      if (t.numel() > 0) ops::be(out).copy(ops::ref(t), ops::ref(out.narrow(dim, off, sizes[i])));
      off += sizes[i];
    }
  }
  record("cat", out, tensors, [offsets, sizes, dtypes, dim](const Tensor& g) -> std::vector<Tensor> {
    std::vector<Tensor> grads(offsets.size());
    for (size_t i = 0; i < offsets.size(); ++i) {
      if (offsets[i] < 0 || !is_floating(dtypes[i])) continue;
      grads[i] = g.narrow(dim, offsets[i], sizes[i]).to(dtypes[i]);
    }
    return grads;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) ops::fail("stack: expected a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    ops::check_defined(tensors[i], "stack", "tensors");
    if (tensors[i].shape() != tensors[0].shape())
      ops::fail("stack: expects each tensor to be equal size, but got " + shape_str(tensors[0].shape()) +
                " at entry 0 and " + shape_str(tensors[i].shape()) + " at entry " + std::to_string(i));
  }
  dim = wrap_dim(dim, tensors[0].dim() + 1);
  std::vector<Tensor> parts;
  parts.reserve(tensors.size());
  for (const Tensor& t : tensors) parts.push_back(t.unsqueeze(dim));
  return cat(parts, dim);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  ops::check_defined(x, "split", "input");
  if (x.dim() == 0) ops::fail("split: cannot split a 0-d tensor");
  dim = wrap_dim(dim, x.dim());
  const int64_t n = x.size(dim);
  if (split_size < 0 || (split_size == 0 && n != 0))
    ops::fail("split: split_size must be positive, got " + std::to_string(split_size) + " for dim " +
              std::to_string(dim) + " of " + shape_str(x.shape()));
  const int64_t parts = split_size == 0 ? 1 : std::max<int64_t>((n + split_size - 1) / split_size, 1);
  std::vector<Tensor> out;
  out.reserve(size_t(parts));
  for (int64_t i = 0; i < parts; ++i) {
    int64_t start = i * split_size;
    out.push_back(x.narrow(dim, start, std::min(split_size, n - start)));
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  ops::check_defined(x, "split", "input");
  if (x.dim() == 0) ops::fail("split: cannot split a 0-d tensor");
  dim = wrap_dim(dim, x.dim());
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s < 0) ops::fail("split: split sizes must be non-negative, got " + shape_str(Shape(sizes)));
    total += s;
  }
  if (total != x.size(dim))
    ops::fail("split: split sizes " + shape_str(Shape(sizes)) + " sum to " + std::to_string(total) +
              " but dim " + std::to_string(dim) + " of " + shape_str(x.shape()) + " has size " +
              std::to_string(x.size(dim)));
  std::vector<Tensor> out;
  out.reserve(sizes.size());
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(dim, start, s));
    start += s;
  }
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  ops::check_defined(x, "chunk", "input");
  if (chunks <= 0) ops::fail("chunk: number of chunks must be positive, got " + std::to_string(chunks));
  if (x.dim() == 0) ops::fail("chunk: cannot chunk a 0-d tensor");
  dim = wrap_dim(dim, x.dim());
  const int64_t n = x.size(dim);
  const int64_t split_size = (n + chunks - 1) / chunks;
  if (split_size == 0 && n == 0) return split(x, std::vector<int64_t>(size_t(chunks), 0), dim);
  return split(x, split_size, dim);
}

}  // namespace attn
