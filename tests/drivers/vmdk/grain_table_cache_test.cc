// The grain-table cache must make progress at every size, down to one
// table, whatever the queue depth: a request that finds every slot loading
// or pinned waits, and must be woken when a slot frees up even if the
// request woken before it found its table cached and took no slot (the
// lost wake-up of issue 15, item 3: `coblk-io` hung in aio_flush).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "coroutine/spawn.h"
#include "tests/drivers/vmdk/vmdk_write_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kTableSpan = int64_t{32} << 20;  // 512 grains of 64 KiB

class GrainTableCacheTest : public VmdkWriteTest {
 protected:
  // Runs every task on the loop and puts their statuses in *results; ends
  // the process with a message if they have not all finished by the deadline.
  void RunAll(std::vector<Task<Status>> tasks, std::vector<Status>* results,
              std::chrono::seconds deadline = std::chrono::seconds(20)) {
    std::vector<JoinHandle<Status>> handles;
    for (auto& t : tasks) handles.push_back(spawn(loop(), std::move(t)));
    const auto until = std::chrono::steady_clock::now() + deadline;
    auto all_done = [&] {
      return std::all_of(handles.begin(), handles.end(), [](const auto& h) { return h.done(); });
    };
    while (!all_done() && std::chrono::steady_clock::now() < until) {
      loop().run_once(false);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    if (!all_done()) {
      // The stuck requests would hang the node's close as well: report
      // the hang and end the test binary rather than wait for CTest's timeout.
      std::fprintf(stderr, "%s: requests still pending after %lds: hang\n",
                   ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                   static_cast<long>(deadline.count()));
      std::fflush(stderr);
      std::_Exit(1);
    }
    for (auto& h : handles) results->push_back(h.join().await_resume());  // done: no wait
  }

  static Task<Status> ReadAt(BlockNode& n, int64_t offset, int64_t len) {
    AlignedBuffer buf(static_cast<size_t>(len), 4096);
    co_return co_await n.pread(offset, buf.data(), len);
  }
  static Task<Status> WriteAt(BlockNode& n, int64_t offset, int64_t len, uint8_t pattern) {
    AlignedBuffer buf(static_cast<size_t>(len), 4096);
    std::memset(buf.data(), pattern, static_cast<size_t>(len));
    co_return co_await n.pwrite(offset, buf.data(), len);
  }
  static Task<Status> FlushNode(BlockNode& n) { co_return co_await n.flush(); }
};

// The reproducer: one table cached, four reads in three tables.
// The second load's waiter wakes, hits and must pass the wake-up on.
TEST_F(GrainTableCacheTest, OneTableFourReadsInThreeTablesFinish) {
  ScratchDir dir;
  const std::string img = dir / "r.vmdk";
  ASSERT_TRUE(Create(img, "size=128M"));
  for (const char* cache : {"2048", "4096"}) {
    auto n = OpenVmdk(img, std::string(",l2-cache-size=") + cache);
    ASSERT_TRUE(n) << n.error().ToString();
    std::vector<Task<Status>> tasks;
    tasks.push_back(ReadAt(**n, 0, 4096));
    tasks.push_back(ReadAt(**n, kTableSpan, 4096));
    tasks.push_back(ReadAt(**n, kTableSpan + 4096, 4096));
    tasks.push_back(ReadAt(**n, 2 * kTableSpan, 4096));
    tasks.push_back(FlushNode(**n));
    std::vector<Status> results;
    RunAll(std::move(tasks), &results);
    for (auto& st : results) EXPECT_TRUE(st) << st.error().ToString();
    Close(*n);
  }
}

// Queue depth 32 of reads spread over eight tables, each table wanted by
// four requests, with one and with two tables cached.
TEST_F(GrainTableCacheTest, SmallCacheReadsAtDepth32Finish) {
  ScratchDir dir;
  const std::string img = dir / "d.vmdk";
  ASSERT_TRUE(Create(img, "size=256M"));
  for (const char* cache : {"2048", "4096"}) {
    auto n = OpenVmdk(img, std::string(",l2-cache-size=") + cache);
    ASSERT_TRUE(n) << n.error().ToString();
    for (int round = 0; round < 4; ++round) {
      std::vector<Task<Status>> tasks;
      for (int i = 0; i < 32; ++i)
        tasks.push_back(ReadAt(**n, (i * 3 + round) % 8 * kTableSpan + i * 65536, 4096));
      std::vector<Status> results;
      RunAll(std::move(tasks), &results);
      for (auto& st : results) EXPECT_TRUE(st) << st.error().ToString();
    }
    Close(*n);
  }
}

// Many readers and allocating writers over every table with one cached
// table: commits pin the table they write while readers queue for the slot.
TEST_F(GrainTableCacheTest, OneTableMixedQueueDepth32Finishes) {
  ScratchDir dir;
  const std::string img = dir / "m.vmdk";
  ASSERT_TRUE(Create(img, "size=256M"));
  auto n = OpenRw(img, ",l2-cache-size=2048");
  ASSERT_TRUE(n) << n.error().ToString();
  Shadow shadow;
  for (int round = 0; round < 4; ++round) {
    std::vector<Task<Status>> tasks;
    for (int i = 0; i < 32; ++i) {
      const int64_t table = (i * 5 + round) % 8;
      const int64_t off = table * kTableSpan + (i * 7 + round) % 512 * 65536 + 512 * i;
      if (i % 3 == 0) {
        const uint8_t pat = static_cast<uint8_t>(1 + i + round * 32);
        tasks.push_back(WriteAt(**n, off, 4096, pat));
        shadow.Apply(off, Bytes(4096, pat));
      } else {
        tasks.push_back(ReadAt(**n, off + 8192, 4096));
      }
      if (i % 8 == 7) tasks.push_back(FlushNode(**n));
    }
    std::vector<Status> results;
    RunAll(std::move(tasks), &results);
    for (auto& st : results) EXPECT_TRUE(st) << st.error().ToString();
  }
  ExpectContent(**n, shadow);
  Close(*n);
  ExpectCoblkCheckClean(img);
}

}  // namespace
}  // namespace coblk::vmdk::test
