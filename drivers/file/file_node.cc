#include "drivers/file/file_node.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>

#include "drivers/file/file_io.h"
#include "io/aio_engine.h"
#include "io/aligned_buffer.h"
#include "io/event_loop.h"
#include "io/thread_pool.h"

namespace coblk::file_proto {

namespace {

constexpr int kPunchHole = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

int64_t RoundUp(int64_t n, int64_t align) { return (n + align - 1) / align * align; }
int64_t RoundDown(int64_t n, int64_t align) { return n / align * align; }

Status FromErrno(int r, const std::string& what) {
  if (r >= 0) return OkStatus();
  return ErrnoError(what, -r);
}

}  // namespace

FileNode::~FileNode() { CloseFd(); }

void FileNode::CloseFd() {
  // Closing the open file description also drops its OFD locks.
  if (fd_ >= 0) ::close(fd_);
  if (cached_fd_ >= 0) ::close(cached_fd_);
  fd_ = -1;
  cached_fd_ = -1;
  aio_ = nullptr;
}

namespace {

int64_t RoundUpToSector(int64_t len) { return (len + 511) & ~int64_t{511}; }

}  // namespace

Status FileNode::Open(FileConfig config, bool read_only) {
  config_ = std::move(config);
  if (config_.native_aio && !config_.direct) {
    if (config_.aio_explicit)
      return MakeError(EINVAL,
                       "aio=native was specified, but it requires cache.direct=on, "
                       "which was not specified.");
    config_.native_aio = false;
  }
  if (config_.force_share && !read_only)
    return MakeError(EINVAL, "force-share=on can only be used with read-only images");
  Status st = OpenFd(read_only);
  if (st) st = SetupAio();
  if (!st) {
    CloseFd();
    return st;
  }
  set_read_only(read_only);
  set_filename(config_.filename);
  return OkStatus();
}

Status FileNode::OpenFd(bool read_only) {
  const std::string& name = config_.filename;
  const int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (config_.dsync ? O_DSYNC : 0);
  // What the name is decides before opening: a directory is refused without
  // an O_DIRECT fallback warning first, and a character device (/dev/null,
  // which qemu-img opens as a raw image of size 0) has no page cache to
  // bypass, so it is opened buffered, on the thread pool.
  struct stat pre;
  if (::stat(name.c_str(), &pre) == 0) {
    if (S_ISDIR(pre.st_mode))
      return MakeError(EISDIR, "'file' driver requires '" + name + "' to be a regular file");
    if (S_ISCHR(pre.st_mode)) {
      config_.direct = false;
      config_.native_aio = false;
    }
  }
  fd_ = ::open(name.c_str(), flags | (config_.direct ? O_DIRECT : 0));
  if (fd_ < 0 && errno == EINVAL && config_.direct) {
    // tmpfs and some FUSE filesystems refuse O_DIRECT at open.
    std::fprintf(stderr, "file: O_DIRECT not supported on %s, using cache=writeback\n",
                 name.c_str());
    config_.direct = false;
    config_.native_aio = false;
    fd_ = ::open(name.c_str(), flags);
  }
  if (fd_ < 0) return ErrnoError("Could not open '" + name + "'");

  struct stat st;
  if (fstat(fd_, &st) < 0) return ErrnoError("Could not stat '" + name + "'");
  is_regular_ = S_ISREG(st.st_mode);
  is_char_device_ = S_ISCHR(st.st_mode);
  if (!is_regular_ && !S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode))
    return MakeError(EINVAL, "'file' driver requires '" + name + "' to be a regular file");

  const uint32_t perm = read_only ? kPermConsistentRead : kPermConsistentRead | kPermWrite;
  const uint32_t shared =
      config_.force_share ? uint32_t{kPermAll} : kPermConsistentRead | kPermWriteUnchanged;
  COBLK_RETURN_IF_ERROR(ApplyImageLock(fd_, config_.locking, perm, shared, name));

  const int64_t len = FileLength(fd_);
  if (len < 0) return ErrnoError("Could not get the size of '" + name + "'", static_cast<int>(-len));
  // QEMU counts a node's length in 512-byte sectors: a 31-byte file is a
  // 512-byte image whose tail reads as zeros (short reads are zero-filled).
  set_size(RoundUpToSector(len));
  written_end_ = len;
  align_ = ProbeDirectAlignment(fd_, config_.direct);
  try_cached_fd_ = config_.direct && is_regular_;
  return OkStatus();
}

