#include "io/io_vector.h"

#include <algorithm>
#include <cstring>

namespace coblk {

void IoVector::append(void* base, size_t len) {
  if (len == 0) return;
  // Merge with the previous entry when contiguous: fewer iovecs per syscall.
  if (!iov_.empty()) {
    iovec& last = iov_.back();
    if (static_cast<char*>(last.iov_base) + last.iov_len == base) {
      last.iov_len += len;
      size_ += len;
      return;
    }
  }
  iov_.push_back({base, len});
  size_ += len;
}

template <typename Fn>
size_t IoVector::for_each_piece(size_t offset, size_t len, Fn&& fn) const {
  size_t done = 0;
  for (const iovec& v : iov_) {
    if (done == len) break;
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    size_t n = std::min(v.iov_len - offset, len - done);
    fn(static_cast<char*>(v.iov_base) + offset, n, done);
    done += n;
    offset = 0;
  }
  return done;
}

void IoVector::append(const IoVector& other, size_t offset, size_t len) {
  other.for_each_piece(offset, len,
                       [this](char* p, size_t n, size_t) { append(p, n); });
}

IoVector IoVector::slice(size_t offset, size_t len) const {
  IoVector out;
  out.append(*this, offset, len);
  return out;
}

size_t IoVector::copy_from(size_t offset, const void* src, size_t len) {
  const char* s = static_cast<const char*>(src);
  return for_each_piece(offset, len, [s](char* p, size_t n, size_t done) {
    std::memcpy(p, s + done, n);
  });
}

size_t IoVector::copy_to(size_t offset, void* dst, size_t len) const {
  char* d = static_cast<char*>(dst);
  return for_each_piece(offset, len, [d](char* p, size_t n, size_t done) {
    std::memcpy(d + done, p, n);
  });
}

size_t IoVector::copy_from(size_t offset, const IoVector& src, size_t src_offset,
                           size_t len) {
  size_t copied = 0;
  src.for_each_piece(src_offset, len, [&](char* p, size_t n, size_t done) {
    copied += copy_from(offset + done, p, n);
  });
  return copied;
}

void IoVector::memset(size_t offset, int c, size_t len) {
  for_each_piece(offset, len,
                 [c](char* p, size_t n, size_t) { std::memset(p, c, n); });
}

bool IoVector::is_zero(size_t offset, size_t len) const {
  bool zero = true;
  for_each_piece(offset, len, [&zero](char* p, size_t n, size_t) {
    if (!zero) return;
    // memcmp against itself shifted by one is a fast all-equal test.
    zero = p[0] == 0 && (n == 1 || std::memcmp(p, p + 1, n - 1) == 0);
  });
  return zero;
}

bool IoVector::is_aligned(size_t alignment) const {
  for (const iovec& v : iov_) {
    if (reinterpret_cast<uintptr_t>(v.iov_base) % alignment != 0 ||
        v.iov_len % alignment != 0)
      return false;
  }
  return true;
}

}  // namespace coblk
