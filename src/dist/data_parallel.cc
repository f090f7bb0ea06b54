// src/dist/data_parallel.cc — gradient buckets reduced during backward, rank 0's state sent to every
// rank, and the same-configuration check (attn/dist/data_parallel.h).
#include "attn/dist/data_parallel.h"

#include <chrono>
#include <cstring>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace attn::dist {

using json = nlohmann::json;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Bucket {
  std::vector<size_t> params;    // indices into State::params, reverse registration order
  std::vector<int64_t> offsets;  // element offset of each in `flat`
  Tensor flat;                   // (elements) the bucket's gradients, reduced in place
  size_t ready = 0;              // params whose gradient is final in this step
  std::unique_ptr<Request> request;
};

}  // namespace

struct GradientReducer::State {
  std::shared_ptr<Communicator> comm;
  std::vector<Tensor> params;
  GradientReducerOptions o;
  std::vector<Bucket> buckets;
  std::vector<size_t> bucket_of;   // param index -> bucket index (SIZE_MAX: not reduced)
  std::vector<char> param_ready;   // this step
  bool armed = false;
  size_t next_launch = 0;          // buckets start in index order on every rank
  GradientReducerStats stats;

  // The gradient of param i is final for this step (a hook during the armed backward).
  void on_grad(size_t i) {
    if (!armed || bucket_of[i] == SIZE_MAX || param_ready[i]) return;
    param_ready[i] = 1;
    Bucket& b = buckets[bucket_of[i]];
    if (++b.ready == b.params.size() && o.overlap) {
      while (next_launch < buckets.size() && buckets[next_launch].ready == buckets[next_launch].params.size()) {
        launch(buckets[next_launch++]);
        stats.backward_launched += 1;
      }
    }
    comm->progress();  // moves the buckets in flight on while backward goes on
  }

  void launch(Bucket& b) {
    for (size_t k = 0; k < b.params.size(); ++k) {
      const Tensor& p = params[b.params[k]];
      Tensor slot = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.shape());
      Tensor g = p.grad();
      if (g.defined()) slot.copy_(g);
      else slot.zero_();  // no gradient here: the others' still count, averaged with zeros
    }
    b.request = comm->all_reduce_async(b.flat, ReduceOp::Average, o.deterministic);
  }

  void write_back(Bucket& b) {
    for (size_t k = 0; k < b.params.size(); ++k) {
      Tensor& p = params[b.params[k]];
      Tensor slot = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.shape());
      Tensor g = p.grad();
      if (g.defined() && g.dtype() == slot.dtype() && g.is_contiguous()) g.copy_(slot);
      else p.set_grad(slot.clone().to(p.dtype()));
    }
  }
};

GradientReducer::GradientReducer(std::shared_ptr<Communicator> comm, std::vector<Tensor> params, GradientReducerOptions o)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.comm = std::move(comm);
  s.params = std::move(params);
  s.o = o;
  s.bucket_of.assign(s.params.size(), SIZE_MAX);
  s.param_ready.assign(s.params.size(), 0);
  std::vector<std::pair<std::vector<size_t>, DType>> groups;
  size_t bytes = 0;
  for (size_t i = s.params.size(); i-- > 0;) {
    const Tensor& p = s.params[i];
    if (!p.requires_grad() || !p.is_leaf()) continue;
    DType dt = p.dtype() == kBFloat16 ? kBFloat16 : kFloat32;  // gradients are reduced in their own precision
    if (groups.empty() || groups.back().second != dt || (bytes + p.nbytes() > o.bucket_bytes && bytes > 0)) {
      groups.push_back({{}, dt});
      bytes = 0;
    }
    groups.back().first.push_back(i);
    bytes += p.nbytes();
  }
  for (auto& [members, dt] : groups) {
    Bucket b;
    int64_t n = 0;
    for (size_t i : members) {
      b.params.push_back(i);
      b.offsets.push_back(n);
      n += s.params[i].numel();
      s.bucket_of[i] = s.buckets.size();
    }
    b.flat = zeros({n}, {.dtype = dt});
    s.stats.bytes += double(b.flat.nbytes());
    s.buckets.push_back(std::move(b));
  }
  std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < s.params.size(); ++i)
    if (s.bucket_of[i] != SIZE_MAX)
      s.params[i].register_post_accumulate_grad_hook([weak, i](Tensor&) {
        if (auto st = weak.lock()) st->on_grad(i);
      });
}

