// AioEngine: Linux native AIO (libaio) for O_DIRECT files, driven by an
// EventLoop.
//
// * Requests made during one loop iteration are queued and go to the kernel
//   together in one io_submit, from the loop's pre-poll hook (or at once if a
//   full batch is waiting). plug()/unplug() extend batching across calls.
// * At most queue_depth requests are in the kernel; the rest are parked, and
//   so are requests io_submit refuses with EAGAIN, until completions free
//   slots.
// * Completions arrive through an eventfd watched by the loop; waiting
//   coroutines are resumed from the loop, never from inside the submit path.
// * A short read (end of file) is zero-filled; a short write is ENOSPC, as in
//   QEMU's linux-aio.c.
#pragma once

#include <libaio.h>

#include <coroutine>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "io/event_loop.h"
#include "io/io_vector.h"
#include "util/status.h"

namespace coblk {

class AioEngine {
 public:
  static constexpr unsigned kDefaultQueueDepth = 128;

  struct Stats {
    uint64_t requests = 0;       // requests completed
    uint64_t submit_calls = 0;   // io_submit syscalls that submitted something
    uint64_t parked = 0;         // times a request had to wait for a free slot
    uint64_t eagain = 0;         // io_submit calls refused with EAGAIN
    unsigned max_in_flight = 0;  // peak number of requests in the kernel
  };

  static Result<std::unique_ptr<AioEngine>> Create(
      EventLoop& loop, unsigned queue_depth = kDefaultQueueDepth);
  ~AioEngine();

  AioEngine(const AioEngine&) = delete;
  AioEngine& operator=(const AioEngine&) = delete;

 private:
  struct Request {
    iocb cb{};
    std::coroutine_handle<> waiter;
    IoVector* iov = nullptr;
    long result = 0;
  };

 public:
  // Awaitable returned by preadv/pwritev: co_await it where it is made
  // (`co_await engine.preadv(fd, qiov, off)`). Misuse does not compile:
  //  * the iocb inside points at the Op itself (cb.data) and the kernel
  //    keeps the iocb's address until completion, so an Op can be neither
  //    copied nor moved;
  //  * the kernel reads or fills the caller's memory until the Op completes,
  //    so the IoVector is taken by non-const lvalue reference (a temporary
  //    vector, which would die before the I/O ends, is rejected), and a
  //    short read zero-fills the vector's tail through that same reference.
  class Op {
   public:
    Op(AioEngine& engine, bool is_write, int fd, IoVector& iov, uint64_t offset);
    Op(const Op&) = delete;
    Op& operator=(const Op&) = delete;
    Op(Op&&) = delete;
    Op& operator=(Op&&) = delete;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h);
    Status await_resume();

   private:
    AioEngine& engine_;
    Request req_;
    bool is_write_;
  };

  // The IoVector (and the memory it describes) must stay alive and untouched
  // until the co_await on the returned Op has resumed.
  Op preadv(int fd, IoVector& iov, uint64_t offset) { return Op(*this, false, fd, iov, offset); }
  Op pwritev(int fd, IoVector& iov, uint64_t offset) { return Op(*this, true, fd, iov, offset); }
  Op preadv(int fd, IoVector&& iov, uint64_t offset) = delete;
  Op pwritev(int fd, IoVector&& iov, uint64_t offset) = delete;

  void plug() { ++plugged_; }
  void unplug();

  unsigned queue_depth() const { return depth_; }
  unsigned in_flight() const { return in_flight_; }
  size_t parked() const { return pending_.size(); }
  const Stats& stats() const { return stats_; }
  EventLoop& loop() { return loop_; }

 private:
  AioEngine(EventLoop& loop, unsigned depth) : loop_(loop), depth_(depth) {}

  void enqueue(Request* req);
  void submit_pending();
  void on_completion_event();
  void complete(Request* req, long result);

  static constexpr size_t kEagerBatch = 32;

  EventLoop& loop_;
  unsigned depth_;
  io_context_t ctx_ = nullptr;
  int event_fd_ = -1;
  int hook_id_ = 0;
  unsigned plugged_ = 0;
  unsigned in_flight_ = 0;
  bool retry_timer_armed_ = false;
  std::deque<Request*> pending_;
  std::vector<iocb*> batch_;
  std::vector<io_event> events_;
  Stats stats_;
};

}  // namespace coblk
