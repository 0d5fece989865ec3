// spawn(): run a Task detached on an executor, optionally joining it later.
//
//   JoinHandle<int> h = spawn(loop, compute());
//   ...
//   int v = co_await h.join();     // or sync_wait(loop, h.join())
//
// Dropping the JoinHandle leaves the task running to completion on its own.
//
// Threads: spawn() may be called from any thread. A JoinHandle may be used
// from any thread: done() anywhere; join() awaited once, by a coroutine
// running on any executor. The joiner is resumed on its own executor: with
// schedule() when the task finishes on that same executor's thread, with
// the thread-safe post() otherwise. JoinState's mutex orders the hand-off
// (the task's result is written before done is set under the lock; the
// joiner reads it after seeing done, or after being resumed).
#pragma once

#include <atomic>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <variant>
#include <utility>

#include "coroutine/executor.h"
#include "coroutine/task.h"

namespace coblk {

namespace detail {

// A coroutine that starts when scheduled and frees itself when it finishes.
struct DetachedCoroutine {
  struct promise_type {
    DetachedCoroutine get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

template <typename T>
struct JoinState {
  using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  std::optional<Stored> value;      // written by the task before finish()
  std::exception_ptr exception;     // likewise
  std::atomic<bool> done{false};
  std::mutex mu;                    // guards waiter, waiter_executor, and done's hand-off
  std::coroutine_handle<> waiter;
  Executor* waiter_executor = nullptr;

  // On the task's thread, once value or exception is set.
  void finish() {
    std::coroutine_handle<> w;
    Executor* ex = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu);
      done.store(true, std::memory_order_release);
      w = std::exchange(waiter, {});
      ex = waiter_executor;
    }
    if (!w) return;
    if (ex == Executor::current())
      ex->schedule(w);
    else
      ex->post([w] { w.resume(); });
  }

  // On the joiner's thread. False if the task has already finished (the
  // joiner then goes on without suspending).
  bool set_waiter(std::coroutine_handle<> h) {
    Executor* ex = Executor::current();
    if (!ex) {
      std::fprintf(stderr, "coblk: JoinHandle::join() awaited outside any executor\n");
      std::abort();
    }
    std::lock_guard<std::mutex> lock(mu);
    if (done.load(std::memory_order_relaxed)) return false;
    assert(!waiter && "a JoinHandle is joined once");
    waiter = h;
    waiter_executor = ex;
    return true;
  }
};

template <typename T>
DetachedCoroutine run_detached(Task<T> task, std::shared_ptr<JoinState<T>> state) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      state->value.emplace();
    } else {
      state->value.emplace(co_await std::move(task));
    }
  } catch (...) {
    state->exception = std::current_exception();
  }
  state->finish();
}

}  // namespace detail

template <typename T>
class JoinHandle {
 public:
  explicit JoinHandle(std::shared_ptr<detail::JoinState<T>> state)
      : state_(std::move(state)) {}

  // Whether the task has finished. Any thread.
  bool done() const { return state_->done.load(std::memory_order_acquire); }

  // Awaits completion and returns the task's result (rethrows its exception).
  // Await it once, from a coroutine on any executor (see the top of the file).
  auto join() {
    struct Awaiter {
      std::shared_ptr<detail::JoinState<T>> state;
      bool await_ready() const noexcept { return state->done.load(std::memory_order_acquire); }
      bool await_suspend(std::coroutine_handle<> h) { return state->set_waiter(h); }
      T await_resume() {
        if (state->exception) std::rethrow_exception(state->exception);
        if constexpr (!std::is_void_v<T>) return std::move(*state->value);
      }
    };
    return Awaiter{state_};
  }

 private:
  std::shared_ptr<detail::JoinState<T>> state_;
};

// Starts task on ex's thread (from the next loop iteration). Thread-safe:
// from ex's own thread it is a bottom half (no syscall), from another thread
// a post() that wakes the loop.
template <typename T>
JoinHandle<T> spawn(Executor& ex, Task<T> task) {
  auto state = std::make_shared<detail::JoinState<T>>();
  auto runner = detail::run_detached(std::move(task), state);
  if (Executor::current() == &ex)
    ex.schedule(runner.handle);
  else
    ex.post([h = runner.handle] { h.resume(); });
  return JoinHandle<T>(std::move(state));
}

// Like spawn, but starts the task inline, right now, on the calling thread,
// which must be ex's thread. Cheaper; used for fan-out inside a request.
template <typename T>
JoinHandle<T> spawn_now(Task<T> task) {
  auto state = std::make_shared<detail::JoinState<T>>();
  auto runner = detail::run_detached(std::move(task), state);
  runner.handle.resume();
  return JoinHandle<T>(std::move(state));
}

}  // namespace coblk
