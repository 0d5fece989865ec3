#include "block/block_node.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <limits>

#include "block/block_driver.h"
#include "io/aligned_buffer.h"

namespace coblk {

namespace {

// Bounce buffers and zero-write fallback buffers are used in pieces of at
// most this size, so an unaligned multi-gigabyte request does not allocate
// its whole length.
constexpr int64_t kBounceChunk = 1 << 20;

int64_t RoundDown(int64_t x, int64_t a) { return x - x % a; }
int64_t RoundUp(int64_t x, int64_t a) { return RoundDown(x + a - 1, a); }

uint64_t MinNonZero(uint64_t a, uint64_t b) {
  if (a == 0) return b;
  if (b == 0) return a;
  return std::min(a, b);
}

// The next layer a block_status_above walk looks at: a filter's filtered
// child, otherwise the backing file.
BlockNode* FilterOrCow(BlockNode* n) {
  if (n->driver() && n->driver()->is_filter()) return n->file();
  return n->backing();
}

std::string DriverName(const BlockDriver* d) {
  return d ? std::string(d->format_name()) : std::string("?");
}

}  // namespace

class BlockNode::RequestScope {
 public:
  RequestScope(BlockNode& node, int64_t offset, int64_t bytes, bool serialising)
      : node_(node), req_{offset, bytes, serialising} {
    it_ = node_.tracked_.insert(node_.tracked_.end(), &req_);
  }
  ~RequestScope() {
    node_.tracked_.erase(it_);
    req_.waiters.notify_all();
  }
  RequestScope(const RequestScope&) = delete;
  RequestScope& operator=(const RequestScope&) = delete;

  TrackedRequest& req() { return req_; }

