#include "block/block_job.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <set>

#include "block/block_graph.h"
#include "coroutine/sleep.h"
#include "coroutine/spawn.h"
#include "coroutine/sync_wait.h"
#include "io/aligned_buffer.h"
#include "util/rate_limit.h"

namespace coblk {

namespace {

std::string FormatOf(const BlockNode& n) {
  return n.driver() ? std::string(n.driver()->format_name()) : std::string();
}

// The name an image records for its backing file: the backing file's name
// relative to the image's directory when both share it, else absolute.
std::string BackingName(const std::string& image, const BlockNode& backing) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path b = fs::absolute(backing.filename(), ec).lexically_normal();
  const fs::path i = fs::absolute(image, ec).lexically_normal();
  if (b.parent_path() == i.parent_path()) return b.filename().string();
  return b.string();
}

// The node of the chain from `from` down whose backing child is `n`.
BlockNode* OverlayOf(BlockNode* from, const BlockNode* n) {
  for (BlockNode* p = from; p; p = p->backing())
    if (p->backing() == n) return p;
  return nullptr;
}

Status NeedsReadWrite(const BlockNode& n, const char* why) {
  return MakeError(EACCES, "'" + n.filename() + "' must be open read-write " + why +
                               " (backing files open read-only: give e.g. "
                               "backing.read-only=off)");
}

}  // namespace

// ---- BlockJob ----

Task<void> RunJob(std::shared_ptr<BlockJob> job) {
  Status s = co_await job->run();
  job->status_ = std::move(s);
  job->paused_.store(false, std::memory_order_release);
  job->backend_.set_job_running(false);
  job->done_.store(true, std::memory_order_release);
  job->finished_.notify_all();
}

void BlockJob::start() {
  backend_.set_job_running(true);
  spawn(backend_.loop(), RunJob(shared_from_this()));
}

void BlockJob::pause() { pause_requested_ = true; }

void BlockJob::resume() {
  pause_requested_ = false;
  resumed_.notify_all();
}

void BlockJob::cancel() {
  cancelled_ = true;
  resumed_.notify_all();
}

Task<Status> BlockJob::checkpoint() {
  while (pause_requested_ && !cancelled_) {
    paused_.store(true, std::memory_order_release);
    co_await resumed_.wait();
  }
  paused_.store(false, std::memory_order_release);
  if (cancelled_) co_return MakeError(ECANCELED, "Block job cancelled");
  co_return OkStatus();
}

Status BlockJob::set_speed(int64_t bytes_per_second) {
  if (bytes_per_second < 0) return MakeError(EINVAL, "Invalid parameter 'speed'");
  if (!limit_) limit_ = std::make_shared<RateLimit>();
  limit_->set_speed(static_cast<uint64_t>(bytes_per_second));
  return OkStatus();
}

Task<Status> BlockJob::throttle(int64_t bytes) {
  if (!limit_ || !limit_->enabled()) co_return OkStatus();
  for (;;) {
    COBLK_CO_RETURN_IF_ERROR(co_await checkpoint());
    const std::chrono::nanoseconds wait = limit_->wait_time();
    if (wait.count() <= 0) break;
    co_await co_sleep(std::min<std::chrono::nanoseconds>(wait, std::chrono::milliseconds(100)));
  }
  limit_->account(static_cast<uint64_t>(bytes));
  co_return OkStatus();
}

Task<Status> BlockJob::co_wait() {
  while (!done()) co_await finished_.wait();
  co_return status_;
}

Status BlockJob::wait() { return sync_wait(backend_.loop(), co_wait()); }

namespace {

// ---- snapshot ----

class SnapshotJob final : public BlockJob {
 public:
  SnapshotJob(BlockBackend& b, SnapshotOptions o) : BlockJob(b, "snapshot"), opts_(std::move(o)) {}

