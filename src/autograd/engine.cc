// src/autograd/engine.cc — grad mode, graph recording and the backward pass.
#include <atomic>
#include <queue>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "attn/autograd.h"
#include "attn/ops.h"

namespace attn {

namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_sequence_nr{0};
}  // namespace

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool on) { g_grad_enabled = on; }

namespace autograd {

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}
bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  TensorImpl* impl = leaf.impl();
  auto acc = impl->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<Node>();
    acc->name = "AccumulateGrad";
    acc->leaf = leaf.impl_ptr();
    acc->output_shape = leaf.shape();
    acc->output_dtype = leaf.dtype();
    acc->sequence_nr = g_sequence_nr++;
    impl->grad_accumulator = acc;
  }
  return acc;
}

void record(const char* name, Tensor& out, const std::vector<Tensor>& inputs, BackwardFn backward,
            const std::vector<Tensor>& saved) {
  if (!needs_grad(inputs)) return;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    if (!t.defined() || !t.requires_grad()) node->next.push_back(nullptr);
    else if (t.grad_fn()) node->next.push_back(t.grad_fn());
    else node->next.push_back(grad_accumulator(t));
  }
  node->backward = std::move(backward);
  node->saved.reserve(saved.size());
  for (const Tensor& s : saved)
    if (s.defined()) node->saved.emplace_back(s.impl()->storage, s.version());
  node->output_shape = out.shape();
  node->output_dtype = out.dtype();
  node->sequence_nr = g_sequence_nr++;
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  int64_t lead = grad.dim() - int64_t(shape.size());
  if (lead < 0) throw std::invalid_argument("sum_to: gradient " + shape_str(grad.shape()) + " has fewer dims than " + shape_str(shape));
  Shape dims;
  for (int64_t d = 0; d < grad.dim(); ++d) {
    if (d < lead) dims.push_back(d);
    else if (shape[d - lead] == 1 && grad.size(d) != 1) dims.push_back(d);
    else if (shape[d - lead] != grad.size(d))
      throw std::invalid_argument("sum_to: cannot reduce " + shape_str(grad.shape()) + " to " + shape_str(shape));
  }
  Tensor r = dims.empty() ? grad : sum(grad, dims, /*keepdim=*/true);
  return r.reshape(shape);
}

