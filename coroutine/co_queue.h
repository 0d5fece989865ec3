// CoQueue: a wait queue (QEMU's CoQueue). A coroutine waits until another
// notifies it; notify_one() wakes the oldest waiter, notify_all() wakes all.
// Typical use is waiting for a condition while holding no lock.
#pragma once

#include <coroutine>
#include <list>

#include "coroutine/executor.h"

namespace coblk {

class CoQueue {
 public:
  auto wait() {
    struct Awaiter {
      CoQueue& q;
      bool await_ready() noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) {
        q.waiters_.push_back({h, Executor::current()});
      }
      void await_resume() noexcept {}
    };
    return Awaiter{*this};
  }

  // Returns true if a waiter was woken.
  bool notify_one() {
    if (waiters_.empty()) return false;
    Waiter w = waiters_.front();
    waiters_.pop_front();
    w.executor->schedule(w.handle);
    return true;
  }

  void notify_all() {
    while (notify_one()) {
    }
  }

  bool empty() const { return waiters_.empty(); }
  size_t size() const { return waiters_.size(); }

 private:
  struct Waiter {
    std::coroutine_handle<> handle;
    Executor* executor;
  };
  // A list, not a deque: libstdc++'s deque allocates ~600 bytes when it is
  // constructed, and queues are members of every tracked request and of
  // every VMDK extent, most of which never get a waiter.
  std::list<Waiter> waiters_;
};

}  // namespace coblk
