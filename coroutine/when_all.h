// when_all(): run several tasks concurrently on the current executor and
// collect their results in order. It returns (or throws the first
// exception) only after every task has ended.
#pragma once

#include <exception>
#include <type_traits>
#include <vector>

#include "coroutine/spawn.h"
#include "coroutine/task.h"

namespace coblk {

template <typename T>
Task<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> when_all(
    std::vector<Task<T>> tasks) {
  std::vector<JoinHandle<T>> handles;
  handles.reserve(tasks.size());
  // Start every task before awaiting any, so they are all in flight at once.
  for (auto& t : tasks) handles.push_back(spawn_now(std::move(t)));
  // Join every task before reporting anything: the tasks may reference the
  // caller's frame, which is gone once an exception reaches the caller.
  // The first exception (in task order) is rethrown after all have ended.
  std::exception_ptr first_error;
  if constexpr (std::is_void_v<T>) {
    for (auto& h : handles) {
      try {
        co_await h.join();
      } catch (...) {
        if (!first_error) first_error = std::current_exception();
      }
    }
    if (first_error) std::rethrow_exception(first_error);
  } else {
    std::vector<T> results;
    results.reserve(handles.size());
    for (auto& h : handles) {
      try {
        results.push_back(co_await h.join());
      } catch (...) {
        if (!first_error) first_error = std::current_exception();
      }
    }
    if (first_error) std::rethrow_exception(first_error);
    co_return results;
  }
}

}  // namespace coblk
