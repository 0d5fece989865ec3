// CoRwLock: a FIFO reader/writer lock for coroutines.
//
// Requests are granted in arrival order: a reader arriving while a writer
// waits queues behind it, so writers cannot starve. On release, the head of
// the queue is granted, plus every reader directly behind a granted reader.
#pragma once

#include <coroutine>
#include <deque>

#include "coroutine/executor.h"

namespace coblk {

class CoRwLock {
 public:
  CoRwLock() = default;
  CoRwLock(const CoRwLock&) = delete;
  CoRwLock& operator=(const CoRwLock&) = delete;

  auto lock_shared() { return Awaiter{*this, false}; }
  auto lock() { return Awaiter{*this, true}; }

  void unlock_shared() {
    --readers_;
    if (readers_ == 0) grant_waiters();
  }
  void unlock() {
    writer_ = false;
    grant_waiters();
  }

  int readers() const { return readers_; }
  bool writer_held() const { return writer_; }

 private:
  struct Waiter {
    std::coroutine_handle<> handle;
    Executor* executor;
    bool exclusive;
  };

  struct Awaiter {
    CoRwLock& l;
    bool exclusive;
    bool await_ready() noexcept {
      if (!l.waiters_.empty() || l.writer_) return false;
      if (exclusive) {
        if (l.readers_ > 0) return false;
        l.writer_ = true;
      } else {
        ++l.readers_;
      }
      return true;
    }
    void await_suspend(std::coroutine_handle<> h) {
      l.waiters_.push_back({h, Executor::current(), exclusive});
    }
    void await_resume() noexcept {}
  };

  void grant_waiters() {
    while (!waiters_.empty()) {
      Waiter& w = waiters_.front();
      if (w.exclusive) {
        if (readers_ > 0 || writer_) return;
        writer_ = true;
      } else {
        if (writer_) return;
        ++readers_;
      }
      Waiter granted = w;
      waiters_.pop_front();
      granted.executor->schedule(granted.handle);
      if (granted.exclusive) return;
    }
  }

  int readers_ = 0;
  bool writer_ = false;
  std::deque<Waiter> waiters_;
};

}  // namespace coblk