Status FileNode::SetupAio() {
  if (!config_.native_aio) return OkStatus();
  auto engine = loop().aio_engine();
  if (engine) {
    aio_ = *engine;
    return OkStatus();
  }
  if (config_.aio_explicit) return std::unexpected(engine.error());
  // Default aio mode: keep working on the thread pool (e.g. aio-max-nr hit).
  std::fprintf(stderr, "file: Linux AIO unavailable (%s), using aio=threads\n",
               engine.error().ToString().c_str());
  config_.native_aio = false;
  return OkStatus();
}

BlockLimits FileNode::driver_limits() {
  BlockLimits l;
  l.request_alignment = static_cast<uint32_t>(align_.request);
  l.min_mem_alignment = static_cast<uint32_t>(align_.buffer);
  l.opt_mem_alignment = static_cast<uint32_t>(std::max<size_t>(4096, align_.buffer));
  return l;
}

// ---- Data path ----

Task<Status> FileNode::co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t) {
  if (static_cast<int64_t>(qiov.size()) == bytes) co_return co_await Rw(false, offset, qiov);
  IoVector part = qiov.slice(0, static_cast<size_t>(bytes));
  co_return co_await Rw(false, offset, part);
}

Task<Status> FileNode::co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) {
  co_return co_await WriteData(offset, bytes, qiov, flags, offset + bytes);
}

Task<Status> FileNode::co_pwritev_padded(int64_t offset, int64_t bytes, IoVector& qiov,
                                         uint32_t flags, int64_t data_end) {
  Status st = co_await WriteData(offset, bytes, qiov, flags, data_end);
  if (st && offset + bytes > written_end_) st = co_await TrimPadding();
  co_return st;
}

Task<Status> FileNode::WriteData(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags,
                                 int64_t data_end) {
  const bool extending = offset + bytes > written_end_;
  if (extending) co_await grow_lock_.lock_shared();
  Status st;
  if (static_cast<int64_t>(qiov.size()) == bytes) {
    st = co_await Rw(true, offset, qiov);
  } else {
    IoVector part = qiov.slice(0, static_cast<size_t>(bytes));
    st = co_await Rw(true, offset, part);
  }
  if (st) written_end_ = std::max(written_end_, data_end);
  if (extending) grow_lock_.unlock_shared();
  // FUA without O_DSYNC: make this write stable before reporting it.
  if (st && (flags & kReqFua) && !config_.dsync && !config_.no_flush) st = co_await Fdatasync();
  co_return st;
}

// Cuts the file back to written_end_ once no extending write is in flight
// (see grow_lock_ in file_node.h).
Task<Status> FileNode::TrimPadding() {
  if (!is_regular_) co_return OkStatus();  // a device does not grow
  co_await grow_lock_.lock();
  const int fd = fd_;
  const int64_t target = written_end_;
  auto job = [fd, target] {
    const int64_t len = FileLength(fd);
    if (len < 0) return static_cast<int>(len);
    if (len <= target) return 0;
    return ::ftruncate(fd, target) < 0 ? -errno : 0;
  };
  int r = co_await default_thread_pool().run(job);
  grow_lock_.unlock();
  co_return FromErrno(r, "file: could not cut the padding after the end of the data");
}

Task<Status> FileNode::Rw(bool write, int64_t offset, IoVector& qiov) {
  if (fd_ < 0) co_return MakeError(EBADF, "file: I/O on a closed node");
  // A large read whose every page is cached: a copy on the pool (see
  // cached_fd_). Small reads keep the direct path's latency.
  if (!write && try_cached_fd_ && static_cast<int64_t>(qiov.size()) >= kPageCacheReadMin &&
      FullyInPageCache(fd_, offset, static_cast<int64_t>(qiov.size())) && OpenCachedFd()) {
    ++page_cache_reads_;
    co_return co_await PoolRw(false, offset, qiov, cached_fd_);
  }
  const bool bounce =
      config_.direct && (!qiov.is_aligned(align_.buffer) || qiov.count() > IOV_MAX);
  if (!bounce) co_return co_await DirectRw(write, offset, qiov);
  // O_DIRECT needs aligned memory (and libaio at most IOV_MAX entries).
  const size_t n = qiov.size();
  AlignedBuffer buf(n, std::max<size_t>(align_.buffer, 512));
  IoVector biov = buf.iov(0, n);
  if (write) qiov.copy_to(0, buf.data(), n);
  Status st = co_await DirectRw(write, offset, biov);
  if (st && !write) qiov.copy_from(0, buf.data(), n);
  co_return st;
}

