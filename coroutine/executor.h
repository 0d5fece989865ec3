// Executor: what the coroutine primitives need from an event loop.
//
// The coroutine layer sits below io/, so it only knows this interface;
// io::EventLoop implements it. One executor runs on one thread; every
// coroutine resumption happens on that thread. Only post() is thread-safe.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <functional>

namespace coblk {

class Executor {
 public:
  using TimerId = uint64_t;

  virtual ~Executor() = default;

  // Runs fn on the executor's thread. Safe to call from any thread.
  virtual void post(std::function<void()> fn) = 0;

  // Resumes h on the executor's thread after the current callback returns
  // (a bottom half). Loop thread only. Never resumes inline, so waking a
  // waiter cannot nest one coroutine's stack inside another's.
  virtual void schedule(std::coroutine_handle<> h) = 0;

  // Runs fn once, no earlier than delay from now. Loop thread only.
  virtual TimerId add_timer(std::chrono::nanoseconds delay,
                            std::function<void()> fn) = 0;
  virtual void cancel_timer(TimerId id) = 0;

  // Runs one iteration: ready work, then waits (if block) for I/O or timers.
  // Used by sync_wait() to drive the loop from a non-coroutine caller.
  virtual void run_once(bool block) = 0;

  // The executor running on this thread, or nullptr.
  static Executor* current() { return current_; }

 protected:
  static void set_current(Executor* e) { current_ = e; }

 private:
  static thread_local Executor* current_;
};

}  // namespace coblk
