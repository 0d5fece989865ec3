#include "coroutine/task.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "coroutine/sleep.h"
#include "coroutine/spawn.h"
#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "tests/coroutine/test_loop.h"

namespace coblk {
namespace {

using TaskTest = LoopTest;

Task<int> value(int v) { co_return v; }

Task<int> add(int a, int b) {
  int x = co_await value(a);
  int y = co_await value(b);
  co_return x + y;
}

TEST_F(TaskTest, ReturnsValueThroughNestedTasks) {
  EXPECT_EQ(sync_wait(loop(), add(2, 3)), 5);
}

TEST_F(TaskTest, IsLazy) {
  bool started = false;
  auto make = [&]() -> Task<void> {
    started = true;
    co_return;
  };
  Task<void> t = make();
  EXPECT_FALSE(started);
  sync_wait(loop(), std::move(t));
  EXPECT_TRUE(started);
}

Task<int> thrower(int depth) {
  if (depth == 0) throw std::runtime_error("deep failure");
  co_return co_await thrower(depth - 1);
}

TEST_F(TaskTest, ExceptionPropagatesThroughNestedTasks) {
  try {
    sync_wait(loop(), thrower(10));
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "deep failure");
  }
}

Task<Result<int>> fallible(bool fail) {
  if (fail) co_return MakeError(EIO, "injected");
  co_return 7;
}

Task<Result<int>> forwards(bool fail) {
  auto r = co_await fallible(fail);
  if (!r) co_return std::unexpected(r.error());
  co_return *r * 2;
}

TEST_F(TaskTest, ResultErrorPropagates) {
  EXPECT_EQ(*sync_wait(loop(), forwards(false)), 14);
  auto r = sync_wait(loop(), forwards(true));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errnum(), EIO);
  EXPECT_EQ(r.error().message(), "injected");
}

Task<void> nothing() { co_return; }

// GCC 12 does not tail-call symmetric transfer at -O0/-O1/ASan: a naive Task
// would grow the stack once per await here and crash.
TEST_F(TaskTest, HundredThousandSynchronousAwaitsDoNotOverflowStack) {
  auto loop_body = []() -> Task<int> {
    int sum = 0;
    for (int i = 0; i < 100000; ++i) {
      co_await nothing();
      sum += co_await value(1);
    }
    co_return sum;
  };
  EXPECT_EQ(sync_wait(loop(), loop_body()), 100000);
}

TEST_F(TaskTest, ManyAsynchronousAwaitsInARow) {
  auto body = []() -> Task<int> {
    int n = 0;
    for (int i = 0; i < 20000; ++i) {
      co_await co_sleep(std::chrono::nanoseconds(0));
      ++n;
    }
    co_return n;
  };
  EXPECT_EQ(sync_wait(loop(), body()), 20000);
}

TEST_F(TaskTest, SpawnAndJoin) {
  std::string log;
  auto worker = [&log](char c) -> Task<int> {
    log += c;
    co_await co_sleep(std::chrono::milliseconds(1));
    log += c;
    co_return c;
  };
  auto main = [&]() -> Task<int> {
    auto a = spawn(loop(), worker('a'));
    auto b = spawn(loop(), worker('b'));
    int x = co_await a.join();
    int y = co_await b.join();
    co_return x + y;
  };
  EXPECT_EQ(sync_wait(loop(), main()), 'a' + 'b');
  EXPECT_EQ(log, "abab");  // both ran concurrently
}

TEST_F(TaskTest, DetachedTaskRunsWithoutJoin) {
  int done = 0;
  auto worker = [&done]() -> Task<void> {
    co_await co_sleep(std::chrono::microseconds(100));
    ++done;
  };
  {
    auto h = spawn(loop(), worker());
    (void)h;
  }
  sync_wait(loop(), co_sleep_task(std::chrono::milliseconds(5)));
  EXPECT_EQ(done, 1);
}

TEST_F(TaskTest, WhenAllCollectsInOrder) {
  auto delayed = [](int v, int ms) -> Task<int> {
    co_await co_sleep(std::chrono::milliseconds(ms));
    co_return v;
  };
  std::vector<Task<int>> tasks;
  tasks.push_back(delayed(1, 3));
  tasks.push_back(delayed(2, 1));
  tasks.push_back(delayed(3, 2));
  auto start = std::chrono::steady_clock::now();
  auto results = sync_wait(loop(), when_all(std::move(tasks)));
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(results, (std::vector<int>{1, 2, 3}));
  // Concurrent: roughly the longest delay, not the sum (generous bound).
  EXPECT_LT(elapsed, std::chrono::milliseconds(500));
}

TEST_F(TaskTest, SleepWaitsAtLeastTheDuration) {
  auto start = std::chrono::steady_clock::now();
  sync_wait(loop(), co_sleep_task(std::chrono::milliseconds(20)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(20));
}

}  // namespace
}  // namespace coblk
