// sync_wait(): run a Task to completion from non-coroutine code by driving
// the executor's loop on the calling thread (which must be the loop's thread).
#pragma once

#include <utility>

#include "coroutine/executor.h"
#include "coroutine/spawn.h"
#include "coroutine/task.h"

namespace coblk {

template <typename T>
T sync_wait(Executor& ex, Task<T> task) {
  auto state = std::make_shared<detail::JoinState<T>>();
  auto runner = detail::run_detached(std::move(task), state);
  ex.schedule(runner.handle);
  while (!state->done) ex.run_once(/*block=*/true);
  if (state->exception) std::rethrow_exception(state->exception);
  if constexpr (!std::is_void_v<T>) return std::move(*state->value);
}

}  // namespace coblk
