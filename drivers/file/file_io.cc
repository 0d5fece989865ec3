#include "drivers/file/file_io.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <string>
#include <vector>

namespace coblk::file_proto {

namespace {

bool IsDirect(int fd) {
  const int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_DIRECT);
}

}  // namespace

int BlockingPreadvWith(PreadvFn read_fn, int fd, IoVector& qiov, int64_t offset) {
  const size_t total = qiov.size();
  size_t done = 0;
  while (done < total) {
    IoVector rest = done == 0 ? qiov : qiov.slice(done, total - done);
    const int count = std::min(rest.count(), IOV_MAX);
    ssize_t n = read_fn(fd, rest.data(), count, offset + static_cast<int64_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      // A continuation after a short read is unaligned: under O_DIRECT it
      // fails with EINVAL once the file has grown past it. The short read
      // was the end of file (QEMU's handle_aiocb_rw_linear does the same).
      if (errno == EINVAL && done > 0 && IsDirect(fd)) n = 0;
      else return -errno;
    }
    if (n == 0) {
      // End of file: what is left reads as zeroes.
      qiov.memset(done, 0, total - done);
      return 0;
    }
    done += static_cast<size_t>(n);
  }
  return 0;
}

// cachestat(2)'s argument and result (linux/mman.h of 6.5; Debian 12's
// headers predate it, and glibc has no wrapper).
namespace {
constexpr long kSysCachestat = 451;
struct CachestatRange {
  uint64_t off;
  uint64_t len;
};
struct Cachestat {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};
std::atomic<bool> g_have_cachestat{true};
}  // namespace

bool FullyInPageCache(int fd, int64_t offset, int64_t bytes) {
  if (bytes <= 0 || offset < 0 || !g_have_cachestat.load(std::memory_order_relaxed)) return false;
  static const int64_t page = sysconf(_SC_PAGESIZE);
  CachestatRange range{static_cast<uint64_t>(offset), static_cast<uint64_t>(bytes)};
  Cachestat cs{};
  if (::syscall(kSysCachestat, fd, &range, &cs, 0) != 0) {
    if (errno == ENOSYS) g_have_cachestat.store(false, std::memory_order_relaxed);
    return false;
  }
  const int64_t pages = (offset + bytes - 1) / page - offset / page + 1;
  return cs.nr_cache >= static_cast<uint64_t>(pages);
}

int BlockingPreadv(int fd, IoVector& qiov, int64_t offset) {
  return BlockingPreadvWith(::preadv, fd, qiov, offset);
}

int BlockingPwritev(int fd, const IoVector& qiov, int64_t offset) {
  const size_t total = qiov.size();
  size_t done = 0;
  while (done < total) {
    IoVector rest = done == 0 ? qiov : qiov.slice(done, total - done);
    const int count = std::min(rest.count(), IOV_MAX);
    ssize_t n = ::pwritev(fd, rest.data(), count, offset + static_cast<int64_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -ENOSPC;
    done += static_cast<size_t>(n);
  }
  return 0;
}

int Fallocate(int fd, int mode, int64_t offset, int64_t len) {
  int r;
  do {
    r = fallocate(fd, mode, offset, len);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return 0;
  // Filesystems say "unsupported" in several ways.
  if (errno == EOPNOTSUPP || errno == ENOTTY || errno == ENOSYS) return -ENOTSUP;
  return -errno;
}

int64_t FileLength(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0) return -errno;
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &bytes) < 0) return -errno;
    return static_cast<int64_t>(bytes);
  }
  return st.st_size;
}

namespace {

// Writes zeroes over [from, to) in 64 KiB chunks (preallocation=full).
// An O_DIRECT fd would need aligned writes: go through a second, buffered
// open file description instead (it takes no locks of its own).
int WriteZeroes(int fd, int64_t from, int64_t to) {
  const int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -errno;
  if (fl & O_DIRECT) {
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const int buffered = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (buffered < 0) return -errno;
    int r = WriteZeroes(buffered, from, to);
    if (r == 0 && fdatasync(buffered) < 0) r = -errno;
    ::close(buffered);
    return r;
  }
  std::vector<char> zeroes(64 * 1024, 0);
  while (from < to) {
    size_t n = static_cast<size_t>(std::min<int64_t>(to - from, zeroes.size()));
    ssize_t w = pwrite(fd, zeroes.data(), n, from);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (w == 0) return -ENOSPC;
    from += w;
  }
  return 0;
}

// QEMU's allocate_first_block: a file grown from empty gets its first
// sector (4 KiB from 4 KiB on) written with zeroes, so O_DIRECT alignment
// probing finds data there. qemu-img create, convert and resize leave that
// block allocated, and map and info show it (a 4 KiB data range, "disk
// size: 4 KiB"); coblk does the same so both tools' images look alike.
// Failures are ignored, as by QEMU: the block is only an optimisation.
void AllocateFirstBlock(int fd, int64_t size) {
  // QEMU writes 512 bytes even into a smaller file, growing it; not here.
  (void)WriteZeroes(fd, 0, std::min<int64_t>(size, size < 4096 ? 512 : 4096));
}

}  // namespace

int TruncateRegular(int fd, int64_t size, PreallocMode prealloc) {
  int64_t current = FileLength(fd);
  if (current < 0) return static_cast<int>(current);
  if (prealloc != PreallocMode::kOff && size < current) return -ENOTSUP;
  switch (prealloc) {
    case PreallocMode::kOff:
      if (ftruncate(fd, size) < 0) return -errno;
      if (current == 0 && size > 0) AllocateFirstBlock(fd, size);
      return 0;
    case PreallocMode::kFalloc: {
      if (size == current) return 0;
      const int r = posix_fallocate(fd, current, size - current);
      if (r != 0) return -r;
      if (current == 0) AllocateFirstBlock(fd, size);
      return 0;
    }
    case PreallocMode::kFull: {
      if (ftruncate(fd, size) < 0) return -errno;
      int r = WriteZeroes(fd, current, size);
      if (r < 0) (void)!ftruncate(fd, current);  // undo the half-done growth
      return r;
    }
    case PreallocMode::kMetadata:
      break;
  }
  return -ENOTSUP;
}

}  // namespace coblk::file_proto
