// Task<T>: a lazy, move-only coroutine returning T.
//
// A Task does nothing until it is awaited. Awaiting it starts it; its result
// or exception is handed to the awaiter.
//
// Stack depth. GCC 12 does not compile symmetric transfer into a tail call at
// -O0/-O1 or under ASan, so "child finished -> resume parent" would nest one
// stack frame per completed await, and a loop of 100,000 synchronously
// completing awaits would overflow the stack. Task avoids the problem by
// construction: the awaiter resumes the child inline and, if the child ran to
// completion without suspending, returns false from await_suspend so the
// parent simply continues on the original frame. Only a child that really
// suspended (waiting for I/O, a lock, a timer) later resumes its parent from
// final_suspend, and that happens on the event loop's stack, bounded by the
// depth of task nesting rather than by the number of awaits.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace coblk {

template <typename T = void>
class Task;

namespace detail {

class PromiseBase {
 public:
  std::suspend_always initial_suspend() noexcept { return {}; }

  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <typename P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      PromiseBase& p = h.promise();
      if (p.running_inline_) {
        // Finished inside the awaiter's resume(): let it continue the parent.
        p.completed_inline_ = true;
        return std::noop_coroutine();
      }
      if (p.continuation_) return p.continuation_;
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }

  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  // Starts (or resumes) the coroutine from an awaiter. Returns true if it
  // completed synchronously.
  bool run_inline(std::coroutine_handle<> self, std::coroutine_handle<> parent) {
    continuation_ = parent;
    running_inline_ = true;
    self.resume();
    running_inline_ = false;
    return completed_inline_;
  }

  void rethrow_if_exception() {
    if (exception_) std::rethrow_exception(exception_);
  }

 private:
  std::coroutine_handle<> continuation_;
  std::exception_ptr exception_;
  bool running_inline_ = false;
  bool completed_inline_ = false;
};

template <typename T>
class Promise final : public PromiseBase {
 public:
  Task<T> get_return_object() noexcept;

  template <typename U>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& value) {
    value_.emplace(std::forward<U>(value));
  }

  T take_result() {
    rethrow_if_exception();
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class Promise<void> final : public PromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take_result() { rethrow_if_exception(); }
};

}  // namespace detail

template <typename T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::Promise<T>;
  using value_type = T;

  Task() noexcept = default;
  explicit Task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { destroy(); }

  bool valid() const noexcept { return static_cast<bool>(handle_); }

  auto operator co_await() && noexcept {
    struct Awaiter {
      std::coroutine_handle<promise_type> handle;
      bool await_ready() const noexcept { return false; }
      bool await_suspend(std::coroutine_handle<> parent) {
        // true = stay suspended (child will resume us); false = child done.
        return !handle.promise().run_inline(handle, parent);
      }
      T await_resume() { return handle.promise().take_result(); }
    };
    return Awaiter{handle_};
  }

 private:
  void destroy() noexcept {
    if (handle_) {
      handle_.destroy();
      handle_ = {};
    }
  }

  std::coroutine_handle<promise_type> handle_;
};

namespace detail {

template <typename T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}

inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}

}  // namespace detail

}  // namespace coblk
