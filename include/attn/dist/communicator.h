// attn/dist/communicator.h — collective operations among the processes of a data-parallel job.
//
//   std::shared_ptr<attn::dist::Communicator> comm = attn::dist::world();  // MPI under mpirun, else 1 process
//   attn::Tensor g = attn::ones({1024});                                    // contiguous fp32 / bf16 / fp64, CPU
//   comm->all_reduce(g, attn::dist::ReduceOp::Average);                     // every rank now holds the mean
//   std::unique_ptr<attn::dist::Request> r = comm->all_reduce_async(g, attn::dist::ReduceOp::Sum);
//   ... compute while it runs; comm->progress() now and then moves it on ...
//   r->wait();                                                              // g holds the sum
//   comm->broadcast(g, /*root=*/0);
//   comm->barrier();
//
// A narrow interface so that another transport (NCCL for the CUDA backend) can slot in beside MPI: the
// Trainer and the gradient reducer see only this. No MPI header is included here.
//
// Deterministic reduction (all_reduce_async(.., deterministic = true)): every rank gathers all ranks'
// buffers and adds them in rank order 0, 1, .., N-1 (then divides by N for Average), so the result is
// bit-identical on every rank and in every run whatever algorithm the transport picks. It moves N times
// the bytes of a ring all-reduce: meant for checks and reproducible runs, not for speed.
//
// Every wait has a deadline (timeout_s(), from $ATTN_DIST_TIMEOUT, default 300 s): a rank that stops
// answering makes the others abort the whole job with a message naming the operation and this rank,
// instead of hanging. A rank that dies is reported by mpirun itself (Open MPI aborts the job).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attn/tensor.h"

namespace attn::dist {

enum class ReduceOp { Sum, Average };

// A collective in flight. wait() returns once the buffer holds the result (or aborts the job at the
// deadline); test() says whether it is done, without blocking. Destroying an unfinished request waits.
class Request {
 public:
  virtual ~Request() = default;
  virtual bool test() = 0;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "mpi", "local"

  // In place on a contiguous CPU tensor of fp32, bf16 (added in fp32, rounded once per addition) or fp64.
  virtual std::unique_ptr<Request> all_reduce_async(Tensor t, ReduceOp op, bool deterministic = false) = 0;
  void all_reduce(Tensor& t, ReduceOp op, bool deterministic = false) { all_reduce_async(t, op, deterministic)->wait(); }
  virtual void broadcast(Tensor& t, int root) = 0;        // t: contiguous, same shape and dtype on every rank
  virtual void broadcast(std::string& bytes, int root) = 0;  // any length; resized on the receivers
  virtual std::vector<uint64_t> all_gather(uint64_t value) = 0;  // value of rank r at [r]
  virtual void barrier() = 0;
  // Lets requests in flight advance (MPI moves data only inside MPI calls); cheap, call it often.
  virtual void progress() {}
  // Ends every process of the job now, after printing `message` with this rank on stderr.
  [[noreturn]] virtual void abort(const std::string& message, int code = 1) = 0;
  double timeout_s() const { return timeout_s_; }
  void set_timeout_s(double s) { timeout_s_ = s; }

 protected:
  double timeout_s_ = 300;
};

// True when this process was started by an MPI launcher (mpirun, srun with PMI/PMIx) of more than one rank.
bool launched_by_mpi();
// The job's communicator, created once: MPI when launched_by_mpi() and attn was built with MPI (ATTN_MPI),
// else a single-process one. Throws when launched by mpirun but built without MPI.
std::shared_ptr<Communicator> world();
// A communicator of one process (rank 0 of 1): every collective is a no-op (Average divides by 1).
std::shared_ptr<Communicator> local_communicator();
// Whether this build has the MPI transport.
bool mpi_available();

}  // namespace attn::dist
