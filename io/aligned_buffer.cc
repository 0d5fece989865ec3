#include "io/aligned_buffer.h"

#include <new>

namespace coblk {

AlignedBuffer::AlignedBuffer(size_t size, size_t alignment) : size_(size) {
  size_t alloc = size == 0 ? alignment : (size + alignment - 1) / alignment * alignment;
  void* p = nullptr;
  if (posix_memalign(&p, alignment, alloc) != 0) throw std::bad_alloc();
  data_.reset(static_cast<uint8_t*>(p));
}

}  // namespace coblk