 private:
  BlockNode& node_;
  TrackedRequest req_;
  std::list<TrackedRequest*>::iterator it_;
};

// Counts a public request as in flight from its start to its end, whatever
// kind it is (close() waits for the count to drop to zero).
class BlockNode::InFlight {
 public:
  explicit InFlight(BlockNode& node) : node_(node) { ++node_.in_flight_; }
  ~InFlight() {
    if (--node_.in_flight_ == 0) node_.drained_.notify_all();
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  BlockNode& node_;
};

BlockNode::BlockNode(const BlockDriver* driver, EventLoop& loop)
    : driver_(driver), loop_(loop) {}

BlockNode::~BlockNode() { assert(tracked_.empty() && in_flight_ == 0); }

// ---- Checks ----

Status BlockNode::check_open() const {
  if (closed_) return MakeError(ENOMEDIUM, "Block node '" + node_name_ + "' is closed");
  return OkStatus();
}

bool BlockNode::grows_on_write() const {
  // Filters (blkdebug) pass such writes down to the protocol node below.
  return driver_ && (!driver_->protocol_name().empty() || driver_->is_filter());
}

void BlockNode::note_write_end(int64_t end) {
  if (grows_on_write() && end > size_) size_ = end;
}

// The one bounds check of the generic layer. Every request kind goes
// through it, so none of them can compute an aligned end that overflows:
// offset + bytes must not pass kMaxLength, INT64_MAX rounded down to 1 GiB
// (QEMU's BDRV_MAX_LENGTH): rounding an end up to any request alignment
// (at most 1 GiB) then still fits in int64_t. kInside requests lie within
// the node; kMayGrow requests (data and zero writes on nodes that grow on
// write) may end past it; kClamped requests (block_status) may reach past
// the end and are cut there; kPadded reads (kReqPaddedPastEnd) start
// inside the node and may end past it.
Status BlockNode::check_request(int64_t offset, int64_t bytes, Bounds bounds) const {
  constexpr int64_t kMaxLength = std::numeric_limits<int64_t>::max() & ~((int64_t{1} << 30) - 1);
  COBLK_RETURN_IF_ERROR(check_open());
  if (offset < 0) {
    return MakeError(EIO, "offset(" + std::to_string(offset) + ") is negative");
  }
  if (bytes < 0) {
    return MakeError(EIO, "bytes(" + std::to_string(bytes) + ") is negative");
  }
  if (bytes > kMaxLength || offset > kMaxLength - bytes) {
    return MakeError(EIO, "Request out of range: offset " + std::to_string(offset) +
                              ", bytes " + std::to_string(bytes));
  }
  if ((bounds == Bounds::kInside && offset + bytes > size_) ||
      (bounds == Bounds::kPadded && offset >= size_ && bytes > 0)) {
    return MakeError(EIO, "Request out of bounds: offset " + std::to_string(offset) +
                              ", bytes " + std::to_string(bytes) + ", size " +
                              std::to_string(size_));
  }
  return OkStatus();
}

Status BlockNode::check_write_request(int64_t offset, int64_t bytes) const {
  // Protocol nodes (host files) grow when a parent writes past their end,
  // as in QEMU: formats append clusters that way.
  return check_request(offset, bytes, grows_on_write() ? Bounds::kMayGrow : Bounds::kInside);
}

Status BlockNode::check_writable() const {
  COBLK_RETURN_IF_ERROR(check_open());
  if (read_only_) return MakeError(EPERM, "Block node is read-only");
  return OkStatus();
}

int64_t BlockNode::max_transfer_bytes() const {
  const int64_t align = limits_.request_alignment;
  int64_t max = RoundDown(std::numeric_limits<int32_t>::max(), align);
  if (limits_.max_transfer) {
    max = std::min<int64_t>(max, static_cast<int64_t>(std::min<uint64_t>(
                                     limits_.max_transfer, static_cast<uint64_t>(max))));
    max = RoundDown(max, align);
  }
  return std::max(max, align);
}

size_t BlockNode::buffer_alignment() const {
  return std::bit_ceil(std::max<size_t>(
      {limits_.min_mem_alignment, limits_.opt_mem_alignment, alignof(std::max_align_t)}));
}

// ---- Serialisation (QEMU's tracked requests) ----

// A serialising request waits for every overlapping request; others wait
// only for overlapping serialising ones. Requests that are themselves
// waiting are skipped: they re-check when they wake, which avoids deadlock.
Task<void> BlockNode::wait_serialising(TrackedRequest& self) {
  for (;;) {
    TrackedRequest* conflict = nullptr;
    for (TrackedRequest* r : tracked_) {
      if (r == &self || r->waiting || (!r->serialising && !self.serialising)) continue;
      if (r->offset < self.offset + self.bytes && self.offset < r->offset + r->bytes) {
        conflict = r;
        break;
      }
    }
    if (!conflict) co_return;
    self.waiting = true;
    co_await conflict->waiters.wait();
    self.waiting = false;
  }
}

// ---- Reads ----

Task<Status> BlockNode::preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) {
  InFlight busy(*this);
  // A parent's padded read, forwarded by a filter: the part past the end
  // reads as zeros (aligned_preadv), as QEMU reads it.
  const Bounds bounds = (flags & kReqPaddedPastEnd) ? Bounds::kPadded : Bounds::kInside;
  flags &= kReqPublicFlags;
  COBLK_CO_RETURN_IF_ERROR(check_request(offset, bytes, bounds));
  if (qiov.size() < static_cast<size_t>(bytes)) {
    co_return MakeError(EINVAL, "I/O vector smaller than the request");
  }
  if (bytes == 0) co_return OkStatus();
  const int64_t align = limits_.request_alignment;
  const int64_t start = RoundDown(offset, align);
  RequestScope scope(*this, start, RoundUp(offset + bytes, align) - start, false);
  co_await wait_serialising(scope.req());

  bool aligned = offset % align == 0 && bytes % align == 0;
  if (aligned && qiov.is_aligned(limits_.min_mem_alignment)) {
    if (qiov.size() == static_cast<size_t>(bytes)) {
      co_return co_await aligned_preadv(offset, bytes, qiov, flags);
    }
    IoVector view = qiov.slice(0, bytes);
    co_return co_await aligned_preadv(offset, bytes, view, flags);
  }
  co_return co_await bounce_preadv(offset, bytes, qiov, flags);
}

Task<Status> BlockNode::pread(int64_t offset, void* buf, int64_t bytes) {
  COBLK_CO_RETURN_IF_ERROR(check_request(offset, bytes, Bounds::kInside));
  IoVector qiov(buf, static_cast<size_t>(bytes));
  co_return co_await preadv(offset, bytes, qiov);
}

// Reads an aligned range, split at max_transfer. The part past the aligned
// end of the node reads as zeroes without asking the driver; a driver read
// that still runs past the end (the last, partial block) carries
// kReqPaddedPastEnd, so that a filter forwarding it to its child is not
// refused there.
Task<Status> BlockNode::aligned_preadv(int64_t offset, int64_t bytes, IoVector& qiov,
                                       uint32_t flags) {
  const int64_t align = limits_.request_alignment;
  const int64_t max_xfer = max_transfer_bytes();
  const int64_t readable = RoundUp(std::max<int64_t>(0, size_ - offset), align);
  auto driver_flags = [&](int64_t at, int64_t n) {
    return at + n > size_ ? flags | kReqPaddedPastEnd : flags;
  };
  if (bytes <= readable && bytes <= max_xfer) {
    co_return co_await co_preadv(offset, bytes, qiov, driver_flags(offset, bytes));
  }
  for (int64_t done = 0; done < bytes;) {
    int64_t num = std::min(bytes - done, max_xfer);
    if (done >= readable) {
      qiov.memset(static_cast<size_t>(done), 0, static_cast<size_t>(bytes - done));
      break;
    }
    num = std::min(num, readable - done);
    IoVector part = qiov.slice(static_cast<size_t>(done), static_cast<size_t>(num));
    COBLK_CO_RETURN_IF_ERROR(
        co_await co_preadv(offset + done, num, part, driver_flags(offset + done, num)));
    done += num;
  }
  co_return OkStatus();
}

Task<Status> BlockNode::bounce_preadv(int64_t offset, int64_t bytes, IoVector& qiov,
                                      uint32_t flags) {
  const int64_t align = limits_.request_alignment;
  const int64_t start = RoundDown(offset, align);
  const int64_t end = RoundUp(offset + bytes, align);
  const int64_t chunk = std::max(RoundDown(kBounceChunk, align), align);
  AlignedBuffer buf(static_cast<size_t>(std::min(chunk, end - start)), buffer_alignment());
  for (int64_t pos = start; pos < end;) {
    const int64_t n = std::min(chunk, end - pos);
    IoVector biov = buf.iov(0, static_cast<size_t>(n));
    COBLK_CO_RETURN_IF_ERROR(co_await aligned_preadv(pos, n, biov, flags));
    const int64_t lo = std::max(pos, offset);
    const int64_t hi = std::min(pos + n, offset + bytes);
    qiov.copy_from(static_cast<size_t>(lo - offset), buf.data() + (lo - pos),
                   static_cast<size_t>(hi - lo));
    pos += n;
  }
  co_return OkStatus();
}

// ---- Writes ----

Task<Status> BlockNode::pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) {
  InFlight busy(*this);
  flags &= kReqPublicFlags;
  COBLK_CO_RETURN_IF_ERROR(check_writable());
  COBLK_CO_RETURN_IF_ERROR(check_write_request(offset, bytes));
  Status st = co_await pwritev_checked(offset, bytes, qiov, flags);
  ++write_gen_;  // even a failed write may have changed something
  if (st) note_write_end(offset + bytes);
  co_return st;
}