GradientReducer::~GradientReducer() {
  for (Bucket& b : state_->buckets)
    if (b.request) b.request->wait();  // MPI may still write into the buffers
}

void GradientReducer::arm() { state_->armed = true; }

void GradientReducer::finish() {
  State& s = *state_;
  double t0 = now_s();
  while (s.next_launch < s.buckets.size()) {
    s.launch(s.buckets[s.next_launch++]);
    s.stats.finish_launched += 1;
  }
  for (Bucket& b : s.buckets) {
    b.request->wait();
    b.request.reset();
    s.write_back(b);
    b.ready = 0;
  }
  s.stats.wait_s += now_s() - t0;
  s.stats.steps += 1;
  std::fill(s.param_ready.begin(), s.param_ready.end(), 0);
  s.armed = false;
  s.next_launch = 0;
}

size_t GradientReducer::num_buckets() const { return state_->buckets.size(); }
const GradientReducerStats& GradientReducer::stats() const { return state_->stats; }

// ------------------------------------------------------------------------------ state broadcast

namespace {

void describe(json& list, std::string& data, const std::map<std::string, Tensor>& tensors) {
  for (const auto& [key, t] : tensors) {
    Tensor c = t.to(kCPU).contiguous();
    list.push_back({key, int(c.dtype()), c.shape()});
    data.append(static_cast<const char*>(c.raw_data()), c.nbytes());
  }
}

size_t rebuild(const json& list, const std::string& data, size_t pos, std::map<std::string, Tensor>& out) {
  out.clear();
  for (const json& e : list) {
    Tensor t = empty(e.at(2).get<Shape>(), {.dtype = DType(e.at(1).get<int>())});
    if (pos + t.nbytes() > data.size()) throw std::runtime_error("dist::broadcast_checkpoint: truncated data");
    std::memcpy(t.raw_data(), data.data() + pos, t.nbytes());
    pos += t.nbytes();
    out[e.at(0).get<std::string>()] = t;
  }
  return pos;
}

}  // namespace

void broadcast_checkpoint(Communicator& comm, io::Checkpoint& ck, int root) {
  if (comm.size() == 1) return;
  std::string header, data;
  if (comm.rank() == root) {
    json h = {{"model", json::array()}, {"optimizer", json::array()}, {"step", ck.step},
              {"rng", {ck.rng.seed, ck.rng.offset}}, {"extra", ck.extra_json}};
    describe(h["model"], data, ck.model);
    describe(h["optimizer"], data, ck.optimizer);
    header = h.dump();
  }
  comm.broadcast(header, root);
  comm.broadcast(data, root);
  if (comm.rank() == root) return;
  json h = json::parse(header);
  size_t pos = rebuild(h.at("model"), data, 0, ck.model);
  rebuild(h.at("optimizer"), data, pos, ck.optimizer);
  ck.step = h.at("step").get<int64_t>();
  ck.rng = {h.at("rng").at(0).get<uint64_t>(), h.at("rng").at(1).get<uint64_t>()};
  ck.extra_json = h.at("extra").get<std::string>();
}

// ------------------------------------------------------------------------------ same everywhere

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

void check_same_on_all_ranks(Communicator& comm, std::vector<std::pair<std::string, std::string>> parts) {
  // Identical binaries agree on this; two builds of the library, even of the same sources, do not.
  parts.insert(parts.begin(), {"attn build", std::string(__DATE__ " " __TIME__ " ") + __VERSION__});
  std::string problems;
  for (const auto& [name, text] : parts) {
    std::vector<uint64_t> all = comm.all_gather(fnv1a(text));
    for (size_t r = 1; r < all.size(); ++r)
      if (all[r] != all[0])
        problems += (problems.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " has another " +
                    name + " than rank 0";
  }
  if (!problems.empty())
    throw std::runtime_error("data-parallel training refused: " + problems +
                             " (every rank must run the same attn binary with the same options, model and data)");
}

void rank0_first(const std::function<void()>& fn) {
  std::shared_ptr<Communicator> comm = world();
  if (comm->rank() != 0) comm->barrier();
  fn();
  if (comm->rank() == 0) comm->barrier();
}

}  // namespace attn::dist
