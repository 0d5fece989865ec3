// EventLoop: one epoll loop per thread, the Executor every coroutine runs on.
//
// One iteration (run_once): wait in epoll (not at all if work is ready),
// dispatch fd events, fire due timers, then run bottom halves (scheduled
// coroutines and callbacks) until the queue is drained of what was there.
// Pre-poll hooks run right before each epoll_wait; AioEngine uses one to
// submit every request made during the iteration in a single io_submit.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <vector>

#include "coroutine/executor.h"
#include "util/status.h"

namespace coblk {

class AioEngine;

class EventLoop final : public Executor {
 public:
  using FdHandler = std::function<void(uint32_t events)>;

  static Result<std::unique_ptr<EventLoop>> Create();
  ~EventLoop() override;

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Executor
  void post(std::function<void()> fn) override;
  void schedule(std::coroutine_handle<> h) override;
  TimerId add_timer(std::chrono::nanoseconds delay,
                    std::function<void()> fn) override;
  void cancel_timer(TimerId id) override;
  // Never re-entrant: calling it (directly, or through sync_wait or a
  // blocking BlockBackend call) from code the loop is running — a coroutine,
  // a callback, a timer — would run the outer iteration's ready list from
  // under it. That aborts with a message saying so; use the co_* forms.
  void run_once(bool block) override;

  // Bottom half: fn runs after the current callback returns.
  void add_bh(std::function<void()> fn);

  // Watches fd for epoll events (EPOLLIN, ...). One handler per fd.
  Status add_fd(int fd, uint32_t events, FdHandler handler);
  // Changes the events watched on an fd already added (e.g. EPOLLOUT only
  // while a socket has data queued to send). The handler stays.
  Status modify_fd(int fd, uint32_t events);
  void remove_fd(int fd);

  // Called before every epoll_wait. Returns an id for remove_pre_poll_hook.
  int add_pre_poll_hook(std::function<void()> hook);
  void remove_pre_poll_hook(int id);

  // Runs iterations until stop() is called (from any thread). A stop() made
  // before run() starts is not lost: that run() returns after at most one
  // iteration.
  void run();
  void stop();

  // Makes this loop Executor::current() on the calling thread. run() and
  // run_once() do this themselves.
  void make_current() { set_current(this); }

  uint64_t iterations() const { return iterations_; }
  // True while run_once is on the stack (of the loop's thread): code that
  // must not block the loop checks this.
  bool in_iteration() const { return in_iteration_; }

  // The loop's shared libaio engine, created on first use with queue_depth
  // (later calls return the existing engine). Like QEMU, one AIO context per
  // event loop serves every O_DIRECT file opened on it.
  Result<AioEngine*> aio_engine(unsigned queue_depth = 128);

 private:
  EventLoop() = default;

  struct ReadyItem {
    std::coroutine_handle<> handle;
    std::function<void()> fn;
  };
  struct Timer {
    std::chrono::steady_clock::time_point deadline;
    TimerId id;
    bool operator>(const Timer& o) const {
      return deadline != o.deadline ? deadline > o.deadline : id > o.id;
    }
  };

  void drain_posted();
  void run_ready();
  void run_timers();
  int poll_timeout_ms(bool block);

  int epfd_ = -1;
  int wake_fd_ = -1;
  std::unordered_map<int, std::shared_ptr<FdHandler>> handlers_;
  std::vector<ReadyItem> ready_;
  std::vector<ReadyItem> running_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::unordered_map<TimerId, std::function<void()>> timer_fns_;
  TimerId next_timer_id_ = 1;
  std::vector<std::pair<int, std::function<void()>>> pre_poll_hooks_;
  int next_hook_id_ = 1;

  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> wake_pending_{false};
  std::atomic<bool> stop_{false};
  uint64_t iterations_ = 0;
  bool in_iteration_ = false;  // loop thread only
  static constexpr unsigned kPollEveryBusy = 16;
  unsigned busy_iterations_ = 0;
  std::unique_ptr<AioEngine> aio_;
};

}  // namespace coblk