namespace {

// Whether nothing but this handle can see t's values: then a sum may be written into it.
bool sole_owner(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.impl()->storage.use_count() == 1 && t.is_contiguous() &&
         t.storage_offset() == 0 && !t.requires_grad();
}

// Sums the gradients that reach one node (a tensor used several times: residual streams, a tied
// embedding). Into the pending buffer itself when the engine alone holds it (float32 / float64, which
// the backend adds in place; the same values as add(): buffer + g), which spares a fresh buffer the
// size of the gradient per extra use: 16 MB twice per step for the translator's tied embedding.
void accumulate(std::unordered_map<Node*, Tensor>& buffers, Node* node, const Tensor& g) {
  auto it = buffers.find(node);
  if (it == buffers.end() || !it->second.defined()) buffers[node] = g;
  else if (sole_owner(it->second) && (g.dtype() == kFloat32 || g.dtype() == kFloat64) &&
           it->second.dtype() == g.dtype() && it->second.shape() == g.shape() && !g.is_same(it->second))
    it->second.add_(g);
  else it->second = add(it->second, g);
}

void accumulate_into_leaf(Node& node, Tensor g) {
  auto leaf = node.leaf.lock();
  if (!leaf) return;  // the leaf no longer exists
  for (auto& hook : leaf->hooks) {
    Tensor r = hook(g);
    if (r.defined()) g = r;
  }
  Tensor leaf_t(leaf);
  if (g.dtype() != leaf->dtype) g = g.to(leaf->dtype);
  if (!leaf->grad) {
    // take ownership when nobody else can see this buffer; else copy
    bool owned = g.impl_ptr().use_count() <= 2 && g.impl()->storage.use_count() == 1 && g.is_contiguous() &&
                 g.storage_offset() == 0 && !g.requires_grad();
    leaf->grad = owned ? g.impl_ptr() : g.clone().impl_ptr();
  } else {
    Tensor(leaf->grad).add_(g);
  }
  for (auto& hook : leaf->post_accumulate_grad_hooks) hook(leaf_t);
}

void check_saved_versions(const Node& node) {
  for (size_t i = 0; i < node.saved.size(); ++i) {
    const auto& [storage, version] = node.saved[i];
    uint64_t now = storage->version.load();
    if (now != version)
      throw std::runtime_error("autograd: a tensor saved by '" + node.name + "' for backward (saved tensor " +
                               std::to_string(i) + ") was modified by an in-place operation: its version is " +
                               std::to_string(now) + ", expected " + std::to_string(version) +
                               ". Clone it before modifying it, or modify it after backward().");
  }
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  if (roots.size() != grads.size()) throw std::invalid_argument("backward: roots and grads differ in number");
  std::unordered_map<Node*, Tensor> buffers;
  std::vector<std::shared_ptr<Node>> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    if (!r.requires_grad())
      throw std::runtime_error("backward: tensor " + std::to_string(i) + " " + shape_str(r.shape()) +
                               " does not require grad and has no grad_fn");
    std::shared_ptr<Node> n = r.grad_fn() ? r.grad_fn() : grad_accumulator(r);
    if (grads[i].shape() != r.shape())
      throw std::invalid_argument("backward: gradient shape " + shape_str(grads[i].shape()) +
                                  " does not match the tensor's shape " + shape_str(r.shape()));
    accumulate(buffers, n.get(), grads[i].dtype() == r.dtype() ? grads[i] : grads[i].to(r.dtype()));
    root_nodes.push_back(n);
  }
  // dependencies: how many edges point at each node
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& n : root_nodes)
    if (seen.insert(n.get()).second) stack.push_back(n.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& next : n->next) {
      if (!next) continue;
      deps[next.get()]++;
      if (seen.insert(next.get()).second) stack.push_back(next.get());
    }
  }
  auto later_first = [](Node* a, Node* b) { return a->sequence_nr < b->sequence_nr; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(later_first)> ready(later_first);
  for (auto& n : root_nodes)
    if (deps[n.get()] == 0) {
      deps[n.get()] = -1;  // queued
      ready.push(n.get());
    }

  NoGradGuard no_grad;
  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    Tensor g;
    if (auto it = buffers.find(node); it != buffers.end()) {
      g = std::move(it->second);
      buffers.erase(it);
    }
    if (g.defined()) {
      for (auto& hook : node->pre_hooks) {
        Tensor r = hook(g);
        if (r.defined()) g = r;
      }
      if (node->leaf.lock() || node->name == "AccumulateGrad") {
        accumulate_into_leaf(*node, g);
      } else {
        if (node->released || !node->backward)
          throw std::runtime_error("autograd: trying to backward through the graph a second time (node '" +
                                   node->name + "'); the saved tensors were freed after the first backward. "
                                   "Pass retain_graph=true to the first backward.");
        check_saved_versions(*node);
        std::vector<Tensor> grads_in = node->backward(g);
        if (grads_in.size() != node->next.size())
          throw std::logic_error("autograd: '" + node->name + "' returned " + std::to_string(grads_in.size()) +
                                 " gradients for " + std::to_string(node->next.size()) + " inputs");
        for (size_t i = 0; i < grads_in.size(); ++i) {
          Node* next = node->next[i].get();
          if (!next || !grads_in[i].defined()) continue;
          if (grads_in[i].shape() != next->output_shape)
            throw std::logic_error("autograd: '" + node->name + "' produced a gradient of shape " +
                                   shape_str(grads_in[i].shape()) + " for input " + std::to_string(i) +
                                   " of shape " + shape_str(next->output_shape));
          // a gradient has its tensor's dtype (as in PyTorch): mixed precision (attn::Autocast) feeds a
          // bf16 op's backward from a float32 consumer and the other way round
          if (grads_in[i].dtype() != next->output_dtype) grads_in[i] = grads_in[i].to(next->output_dtype);
          accumulate(buffers, next, grads_in[i]);
        }
        if (!retain_graph) {
          node->backward = nullptr;
          node->saved.clear();
          node->released = true;
        }
      }
    }
    for (auto& next : node->next) {
      if (!next) continue;
      if (--deps[next.get()] == 0) {
        deps[next.get()] = -1;
        ready.push(next.get());
      }
    }
  }
}

}  // namespace autograd
}  // namespace attn
