#include "io/event_loop.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "io/thread_pool.h"
#include "tests/coroutine/test_loop.h"
#include "tests/io/temp_file.h"

namespace coblk {
namespace {

using EventLoopTest = LoopTest;

TEST_F(EventLoopTest, PostFromOtherThreadsRunsOnLoopThread) {
  std::atomic<int> ran{0};
  std::thread::id loop_thread = std::this_thread::get_id();
  bool wrong_thread = false;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 250; ++i)
        loop().post([&] {
          if (std::this_thread::get_id() != loop_thread) wrong_thread = true;
          ++ran;
        });
    });
  }
  for (auto& t : threads) t.join();
  while (ran < 1000) loop().run_once(true);
  EXPECT_EQ(ran, 1000);
  EXPECT_FALSE(wrong_thread);
}

TEST_F(EventLoopTest, RunStopsFromAnotherThread) {
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    loop().stop();
  });
  loop().run();
  stopper.join();
  SUCCEED();
}

// stop() before run(): run() must still return (it used to reset the flag
// and block in epoll_wait for ever).
TEST_F(EventLoopTest, StopBeforeRunIsNotLost) {
  auto other = EventLoop::Create().value();
  other->stop();
  std::promise<void> returned;
  auto fut = returned.get_future();
  std::thread t([&] {
    other->run();
    returned.set_value();
  });
  const bool ok = fut.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  if (!ok) other->stop();  // unblock it so the test can end
  t.join();
  EXPECT_TRUE(ok) << "run() ignored a stop() made before it started";
  // The stop was consumed: a later stop() ends a later run().
  std::thread t2([&] { other->run(); });
  other->stop();
  t2.join();
}

TEST_F(EventLoopTest, TimersFireInDeadlineOrderAndCanBeCancelled) {
  std::vector<int> fired;
  loop().add_timer(std::chrono::milliseconds(3), [&] { fired.push_back(3); });
  loop().add_timer(std::chrono::milliseconds(1), [&] { fired.push_back(1); });
  auto id = loop().add_timer(std::chrono::milliseconds(2), [&] { fired.push_back(2); });
  loop().cancel_timer(id);
  while (fired.size() < 2) loop().run_once(true);
  EXPECT_EQ(fired, (std::vector<int>{1, 3}));
}

TEST_F(EventLoopTest, BottomHalfRunsAfterCurrentCallback) {
  std::vector<std::string> order;
  loop().add_bh([&] {
    loop().add_bh([&] { order.push_back("inner"); });
    order.push_back("outer");
  });
  loop().run_once(false);
  loop().run_once(false);
  EXPECT_EQ(order, (std::vector<std::string>{"outer", "inner"}));
}

TEST_F(EventLoopTest, FdHandlerFires) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  char got = 0;
  ASSERT_TRUE(loop().add_fd(fds[0], EPOLLIN, [&](uint32_t) { ASSERT_EQ(read(fds[0], &got, 1), 1); }));
  ASSERT_EQ(write(fds[1], "z", 1), 1);
  while (!got) loop().run_once(true);
  EXPECT_EQ(got, 'z');
  loop().remove_fd(fds[0]);
  close(fds[0]);
  close(fds[1]);
}

TEST_F(EventLoopTest, ThreadPoolRunsBlockingCallAndResumesOnLoop) {
  TempFile f(4096);
  int fd = open(f.path().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ThreadPool pool(2);
  std::thread::id loop_thread = std::this_thread::get_id();
  auto t = [&]() -> Task<std::pair<int, bool>> {
    std::thread::id worker;
    int r = co_await pool.run([fd, &worker] {
      worker = std::this_thread::get_id();
      return fsync(fd) < 0 ? -errno : 0;
    });
    bool ok = worker != loop_thread && std::this_thread::get_id() == loop_thread;
    co_return std::make_pair(r, ok);
  };
  auto [r, threads_ok] = sync_wait(loop(), t());
  EXPECT_EQ(r, 0);
  EXPECT_TRUE(threads_ok);
  auto bad = sync_wait(loop(), [&]() -> Task<int> {
    co_return co_await pool.run([] { return fsync(-1) < 0 ? -errno : 0; });
  }());
  EXPECT_EQ(bad, -EBADF);
  close(fd);
}

TEST_F(EventLoopTest, ThreadPoolManyConcurrentJobs) {
  ThreadPool pool(4);
  std::vector<Task<int>> tasks;
  for (int i = 0; i < 200; ++i)
    tasks.push_back([](ThreadPool& p, int v) -> Task<int> {
      co_return co_await p.run([v] { return v * 2; });
    }(pool, i));
  auto results = sync_wait(loop(), when_all(std::move(tasks)));
  for (int i = 0; i < 200; ++i) ASSERT_EQ(results[i], i * 2);
  EXPECT_LE(pool.thread_count(), 4u);
}

}  // namespace
}  // namespace coblk

namespace coblk {
namespace {

// A thread pool worker posts a coroutine's resumption; the loop may run it,
// the coroutine may finish and its owner destroy the loop before the
// poster's post() has returned. post() must not touch the loop after the
// callback became visible (ASan reported a use-after-free of wake_pending_
// in FileGrowthTest with cache.direct=off).
TEST(EventLoopPostTest, LoopMayBeDestroyedAsSoonAsAPostedCallbackRan) {
  constexpr int kPosters = 4, kPosts = 50;
  for (int i = 0; i < 200; ++i) {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop);
    EventLoop* raw = loop->get();
    int ran = 0;  // loop thread only
    std::vector<std::thread> posters;
    for (int p = 0; p < kPosters; ++p) {
      posters.emplace_back([raw, &ran] {
        for (int k = 0; k < kPosts; ++k) {
          raw->post([raw, &ran] {
            if (++ran == kPosters * kPosts) raw->stop();
          });
        }
      });
    }
    raw->run();
    loop->reset();  // the last posters may still be inside post()
    for (auto& t : posters) t.join();
  }
}

}  // namespace
}  // namespace coblk
