// ThreadPool: runs blocking syscalls (fsync, fallocate, ftruncate, buffered
// I/O) off the event loop. The awaiting coroutine is resumed on the loop it
// was running on, through the loop's thread-safe post().
//
//   int r = co_await pool.run([fd] { return ::fdatasync(fd) < 0 ? -errno : 0; });
#pragma once

#include <condition_variable>
#include <coroutine>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "coroutine/executor.h"

namespace coblk {

class ThreadPool {
 public:
  explicit ThreadPool(unsigned max_threads = 8);
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues fn for a worker thread. Thread-safe.
  void submit(std::function<void()> fn);

  template <typename F>
  auto run(F fn) {
    using R = std::invoke_result_t<F&>;
    struct Awaiter {
      ThreadPool& pool;
      F fn;
      std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> result{};
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) {
        Executor* ex = Executor::current();
        pool.submit([this, h, ex] {
          if constexpr (std::is_void_v<R>)
            fn();
          else
            result.emplace(fn());
          ex->post([h] { h.resume(); });
        });
      }
      R await_resume() {
        if constexpr (!std::is_void_v<R>) return std::move(*result);
      }
    };
    return Awaiter{*this, std::move(fn)};
  }

  unsigned thread_count() const;
  // Workers waiting for a job (for tests).
  unsigned idle_count() const;

 private:
  void worker();

  unsigned max_threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  unsigned idle_ = 0;
  bool stopping_ = false;
};

// The process-wide pool used by drivers for blocking calls.
ThreadPool& default_thread_pool();

}  // namespace coblk
