// Blocking system-call helpers for the file protocol. They run on the
// ThreadPool, never on the event loop thread, and return 0 or -errno.
#pragma once

#include <cstdint>

#include "block/block_types.h"
#include "io/io_vector.h"

namespace coblk::file_proto {

// preadv until done; the part past end of file is zero-filled. With
// O_DIRECT, a read that continues after a short read starts at an
// unaligned offset; if the file grew meanwhile that fails with EINVAL, which
// (as in QEMU) means end of file, not an error.
int BlockingPreadv(int fd, IoVector& qiov, int64_t offset);
// The same with the read system call given (tests make the file grow
// between two calls).
using PreadvFn = ssize_t (*)(int fd, const struct iovec* iov, int count, off_t offset);
int BlockingPreadvWith(PreadvFn read_fn, int fd, IoVector& qiov, int64_t offset);
// pwritev until done; a write that makes no progress is -ENOSPC.
int BlockingPwritev(int fd, const IoVector& qiov, int64_t offset);

// fallocate(2) that retries EINTR.
int Fallocate(int fd, int mode, int64_t offset, int64_t len);

// Whether the page cache holds every page of [offset, offset+bytes) of fd's
// file (cachestat(2), Linux 6.5; false where the kernel lacks it). Cheap: a
// walk of the cache's index, no copy. Safe on the event loop thread.
bool FullyInPageCache(int fd, int64_t offset, int64_t bytes);

// Current length of fd (regular file or block device), or -errno.
int64_t FileLength(int fd);

// Resizes a regular file like QEMU's raw_regular_truncate: shrinking is only
// allowed without preallocation; falloc reserves the new range; full writes
// zeroes over it.
int TruncateRegular(int fd, int64_t size, PreallocMode prealloc);

}  // namespace coblk::file_proto
