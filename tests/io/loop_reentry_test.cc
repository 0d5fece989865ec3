// The event loop is never re-entered: a blocking call made from code the
// loop is running fails loudly instead of running the outer iteration's
// ready list from under it.
#include <gtest/gtest.h>

#include "coroutine/sleep.h"
#include "coroutine/sync_wait.h"
#include "io/event_loop.h"

namespace coblk {
namespace {

Task<int> Answer() {
  co_await co_yield_now();
  co_return 42;
}

// sync_wait from inside a coroutine on the same loop.
void NestedSyncWait() {
  auto loop = EventLoop::Create().value();
  auto outer = [&]() -> Task<int> {
    // Something else is ready in the outer iteration, as in the original
    // use-after-free: the nested loop would run and clear it.
    co_return sync_wait(*loop, Answer());
  };
  (void)sync_wait(*loop, outer());
}

TEST(LoopReentryDeathTest, SyncWaitInsideTheLoopAbortsWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(NestedSyncWait(), "EventLoop re-entered");
}

TEST(LoopReentryTest, SequentialSyncWaitsStillWork) {
  auto loop = EventLoop::Create().value();
  EXPECT_EQ(sync_wait(*loop, Answer()), 42);
  EXPECT_EQ(sync_wait(*loop, Answer()), 42);
  EXPECT_FALSE(loop->in_iteration());
}

}  // namespace
}  // namespace coblk
