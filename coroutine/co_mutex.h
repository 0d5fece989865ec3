// CoMutex: a FIFO-fair mutex for coroutines on one executor.
//
// unlock() hands the lock directly to the longest waiter (it stays locked),
// so a coroutine that unlocks and immediately relocks cannot barge ahead of
// waiters. Waiters are resumed through the executor, never inline.
#pragma once

#include <coroutine>
#include <deque>
#include <utility>

#include "coroutine/executor.h"

namespace coblk {

class CoMutex {
 public:
  CoMutex() = default;
  CoMutex(const CoMutex&) = delete;
  CoMutex& operator=(const CoMutex&) = delete;

  class Guard {
   public:
    Guard() = default;
    explicit Guard(CoMutex* m) : mutex_(m) {}
    Guard(Guard&& o) noexcept : mutex_(std::exchange(o.mutex_, nullptr)) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        unlock();
        mutex_ = std::exchange(o.mutex_, nullptr);
      }
      return *this;
    }
    ~Guard() { unlock(); }
    void unlock() {
      if (mutex_) std::exchange(mutex_, nullptr)->unlock();
    }

   private:
    CoMutex* mutex_ = nullptr;
  };

  auto lock() {
    struct Awaiter {
      CoMutex& m;
      bool await_ready() noexcept { return m.try_lock(); }
      void await_suspend(std::coroutine_handle<> h) {
        m.waiters_.push_back({h, Executor::current()});
      }
      void await_resume() noexcept {}
    };
    return Awaiter{*this};
  }

  // co_await m.scoped_lock() yields a Guard that unlocks on destruction.
  auto scoped_lock() {
    struct Awaiter {
      CoMutex& m;
      bool await_ready() noexcept { return m.try_lock(); }
      void await_suspend(std::coroutine_handle<> h) {
        m.waiters_.push_back({h, Executor::current()});
      }
      Guard await_resume() noexcept { return Guard(&m); }
    };
    return Awaiter{*this};
  }

  bool try_lock() {
    if (locked_) return false;
    locked_ = true;
    return true;
  }

  void unlock() {
    if (waiters_.empty()) {
      locked_ = false;
      return;
    }
    Waiter next = waiters_.front();
    waiters_.pop_front();
    next.executor->schedule(next.handle);  // ownership passes to next
  }

  bool locked() const { return locked_; }
  size_t waiter_count() const { return waiters_.size(); }

 private:
  struct Waiter {
    std::coroutine_handle<> handle;
    Executor* executor;
  };
  bool locked_ = false;
  std::deque<Waiter> waiters_;
};

}  // namespace coblk
