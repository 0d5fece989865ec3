// when_all joins every task before reporting an error; JoinHandle works
// across threads (spawned on one loop, joined from a coroutine on another).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "coroutine/sleep.h"
#include "coroutine/spawn.h"
#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "tests/coroutine/test_loop.h"

namespace coblk {
namespace {

using JoinTest = LoopTest;

// The failing task throws at once; the other still runs and writes into the
// caller's frame afterwards. when_all must not throw before it has ended.
TEST_F(JoinTest, WhenAllJoinsEveryTaskBeforeRethrowing) {
  int finished_after_throw = 0;
  bool caught = false;
  auto caller = [&]() -> Task<void> {
    int local = 0;  // referenced by the slow task
    auto fails = []() -> Task<void> {
      throw std::runtime_error("first");
      co_return;
    };
    auto slow = [&local]() -> Task<void> {
      co_await co_sleep(std::chrono::milliseconds(5));
      local = 1;
    };
    auto fails_later = []() -> Task<void> {
      co_await co_sleep(std::chrono::milliseconds(1));
      throw std::runtime_error("second");
    };
    std::vector<Task<void>> tasks;
    tasks.push_back(fails());
    tasks.push_back(slow());
    tasks.push_back(fails_later());
    try {
      co_await when_all(std::move(tasks));
    } catch (const std::runtime_error& e) {
      caught = true;
      EXPECT_STREQ(e.what(), "first");
    }
    finished_after_throw = local;
  };
  sync_wait(loop(), caller());
  EXPECT_TRUE(caught);
  EXPECT_EQ(finished_after_throw, 1);
}

TEST_F(JoinTest, WhenAllWithValuesJoinsEveryTaskBeforeRethrowing) {
  int slow_done = 0;
  auto fails = []() -> Task<int> {
    throw std::runtime_error("boom");
    co_return 0;
  };
  auto slow = [&slow_done]() -> Task<int> {
    co_await co_sleep(std::chrono::milliseconds(5));
    ++slow_done;
    co_return 2;
  };
  std::vector<Task<int>> tasks;
  tasks.push_back(fails());
  tasks.push_back(slow());
  EXPECT_THROW(sync_wait(loop(), when_all(std::move(tasks))), std::runtime_error);
  EXPECT_EQ(slow_done, 1);
}

// A second loop running on its own thread.
class OtherLoop {
 public:
  OtherLoop() : loop_(EventLoop::Create().value()), thread_([this] { loop_->run(); }) {}
  ~OtherLoop() {
    loop_->stop();
    thread_.join();
  }
  EventLoop& loop() { return *loop_; }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

// If the joiner is never woken, this posts a no-op to its loop after a
// while and records that it had to.
class Watchdog {
 public:
  explicit Watchdog(EventLoop& loop)
      : thread_([this, &loop] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, std::chrono::seconds(10), [this] { return done_; })) {
            fired_ = true;
            loop.post([] {});
          }
        }) {}
  ~Watchdog() { disarm(); }
  bool disarm() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::atomic<bool> fired_{false};
  std::thread thread_;
};

// Spawned from this thread onto a loop on another thread, joined by a
// coroutine on this thread's loop: the joiner must be woken through its own
// loop (post), not scheduled from the other thread into a loop that is
// asleep in epoll_wait.
TEST_F(JoinTest, JoinAcrossThreadsWakesTheJoinersLoop) {
  OtherLoop other;
  std::atomic<bool> joiner_waiting{false};
  std::atomic<std::thread::id> ran_on{};
  auto task = [&]() -> Task<int> {
    ran_on = std::this_thread::get_id();
    while (!joiner_waiting.load()) co_await co_yield_now();
    co_await co_sleep(std::chrono::milliseconds(50));  // the joiner is asleep by now
    co_return 7;
  };
  JoinHandle<int> h = spawn(other.loop(), task());
  auto joiner = [&]() -> Task<int> {
    joiner_waiting = true;
    co_return co_await h.join();
  };
  Watchdog dog(loop());
  EXPECT_EQ(sync_wait(loop(), joiner()), 7);
  EXPECT_FALSE(dog.disarm()) << "the joiner was not woken";
  EXPECT_TRUE(h.done());
  EXPECT_NE(ran_on.load(), std::this_thread::get_id());
}

// done() is polled from another thread while the task runs.
TEST_F(JoinTest, DoneIsSafeFromAnotherThread) {
  OtherLoop other;
  auto task = []() -> Task<void> { co_await co_sleep(std::chrono::milliseconds(2)); };
  for (int i = 0; i < 20; ++i) {
    JoinHandle<void> h = spawn(other.loop(), task());
    while (!h.done()) std::this_thread::yield();
  }
}

}  // namespace
}  // namespace coblk
