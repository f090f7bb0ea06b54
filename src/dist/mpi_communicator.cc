// src/dist/mpi_communicator.cc — the MPI transport of attn/dist/communicator.h (built with ATTN_MPI).
//
// Non-blocking collectives (MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier, MPI_Iallgather) waited on with a
// deadline, so that a rank that stops answering ends the job with a message instead of a hang. bf16
// buffers are summed by a user MPI_Op in fp32. MPI runs in MPI_THREAD_FUNNELED mode: only the thread
// that created the communicator calls MPI (OpenMP threads never do).
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <unistd.h>

#include "attn/dist/communicator.h"
#include "dist/buffer_check.h"

namespace attn::dist {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

extern "C" void sum_bf16(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const BFloat16*>(in);
  auto* b = static_cast<BFloat16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = BFloat16(float(a[i]) + float(b[i]));
}

MPI_Datatype mpi_type(DType t) {
  return t == kFloat32 ? MPI_FLOAT : t == kFloat64 ? MPI_DOUBLE : MPI_UINT16_T;
}

int checked_count(const Tensor& t) {
  if (t.numel() > int64_t(1) << 30)
    throw std::invalid_argument("dist: a buffer of " + std::to_string(t.numel()) +
                                " elements is too large for one MPI call; split it");
  return int(t.numel());
}

// dst[i] (op)= sum of the ranks' slices in rank order, then / n for Average; in fp32 for bf16 (one rounding).
template <typename T, typename Acc>
void ordered_sum(T* dst, const T* gathered, int64_t count, int n, ReduceOp op) {
  for (int64_t i = 0; i < count; ++i) {
    Acc s = Acc(gathered[i]);
    for (int r = 1; r < n; ++r) s += Acc(gathered[int64_t(r) * count + i]);
    if (op == ReduceOp::Average) s /= Acc(n);
    dst[i] = T(s);
  }
}

template <typename T, typename Acc>
void divide(T* p, int64_t count, int n) {
  for (int64_t i = 0; i < count; ++i) p[i] = T(Acc(p[i]) / Acc(n));
}

class MpiCommunicator;

class MpiRequest final : public Request {
 public:
  MpiRequest(MpiCommunicator& comm, Tensor t, ReduceOp op, bool deterministic, const char* what);
  ~MpiRequest() override {
    if (!done_) wait();
  }
  bool test() override;
  void wait() override;
  MPI_Request* handle() { return &req_; }
  std::vector<char>& gathered() { return gathered_; }

 private:
  void complete();  // after MPI finished: the ordered sum, or the division for Average

  MpiCommunicator& comm_;
  Tensor t_;  // keeps the buffer alive while MPI writes it
  ReduceOp op_;
  bool deterministic_;
  const char* what_;
  MPI_Request req_ = MPI_REQUEST_NULL;
  std::vector<char> gathered_;  // deterministic mode: every rank's buffer
  bool done_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_init_ = true;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Op_create(&sum_bf16, /*commute=*/1, &bf16_sum_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Op_free(&bf16_sum_);
    MPI_Comm_free(&comm_);
    if (owns_init_) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  std::unique_ptr<Request> all_reduce_async(Tensor t, ReduceOp op, bool deterministic) override {
    check_buffer(t, "all_reduce");
    const int count = checked_count(t);
    auto r = std::make_unique<MpiRequest>(*this, t, op, deterministic, "all_reduce");
    if (deterministic) {
      r->gathered().resize(t.nbytes() * size_t(size_));
      MPI_Iallgather(t.raw_data(), count, mpi_type(t.dtype()), r->gathered().data(), count, mpi_type(t.dtype()),
                     comm_, r->handle());
    } else {
      MPI_Op mop = t.dtype() == kBFloat16 ? bf16_sum_ : MPI_SUM;
      MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), count, mpi_type(t.dtype()), mop, comm_, r->handle());
    }
    return r;
  }

  void broadcast(Tensor& t, int root) override {
    check_buffer(t, "broadcast");
    check_root(root, size_);
    MPI_Request req;
    MPI_Ibcast(t.raw_data(), checked_count(t), mpi_type(t.dtype()), root, comm_, &req);
    wait_for(req, "broadcast");
  }