// Opens cached_fd_ the first time it is needed; false (for good) where it
// cannot be had. A split image has a file per extent, so the descriptor is
// given up rather than taken from the last half of the process's
// descriptor table (RLIMIT_NOFILE), which later opens may need.
bool FileNode::OpenCachedFd() {
  if (cached_fd_ >= 0) return true;
  try_cached_fd_ = false;
  struct rlimit lim {};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  int fd = ::open(config_.filename.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat mine, again;
  if (lim.rlim_cur != RLIM_INFINITY && static_cast<rlim_t>(fd) >= lim.rlim_cur / 2) {
    ::close(fd);
    return false;
  }
  if (fstat(fd_, &mine) < 0 || fstat(fd, &again) < 0 || again.st_ino != mine.st_ino ||
      again.st_dev != mine.st_dev) {
    ::close(fd);  // renamed over since the node opened it: not the same file
    return false;
  }
  cached_fd_ = fd;
  try_cached_fd_ = true;
  return true;
}

Task<Status> FileNode::DirectRw(bool write, int64_t offset, IoVector& qiov) {
  if (!aio_) co_return co_await PoolRw(write, offset, qiov, fd_);
  const uint64_t off = static_cast<uint64_t>(offset);
  if (write) co_return co_await aio_->pwritev(fd_, qiov, off);
  co_return co_await aio_->preadv(fd_, qiov, off);
}

Task<Status> FileNode::PoolRw(bool write, int64_t offset, IoVector& qiov, int fd) {
  IoVector* v = &qiov;
  auto job = [fd, v, offset, write] {
    return write ? BlockingPwritev(fd, *v, offset) : BlockingPreadv(fd, *v, offset);
  };
  int r = co_await default_thread_pool().run(job);
  co_return FromErrno(r, write ? "file: write failed" : "file: read failed");
}

Task<Status> FileNode::Fdatasync() {
  const int fd = fd_;
  auto job = [fd] { return ::fdatasync(fd) < 0 ? -errno : 0; };
  int r = co_await default_thread_pool().run(job);
  // A character device that cannot be synchronised (/dev/null) has nothing
  // to make durable.
  if (r == -EINVAL && !is_regular_ && is_char_device_) r = 0;
  co_return FromErrno(r, "file: fdatasync failed");
}

Task<Status> FileNode::co_flush() {
  if (fd_ < 0) co_return MakeError(EBADF, "file: flush on a closed node");
  if (config_.no_flush) co_return OkStatus();
  co_return co_await Fdatasync();
}

// ---- Zeroes, discard, resize ----

int FileNode::WriteZeroesBlocking(int64_t offset, int64_t bytes, uint32_t flags) {
  // QEMU's write_zeroes_unmap: a punched hole reads as zeroes and frees space.
  if ((flags & kReqMayUnmap) && has_punch_) {
    int r = Fallocate(fd_, kPunchHole, offset, bytes);
    if (r != -ENOTSUP) return r;
    has_punch_ = false;
  }
  return ZeroRangeBlocking(offset, bytes);
}

int FileNode::ZeroRangeBlocking(int64_t offset, int64_t bytes) {
  if (has_zero_range_) {
    int r = Fallocate(fd_, FALLOC_FL_ZERO_RANGE, offset, bytes);
    if (r != -ENOTSUP) return r;
    has_zero_range_ = false;
  }
  if (has_punch_ && has_fallocate_) {
    // Punch, then allocate again so the range stays allocated.
    int r = Fallocate(fd_, kPunchHole, offset, bytes);
    if (r == 0) {
      r = Fallocate(fd_, 0, offset, bytes);
      if (r == -ENOTSUP) has_fallocate_ = false;
      return r == -ENOTSUP ? 0 : r;  // a hole reads as zeroes as well
    }
    if (r != -ENOTSUP) return r;
    has_punch_ = false;
  }
  // Entirely past end of file: plain fallocate extends with zeroes.
  if (has_fallocate_ && is_regular_ && offset >= FileLength(fd_)) {
    int r = Fallocate(fd_, 0, offset, bytes);
    if (r != -ENOTSUP) return r;
    has_fallocate_ = false;
  }
  return -ENOTSUP;
}

Task<Status> FileNode::co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) {
  if (fd_ < 0) co_return MakeError(EBADF, "file: I/O on a closed node");
  // Past the end, zeroes must extend the file: a punched hole would not.
  const bool extending = offset + bytes > written_end_;
  if (extending) {
    flags &= ~static_cast<uint32_t>(kReqMayUnmap);
    co_await grow_lock_.lock_shared();
  }
  auto job = [this, offset, bytes, flags] { return WriteZeroesBlocking(offset, bytes, flags); };
  int r = co_await default_thread_pool().run(job);
  if (r == 0) written_end_ = std::max(written_end_, offset + bytes);
  if (extending) grow_lock_.unlock_shared();
  // ENOTSUP: the generic layer writes a zeroed buffer instead.
  if (r == -ENOTSUP) co_return MakeError(ENOTSUP, "file: efficient write zeroes not supported");
  co_return FromErrno(r, "file: write zeroes failed");
}