Task<Status> BlockNode::pwritev_checked(int64_t offset, int64_t bytes, IoVector& qiov,
                                        uint32_t flags) {
  if (qiov.size() < static_cast<size_t>(bytes)) {
    co_return MakeError(EINVAL, "I/O vector smaller than the request");
  }
  if (bytes == 0) co_return OkStatus();
  const int64_t align = limits_.request_alignment;
  const int64_t start = RoundDown(offset, align);
  const bool aligned = offset % align == 0 && bytes % align == 0;
  // A read-modify-write must not interleave with another write to the same
  // aligned blocks, or one of them loses its bytes.
  RequestScope scope(*this, start, RoundUp(offset + bytes, align) - start, !aligned);
  co_await wait_serialising(scope.req());

  if (aligned && qiov.is_aligned(limits_.min_mem_alignment)) {
    if (qiov.size() == static_cast<size_t>(bytes)) {
      co_return co_await aligned_pwritev(offset, bytes, qiov, flags);
    }
    IoVector view = qiov.slice(0, bytes);
    co_return co_await aligned_pwritev(offset, bytes, view, flags);
  }
  co_return co_await bounce_pwritev(offset, bytes, qiov, flags);
}

Task<Status> BlockNode::pwrite(int64_t offset, const void* buf, int64_t bytes, uint32_t flags) {
  COBLK_CO_RETURN_IF_ERROR(check_writable());
  COBLK_CO_RETURN_IF_ERROR(check_write_request(offset, bytes));
  IoVector qiov(const_cast<void*>(buf), static_cast<size_t>(bytes));
  co_return co_await pwritev(offset, bytes, qiov, flags);
}

// data_end, when inside (offset, offset + bytes), marks the end of the
// caller's data in a padded write on a node that grows: the piece holding it
// goes to co_pwritev_padded so the driver can cut the padding off again.
Task<Status> BlockNode::aligned_pwritev(int64_t offset, int64_t bytes, IoVector& qiov,
                                        uint32_t flags, int64_t data_end) {
  const int64_t max_xfer = max_transfer_bytes();
  if (bytes <= max_xfer) co_return co_await driver_pwritev(offset, bytes, qiov, flags, data_end);
  for (int64_t done = 0; done < bytes;) {
    const int64_t num = std::min(bytes - done, max_xfer);
    IoVector part = qiov.slice(static_cast<size_t>(done), static_cast<size_t>(num));
    COBLK_CO_RETURN_IF_ERROR(co_await driver_pwritev(offset + done, num, part, flags, data_end));
    done += num;
  }
  co_return OkStatus();
}

// FUA, as QEMU's bdrv_driver_pwritev: a driver that does not declare the
// flag in supported_write_flags (supported_zero_flags for write_zeroes)
// gets the request without it, and the node is flushed after the request,
// so the data is durable when the request returns.
Task<Status> BlockNode::driver_pwritev(int64_t offset, int64_t bytes, IoVector& qiov,
                                       uint32_t flags, int64_t data_end) {
  const bool emulate_fua = (flags & kReqFua) && !(supported_write_flags_ & kReqFua);
  if (emulate_fua) flags &= ~static_cast<uint32_t>(kReqFua);
  Status st;
  if (data_end > offset && data_end < offset + bytes)
    st = co_await co_pwritev_padded(offset, bytes, qiov, flags, data_end);
  else
    st = co_await co_pwritev(offset, bytes, qiov, flags);
  if (st && emulate_fua) st = co_await co_flush();
  co_return st;
}

