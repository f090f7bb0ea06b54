#include "backend/backend.h"

#include <stdexcept>

#include "backend/cpu/cpu_backend.h"

namespace attn::backend {

bool TensorRef::contiguous() const {
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

TensorRef ref(const Tensor& t) {
  if (!t.defined()) return TensorRef{};
  return TensorRef{t.raw_data(), t.dtype(), t.shape(), t.strides()};
}

namespace {
Backend* registered[kNumDeviceTypes] = {};
}  // namespace

void register_backend(DeviceType type, Backend* backend) {
  if (type == DeviceType::CPU) throw std::invalid_argument("register_backend: the cpu backend is built in");
  registered[int(type)] = backend;
}

Backend& backend_for(Device d) {
  static cpu::CpuBackend cpu_backend;
  if (d.type == DeviceType::CPU) return cpu_backend;
  if (Backend* b = registered[int(d.type)]) return *b;
  throw std::runtime_error("device " + device_name(d) + " has no backend in this build");
}

}  // namespace attn::backend