Task<Status> FileNode::co_pdiscard(int64_t offset, int64_t bytes) {
  if (fd_ < 0) co_return MakeError(EBADF, "file: I/O on a closed node");
  if (!has_punch_) co_return MakeError(ENOTSUP, "file: discard not supported");
  const int fd = fd_;
  auto job = [fd, offset, bytes] { return Fallocate(fd, kPunchHole, offset, bytes); };
  int r = co_await default_thread_pool().run(job);
  if (r == -ENOTSUP) {
    has_punch_ = false;
    co_return MakeError(ENOTSUP, "file: discard not supported");
  }
  co_return FromErrno(r, "file: discard failed");
}

Task<Status> FileNode::co_truncate(int64_t size, bool exact, PreallocMode prealloc) {
  if (fd_ < 0) co_return MakeError(EBADF, "file: truncate on a closed node");
  const int64_t current = FileLength(fd_);
  if (current < 0) co_return ErrnoError("file: could not get the file size", static_cast<int>(-current));
  if (!is_regular_) {
    if (size != current && exact) co_return MakeError(ENOTSUP, "Cannot resize device files");
    if (size > current) co_return MakeError(EINVAL, "Cannot grow device files");
    co_return OkStatus();
  }
  if (prealloc == PreallocMode::kMetadata)
    co_return MakeError(ENOTSUP, "Unsupported preallocation mode: metadata");
  if (prealloc != PreallocMode::kOff && size < current)
    co_return MakeError(ENOTSUP, "Cannot use preallocation for shrinking files");
  const int fd = fd_;
  auto job = [fd, size, prealloc] { return TruncateRegular(fd, size, prealloc); };
  int r = co_await default_thread_pool().run(job);
  if (r < 0) co_return ErrnoError("Could not resize file", -r);
  set_size(RoundUpToSector(size));
  written_end_ = size;
  co_return OkStatus();
}

// ---- Block status (QEMU's raw_co_block_status) ----

Task<Result<BlockStatus>> FileNode::co_block_status(bool want_zero, int64_t offset,
                                                    int64_t bytes) {
  if (fd_ < 0) co_return MakeError(EBADF, "file: block status on a closed node");
  if (!want_zero) {
    // The caller only wants allocation: everything is allocated here.
    co_return BlockStatus{kStatusData | kStatusOffsetValid, bytes, offset, this};
  }
  co_return SeekStatus(offset, bytes);
}

Result<BlockStatus> FileNode::SeekStatus(int64_t offset, int64_t bytes) {
  const int64_t align = std::max<int64_t>(1, limits().request_alignment);
  BlockStatus bs{kStatusOffsetValid, bytes, offset, this};
  const off_t data = lseek(fd_, offset, SEEK_DATA);
  if (data < 0) {
    // ENXIO: a trailing hole (or past EOF); anything else: no information.
    bs.status |= errno == ENXIO ? kStatusZero : kStatusData;
    return bs;
  }
  if (data > offset) {
    // In a hole up to `data`; report whole aligned units only.
    const int64_t n = RoundDown(data - offset, align);
    if (n > 0) {
      bs.status |= kStatusZero;
      bs.pnum = std::min(n, bytes);
      return bs;
    }
    bs.status |= kStatusData;
    bs.pnum = std::min(align, bytes);
    return bs;
  }
  const off_t hole = lseek(fd_, offset, SEEK_HOLE);
  bs.status |= kStatusData;
  // A partial unit at EOF still counts as data, as QEMU rounds up.
  if (hole > offset) bs.pnum = std::min(RoundUp(hole - offset, align), bytes);
  return bs;
}

int64_t FileNode::allocated_file_size() {
  struct stat st;
  if (fd_ < 0 || fstat(fd_, &st) < 0) return -1;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

// The generic close() calls this only after every request has ended, so no
// pool job can still use the descriptor.
Task<Status> FileNode::co_close() {
  // fd_ is closed here, not by CloseFd, so that its close error is reported.
  const int fd = fd_;
  fd_ = -1;
  CloseFd();
  if (fd >= 0 && ::close(fd) < 0)
    co_return ErrnoError("file: closing '" + config_.filename + "' failed");
  co_return OkStatus();
}

}  // namespace coblk::file_proto