 protected:
  Task<Status> run() override {
    set_total(1);
    std::shared_ptr<BlockNode> top = backend_.root();
    EventLoop& loop = backend_.loop();
    if (opts_.overlay.empty()) co_return MakeError(EINVAL, "Snapshot needs an overlay file name");
    if (std::filesystem::exists(opts_.overlay))
      co_return MakeError(EEXIST, "Overlay '" + opts_.overlay + "' exists already");
    Options create = opts_.create_options;
    create.set("size", std::to_string(top->size()));
    COBLK_CO_RETURN_IF_ERROR(co_await CreateImage(loop, opts_.format, opts_.overlay, create));
    BlockGraph graph(loop);
    Options open = opts_.open_options;
    open.set("driver", opts_.format);
    open.set("filename", opts_.overlay);
    open.set("backing", "null");  // linked below, to the node already open
    Result<std::shared_ptr<BlockNode>> overlay =
        co_await graph.open(std::move(open), OpenFlags{.read_only = false, .probe_warning = false});
    if (!overlay) {
      std::error_code ec;
      std::filesystem::remove(opts_.overlay, ec);
      co_return std::unexpected(overlay.error().WithContext("Could not open the overlay"));
    }
    // The switch: no guest request in flight. Everything the top
    // acknowledged is flushed before the overlay names it as its backing
    // file, and requests issued from now on go to the overlay.
    co_await backend_.co_drain_begin();
    Status st = co_await top->flush();
    if (st) {
      st = co_await (*overlay)->change_backing_file(BackingName(opts_.overlay, *top), FormatOf(*top),
                                                    top.get());
    }
    if (st) {
      (*overlay)->add_child("backing", ChildRole::kBacking, top);
      backend_.replace_root(*overlay);
    }
    backend_.drain_end();
    if (!st) {
      co_await (*overlay)->close();
      std::error_code ec;
      std::filesystem::remove(opts_.overlay, ec);
      co_return st;
    }
    add_progress(1);
    co_return OkStatus();
  }

 private:
  SnapshotOptions opts_;
};

// ---- commit ----

class CommitJob final : public BlockJob {
 public:
  CommitJob(BlockBackend& b, CommitOptions o) : BlockJob(b, "commit"), opts_(o) {}

  // Checks the graph before the job starts.
  Status prepare() {
    root_ = backend_.root();
    top_ = opts_.top ? opts_.top : root_.get();
    active_ = top_ == root_.get();
    if (!active_) {
      above_top_ = OverlayOf(root_.get(), top_);
      if (!above_top_) return MakeError(EINVAL, "Top node is not in the backend's backing chain");
      if (above_top_->read_only()) return NeedsReadWrite(*above_top_, "to name a new backing file");
    }
    if (!top_->backing())
      return MakeError(EINVAL, "'" + top_->filename() + "' has no backing file to commit into");
    base_ = opts_.base;
    if (!base_)
      for (base_ = top_->backing(); base_->backing();) base_ = base_->backing();
    above_base_ = OverlayOf(top_, base_);
    if (!above_base_) return MakeError(EINVAL, "Base node is not below the top in its backing chain");
    if (base_->read_only()) return NeedsReadWrite(*base_, "to commit into it");
    if (base_->size() < top_->size())
      return MakeError(EINVAL, "Base '" + base_->filename() + "' is smaller than the top image");
    // A layer that records its parent's identity (a VMDK's parentCID) must
    // follow the base's new one when the base is first written.
    relink_above_base_ = above_base_->driver() == base_->driver();
    if (relink_above_base_ && above_base_->read_only())
      return NeedsReadWrite(*above_base_, "to follow its backing file's new identity");
    if (opts_.chunk <= 0 || opts_.chunk % 512 != 0)
      return MakeError(EINVAL, "Chunk size must be a positive multiple of 512");
    return set_speed(opts_.speed);
  }

