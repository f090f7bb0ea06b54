// src/dist/communicator.cc — the single-process communicator and the choice of the job's one
// (attn/dist/communicator.h). The MPI transport is in mpi_communicator.cc (built with ATTN_MPI).
#include "attn/dist/communicator.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#include "dist/buffer_check.h"

namespace attn::dist {

#ifdef ATTN_HAVE_MPI
std::shared_ptr<Communicator> make_mpi_communicator();  // mpi_communicator.cc
#endif

namespace {

class DoneRequest final : public Request {
 public:
  bool test() override { return true; }
  void wait() override {}
};

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  std::unique_ptr<Request> all_reduce_async(Tensor t, ReduceOp, bool) override {
    check_buffer(t, "all_reduce");  // the same checks as the MPI transport: a bug shows on one process too
    return std::make_unique<DoneRequest>();
  }
  void broadcast(Tensor& t, int root) override {
    check_buffer(t, "broadcast");
    check_root(root, 1);
  }
  void broadcast(std::string&, int root) override { check_root(root, 1); }
  std::vector<uint64_t> all_gather(uint64_t value) override { return {value}; }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message, int code = 1) override {
    std::fprintf(stderr, "attn: %s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(code);
  }
};

int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : 0;
}

}  // namespace

void check_buffer(const Tensor& t, const char* op) {
  if (!t.defined()) throw std::invalid_argument(std::string("dist::") + op + ": undefined tensor");
  if (t.device() != kCPU)
    throw std::invalid_argument(std::string("dist::") + op + ": the MPI transport takes CPU tensors only");
  if (!t.is_contiguous())
    throw std::invalid_argument(std::string("dist::") + op + ": the tensor " + shape_str(t.shape()) +
                                " is not contiguous");
  if (t.dtype() != kFloat32 && t.dtype() != kBFloat16 && t.dtype() != kFloat64)
    throw std::invalid_argument(std::string("dist::") + op + ": dtype " + dtype_name(t.dtype()) +
                                " (takes float32, bfloat16, float64)");
}

void check_root(int root, int size) {
  if (root < 0 || root >= size)
    throw std::invalid_argument("dist::broadcast: root " + std::to_string(root) + " is not a rank of " +
                                std::to_string(size));
}

bool launched_by_mpi() {
  // Open MPI's mpirun; MPICH / Intel MPI / Slurm's PMI; Slurm's PMIx launch of Open MPI.
  return env_int("OMPI_COMM_WORLD_SIZE") > 1 || env_int("PMI_SIZE") > 1 ||
         (std::getenv("PMIX_RANK") && env_int("SLURM_NTASKS") > 1);
}

bool mpi_available() {
#ifdef ATTN_HAVE_MPI
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Communicator> local_communicator() { return std::make_shared<LocalCommunicator>(); }

std::shared_ptr<Communicator> world() {
  static std::once_flag once;
  static std::shared_ptr<Communicator> comm;
  std::call_once(once, [] {
    if (launched_by_mpi()) {
#ifdef ATTN_HAVE_MPI
      comm = make_mpi_communicator();
#else
      throw std::runtime_error("attn was launched by an MPI launcher but built without MPI (ATTN_MPI=OFF): "
                               "rebuild with libopenmpi-dev installed, or run it as one process");
#endif
    } else {
      comm = local_communicator();
    }
    if (const char* t = std::getenv("ATTN_DIST_TIMEOUT"); t && *t) comm->set_timeout_s(std::atof(t));
  });
  if (!comm) throw std::runtime_error("dist::world: no communicator (its creation failed earlier)");
  return comm;
}

}  // namespace attn::dist
