// FileNode: an open host file or block device (QEMU's file-posix).
//
// Two I/O paths:
//  * native: O_DIRECT requests go through the event loop's shared AioEngine
//    (libaio), batched into io_submit;
//  * threads: blocking preadv/pwritev on the ThreadPool (buffered files, or
//    aio=threads; and, with O_DIRECT, large reads of ranges the page cache
//    holds entirely, see cached_fd_).
// With O_DIRECT, requests are aligned by the generic layer to the probed
// alignment; buffers that are not (or have more than IOV_MAX entries) are
// bounced here. fallocate, fdatasync and ftruncate always use the pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "block/block_node.h"
#include "coroutine/co_rwlock.h"
#include "drivers/file/file_lock.h"
#include "io/alignment.h"

namespace coblk {
class AioEngine;
}

namespace coblk::file_proto {

struct FileConfig {
  std::string filename;
  bool direct = true;       // cache.direct
  bool no_flush = false;    // cache.no-flush
  bool dsync = false;       // cache=writethrough/directsync: O_DSYNC
  bool native_aio = true;   // aio=native (needs direct)
  bool aio_explicit = false;
  LockMode locking = LockMode::kAuto;
  bool force_share = false;
};

class FileNode final : public BlockNode {
 public:
  FileNode(const BlockDriver* driver, EventLoop& loop) : BlockNode(driver, loop) {}
  ~FileNode() override;

  // Opens the file; prints a warning and falls back to buffered I/O where
  // the filesystem refuses O_DIRECT.
  Status Open(FileConfig config, bool read_only);

  int64_t allocated_file_size() override;
  bool has_zero_init() override { return is_regular_; }

  bool direct() const { return config_.direct; }
  bool native_aio() const { return aio_ != nullptr; }
  // Direct-mode reads served from the page cache so far (see Rw; tests).
  uint64_t page_cache_reads() const { return page_cache_reads_; }

  // A direct-mode read at least this long whose range the page cache holds
  // entirely is copied from the cache instead (see Rw).
  static constexpr int64_t kPageCacheReadMin = 256 * 1024;

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override;
  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override;
  Task<Status> co_pwritev_padded(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags,
                                 int64_t data_end) override;
  Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) override;
  Task<Status> co_pdiscard(int64_t offset, int64_t bytes) override;
  Task<Status> co_flush() override;
  Task<Status> co_truncate(int64_t size, bool exact, PreallocMode prealloc) override;
  Task<Result<BlockStatus>> co_block_status(bool want_zero, int64_t offset,
                                            int64_t bytes) override;
  BlockLimits driver_limits() override;
  Task<Status> co_close() override;

 private:
  Status OpenFd(bool read_only);
  Status SetupAio();
  Task<Status> WriteData(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags,
                         int64_t data_end);
  Task<Status> TrimPadding();
  Task<Status> Rw(bool write, int64_t offset, IoVector& qiov);
  Task<Status> DirectRw(bool write, int64_t offset, IoVector& qiov);
  Task<Status> PoolRw(bool write, int64_t offset, IoVector& qiov, int fd);
  bool OpenCachedFd();
  Task<Status> Fdatasync();
  int WriteZeroesBlocking(int64_t offset, int64_t bytes, uint32_t flags);
  int ZeroRangeBlocking(int64_t offset, int64_t bytes);
  Result<BlockStatus> SeekStatus(int64_t offset, int64_t bytes);
  void CloseFd();

  FileConfig config_;
  int fd_ = -1;
  // cache.direct=on, regular files: a second, buffered, read-only
  // descriptor of the same open file's inode, for reads whose whole range
  // the page cache already holds (Rw). Such pages are the file's current
  // content (the kernel invalidates them on O_DIRECT writes, fallocate and
  // truncate, through any descriptor), so copying them returns what an
  // O_DIRECT read would, without the device I/O an O_DIRECT read of cached
  // pages still does (it writes back dirty pages, then reads the disk).
  // Reads that miss the cache in any page stay O_DIRECT, so cache=none
  // still never fills the cache. Opened on the first read that can use it
  // (OpenCachedFd), closed with fd_ (loop thread; pool jobs use it only
  // while a request is in flight, as fd_); -1 until then, or for good
  // once try_cached_fd_ is false (not direct, not a regular file, or the
  // open failed).
  int cached_fd_ = -1;
  bool try_cached_fd_ = false;
  uint64_t page_cache_reads_ = 0;  // loop thread only
  bool is_regular_ = false;
  bool is_char_device_ = false;  // /dev/null and the like: buffered, nothing to sync
  DirectAlignment align_;
  AioEngine* aio_ = nullptr;

  // ---- Growth (loop thread only) ----
  // The generic layer pads an unaligned write to whole blocks; past the end
  // of the file the padding is zeroes that must not stay there (the file
  // must end where the data does: streamOptimized VMDK finds its footer
  // from the end). The trim belongs here, where the file grows:
  //  * written_end_ is the length the file must keep: its length at open or
  //    after the last truncate, raised by every completed write to the end
  //    of that write's data (not its padding). It only grows between
  //    truncates, and the generic layer serialises truncate against every
  //    request in the changed range.
  //  * The on-disk length exceeds written_end_ only while a padded block
  //    past it is on disk and its trim has not run yet. size() (the
  //    generic layer's) is raised to the data end when the request returns,
  //    so it never counts padding either.
  //  * grow_lock_ is held shared by every write (data or zeroes) that ends
  //    past written_end_ when it starts, and exclusively by a trim. A trim
  //    thus runs when no extending write is in flight, so written_end_
  //    covers every byte any write has put past the old end, and cutting to
  //    it loses nothing; writes that end at or before written_end_ never
  //    need the lock because a trim never cuts below it. New extending
  //    writes queue behind a waiting trim (the lock is FIFO).
  int64_t written_end_ = 0;
  CoRwLock grow_lock_;
  // Cleared the first time the filesystem says ENOTSUP (pool threads read them).
  std::atomic<bool> has_zero_range_{true};
  std::atomic<bool> has_punch_{true};
  std::atomic<bool> has_fallocate_{true};
};

}  // namespace coblk::file_proto