 protected:
  Task<Status> run() override {
    std::shared_ptr<BlockNode> top_ref = active_ ? root_ : above_top_->backing_ref();
    std::shared_ptr<BlockNode> base_ref = above_base_->backing_ref();
    const int64_t size = top_->size();
    set_total(size);
    buf_ = AlignedBuffer(static_cast<size_t>(opts_.chunk), 4096);
    if (active_) {
      // Installed drained: every guest write that reaches the top from now
      // on is seen when it completes (QEMU's dirty bitmap, set after the
      // write).
      co_await backend_.co_drain_begin();
      backend_.set_write_observer([this](int64_t off, int64_t bytes) { mark_dirty(off, bytes); });
      backend_.drain_end();
    }
    Status st = co_await copy_allocated(size);
    if (st && active_) st = co_await copy_dirty_until_small();
    // The switch, drained: the last dirty chunks, a flush of the base, then
    // the graph change; nothing changes when anything failed.
    co_await backend_.co_drain_begin();
    if (st && active_) st = co_await copy_dirty_drained();
    if (st) st = co_await base_->flush();
    if (st && !active_) {
      st = co_await above_top_->change_backing_file(BackingName(above_top_->filename(), *base_),
                                                    FormatOf(*base_), base_);
      if (st) above_top_->add_child("backing", ChildRole::kBacking, base_ref);
    }
    if (st && active_) backend_.replace_root(base_ref);
    if (active_) backend_.set_write_observer({});
    backend_.drain_end();
    if (!st) co_return st;
    // The committed layers are out of the graph: close them (down to, not
    // including, the base, which others still hold).
    root_.reset();
    co_await top_ref->close();
    co_return OkStatus();
  }

 private:
  void mark_dirty(int64_t off, int64_t bytes) {
    if (bytes <= 0) return;
    for (int64_t c = off / opts_.chunk; c <= (off + bytes - 1) / opts_.chunk; ++c) {
      if (dirty_.insert(c).second) set_total(progress_total() + opts_.chunk);
    }
  }

  // Phase 1: every range some layer from top down to above base allocates.
  Task<Status> copy_allocated(int64_t size) {
    for (int64_t off = 0; off < size;) {
      COBLK_CO_RETURN_IF_ERROR(co_await checkpoint());
      int64_t n = 0;
      auto alloc = co_await top_->is_allocated_above(base_, false, off,
                                                     std::min(opts_.chunk, size - off), &n);
      if (!alloc) co_return std::unexpected(alloc.error());
      if (n <= 0) co_return MakeError(EIO, "Block status made no progress");
      if (*alloc) {
        COBLK_CO_RETURN_IF_ERROR(co_await throttle(n));
        COBLK_CO_RETURN_IF_ERROR(co_await copy_range(off, n));
      }
      add_progress(n);
      off += n;
    }
    co_return OkStatus();
  }

  // Phase 2 (active): copy what the guest wrote meanwhile, in passes over
  // the dirty chunks while it goes on writing, until few are left or a pass
  // no longer shrinks the set (the guest dirties chunks as fast as they are
  // copied); the rest is copied drained, at the switch.
  Task<Status> copy_dirty_until_small() {
    constexpr size_t kLeftForTheSwitch = 8;
    size_t previous = SIZE_MAX;
    while (dirty_.size() > kLeftForTheSwitch && dirty_.size() < previous) {
      previous = dirty_.size();
      for (size_t i = 0; i < previous && !dirty_.empty(); ++i) {
        COBLK_CO_RETURN_IF_ERROR(co_await checkpoint());
        COBLK_CO_RETURN_IF_ERROR(co_await throttle(opts_.chunk));
        COBLK_CO_RETURN_IF_ERROR(co_await copy_one_dirty());
      }
    }
    co_return OkStatus();
  }

  Task<Status> copy_dirty_drained() {
    while (!dirty_.empty()) COBLK_CO_RETURN_IF_ERROR(co_await copy_one_dirty());
    co_return OkStatus();
  }

