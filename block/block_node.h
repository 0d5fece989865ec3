// BlockNode: one open instance of a driver (QEMU's BlockDriverState).
//
// Two faces:
//  * Public, non-virtual request methods (preadv, pwritev, pwrite_zeroes,
//    block_status, flush, ...) form the generic request layer (QEMU's
//    block/io.c): they check bounds, align requests to request_alignment with
//    bounce buffers and read-modify-write, serialise overlapping RMW writes,
//    split at max_transfer and provide fallbacks. Callers and parent drivers
//    use only these.
//  * Protected virtual co_* methods are the driver interface. They only see
//    requests already checked against size() and aligned to
//    limits().request_alignment. Defaults behave like QEMU's fallbacks.
//
// Threads: a node belongs to its EventLoop. Every method (requests, graph
// setup, properties) is called on that loop's thread only, so the
// bookkeeping below (size_, tracked_, in_flight_, write_gen_) needs no
// locks; other threads reach a node only through EventLoop::post(). Drivers
// hand blocking work to the ThreadPool and are resumed on the loop.
//
// Invariants the request layer keeps:
//  * Tracked requests: every read, write, zero write, discard, compressed
//    write and truncate holds a TrackedRequest over its range, widened to
//    request_alignment, while it runs. A request is serialising when it
//    must not overlap any other: unaligned writes and zero writes (their
//    read-modify-write reads then rewrites whole blocks) and truncate (over
//    everything past the new or old end). wait_serialising() makes a
//    serialising request wait for every overlapping one, and any request
//    wait for an overlapping serialising one, before it reaches the driver.
//    Two overlapping writes can therefore only run together if both are
//    aligned and non-serialising, i.e. each writes exactly its own whole
//    blocks with no read-modify-write (as with a disk, the later one wins
//    per block). A request that is itself waiting is skipped when others
//    look for conflicts, and re-checks when it wakes: no deadlock.
//  * In flight: every public request (tracked or not: flush, block_status,
//    check too) counts in in_flight_ until it ends. close() fails new
//    requests, then waits for the count to drop to zero before flushing and
//    closing the driver, so no request or pool job outlives the driver's
//    resources.
//  * size_ is the logical size. On a node that grows on write it is raised
//    to the end of a write's data when the write returns, never to the end
//    of the padding an unaligned write adds. The on-disk size may exceed it
//    while such a padded block is on disk; the driver that grows (the file
//    driver, co_pwritev_padded) trims it back (see FileNode::grow_lock_).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "block/block_types.h"
#include "coroutine/co_queue.h"
#include "coroutine/task.h"
#include "io/io_vector.h"
#include "util/status.h"

namespace coblk {

class BlockDriver;
class EventLoop;

// Roles of a child, as in QEMU's BdrvChildRole.
enum class ChildRole { kFile, kBacking, kData };

struct BdrvChild {
  std::string name;  // "file", "backing", "extents.0", ...
  ChildRole role;
  std::shared_ptr<BlockNode> node;
};

class BlockNode : public std::enable_shared_from_this<BlockNode> {
 public:
  BlockNode(const BlockDriver* driver, EventLoop& loop);
  virtual ~BlockNode();

  BlockNode(const BlockNode&) = delete;
  BlockNode& operator=(const BlockNode&) = delete;

