// The "copy-on-read" filter (QEMU's copy-on-read driver): reads pass to the
// filtered node (its "file" child, usually the top image of a backing
// chain); a range that the filtered node does not allocate but a layer of
// its backing chain does is read through the chain and then written into
// the filtered node, so the next read finds it there. Writes, zero writes,
// discards and flushes pass through; block_status passes through, so the
// filter is invisible to map.
//
//   driver=copy-on-read,file.driver=vmdk,file.file.filename=top.vmdk
//   driver=copy-on-read,bottom=<node-name>,file.driver=vmdk,...
//
// Options (QEMU's): "bottom", the node-name of a layer of the filtered
// node's backing chain; data of that layer and the layers above it is
// copied, data below it is not (block-stream uses this to stop at its base).
//
// Copy-up and guest writes: a copy-up reads old data from the chain and
// writes it into the filtered node; a write through the filter to the same
// range in between would be overwritten by stale data. So every copy-up
// holds its cluster-aligned range exclusively, and every write-like request
// through the filter holds its range shared: a copy-up waits for the writes
// in flight on its range and writes wait for the copy-up (QEMU serialises
// COPY_ON_READ requests the same way). Under the lock the copy-up asks
// again which parts are unallocated and copies only those, so data a write
// put there before it got the lock is never overwritten. Writes that bypass
// the filter (straight to the filtered node) are not covered: give the
// guest the filter.
//
// Threads: everything runs on the node's EventLoop thread (see BlockNode);
// the lock list needs no mutex.
#include <algorithm>
#include <list>
#include <memory>
#include <string>

#include "block/block_driver.h"
#include "block/block_node.h"
#include "coroutine/co_queue.h"
#include "io/aligned_buffer.h"

namespace coblk::cor {

namespace {

constexpr int64_t kDefaultCluster = 64 * 1024;
// A copy-up handles at most this much at once (bounds its buffer).
constexpr int64_t kMaxCopy = 1 << 20;

int64_t RoundDown(int64_t x, int64_t a) { return x - x % a; }
int64_t RoundUp(int64_t x, int64_t a) { return RoundDown(x + a - 1, a); }

bool AllZero(const uint8_t* p, size_t n) {
  return n == 0 || (p[0] == 0 && std::equal(p + 1, p + n, p));
}

}  // namespace

class CorNode final : public BlockNode {
 public:
  CorNode(const BlockDriver* driver, EventLoop& loop) : BlockNode(driver, loop) {}