Task<Status> BlockNode::driver_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) {
  const bool emulate_fua = (flags & kReqFua) && !(supported_zero_flags_ & kReqFua);
  if (emulate_fua) flags &= ~static_cast<uint32_t>(kReqFua);
  Status st = co_await co_pwrite_zeroes(offset, bytes, flags);
  if (st && emulate_fua) st = co_await co_flush();
  co_return st;
}

// Writes through an aligned buffer; partial blocks at either end of the
// request are read first so their other bytes survive. The caller holds a
// serialising tracked request over the padded range.
Task<Status> BlockNode::bounce_pwritev(int64_t offset, int64_t bytes, const IoVector& qiov,
                                       uint32_t flags) {
  const int64_t align = limits_.request_alignment;
  const int64_t start = RoundDown(offset, align);
  const int64_t end = RoundUp(offset + bytes, align);
  const int64_t chunk = std::max(RoundDown(kBounceChunk, align), align);
  AlignedBuffer buf(static_cast<size_t>(std::min(chunk, end - start)), buffer_alignment());
  for (int64_t pos = start; pos < end;) {
    const int64_t n = std::min(chunk, end - pos);
    const bool head_partial = pos < offset;
    const bool tail_partial = pos + n > offset + bytes;
    if (head_partial) {
      IoVector blk = buf.iov(0, static_cast<size_t>(align));
      COBLK_CO_RETURN_IF_ERROR(co_await aligned_preadv(pos, align, blk, 0));
    }
    if (tail_partial && !(head_partial && n == align)) {
      IoVector blk = buf.iov(static_cast<size_t>(n - align), static_cast<size_t>(align));
      COBLK_CO_RETURN_IF_ERROR(co_await aligned_preadv(pos + n - align, align, blk, 0));
    }
    const int64_t lo = std::max(pos, offset);
    const int64_t hi = std::min(pos + n, offset + bytes);
    qiov.copy_to(static_cast<size_t>(lo - offset), buf.data() + (lo - pos),
                 static_cast<size_t>(hi - lo));
    IoVector biov = buf.iov(0, static_cast<size_t>(n));
    // On a growing node the zero padding after the data may lie past the
    // end: the driver is told where the data ends (see co_pwritev_padded).
    const int64_t data_end = tail_partial && grows_on_write() ? offset + bytes : 0;
    COBLK_CO_RETURN_IF_ERROR(co_await aligned_pwritev(pos, n, biov, flags, data_end));
    pos += n;
  }
  co_return OkStatus();
}

Task<Status> BlockNode::pwritev_compressed(int64_t offset, int64_t bytes, IoVector& qiov) {
  InFlight busy(*this);
  COBLK_CO_RETURN_IF_ERROR(check_writable());
  COBLK_CO_RETURN_IF_ERROR(check_request(offset, bytes, Bounds::kInside));
  if (qiov.size() < static_cast<size_t>(bytes)) {
    co_return MakeError(EINVAL, "I/O vector smaller than the request");
  }
  if (bytes == 0) co_return OkStatus();
  RequestScope scope(*this, offset, bytes, false);
  co_await wait_serialising(scope.req());
  Status st = co_await co_pwritev_compressed(offset, bytes, qiov);
  ++write_gen_;
  co_return st;
}

// ---- Write zeroes, discard ----

Task<Status> BlockNode::pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) {
  InFlight busy(*this);
  flags &= kReqPublicFlags;
  COBLK_CO_RETURN_IF_ERROR(check_writable());
  COBLK_CO_RETURN_IF_ERROR(check_write_request(offset, bytes));
  if (bytes == 0) co_return OkStatus();
  Status st = co_await zero_range_serialised(offset, bytes, flags);
  ++write_gen_;
  if (st) note_write_end(offset + bytes);
  co_return st;
}

Task<Status> BlockNode::zero_range_serialised(int64_t offset, int64_t bytes, uint32_t flags) {
  const int64_t align = limits_.request_alignment;
  const int64_t end = offset + bytes;
  const int64_t start = RoundDown(offset, align);
  const bool aligned = offset % align == 0 && bytes % align == 0;
  RequestScope scope(*this, start, RoundUp(end, align) - start, !aligned);
  co_await wait_serialising(scope.req());

  // Partial blocks at either end are written as zeroed data (RMW); the
  // aligned middle goes to the driver's write_zeroes.
  const int64_t mid_start = RoundUp(offset, align);
  const int64_t mid_end = RoundDown(end, align);
  const uint32_t data_flags = flags & kReqFua;
  if (mid_start >= mid_end) co_return co_await zero_partial_blocks_rmw(offset, bytes, data_flags);
  if (offset < mid_start) {
    COBLK_CO_RETURN_IF_ERROR(co_await zero_partial_blocks_rmw(offset, mid_start - offset, data_flags));
  }
  COBLK_CO_RETURN_IF_ERROR(co_await zero_blocks_via_driver(mid_start, mid_end - mid_start, flags));
  if (mid_end < end) {
    COBLK_CO_RETURN_IF_ERROR(co_await zero_partial_blocks_rmw(mid_end, end - mid_end, data_flags));
  }
  co_return OkStatus();
}

