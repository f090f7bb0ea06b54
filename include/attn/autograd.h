// attn/autograd.h — the define-by-run tape.
//
// Each op computes its result and attaches its backward right there (see src/ops/*.cc):
//
//   Tensor out = ...;                                      // forward
//   autograd::record("mul", out, {a, b},                   // inputs
//       [a, b](const Tensor& g) -> std::vector<Tensor> {   // d(loss)/d(out) -> d(loss)/d(inputs)
//         return {mul(g, b), mul(g, a)};
//       }, /*saved=*/{a, b});                              // checked for in-place modification
//
//   { attn::NoGradGuard ng; ... }                          // nothing recorded inside
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attn/tensor.h"

namespace attn {

bool grad_enabled();
void set_grad_enabled(bool on);

struct NoGradGuard {
  bool prev;
  NoGradGuard() : prev(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;
};

struct EnableGradGuard {
  bool prev;
  EnableGradGuard() : prev(grad_enabled()) { set_grad_enabled(true); }
  ~EnableGradGuard() { set_grad_enabled(prev); }
};

// Gradients w.r.t. each input, in input order; an undefined Tensor means "no gradient".
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node {
  std::string name;                              // op name, for error messages
  std::vector<std::shared_ptr<Node>> next;       // one per input; null where no grad flows
  BackwardFn backward;                           // empty once released (retain_graph=false)
  std::vector<std::pair<std::shared_ptr<Storage>, uint64_t>> saved;  // storage, version at save
  std::vector<TensorHook> pre_hooks;             // hooks registered on this node's output tensor
  std::weak_ptr<TensorImpl> leaf;                // set on AccumulateGrad nodes
  Shape output_shape;                            // to check gradient shapes
  DType output_dtype = kFloat32;
  uint64_t sequence_nr = 0;                      // creation order; later nodes run first
  bool released = false;
};

namespace autograd {

// True when grad mode is on and any input requires grad.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Makes `out` the output of a new node with the given inputs, if needs_grad(inputs).
// `saved` lists the tensors the backward reads, so in-place changes to them are detected.
void record(const char* name, Tensor& out, const std::vector<Tensor>& inputs, BackwardFn backward,
            const std::vector<Tensor>& saved = {});

// The same with the inputs and saved tensors as braced lists and the backward as any callable (what the
// ops pass): where no gradient is needed (inference, NoGradGuard) it returns before building a vector or
// a std::function, which cost a few heap allocations on every op.
template <typename F>
void record(const char* name, Tensor& out, std::initializer_list<Tensor> inputs, F&& backward,
            std::initializer_list<Tensor> saved = {}) {
  if (!grad_enabled()) return;
  bool any = false;
  for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (any) record(name, out, std::vector<Tensor>(inputs), BackwardFn(std::forward<F>(backward)), std::vector<Tensor>(saved));
}

// The AccumulateGrad node of a leaf that requires grad (created on first use).
std::shared_ptr<Node> grad_accumulator(const Tensor& leaf);

// Runs backward from several roots at once.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph = false);

// Reduces a broadcast gradient back to `shape` (sums over broadcast dims).
Tensor sum_to(const Tensor& grad, const Shape& shape);

}  // namespace autograd
}  // namespace attn