  // The bit is cleared before the copy reads: a write that completes later
  // sets it again.
  Task<Status> copy_one_dirty() {
    const int64_t c = *dirty_.begin();
    dirty_.erase(dirty_.begin());
    const int64_t off = c * opts_.chunk;
    const int64_t n = std::min(opts_.chunk, top_->size() - off);
    if (n <= 0) co_return OkStatus();
    COBLK_CO_RETURN_IF_ERROR(co_await copy_range(off, n));
    add_progress(n);
    co_return OkStatus();
  }

  // What the guest sees through the top, into the base. The first write to
  // the base happens drained and is followed by the relink of the layer
  // above it, so that no guest read finds that layer's parent identity
  // stale (a VMDK base takes a new CID on its first write).
  Task<Status> copy_range(int64_t off, int64_t n) {
    IoVector iov = buf_.iov(0, static_cast<size_t>(n));
    if (base_written_) {
      COBLK_CO_RETURN_IF_ERROR(co_await top_->preadv(off, n, iov));
      co_return co_await base_->pwritev(off, n, iov);
    }
    co_await backend_.co_drain_begin();
    Status st = co_await top_->preadv(off, n, iov);
    if (st) st = co_await base_->pwritev(off, n, iov);
    if (st && relink_above_base_) {
      st = co_await above_base_->change_backing_file(above_base_->backing_filename(),
                                                     FormatOf(*base_), base_);
    }
    backend_.drain_end();
    if (st) base_written_ = true;
    co_return st;
  }

  CommitOptions opts_;
  std::shared_ptr<BlockNode> root_;
  BlockNode* top_ = nullptr;
  BlockNode* above_top_ = nullptr;
  BlockNode* base_ = nullptr;
  BlockNode* above_base_ = nullptr;
  bool active_ = false;
  bool relink_above_base_ = false;
  bool base_written_ = false;
  std::set<int64_t> dirty_;  // chunk indices written by the guest (active commit)
  AlignedBuffer buf_;
};

// ---- stream ----

class StreamJob final : public BlockJob {
 public:
  StreamJob(BlockBackend& b, StreamOptions o) : BlockJob(b, "stream"), opts_(o) {}

  Status prepare() {
    root_ = backend_.root();
    top_ = root_.get();
    if (top_->read_only()) return NeedsReadWrite(*top_, "to stream into it");
    base_ = opts_.base;
    if (base_ && base_ != top_->backing() && !OverlayOf(top_->backing(), base_))
      return MakeError(EINVAL, "Base node is not below the top in its backing chain");
    if (base_ == top_) return MakeError(EINVAL, "The base must lie below the top");
    if (opts_.chunk <= 0 || opts_.chunk % 512 != 0)
      return MakeError(EINVAL, "Chunk size must be a positive multiple of 512");
    return set_speed(opts_.speed);
  }

 protected:
  Task<Status> run() override {
    const int64_t size = top_->size();
    set_total(size);
    if (!top_->backing()) {
      add_progress(size);
      co_return OkStatus();
    }
    // The lowest layer whose data is copied (QEMU's base_overlay); none
    // when the base is the top's own backing file.
    BlockNode* bottom = base_ == top_->backing() ? nullptr : OverlayOf(top_, base_);
    std::shared_ptr<BlockNode> old_backing = top_->backing_ref();
    std::shared_ptr<BlockNode> base_ref = base_ ? OverlayOf(top_, base_)->backing_ref() : nullptr;

    // The copy-on-read filter over the top serialises the copy-ups against
    // guest writes (see drivers/cor).
    std::shared_ptr<BlockNode> cor;
    Status st;
    if (bottom) {
      BlockGraph graph(backend_.loop());
      Options o;
      o.set("bottom", bottom->node_name());
      co_await backend_.co_drain_begin();
      auto filter = co_await graph.open_filter("copy-on-read", std::move(o), root_);
      if (filter) {
        cor = std::move(*filter);
        backend_.replace_root(cor);
      } else {
        st = std::unexpected(filter.error());
      }
      backend_.drain_end();
    }
    if (st && cor) st = co_await copy_up(*cor, size);
    if (!cor) add_progress(size - progress_current());

    co_await backend_.co_drain_begin();
    if (st) st = co_await top_->flush();
    // (Computed outside the co_await: GCC 12 mis-evaluates ?: in it.)
    std::string name, format;
    if (base_) {
      name = BackingName(top_->filename(), *base_);
      format = FormatOf(*base_);
    }
    if (st) st = co_await top_->change_backing_file(name, format, base_);
    if (st) {
      if (base_ref)
        top_->add_child("backing", ChildRole::kBacking, base_ref);
      else
        top_->remove_child("backing");
    }
    if (cor) backend_.replace_root(root_);  // the filter goes, whatever happened
    backend_.drain_end();
    // Closing the filter leaves the top open: the backend holds it.
    if (cor) co_await cor->close();
    if (!st) co_return st;
    // The streamed layers are out of the graph (the base is still held).
    co_await old_backing->close();
    co_return OkStatus();
  }

