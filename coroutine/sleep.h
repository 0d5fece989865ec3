// co_sleep(): suspend the current coroutine for a duration on the current
// executor's timers.
#pragma once

#include <chrono>
#include <coroutine>

#include "coroutine/executor.h"

namespace coblk {

inline auto co_sleep(std::chrono::nanoseconds duration) {
  struct Awaiter {
    std::chrono::nanoseconds d;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      Executor::current()->add_timer(d, [h] { h.resume(); });
    }
    void await_resume() noexcept {}
  };
  return Awaiter{duration};
}

}  // namespace coblk

#include "coroutine/task.h"

namespace coblk {

// co_sleep as a Task, for callers that need a Task object (sync_wait, spawn).
inline Task<void> co_sleep_task(std::chrono::nanoseconds duration) {
  co_await co_sleep(duration);
}

}  // namespace coblk

namespace coblk {

// Lets other ready coroutines run: resumes the caller in the next loop
// iteration (QEMU's aio_co_schedule + qemu_coroutine_yield).
inline auto co_yield_now() {
  struct Awaiter {
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { Executor::current()->schedule(h); }
    void await_resume() noexcept {}
  };
  return Awaiter{};
}

}  // namespace coblk
