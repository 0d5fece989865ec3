// ThreadPool: a burst of jobs gets as many threads as it needs (up to the
// limit) even while a worker sits idle.
#include "io/thread_pool.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace coblk {
namespace {

// Two jobs that each wait (up to 5 s) for the other to start: both see the
// other only if they run at the same time. With one idle worker the old
// accounting woke that worker for both and they ran one after the other.
TEST(ThreadPoolTest, BurstRunsConcurrentlyWhenAWorkerIsIdle) {
  ThreadPool pool(8);
  std::mutex mu;
  std::condition_variable cv;
  bool warm = false;
  pool.submit([&] {
    std::lock_guard<std::mutex> lock(mu);
    warm = true;
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return warm; }));
  }
  // Wait until the one worker is idle again.
  for (int i = 0; i < 10000 && pool.idle_count() != 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(pool.idle_count(), 1u);
  ASSERT_EQ(pool.thread_count(), 1u);

  int started = 0, finished = 0, saw_other = 0;
  auto job = [&] {
    std::unique_lock<std::mutex> lock(mu);
    ++started;
    cv.notify_all();
    if (cv.wait_for(lock, std::chrono::seconds(5), [&] { return started >= 2; })) ++saw_other;
    ++finished;
    cv.notify_all();
  };
  pool.submit(job);
  pool.submit(job);
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return finished == 2; }));
  EXPECT_EQ(saw_other, 2) << "the two jobs did not run at the same time";
  EXPECT_EQ(pool.thread_count(), 2u);
}

// No more threads than the limit, however large the burst.
TEST(ThreadPoolTest, NeverMoreThreadsThanTheLimit) {
  ThreadPool pool(3);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  for (int i = 0; i < 50; ++i) {
    pool.submit([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      std::lock_guard<std::mutex> lock(mu);
      ++done;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return done == 50; }));
  EXPECT_LE(pool.thread_count(), 3u);
}

}  // namespace
}  // namespace coblk
