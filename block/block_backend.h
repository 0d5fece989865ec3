// BlockBackend: the embedding API (QEMU's BlockBackend). One header an
// emulator includes.
//
//   auto loop = coblk::EventLoop::Create().value();
//   auto blk = coblk::BlockBackend::Open(*loop, "disk.vmdk", {}).value();
//   blk->write(0, buf, 4096);                        // blocking
//   co_await blk->co_read(0, buf, 4096);             // from a coroutine
//   blk->aio_read(0, buf, 4096, [](coblk::Status s) { ... });  // callback
//
// Threading: every call runs on the backend's EventLoop thread. The blocking
// calls drive the loop themselves (call them only when the loop is not
// already running on this thread); the aio_* calls return at once and invoke
// the callback from the loop, so an emulator that runs loop.run() on its I/O
// thread (or polls run_once) gets completions there.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "coroutine/co_queue.h"

#include "block/block_graph.h"
#include "block/block_node.h"
#include "block/options.h"
#include "io/event_loop.h"
#include "util/status.h"

namespace coblk {

// ops, bytes and latency count completed requests; errors counts failed ones
// (QEMU's block accounting: failed requests are not in ops).
struct BlockStats {
  struct Op {
    uint64_t ops = 0;
    uint64_t bytes = 0;
    uint64_t errors = 0;
    uint64_t total_latency_ns = 0;
    uint64_t max_latency_ns = 0;
  };
  Op read, write, zero, discard, flush;
};

class BlockBackend {
 public:
  using Callback = std::function<void(Status)>;

  // Opens filename (probed unless options say "driver=..."), or a full
  // option string like "driver=raw,file.filename=x.img" when filename is
  // empty and options are given.
  static Result<std::unique_ptr<BlockBackend>> Open(EventLoop& loop, const std::string& filename,
                                                    Options options, OpenFlags flags = {});
  static Task<Result<std::unique_ptr<BlockBackend>>> co_open(EventLoop& loop,
                                                             const std::string& filename,
                                                             Options options, OpenFlags flags = {});
  // Wraps an already opened node.
  BlockBackend(EventLoop& loop, std::shared_ptr<BlockNode> root);
  ~BlockBackend();

  int64_t size() const { return root_->size(); }
  // The node requests go to now (a job may replace it, see below).
  BlockNode& node() { return *root_; }
  const std::shared_ptr<BlockNode>& root() const { return root_; }
  EventLoop& loop() { return loop_; }
  const BlockStats& stats() const { return stats_; }

  // Coroutine API.
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags = 0);
  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags = 0);
  Task<Status> co_read(int64_t offset, void* buf, int64_t bytes);
  Task<Status> co_write(int64_t offset, const void* buf, int64_t bytes, uint32_t flags = 0);
  Task<Status> co_write_compressed(int64_t offset, const void* buf, int64_t bytes);
  Task<Status> co_write_zeroes(int64_t offset, int64_t bytes, uint32_t flags = 0);
  Task<Status> co_discard(int64_t offset, int64_t bytes);
  Task<Status> co_flush();
  Task<Status> co_truncate(int64_t size);

  // Blocking API (drives the loop until done).
  Status read(int64_t offset, void* buf, int64_t bytes);
  Status write(int64_t offset, const void* buf, int64_t bytes, uint32_t flags = 0);
  Status write_zeroes(int64_t offset, int64_t bytes, uint32_t flags = 0);
  Status discard(int64_t offset, int64_t bytes);
  Status flush();
  Status truncate(int64_t size);
  // Closes the graph (flushing format metadata). Also done by the destructor
  // (which aborts if called from code running on the loop, as every blocking
  // call there would: use co_close() there).
  Status close();
  // close() for callers already running on the loop, which must not block.
  Task<Status> co_close();

  // Callback API: starts the request and returns; cb runs on the loop.
  void aio_read(int64_t offset, void* buf, int64_t bytes, Callback cb);
  void aio_write(int64_t offset, const void* buf, int64_t bytes, Callback cb);
  void aio_flush(Callback cb);

  // ---- Graph changes under a running guest (used by block/block_job.h) ----
  // Invariant: a request issued through this backend reaches exactly the
  // root it finds when it passes the gate at its start, and the root only
  // changes while the backend is drained, i.e. while no request is between
  // the gate and its completion. So no request is lost (those in flight
  // finish on the old root before the switch) and none is reordered:
  // requests issued while drained wait at the gate and pass it in the order
  // they were issued (later arrivals queue behind them even after the drain
  // ends), then all run on the new root.
  //
  // co_drain_begin: stops requests at the gate and waits for every request
  // in flight to end. Drains nest (a count); each needs its drain_end.
  Task<void> co_drain_begin();
  void drain_end();
  bool drained() const { return quiesce_ > 0 && in_flight_ == 0; }
  // Makes `root` the node requests go to. Only while drained.
  void replace_root(std::shared_ptr<BlockNode> root);
  // Called when a write, zero write, discard or compressed write through
  // this backend completes (successfully or not) with its range: a job's
  // dirty tracking. One observer at a time; an empty function removes it.
  // Set it only while drained, so that no write in flight escapes it.
  using WriteObserver = std::function<void(int64_t offset, int64_t bytes)>;
  void set_write_observer(WriteObserver observer) { write_observer_ = std::move(observer); }
  // The job running on this backend's graph, if any (one at a time).
  bool job_running() const { return job_running_; }
  void set_job_running(bool running) { job_running_ = running; }

 private:
  enum class Op : uint8_t { kRead, kWrite, kWriteCompressed, kZero, kDiscard, kFlush, kTruncate };
  // Every request: the gate, the root's request, accounting, the observer.
  Task<Status> request(Op op, int64_t offset, int64_t bytes, IoVector* qiov, uint32_t flags);
  Task<Status> request_buf(Op op, int64_t offset, void* buf, int64_t bytes, uint32_t flags);
  BlockStats::Op* stats_for(Op op);

  EventLoop& loop_;
  std::shared_ptr<BlockNode> root_;
  BlockStats stats_;
  bool closed_ = false;
  // Gate and drain (see co_drain_begin); loop thread only.
  int quiesce_ = 0;        // drains in progress
  int queued_ = 0;         // requests waiting at the gate
  int64_t in_flight_ = 0;  // requests past the gate, not yet completed
  CoQueue gate_;           // requests waiting to pass
  CoQueue idle_;           // drains waiting for in_flight_ == 0
  WriteObserver write_observer_;
  bool job_running_ = false;
};

}  // namespace coblk
