// when_all(): run several tasks concurrently on the current executor and
// collect their results in order.
#pragma once

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
  if constexpr (std::is_void_v<T>) {
    for (auto& h : handles) co_await h.join();
  } else {
    std::vector<T> results;
    results.reserve(handles.size());
    for (auto& h : handles) results.push_back(co_await h.join());
    co_return results;
  }
}

}  // namespace coblk