 private:
  Task<Status> copy_up(BlockNode& cor, int64_t size) {
    AlignedBuffer buf(static_cast<size_t>(opts_.chunk), 4096);
    for (int64_t off = 0; off < size;) {
      COBLK_CO_RETURN_IF_ERROR(co_await checkpoint());
      int64_t n = 0;
      auto in_top = co_await top_->is_allocated(off, std::min(opts_.chunk, size - off), &n);
      if (!in_top) co_return std::unexpected(in_top.error());
      if (n <= 0) co_return MakeError(EIO, "Block status made no progress");
      if (!*in_top) {
        auto below = co_await top_->backing()->is_allocated_above(base_, false, off, n, &n);
        if (!below) co_return std::unexpected(below.error());
        if (n <= 0) co_return MakeError(EIO, "Block status made no progress");
        if (*below) {
          COBLK_CO_RETURN_IF_ERROR(co_await throttle(n));
          // A read through the filter copies the range up.
          IoVector iov = buf.iov(0, static_cast<size_t>(n));
          COBLK_CO_RETURN_IF_ERROR(co_await cor.preadv(off, n, iov));
        }
      }
      add_progress(n);
      off += n;
    }
    co_return OkStatus();
  }

  StreamOptions opts_;
  std::shared_ptr<BlockNode> root_;
  BlockNode* top_ = nullptr;
  BlockNode* base_ = nullptr;
};

Status CheckIdle(BlockBackend& backend) {
  if (backend.job_running()) return MakeError(EBUSY, "A block job is already running on this disk");
  return OkStatus();
}

}  // namespace

struct JobAccess {
  static void Start(const std::shared_ptr<BlockJob>& job) { job->start(); }
};

Result<std::shared_ptr<BlockJob>> StartSnapshotJob(BlockBackend& backend, SnapshotOptions options) {
  COBLK_RETURN_IF_ERROR(CheckIdle(backend));
  auto job = std::shared_ptr<BlockJob>(new SnapshotJob(backend, std::move(options)));
  JobAccess::Start(job);
  return job;
}

Result<std::shared_ptr<BlockJob>> StartCommitJob(BlockBackend& backend, CommitOptions options) {
  COBLK_RETURN_IF_ERROR(CheckIdle(backend));
  auto job = std::shared_ptr<CommitJob>(new CommitJob(backend, options));
  COBLK_RETURN_IF_ERROR(job->prepare());
  JobAccess::Start(job);
  return std::shared_ptr<BlockJob>(job);
}

Result<std::shared_ptr<BlockJob>> StartStreamJob(BlockBackend& backend, StreamOptions options) {
  COBLK_RETURN_IF_ERROR(CheckIdle(backend));
  auto job = std::shared_ptr<StreamJob>(new StreamJob(backend, options));
  COBLK_RETURN_IF_ERROR(job->prepare());
  JobAccess::Start(job);
  return std::shared_ptr<BlockJob>(job);
}

}  // namespace coblk
