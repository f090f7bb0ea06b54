// src/io/mapped_file.cc — see mapped_file.h.
#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace attn::io {

MappedFile map_file(const std::string& path, const std::string& what) {
  auto fail = [&](const std::string& why) { throw std::runtime_error(what + " '" + path + "': " + why); };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(std::string("cannot stat: ") + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("not a regular file");
  }
  size_t size = size_t(st.st_size);
  if (size == 0) {
    ::close(fd);
    static const uint8_t kNothing = 0;
    return MappedFile{nullptr, &kNothing, 0};
  }
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  ::close(fd);
  if (addr == MAP_FAILED) fail(std::string("mmap failed: ") + std::strerror(map_errno));
  return MappedFile{std::shared_ptr<void>(addr, [size](void* p) { ::munmap(p, size); }), static_cast<const uint8_t*>(addr),
                    size};
}

}  // namespace attn::io
