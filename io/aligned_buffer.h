// AlignedBuffer: an owned, aligned heap buffer for O_DIRECT I/O.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "io/io_vector.h"

namespace coblk {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // Allocates size bytes (rounded up to alignment, at least one unit).
  // Aborts via std::bad_alloc on exhaustion like operator new.
  AlignedBuffer(size_t size, size_t alignment = 4096);

  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }
  std::span<uint8_t> span() { return {data_.get(), size_}; }
  std::span<const uint8_t> span() const { return {data_.get(), size_}; }
  IoVector iov(size_t offset = 0) { return IoVector(data_.get() + offset, size_ - offset); }
  IoVector iov(size_t offset, size_t len) { return IoVector(data_.get() + offset, len); }
  void zero() { if (size_) std::memset(data_.get(), 0, size_); }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
};

}  // namespace coblk