// Zeroes a range smaller than two aligned blocks with read-modify-write.
Task<Status> BlockNode::zero_partial_blocks_rmw(int64_t offset, int64_t bytes, uint32_t flags) {
  AlignedBuffer zero(static_cast<size_t>(bytes), buffer_alignment());
  zero.zero();
  IoVector qiov = zero.iov(0, static_cast<size_t>(bytes));
  co_return co_await bounce_pwritev(offset, bytes, qiov, flags);
}

// Like QEMU's bdrv_co_do_pwrite_zeroes: an unaligned head (relative to
// pwrite_zeroes_alignment) goes alone, the tail is cut off the big middle
// piece, and each piece respects max_pwrite_zeroes.
Task<Status> BlockNode::zero_blocks_via_driver(int64_t offset, int64_t bytes, uint32_t flags) {
  const int64_t zalign = std::max<int64_t>(limits_.pwrite_zeroes_alignment,
                                           limits_.request_alignment);
  int64_t max_zero = RoundDown(std::numeric_limits<int32_t>::max(), zalign);
  if (limits_.max_pwrite_zeroes) {
    max_zero = std::max(
        RoundDown(static_cast<int64_t>(std::min<uint64_t>(limits_.max_pwrite_zeroes,
                                                          static_cast<uint64_t>(max_zero))),
                  zalign),
        zalign);
  }
  int64_t head = offset % zalign;
  const int64_t tail = (offset + bytes) % zalign;
  while (bytes > 0) {
    int64_t num = bytes;
    if (head) {
      num = std::min(bytes, zalign - head);
      head = (head + num) % zalign;
    } else if (tail && num > zalign) {
      num -= tail;
    }
    num = std::min(num, max_zero);
    Status s = co_await driver_pwrite_zeroes(offset, num, flags);
    if (!s && s.error().errnum() == ENOTSUP) {
      if (flags & kReqNoFallback) co_return s;
      s = co_await write_zeroed_buffers(offset, num, flags);
    }
    if (!s) co_return s;
    offset += num;
    bytes -= num;
  }
  co_return OkStatus();
}

Task<Status> BlockNode::write_zeroed_buffers(int64_t offset, int64_t bytes, uint32_t flags) {
  const int64_t align = limits_.request_alignment;
  const int64_t chunk = std::min(std::max(RoundDown(kBounceChunk, align), align),
                                 std::max(max_transfer_bytes(), align));
  const int64_t len = std::min(chunk, bytes);
  AlignedBuffer zero(static_cast<size_t>(len), buffer_alignment());
  zero.zero();
  const uint32_t wflags = flags & kReqFua;
  for (int64_t done = 0; done < bytes;) {
    const int64_t n = std::min(len, bytes - done);
    IoVector qiov = zero.iov(0, static_cast<size_t>(n));
    COBLK_CO_RETURN_IF_ERROR(co_await aligned_pwritev(offset + done, n, qiov, wflags));
    done += n;
  }
  co_return OkStatus();
}

Task<Status> BlockNode::pdiscard(int64_t offset, int64_t bytes) {
  InFlight busy(*this);
  COBLK_CO_RETURN_IF_ERROR(check_writable());
  COBLK_CO_RETURN_IF_ERROR(check_request(offset, bytes, Bounds::kInside));
  // Discard is advisory: partial blocks at either end are simply kept.
  const int64_t align = std::max<int64_t>(static_cast<int64_t>(limits_.pdiscard_alignment),
                                          limits_.request_alignment);
  const int64_t start = RoundUp(offset, align);
  const int64_t end = RoundDown(offset + bytes, align);
  if (start >= end) co_return OkStatus();
  RequestScope scope(*this, start, end - start, false);
  co_await wait_serialising(scope.req());
  Status s = co_await co_pdiscard(start, end - start);
  ++write_gen_;
  if (!s && s.error().errnum() == ENOTSUP) co_return OkStatus();
  co_return s;
}

// ---- Flush, truncate, close ----

Task<Status> BlockNode::flush() {
  InFlight busy(*this);
  COBLK_CO_RETURN_IF_ERROR(check_open());
  co_return co_await flush_unless_clean();
}