  void configure(BlockNode* bottom) {
    bottom_ = bottom;
    const int64_t cs = file()->get_info().cluster_size;
    cluster_ = cs > 0 && cs <= kMaxCopy && (cs & (cs - 1)) == 0 ? cs : kDefaultCluster;
  }
  bool has_zero_init() override { return file()->has_zero_init(); }
  int64_t allocated_file_size() override { return file()->allocated_file_size(); }
  std::string backing_filename() const override { return file()->backing_filename(); }
  ImageInfo get_info() override { return file()->get_info(); }

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    BlockNode* top = file();
    for (int64_t done = 0; done < bytes;) {
      const int64_t pos = offset + done;
      if (pos >= top->size()) {
        // Alignment padding past the end of the top reads as zeroes.
        qiov.memset(static_cast<size_t>(done), 0, static_cast<size_t>(bytes - done));
        break;
      }
      int64_t n = 0;
      auto in_top = co_await top->is_allocated(pos, std::min(bytes - done, top->size() - pos), &n);
      if (!in_top) co_return std::unexpected(in_top.error());
      bool copy = false;
      if (!*in_top && top->backing()) {
        // Only what a layer down to bottom allocates is copied.
        int64_t m = 0;
        auto below = co_await top->backing()->is_allocated_above(bottom_, bottom_ != nullptr, pos,
                                                                 n, &m);
        if (!below) co_return std::unexpected(below.error());
        copy = *below;
        if (m > 0) n = std::min(n, m);
      }
      IoVector part = qiov.slice(static_cast<size_t>(done), static_cast<size_t>(n));
      if (copy) {
        COBLK_CO_RETURN_IF_ERROR(co_await copy_up(pos, n, part));
      } else {
        COBLK_CO_RETURN_IF_ERROR(co_await top->preadv(pos, n, part, flags));
      }
      done += n;
    }
    co_return OkStatus();
  }

  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    RangeLock lock(*this, offset, bytes, false);
    co_await lock.acquire();
    co_return co_await file()->pwritev(offset, bytes, qiov, flags);
  }
  Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) override {
    RangeLock lock(*this, offset, bytes, false);
    co_await lock.acquire();
    co_return co_await file()->pwrite_zeroes(offset, bytes, flags);
  }
  Task<Status> co_pdiscard(int64_t offset, int64_t bytes) override {
    RangeLock lock(*this, offset, bytes, false);
    co_await lock.acquire();
    co_return co_await file()->pdiscard(offset, bytes);
  }
  Task<Status> co_flush() override { co_return co_await file()->flush(); }
  // Resizing passes through, as QEMU passes a filter's truncate to its child.
  Task<Status> co_truncate(int64_t size, bool exact, PreallocMode prealloc) override {
    co_return co_await file()->truncate(size, exact, prealloc);
  }
  Task<Result<BlockStatus>> co_block_status(bool, int64_t offset, int64_t bytes) override {
    co_return BlockStatus{kStatusRaw | kStatusOffsetValid, bytes, offset, file()};
  }

 private:
  // A range held by a copy-up (exclusive) or a write (shared).
  struct Held {
    int64_t offset, bytes;
    bool exclusive;
    CoQueue released;
  };
  class RangeLock {
   public:
    RangeLock(CorNode& node, int64_t offset, int64_t bytes, bool exclusive)
        : node_(node), held_{offset, bytes, exclusive, {}} {}
    ~RangeLock() {
      if (!acquired_) return;
      node_.held_.erase(it_);
      held_.released.notify_all();
    }
    RangeLock(const RangeLock&) = delete;
    RangeLock& operator=(const RangeLock&) = delete;
    // Waits until no conflicting range is held, then holds this one.
    Task<void> acquire() {
      for (;;) {
        Held* conflict = nullptr;
        for (Held* h : node_.held_) {
          if ((h->exclusive || held_.exclusive) && h->offset < held_.offset + held_.bytes &&
              held_.offset < h->offset + h->bytes) {
            conflict = h;
            break;
          }
        }
        if (!conflict) break;
        co_await conflict->released.wait();
      }
      it_ = node_.held_.insert(node_.held_.end(), &held_);
      acquired_ = true;
    }

   private:
    CorNode& node_;
    Held held_;
    bool acquired_ = false;
    std::list<Held*>::iterator it_;
  };

  // Copies the clusters around [offset, offset + bytes) (unallocated in the
  // top when last asked) from the chain into the top and fills qiov from
  // the copy, piece by piece of at most kMaxCopy.
  Task<Status> copy_up(int64_t offset, int64_t bytes, IoVector& qiov) {
    BlockNode* top = file();
    for (int64_t done = 0; done < bytes;) {
      const int64_t pos = offset + done;
      const int64_t start = RoundDown(pos, cluster_);
      const int64_t end =
          std::min({RoundUp(offset + bytes, cluster_), start + kMaxCopy, top->size()});
      const int64_t chunk_end = std::min(end, offset + bytes);
      RangeLock lock(*this, start, end - start, true);
      co_await lock.acquire();
      AlignedBuffer buf(static_cast<size_t>(end - start), 4096);
      for (int64_t at = start; at < end;) {
        int64_t n = 0;
        auto in_top = co_await top->is_allocated(at, end - at, &n);
        if (!in_top) co_return std::unexpected(in_top.error());
        if (n <= 0) n = end - at;
        IoVector piece = buf.iov(static_cast<size_t>(at - start), static_cast<size_t>(n));
        COBLK_CO_RETURN_IF_ERROR(co_await top->preadv(at, n, piece));
        if (!*in_top) {
          top->debug_event("cor_write");
          // Zeroes go in as a zero write (a zeroed grain, where the format
          // has them), as QEMU's copy-on-read does.
          Status st;
          if (AllZero(buf.data() + (at - start), static_cast<size_t>(n)))
            st = co_await top->pwrite_zeroes(at, n, 0);
          else
            st = co_await top->pwritev(at, n, piece);
          COBLK_CO_RETURN_IF_ERROR(st);
        }
        at += n;
      }
      qiov.copy_from(static_cast<size_t>(done), buf.data() + (pos - start),
                     static_cast<size_t>(chunk_end - pos));
      done = chunk_end - offset;
    }
    co_return OkStatus();
  }

  BlockNode* bottom_ = nullptr;
  int64_t cluster_ = kDefaultCluster;
  std::list<Held*> held_;
};

class CorDriver final : public BlockDriver {
 public:
  std::string_view format_name() const override { return "copy-on-read"; }
  bool is_filter() const override { return true; }
  bool has_file_child() const override { return true; }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    // A filter that may not write cannot copy anything up (QEMU refuses it
    // through its permission check).
    if (ctx.read_only) co_return MakeError(EPERM, "Block node is read-only");
    const std::optional<std::string> bottom_name = ctx.options.take_string("bottom");
    auto child = co_await ctx.open_child("file", ChildRole::kFile);
    if (!child) co_return std::unexpected(child.error());
    if (!*child) co_return MakeError(EINVAL, "A block device must be specified for \"file\"");
    BlockNode* bottom = nullptr;
    if (bottom_name) {
      for (BlockNode* n = (*child)->backing(); n && !bottom; n = n->backing())
        if (n->node_name() == *bottom_name) bottom = n;
      if (!bottom)
        co_return MakeError(EINVAL, "Bottom node '" + *bottom_name +
                                        "' is not in the backing chain of '" +
                                        (*child)->filename() + "'");
    }
    auto node = std::make_shared<CorNode>(this, ctx.loop);
    node->attach_file(*child, ctx.read_only);
    node->set_supported_flags(kReqFua, kReqFua | kReqMayUnmap | kReqNoFallback);
    node->configure(bottom);
    node->refresh_limits();
    co_return std::shared_ptr<BlockNode>(std::move(node));
  }
};

COBLK_REGISTER_BLOCK_DRIVER(CorDriver)

}  // namespace coblk::cor
