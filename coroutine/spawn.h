// spawn(): run a Task detached on an executor, optionally joining it later.
//
//   JoinHandle<int> h = spawn(loop, compute());
//   ...
//   int v = co_await h.join();     // or sync_wait(loop, h.join())
//
// Dropping the JoinHandle leaves the task running to completion on its own.
#pragma once

#include <cassert>
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
  std::optional<Stored> value;
  std::exception_ptr exception;
  bool done = false;
  std::coroutine_handle<> waiter;
  Executor* waiter_executor = nullptr;

  void finish() {
    done = true;
    if (waiter) waiter_executor->schedule(std::exchange(waiter, {}));
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

  bool done() const { return state_->done; }

  // Awaits completion and returns the task's result (rethrows its exception).
  // Must be awaited on the executor the task was spawned on.
  auto join() {
    struct Awaiter {
      std::shared_ptr<detail::JoinState<T>> state;
      bool await_ready() const noexcept { return state->done; }
      void await_suspend(std::coroutine_handle<> h) {
        assert(!state->waiter && "a JoinHandle is joined once");
        state->waiter = h;
        state->waiter_executor = Executor::current();
      }
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