// QEMU's write_gen/flushed_gen: a protocol node with no write completed
// since its last successful flush has nothing to write back, so the flush
// (an fdatasync for a file) is skipped. That is what makes a close issue
// one fdatasync: the backend's close flushes the whole graph once, and the
// flushes of the nodes' own closes then find nothing new. Format and filter
// nodes always run their co_flush (it may write metadata, and it recurses
// to their children, which apply this rule themselves).
Task<Status> BlockNode::flush_unless_clean() {
  if (read_only_) co_return OkStatus();
  const uint64_t gen = write_gen_;
  const bool protocol = driver_ && !driver_->protocol_name().empty();
  if (protocol && gen == flushed_gen_) co_return OkStatus();
  Status st = co_await co_flush();
  if (st) flushed_gen_ = std::max(flushed_gen_, gen);
  co_return st;
}

Task<Status> BlockNode::truncate(int64_t size, bool exact, PreallocMode prealloc) {
  InFlight busy(*this);
  COBLK_CO_RETURN_IF_ERROR(check_writable());
  if (size < 0) co_return MakeError(EINVAL, "Image size cannot be negative");
  COBLK_CO_RETURN_IF_ERROR(check_request(size, 0, Bounds::kMayGrow));
  const int64_t old_size = size_;
  // Serialise against every request touching the changed tail.
  const int64_t from = std::min(old_size, size);
  RequestScope scope(*this, from, std::numeric_limits<int64_t>::max() - from, true);
  co_await wait_serialising(scope.req());
  Status st = co_await co_truncate(size, exact, prealloc);
  ++write_gen_;
  COBLK_CO_RETURN_IF_ERROR(st);
  if (size_ == old_size) size_ = size;
  co_return OkStatus();
}

// Every public request counts as in flight until it ends (InFlight), not
// only the tracked ones: a flush or truncate waiting on the thread pool
// must not run after the driver has closed its file descriptor. The first
// error (flush, the driver's close, a child's close) is returned; the
// remaining steps still run.
Task<Status> BlockNode::close() {
  if (closed_) co_return OkStatus();
  closed_ = true;  // new requests now fail; let in-flight ones drain
  while (in_flight_ > 0) co_await drained_.wait();
  Status result = co_await flush_unless_clean();
  Status st = co_await co_close();
  if (result && !st) result = st;
  // Children close after their parent, and only if no one else uses them.
  for (BdrvChild& c : children_) {
    if (c.node && c.node.use_count() == 1) {
      st = co_await c.node->close();
      if (result && !st) result = st;
    }
  }
  children_.clear();
  co_return result;
}

// ---- Block status ----

Task<Result<BlockStatus>> BlockNode::block_status(bool want_zero, int64_t offset,
                                                  int64_t bytes) {
  InFlight busy(*this);
  COBLK_CO_RETURN_IF_ERROR(check_request(offset, bytes, Bounds::kClamped));
  co_return co_await block_status_recursive(want_zero, offset, bytes);
}

// QEMU's bdrv_co_block_status: align the query, ask the driver, follow
// kStatusRaw into the file, and, where the driver sets kStatusRecurse,
// refine data with the zero information of the node holding it.
Task<Result<BlockStatus>> BlockNode::block_status_recursive(bool want_zero, int64_t offset,
                                                            int64_t bytes) {
  const int64_t total = size_;
  if (offset >= total) co_return BlockStatus{kStatusEof, 0, 0, nullptr};
  if (bytes == 0) co_return BlockStatus{};
  bytes = std::min(bytes, total - offset);

  const int64_t align = limits_.request_alignment;
  const int64_t aligned_offset = RoundDown(offset, align);
  const int64_t aligned_bytes = RoundUp(offset + bytes, align) - aligned_offset;
  Result<BlockStatus> r = co_await co_block_status(want_zero, aligned_offset, aligned_bytes);
  if (!r) co_return r;
  BlockStatus st = *r;
  if (st.pnum <= 0) {
    co_return MakeError(EIO, "Block driver '" + DriverName(driver_) +
                                 "' returned an empty block status");
  }
  const int64_t head = offset - aligned_offset;
  st.pnum = std::min(RoundUp(st.pnum, align), aligned_bytes);
  st.pnum = std::min(st.pnum - head, bytes);
  if (st.status & kStatusOffsetValid) st.map += head;

  if (st.status & kStatusRaw) {
    if (!st.file || !(st.status & kStatusOffsetValid)) {
      co_return MakeError(EIO, "Block driver '" + DriverName(driver_) +
                                   "' returned a raw status without a mapping");
    }
    const int64_t pnum = st.pnum;
    Result<BlockStatus> inner = co_await st.file->block_status_recursive(want_zero, st.map, pnum);
    if (!inner) co_return inner;
    st = *inner;
    if (st.pnum == 0) {
      // Mapped past the end of the file: reads there return zeroes.
      st = BlockStatus{kStatusZero | kStatusAllocated, pnum, 0, nullptr};
    }
    st.status &= ~static_cast<uint32_t>(kStatusEof);
  } else {
    if (st.status & (kStatusData | kStatusZero)) {
      st.status |= kStatusAllocated;
    } else if (driver_ && driver_->supports_backing()) {
      BlockNode* b = backing();
      if (!b || (want_zero && offset >= b->size())) st.status |= kStatusZero;
    }
    // Only where the driver asks for it (kStatusRecurse), as QEMU 7.2: a
    // sparse format's allocated cluster over a hole of its file stays data.
    const bool recurse = st.status & kStatusRecurse;
    st.status &= ~static_cast<uint32_t>(kStatusRecurse);
    if (recurse && !(st.status & kStatusOffsetValid && st.file)) {
      co_return MakeError(EIO, "Block driver '" + DriverName(driver_) +
                                   "' returned a recurse status without a mapping");
    }
    if (want_zero && recurse && st.file != this && (st.status & kStatusData) &&
        !(st.status & kStatusZero)) {
      Result<BlockStatus> fs =
          co_await st.file->block_status_recursive(want_zero, st.map, st.pnum);
      if (fs) {
        if ((fs->status & kStatusEof) && (fs->pnum == 0 || (fs->status & kStatusZero))) {
          st.status |= kStatusZero;  // past the file's end reads as zeroes
        } else {
          st.pnum = fs->pnum;
          st.status |= fs->status & kStatusZero;
        }
      }
    }
  }
  if (offset + st.pnum == total) st.status |= kStatusEof;
  co_return st;
}