  // ---- Generic request layer (bytes) ----
  Task<Status> preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags = 0);
  Task<Status> pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags = 0);
  Task<Status> pread(int64_t offset, void* buf, int64_t bytes);
  Task<Status> pwrite(int64_t offset, const void* buf, int64_t bytes, uint32_t flags = 0);
  Task<Status> pwritev_compressed(int64_t offset, int64_t bytes, IoVector& qiov);
  Task<Status> pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags = 0);
  Task<Status> pdiscard(int64_t offset, int64_t bytes);
  Task<Status> flush();
  Task<Status> truncate(int64_t size, bool exact, PreallocMode prealloc);
  // Status of [offset, offset+bytes) in this node alone (QEMU's
  // bdrv_co_block_status). pnum > 0 unless offset == size().
  Task<Result<BlockStatus>> block_status(bool want_zero, int64_t offset, int64_t bytes);
  // Through the backing chain down to (excluding) base; nullptr = whole chain.
  Task<Result<BlockStatus>> block_status_above(BlockNode* base, bool want_zero,
                                               int64_t offset, int64_t bytes);
  // Whether this layer (not its backing) allocates the range; *pnum set.
  Task<Result<bool>> is_allocated(int64_t offset, int64_t bytes, int64_t* pnum);
  // fix: CheckFix bits (0 = check only).
  Task<Result<CheckResult>> check(uint32_t fix);
  // Rewrites the image's own reference to its backing file (QEMU's
  // bdrv_change_backing_file), for rebase: `name` as recorded (empty: no
  // backing file any more), `new_backing` the image it names, opened by the
  // caller (nullptr with an empty name). The node's children do not change.
  Task<Status> change_backing_file(const std::string& name, const std::string& format,
                                   BlockNode* new_backing) {
    return co_change_backing_file(name, format, new_backing);
  }
  // Fails new requests, waits for every request in flight, flushes, closes
  // the driver, then the children no one else holds. Returns the first error.
  Task<Status> close();

  // ---- Properties ----
  const BlockDriver* driver() const { return driver_; }
  EventLoop& loop() const { return loop_; }
  int64_t size() const { return size_; }
  bool read_only() const { return read_only_; }
  const std::string& filename() const { return filename_; }
  const std::string& node_name() const { return node_name_; }
  const BlockLimits& limits() const { return limits_; }
  const std::vector<BdrvChild>& children() const { return children_; }

  BlockNode* file() const { return child("file"); }
  BlockNode* backing() const;  // the child with role kBacking, if any
  BlockNode* child(const std::string& name) const;

  virtual ImageInfo get_info();
  virtual InfoTree get_specific_info() { return {}; }
  // Host bytes used by this node and its file-role children, -1 if unknown.
  virtual int64_t allocated_file_size();
  virtual bool has_zero_init() { return false; }
  // The filename a backing_file string is resolved against.
  virtual std::string backing_filename() const { return {}; }

  // ---- Graph setup (used by drivers' open and the open logic) ----
  void add_child(std::string name, ChildRole role, std::shared_ptr<BlockNode> node);
  // For nodes that pass through to one file (filters, raw): adds it as the
  // "file" child and takes its size and filename.
  void attach_file(std::shared_ptr<BlockNode> file, bool read_only);
  void set_size(int64_t size) { size_ = size; }
  // Request flags the driver honours itself (QEMU's supported_write_flags
  // and supported_zero_flags); for kReqFua the generic layer flushes after
  // the request where the driver does not declare it. Set in open.
  void set_supported_flags(uint32_t write_flags, uint32_t zero_flags) {
    supported_write_flags_ = write_flags;
    supported_zero_flags_ = zero_flags;
  }
  void set_read_only(bool ro) { read_only_ = ro; }
  void set_filename(std::string f) { filename_ = std::move(f); }
  void set_node_name(std::string n) { node_name_ = std::move(n); }
  // Recomputes limits_: the driver's refresh_limits merged with its children's
  // (alignment is the max of the node's and its file child's).
  void refresh_limits();

  // Driver events for blkdebug rules (QEMU's BLKDBG_EVENT): a node forwards
  // the event to its file child, where a blkdebug node may act on it.
  virtual void debug_event(const std::string& event);

 protected:
  // ---- Driver interface (override what the format supports) ----
  virtual Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) = 0;
  virtual Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags);
  // Only on nodes that grow on write (protocol drivers, filters): an aligned
  // write whose caller's data ends at data_end (offset < data_end <
  // offset + bytes); the rest of the last block is padding the alignment
  // forced, zeroes where it lies past the old end. A driver that grows
  // should leave the node ending at data_end, not at the padded end,
  // without ever cutting off data that a concurrent write extended. The
  // default writes the whole blocks (the node then ends at the padded end).
  virtual Task<Status> co_pwritev_padded(int64_t offset, int64_t bytes, IoVector& qiov,
                                         uint32_t flags, int64_t data_end);
  virtual Task<Status> co_pwritev_compressed(int64_t offset, int64_t bytes, IoVector& qiov);
  // Return ENOTSUP to let the generic layer write a zeroed buffer instead.
  virtual Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags);
  virtual Task<Status> co_pdiscard(int64_t offset, int64_t bytes);
  // Default: flush every child.
  virtual Task<Status> co_flush();
  virtual Task<Status> co_truncate(int64_t size, bool exact, PreallocMode prealloc);
  // Default: allocated data for the whole range (QEMU's behaviour for drivers
  // without block_status); filters answer kStatusRaw to pass through.
  virtual Task<Result<BlockStatus>> co_block_status(bool want_zero, int64_t offset, int64_t bytes);
  virtual Task<Result<CheckResult>> co_check(uint32_t fix);
  // Default: ENOTSUP ("Operation not supported"), as for QEMU drivers
  // without bdrv_change_backing_file.
  virtual Task<Status> co_change_backing_file(const std::string& name, const std::string& format,
                                              BlockNode* new_backing);
  // The driver's own limits; merged with its children's by refresh_limits().
  virtual BlockLimits driver_limits() { return {}; }
  // Releases the driver's resources (after every request has ended and the
  // node was flushed); errors are reported by close().
  virtual Task<Status> co_close() { co_return OkStatus(); }

  std::vector<BdrvChild> children_;

 private:
  struct TrackedRequest {
    int64_t offset;
    int64_t bytes;
    bool serialising;
    bool waiting = false;  // blocked in wait_serialising (QEMU's waiting_for)
    CoQueue waiters;
  };
  // Keeps a TrackedRequest in tracked_ for its lifetime (block_node.cc).
  class RequestScope;
  class InFlight;

  Task<Status> aligned_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags);
  Task<Status> aligned_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags,
                               int64_t data_end = 0);
  // Unaligned or memory-misaligned requests, through a bounce buffer.
  Task<Status> bounce_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags);
  Task<Status> bounce_pwritev(int64_t offset, int64_t bytes, const IoVector& qiov, uint32_t flags);
  // Aligned write_zeroes: driver first, zeroed buffer on ENOTSUP.
  // The driver calls, with FUA emulated where the driver does not honour it.
  Task<Status> driver_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags,
                              int64_t data_end);
  Task<Status> driver_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags);
  Task<Status> zero_range_serialised(int64_t offset, int64_t bytes, uint32_t flags);
  Task<Status> zero_blocks_via_driver(int64_t offset, int64_t bytes, uint32_t flags);
  Task<Status> write_zeroed_buffers(int64_t offset, int64_t bytes, uint32_t flags);
  // Zeroes a partial-block range as data (read-modify-write).
  Task<Status> zero_partial_blocks_rmw(int64_t offset, int64_t bytes, uint32_t flags);
  Task<void> wait_serialising(TrackedRequest& self);
  enum class Bounds { kInside, kMayGrow, kClamped, kPadded };
  Status check_request(int64_t offset, int64_t bytes, Bounds bounds) const;
  // Writes (data and zeroes) may extend protocol nodes past their end
  // (QEMU's behaviour for a format writing new clusters at the end of its
  // file).
  bool grows_on_write() const;
  Status check_write_request(int64_t offset, int64_t bytes) const;
  void note_write_end(int64_t end);
  Task<Status> pwritev_checked(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags);
  Status check_writable() const;
  Task<Status> flush_unless_clean();
  Status check_open() const;
  int64_t max_transfer_bytes() const;
  size_t buffer_alignment() const;
  Task<Result<BlockStatus>> block_status_recursive(bool want_zero, int64_t offset, int64_t bytes);

  const BlockDriver* driver_;
  EventLoop& loop_;
  int64_t size_ = 0;
  bool read_only_ = false;
  bool closed_ = false;
  uint32_t supported_write_flags_ = 0;
  uint32_t supported_zero_flags_ = 0;
  std::string filename_;
  std::string node_name_;
  BlockLimits limits_;
  std::list<TrackedRequest*> tracked_;
  // Requests in flight (InFlight), and close() waiting for them to end.
  int in_flight_ = 0;
  CoQueue drained_;
  // Completed write-like requests, and the count the last successful flush
  // covered (flush_unless_clean).
  uint64_t write_gen_ = 0;
  uint64_t flushed_gen_ = 0;
};

}  // namespace coblk
