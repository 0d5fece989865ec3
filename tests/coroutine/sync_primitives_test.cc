#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "coroutine/co_mutex.h"
#include "coroutine/co_queue.h"
#include "coroutine/co_rwlock.h"
#include "coroutine/sleep.h"
#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "tests/coroutine/test_loop.h"

namespace coblk {
namespace {

using SyncPrimitivesTest = LoopTest;

TEST_F(SyncPrimitivesTest, MutexGrantsInArrivalOrder) {
  CoMutex m;
  std::vector<int> order;
  auto holder = [&]() -> Task<void> {
    co_await m.lock();
    co_await co_sleep(std::chrono::milliseconds(2));
    order.push_back(0);
    m.unlock();
  };
  auto waiter = [&](int id) -> Task<void> {
    auto g = co_await m.scoped_lock();
    order.push_back(id);
  };
  std::vector<Task<void>> tasks;
  tasks.push_back(holder());
  for (int i = 1; i <= 5; ++i) tasks.push_back(waiter(i));
  sync_wait(loop(), when_all(std::move(tasks)));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_FALSE(m.locked());
}

TEST_F(SyncPrimitivesTest, MutexHandsOffSoUnlockerCannotBarge) {
  CoMutex m;
  std::vector<std::string> order;
  auto greedy = [&]() -> Task<void> {
    co_await m.lock();
    co_await co_sleep(std::chrono::milliseconds(1));
    m.unlock();
    // Relocking at once must queue behind the waiter that was already there.
    co_await m.lock();
    order.push_back("greedy-again");
    m.unlock();
  };
  auto patient = [&]() -> Task<void> {
    co_await m.lock();
    order.push_back("patient");
    m.unlock();
  };
  std::vector<Task<void>> tasks;
  tasks.push_back(greedy());
  tasks.push_back(patient());
  sync_wait(loop(), when_all(std::move(tasks)));
  EXPECT_EQ(order, (std::vector<std::string>{"patient", "greedy-again"}));
}

TEST_F(SyncPrimitivesTest, TenThousandTasksContendMutex) {
  CoMutex m;
  int inside = 0, max_inside = 0;
  long counter = 0;
  auto worker = [&]() -> Task<void> {
    for (int i = 0; i < 3; ++i) {
      auto g = co_await m.scoped_lock();
      ++inside;
      max_inside = std::max(max_inside, inside);
      long v = counter;
      if (i == 1) co_await co_sleep(std::chrono::nanoseconds(0));  // yield while held
      counter = v + 1;
      --inside;
    }
  };
  std::vector<Task<void>> tasks;
  for (int i = 0; i < 10000; ++i) tasks.push_back(worker());
  sync_wait(loop(), when_all(std::move(tasks)));
  EXPECT_EQ(counter, 30000);
  EXPECT_EQ(max_inside, 1);
}

TEST_F(SyncPrimitivesTest, RwLockReadersShareWritersExclude) {
  CoRwLock l;
  int readers = 0, max_readers = 0;
  bool writer_in = false, overlap = false;
  auto reader = [&]() -> Task<void> {
    co_await l.lock_shared();
    if (writer_in) overlap = true;
    max_readers = std::max(max_readers, ++readers);
    co_await co_sleep(std::chrono::milliseconds(1));
    --readers;
    l.unlock_shared();
  };
  auto writer = [&]() -> Task<void> {
    co_await l.lock();
    if (readers) overlap = true;
    writer_in = true;
    co_await co_sleep(std::chrono::milliseconds(1));
    writer_in = false;
    l.unlock();
  };
  std::vector<Task<void>> tasks;
  for (int i = 0; i < 4; ++i) tasks.push_back(reader());
  tasks.push_back(writer());
  for (int i = 0; i < 4; ++i) tasks.push_back(reader());
  sync_wait(loop(), when_all(std::move(tasks)));
  EXPECT_FALSE(overlap);
  EXPECT_EQ(max_readers, 4);  // the writer splits the two reader groups
}

TEST_F(SyncPrimitivesTest, RwLockWriterNotStarvedByLaterReaders) {
  CoRwLock l;
  std::vector<std::string> order;
  auto reader = [&](std::string name, int ms) -> Task<void> {
    co_await co_sleep(std::chrono::milliseconds(ms));
    co_await l.lock_shared();
    order.push_back(name);
    co_await co_sleep(std::chrono::milliseconds(3));
    l.unlock_shared();
  };
  auto writer = [&]() -> Task<void> {
    co_await co_sleep(std::chrono::milliseconds(1));
    co_await l.lock();
    order.push_back("w");
    l.unlock();
  };
  std::vector<Task<void>> tasks;
  tasks.push_back(reader("r1", 0));
  tasks.push_back(writer());
  tasks.push_back(reader("r2", 2));
  sync_wait(loop(), when_all(std::move(tasks)));
  EXPECT_EQ(order, (std::vector<std::string>{"r1", "w", "r2"}));
}

TEST_F(SyncPrimitivesTest, QueueNotifyOneAndAll) {
  CoQueue q;
  std::vector<int> woken;
  auto waiter = [&](int id) -> Task<void> {
    co_await q.wait();
    woken.push_back(id);
  };
  auto notifier = [&]() -> Task<void> {
    co_await co_sleep(std::chrono::milliseconds(1));
    EXPECT_EQ(q.size(), 3u);
    q.notify_one();
    co_await co_sleep(std::chrono::milliseconds(1));
    EXPECT_EQ(woken, (std::vector<int>{1}));
    q.notify_all();
  };
  std::vector<Task<void>> tasks;
  for (int i = 1; i <= 3; ++i) tasks.push_back(waiter(i));
  tasks.push_back(notifier());
  sync_wait(loop(), when_all(std::move(tasks)));
  EXPECT_EQ(woken, (std::vector<int>{1, 2, 3}));
  EXPECT_FALSE(q.notify_one());
}

}  // namespace
}  // namespace coblk