Task<Result<BlockStatus>> BlockNode::block_status_above(BlockNode* base, bool want_zero,
                                                        int64_t offset, int64_t bytes) {
  Result<BlockStatus> r = co_await block_status(want_zero, offset, bytes);
  if (!r || r->pnum == 0 || (r->status & kStatusAllocated) || this == base) co_return r;
  BlockStatus st = *r;
  const int64_t eof = (st.status & kStatusEof) ? offset + st.pnum : -1;
  bytes = st.pnum;
  for (BlockNode* p = FilterOrCow(this); p && p != base; p = FilterOrCow(p)) {
    Result<BlockStatus> lower = co_await p->block_status(want_zero, offset, bytes);
    if (!lower) co_return lower;
    st = *lower;
    if (st.pnum == 0) {
      // This layer is shorter than the one above: its tail reads as zeroes,
      // as if allocated here.
      st = BlockStatus{kStatusZero | kStatusOffsetValid | kStatusAllocated, bytes, offset, p};
      break;
    }
    if (st.status & kStatusAllocated) {
      st.status &= ~static_cast<uint32_t>(kStatusEof);  // belongs to a shorter layer
      break;
    }
    bytes = st.pnum;
  }
  if (offset + st.pnum == eof) st.status |= kStatusEof;
  co_return st;
}

Task<Result<CheckResult>> BlockNode::check(uint32_t fix) {
  InFlight busy(*this);
  COBLK_CO_RETURN_IF_ERROR(check_open());
  co_return co_await co_check(fix);
}

Task<Result<bool>> BlockNode::is_allocated(int64_t offset, int64_t bytes, int64_t* pnum) {
  Result<BlockStatus> r = co_await block_status(false, offset, bytes);
  if (!r) co_return std::unexpected(r.error());
  if (pnum) *pnum = r->pnum;
  co_return (r->status & kStatusAllocated) != 0;
}

Task<Result<bool>> BlockNode::is_allocated_above(BlockNode* base, bool include_base,
                                                 int64_t offset, int64_t bytes, int64_t* pnum,
                                                 int* depth) {
  COBLK_CO_RETURN_IF_ERROR(check_request(offset, bytes, Bounds::kClamped));
  bytes = std::min(bytes, std::max<int64_t>(0, size_ - offset));
  int64_t n = bytes;  // the range every layer so far leaves unallocated
  int layer = 0;
  for (BlockNode* p = this; p && n > 0; p = FilterOrCow(p), ++layer) {
    if (p == base && !include_base) break;
    if (offset < p->size()) {
      Result<BlockStatus> r = co_await p->block_status(false, offset, n);
      if (!r) co_return std::unexpected(r.error());
      if (r->status & kStatusAllocated) {
        if (pnum) *pnum = r->pnum;
        if (depth) *depth = layer;
        co_return true;
      }
      // Below the top, a layer that ends inside the range leaves its tail
      // unallocated: the answer is the same past its end.
      if (p == this || offset + r->pnum < p->size()) n = std::min(n, r->pnum);
    }
    if (p == base) break;
  }
  if (pnum) *pnum = n;
  if (depth) *depth = layer;
  co_return false;
}

// ---- Graph and properties ----

BlockNode* BlockNode::backing() const {
  for (const BdrvChild& c : children_) {
    if (c.role == ChildRole::kBacking) return c.node.get();
  }
  return nullptr;
}

BlockNode* BlockNode::child(const std::string& name) const {
  for (const BdrvChild& c : children_) {
    if (c.name == name) return c.node.get();
  }
  return nullptr;
}

