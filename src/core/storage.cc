#include "backend/backend.h"

namespace attn {

Storage::Storage(size_t n, Device d) : nbytes(n), device(d) {
  data = backend::backend_for(d).allocate(n);
}

Storage::Storage(void* p, size_t n, Device d, std::shared_ptr<void> o)
    : data(p), nbytes(n), device(d), owner(std::move(o)) {}

Storage::~Storage() {
  if (!owner && data) backend::backend_for(device).deallocate(data, nbytes);
}

}  // namespace attn
