// Block jobs: long-running operations on the node graph of a BlockBackend
// while the guest keeps doing I/O through it (QEMU's block jobs).
//
//   auto job = coblk::StartSnapshotJob(*disk, {.overlay = "snap.vmdk"}).value();
//   job->wait();                                     // or co_await job->co_wait()
//   auto commit = coblk::StartCommitJob(*disk, {}).value();   // back into the base
//   while (!commit->done()) loop->run_once(true);    // guest I/O goes on meanwhile
//   commit->status();                                // OK, ECANCELED or the error
//
// * snapshot (QEMU's blockdev-snapshot-sync): creates a new empty image,
//   records the current root as its backing file and makes it the root:
//   guest writes go to the overlay from then on.
// * commit (block-commit): copies what the layers from `top` down to just
//   above `base` hold into `base`, then takes those layers out of the chain.
//   With top = the root (an active commit) guest writes that land on the top
//   during the copy are copied again (dirty tracking), and at the end the
//   backend switches to the base.
// * stream (block-stream): copies into the root what the layers below it
//   down to just above `base` hold (through a copy-on-read filter put over
//   the root for the job), then makes `base` the root's backing file (none
//   without a base) and takes the streamed layers out.
//
// Threads: a job belongs to its backend's EventLoop. Start*, pause, resume,
// set_speed, cancel, co_wait and the graph switches run on that loop's
// thread (other threads post() to it); progress_current/total, done() and
// paused() may be read from any thread. wait() drives the loop and must not
// be called from code running on it. The job holds a reference to itself
// until it ends, so dropping the returned pointer does not stop it; it
// refers to the backend, so close or destroy the backend only after the job
// has ended (cancel it and co_wait() first).
//
// Graph switches happen only with the backend drained (BlockBackend::
// co_drain_begin): no guest request is in flight through the graph while a
// node is inserted, replaced or cut off, and requests issued meanwhile run
// afterwards on the new graph, in the order they were issued.
//
// Failure and cancel leave the chain consistent and readable with the same
// guest view: commit and stream copy data that the layers above already
// hold (the guest does not see it change) and switch the graph only after
// the copy is complete and flushed; a failed or cancelled job switches
// nothing (except the copy-on-read filter of stream, which is removed).
//
// Node requirements: commit writes `base` and rewrites the backing reference
// of the image above it (and of the image above `top` for a non-active
// commit), so those must be open read-write; backing files open read-only
// by default, so open the chain with e.g. "backing.read-only=off" to commit
// into the first backing file.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "block/block_backend.h"
#include "block/options.h"
#include "coroutine/co_queue.h"
#include "coroutine/task.h"
#include "util/status.h"

namespace coblk {

class BlockJob;
class RateLimit;  // util/rate_limit.h
Task<void> RunJob(std::shared_ptr<BlockJob> job);

class BlockJob : public std::enable_shared_from_this<BlockJob> {
 public:
  virtual ~BlockJob() = default;
  BlockJob(const BlockJob&) = delete;
  BlockJob& operator=(const BlockJob&) = delete;

  // "snapshot", "commit", "stream".
  const std::string& type() const { return type_; }
  // Bytes done and bytes to do (QEMU's offset/len); total may grow while
  // an active commit finds new guest writes.
  int64_t progress_current() const { return current_.load(std::memory_order_relaxed); }
  int64_t progress_total() const { return total_.load(std::memory_order_relaxed); }

  // The job stops at its next step boundary (between two copied chunks)
  // until resume(); a graph switch in progress completes first.
  void pause();
  void resume();
  // The job ends at its next step boundary with ECANCELED, switching
  // nothing (a cancelled stream removes its filter again).
  void cancel();
  bool paused() const { return paused_.load(std::memory_order_acquire); }
  bool done() const { return done_.load(std::memory_order_acquire); }
  // QEMU's block-job-set-speed: from now on at most this many bytes per
  // second are copied (0: no limit; EINVAL if negative). Commit and stream
  // copy at that rate; the last copy at a commit's graph switch, made with
  // the guest drained, is never throttled. A throttled job still sees
  // pause and cancel within 100 ms.
  Status set_speed(int64_t bytes_per_second);
  // The completion status once done(): OK, ECANCELED or the first error.
  const Status& status() const { return status_; }

  // Waits for the job to end and returns its status.
  Task<Status> co_wait();
  // The same, driving the loop (not from code running on it).
  Status wait();

 protected:
  BlockJob(BlockBackend& backend, std::string type) : backend_(backend), type_(std::move(type)) {}
  // The job's work; runs once, on the loop.
  virtual Task<Status> run() = 0;
  // Between steps: waits while paused; ECANCELED once cancelled.
  Task<Status> checkpoint();
  // Before copying `bytes`: waits as the speed limit says (checkpoint()
  // between waits), then accounts them.
  Task<Status> throttle(int64_t bytes);
  void set_total(int64_t t) { total_.store(t, std::memory_order_relaxed); }
  void add_progress(int64_t n) { current_.fetch_add(n, std::memory_order_relaxed); }

  BlockBackend& backend_;

 private:
  friend Task<void> RunJob(std::shared_ptr<BlockJob> job);
  void start();

  friend struct JobAccess;

  std::string type_;
  std::atomic<int64_t> current_{0};
  std::atomic<int64_t> total_{0};
  std::atomic<bool> paused_{false};
  std::atomic<bool> done_{false};
  bool pause_requested_ = false;
  bool cancelled_ = false;
  std::shared_ptr<RateLimit> limit_;  // set_speed; none: no limit
  Status status_;
  CoQueue resumed_;
  CoQueue finished_;
};

struct SnapshotOptions {
  std::string overlay;            // the new image file
  std::string format = "vmdk";    // its format (one that records a backing file)
  Options create_options;         // more create options (size is the root's)
  Options open_options;           // more open options for the overlay
};

struct CommitOptions {
  BlockNode* top = nullptr;   // nullptr: the root (active commit)
  BlockNode* base = nullptr;  // nullptr: the last image of top's chain
  int64_t chunk = 1 << 20;    // bytes copied per step
  int64_t speed = 0;          // bytes per second, 0: no limit (QEMU's speed)
};

struct StreamOptions {
  BlockNode* base = nullptr;  // keep this backing file (nullptr: none)
  int64_t chunk = 1 << 20;
  int64_t speed = 0;          // bytes per second, 0: no limit (QEMU's speed)
};

// Start a job on the backend's graph; one job per backend at a time. Call
// on the backend's loop thread (or while no thread runs the loop). The job
// runs when the loop runs.
Result<std::shared_ptr<BlockJob>> StartSnapshotJob(BlockBackend& backend, SnapshotOptions options);
Result<std::shared_ptr<BlockJob>> StartCommitJob(BlockBackend& backend, CommitOptions options);
Result<std::shared_ptr<BlockJob>> StartStreamJob(BlockBackend& backend, StreamOptions options);

}  // namespace coblk