std::shared_ptr<BlockNode> BlockNode::remove_child(const std::string& name) {
  for (auto it = children_.begin(); it != children_.end(); ++it) {
    if (it->name == name) {
      std::shared_ptr<BlockNode> n = std::move(it->node);
      children_.erase(it);
      return n;
    }
  }
  return nullptr;
}

std::shared_ptr<BlockNode> BlockNode::backing_ref() const {
  for (const BdrvChild& c : children_) {
    if (c.role == ChildRole::kBacking) return c.node;
  }
  return nullptr;
}

void BlockNode::attach_file(std::shared_ptr<BlockNode> file, bool read_only) {
  set_size(file->size());
  set_filename(file->filename());
  set_read_only(read_only);
  add_child("file", ChildRole::kFile, std::move(file));
}

void BlockNode::add_child(std::string name, ChildRole role, std::shared_ptr<BlockNode> node) {
  for (BdrvChild& c : children_) {
    if (c.name == name) {
      c.role = role;
      c.node = std::move(node);
      return;
    }
  }
  children_.push_back({std::move(name), role, std::move(node)});
}

void BlockNode::refresh_limits() {
  BlockLimits l = driver_limits();
  l.request_alignment = std::max<uint32_t>(l.request_alignment, 1);
  l.min_mem_alignment = std::max<uint32_t>(l.min_mem_alignment, 1);
  l.opt_mem_alignment = std::max(l.opt_mem_alignment, l.min_mem_alignment);
  // Storage children constrain what this node may send them.
  for (const BdrvChild& c : children_) {
    if (!c.node || c.role == ChildRole::kBacking) continue;
    const BlockLimits& cl = c.node->limits();
    l.request_alignment = std::max(l.request_alignment, cl.request_alignment);
    l.min_mem_alignment = std::max(l.min_mem_alignment, cl.min_mem_alignment);
    l.opt_mem_alignment = std::max(l.opt_mem_alignment, cl.opt_mem_alignment);
    l.max_transfer = MinNonZero(l.max_transfer, cl.max_transfer);
  }
  limits_ = l;
}

void BlockNode::debug_event(const std::string& event) {
  if (BlockNode* f = file()) f->debug_event(event);
}

ImageInfo BlockNode::get_info() {
  ImageInfo info;
  info.filename = filename_;
  info.format = DriverName(driver_);
  info.virtual_size = size_;
  info.actual_size = allocated_file_size();
  info.specific = get_specific_info();
  return info;
}

int64_t BlockNode::allocated_file_size() {
  int64_t sum = 0;
  bool any = false;
  for (const BdrvChild& c : children_) {
    if (!c.node || c.role == ChildRole::kBacking) continue;
    int64_t n = c.node->allocated_file_size();
    if (n < 0) return -1;
    sum += n;
    any = true;
  }
  return any ? sum : -1;
}

// ---- Driver interface defaults ----

Task<Status> BlockNode::co_pwritev(int64_t, int64_t, IoVector&, uint32_t) {
  co_return MakeError(ENOTSUP, "Block driver '" + DriverName(driver_) +
                                   "' does not support writing");
}

Task<Status> BlockNode::co_pwritev_padded(int64_t offset, int64_t bytes, IoVector& qiov,
                                           uint32_t flags, int64_t) {
  return co_pwritev(offset, bytes, qiov, flags);
}

Task<Status> BlockNode::co_pwritev_compressed(int64_t, int64_t, IoVector&) {
  co_return MakeError(ENOTSUP, "Compression is not supported for this drive");
}

Task<Status> BlockNode::co_pwrite_zeroes(int64_t, int64_t, uint32_t) {
  co_return MakeError(ENOTSUP, "Block driver '" + DriverName(driver_) +
                                   "' does not support write_zeroes");
}

Task<Status> BlockNode::co_pdiscard(int64_t, int64_t) {
  co_return MakeError(ENOTSUP, "Block driver '" + DriverName(driver_) +
                                   "' does not support discard");
}

Task<Status> BlockNode::co_flush() {
  for (const BdrvChild& c : children_) {
    if (c.node) COBLK_CO_RETURN_IF_ERROR(co_await c.node->flush());
  }
  co_return OkStatus();
}

Task<Status> BlockNode::co_truncate(int64_t, bool, PreallocMode) {
  co_return MakeError(ENOTSUP, "Image format driver does not support resize");
}

Task<Result<BlockStatus>> BlockNode::co_block_status(bool, int64_t, int64_t bytes) {
  co_return BlockStatus{kStatusData | kStatusAllocated, bytes, 0, nullptr};
}

Task<Status> BlockNode::co_change_backing_file(const std::string&, const std::string&,
                                               BlockNode*) {
  co_return MakeError(ENOTSUP, "Operation not supported");
}

Task<Result<CheckResult>> BlockNode::co_check(uint32_t) {
  co_return MakeError(ENOTSUP, "This image format does not support checks");
}

}  // namespace coblk
