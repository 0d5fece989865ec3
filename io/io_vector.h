// IoVector: a scatter/gather list of memory ranges (QEMU's QEMUIOVector).
// It does not own the memory it points at.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace coblk {

class IoVector {
 public:
  IoVector() = default;
  IoVector(void* base, size_t len) { append(base, len); }

  void append(void* base, size_t len);
  // Appends the [offset, offset+len) range of other.
  void append(const IoVector& other, size_t offset, size_t len);
  IoVector slice(size_t offset, size_t len) const;
  void clear() {
    iov_.clear();
    size_ = 0;
  }

  size_t size() const { return size_; }
  int count() const { return static_cast<int>(iov_.size()); }
  const iovec* data() const { return iov_.data(); }
  iovec* data() { return iov_.data(); }
  std::span<const iovec> entries() const { return iov_; }

  // Copies between the vector's bytes at offset and a flat buffer.
  // Return the number of bytes copied (short if the range runs past the end).
  size_t copy_from(size_t offset, const void* src, size_t len);
  size_t copy_to(size_t offset, void* dst, size_t len) const;
  // Copies len bytes from src at src_offset into this vector at offset.
  size_t copy_from(size_t offset, const IoVector& src, size_t src_offset, size_t len);
  void memset(size_t offset, int c, size_t len);
  bool is_zero(size_t offset, size_t len) const;

  // True if every base address and length is a multiple of alignment.
  bool is_aligned(size_t alignment) const;

 private:
  // Visits [offset, offset+len) as contiguous pieces; fn(ptr, n, done_so_far).
  template <typename Fn>
  size_t for_each_piece(size_t offset, size_t len, Fn&& fn) const;

  std::vector<iovec> iov_;
  size_t size_ = 0;
};

}  // namespace coblk