  void broadcast(std::string& bytes, int root) override {
    check_root(root, size_);
    uint64_t n = bytes.size();
    MPI_Request req;
    MPI_Ibcast(&n, 1, MPI_UINT64_T, root, comm_, &req);
    wait_for(req, "broadcast");
    bytes.resize(n);
    for (uint64_t off = 0; off < n; off += uint64_t(1) << 30) {  // MPI counts are ints
      int chunk = int(std::min<uint64_t>(n - off, uint64_t(1) << 30));
      MPI_Ibcast(bytes.data() + off, chunk, MPI_CHAR, root, comm_, &req);
      wait_for(req, "broadcast");
    }
  }

  std::vector<uint64_t> all_gather(uint64_t value) override {
    std::vector<uint64_t> out(size_t(size_), 0);
    MPI_Request req;
    MPI_Iallgather(&value, 1, MPI_UINT64_T, out.data(), 1, MPI_UINT64_T, comm_, &req);
    wait_for(req, "all_gather");
    return out;
  }

  void barrier() override {
    MPI_Request req;
    MPI_Ibarrier(comm_, &req);
    wait_for(req, "barrier");
  }

  void progress() override {
    int flag = 0;  // any MPI call runs the progress engine; a probe is the cheapest
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, MPI_STATUS_IGNORE);
  }

  [[noreturn]] void abort(const std::string& message, int code = 1) override {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    std::fprintf(stderr, "attn: rank %d of %d (host %s, pid %d): %s; aborting the job\n", rank_, size_, host,
                 int(::getpid()), message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

  // Polls `req` until done; past the deadline the whole job ends with a message.
  void wait_for(MPI_Request& req, const char* what) {
    const double start = now_s(), deadline = start + timeout_s_;
    for (uint64_t spins = 1;; ++spins) {
      int flag = 0;
      MPI_Test(&req, &flag, MPI_STATUS_IGNORE);  // spins like MPI_Wait: each call moves the transfer on
      if (flag) return;
      if (spins % 1024 != 0) continue;
      const double now = now_s();
      if (now > deadline)
        abort(std::string(what) + " got no answer from the other ranks in " + std::to_string(int(timeout_s_)) +
              " s (ATTN_DIST_TIMEOUT): a rank died, hangs or took another path through the code");
      // Past a second the peers are busy elsewhere (evaluating, checkpointing): leave the core to them.
      // Not sooner: on a loaded host a yield costs a time slice per message fragment.
      if (now - start > 1.0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

 private:
  friend class MpiRequest;
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Op bf16_sum_ = MPI_OP_NULL;
  int rank_ = 0, size_ = 1;
  bool owns_init_ = false;
};

MpiRequest::MpiRequest(MpiCommunicator& comm, Tensor t, ReduceOp op, bool deterministic, const char* what)
    : comm_(comm), t_(std::move(t)), op_(op), deterministic_(deterministic), what_(what) {}

bool MpiRequest::test() {
  if (done_) return true;
  int flag = 0;
  MPI_Test(&req_, &flag, MPI_STATUS_IGNORE);
  if (flag) complete();
  return done_;
}

void MpiRequest::wait() {
  if (done_) return;
  comm_.wait_for(req_, what_);
  complete();
}

void MpiRequest::complete() {
  done_ = true;
  const int n = comm_.size();
  const int64_t count = t_.numel();
  void* p = t_.raw_data();
  if (deterministic_) {
    const void* g = gathered_.data();
    if (t_.dtype() == kFloat32) ordered_sum<float, float>(static_cast<float*>(p), static_cast<const float*>(g), count, n, op_);
    else if (t_.dtype() == kFloat64) ordered_sum<double, double>(static_cast<double*>(p), static_cast<const double*>(g), count, n, op_);
    else ordered_sum<BFloat16, float>(static_cast<BFloat16*>(p), static_cast<const BFloat16*>(g), count, n, op_);
    gathered_ = {};
  } else if (op_ == ReduceOp::Average && n > 1) {
    if (t_.dtype() == kFloat32) divide<float, float>(static_cast<float*>(p), count, n);
    else if (t_.dtype() == kFloat64) divide<double, double>(static_cast<double*>(p), count, n);
    else divide<BFloat16, float>(static_cast<BFloat16*>(p), count, n);
  }
  t_.bump_version();
  t_ = Tensor();
}

}  // namespace

std::shared_ptr<Communicator> make_mpi_communicator() { return std::make_shared<MpiCommunicator>(); }

}  // namespace attn::dist
