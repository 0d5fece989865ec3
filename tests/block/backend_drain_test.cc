// BlockBackend's gate and drain, which block jobs switch graphs under: a
// request in flight finishes on the old root before the drain completes,
// requests issued while drained reach only the new root, in the order they
// were issued, also when more arrive right after the drain ends.
#include <gtest/gtest.h>

#include <vector>

#include "block/block_backend.h"
#include "coroutine/sleep.h"
#include "coroutine/spawn.h"
#include "tests/block/block_test_util.h"
#include "tests/coroutine/test_loop.h"

namespace coblk::test {
namespace {

class BackendDrainTest : public LoopTest {};

TEST_F(BackendDrainTest, SwitchLosesAndReordersNothing) {
  auto a = OpenNode(loop(), "driver=testmem,size=1M,delay_us=3000");
  auto b = OpenNode(loop(), "driver=testmem,size=1M");
  ASSERT_TRUE(a && b);
  BlockBackend blk(loop(), *a);
  std::vector<std::vector<uint8_t>> bufs;
  for (int v = 0; v <= 6; ++v) bufs.emplace_back(4096, static_cast<uint8_t>(0x10 + v));
  auto read_node = [&](BlockNode& n) {
    std::vector<uint8_t> got(4096);
    EXPECT_TRUE(sync_wait(loop(), n.pread(0, got.data(), 4096)));
    return got[0];
  };
  auto scenario = [&]() -> Task<void> {
    // In flight on the old root when the drain starts (3 ms in the driver).
    JoinHandle<Status> w0 = spawn(loop(), blk.co_write(0, bufs[0].data(), 4096));
    co_await co_yield_now();
    co_await blk.co_drain_begin();
    EXPECT_TRUE(blk.drained());
    EXPECT_TRUE(w0.done());  // finished, on the old root
    // Issued while drained: they wait at the gate.
    std::vector<JoinHandle<Status>> mid;
    for (int v = 1; v <= 3; ++v) mid.push_back(spawn(loop(), blk.co_write(0, bufs[v].data(), 4096)));
    co_await co_sleep(std::chrono::milliseconds(10));
    for (auto& h : mid) EXPECT_FALSE(h.done());
    blk.replace_root(*b);
    blk.drain_end();
    // Right after the drain, started at once (not through the loop's queue,
    // where it would be behind the woken ones anyway): it must still queue
    // behind the requests waiting at the gate, not overtake them.
    JoinHandle<Status> late = spawn_now(blk.co_write(0, bufs[4].data(), 4096));
    for (auto& h : mid) {
      Status st = co_await h.join();
      EXPECT_TRUE(st);
    }
    Status st = co_await late.join();
    EXPECT_TRUE(st);
    st = co_await w0.join();
    EXPECT_TRUE(st);
  };
  sync_wait(loop(), scenario());
  EXPECT_EQ(read_node(**a), 0x10);  // the old root got only w0
  EXPECT_EQ(read_node(**b), 0x14);  // the new one got 1, 2, 3, then 4, in order
  EXPECT_EQ(&blk.node(), b->get());
  EXPECT_EQ(blk.stats().write.ops, 5u);
  ASSERT_TRUE(blk.close());
  sync_wait(loop(), (*a)->close());
}

// Nested drains: requests pass only when the last one ends.
TEST_F(BackendDrainTest, NestedDrainsHoldTheGateUntilTheLastEnds) {
  auto a = OpenNode(loop(), "driver=testmem,size=1M");
  ASSERT_TRUE(a);
  BlockBackend blk(loop(), *a);
  std::vector<uint8_t> buf(512, 7);
  auto scenario = [&]() -> Task<void> {
    co_await blk.co_drain_begin();
    co_await blk.co_drain_begin();
    JoinHandle<Status> w = spawn(loop(), blk.co_write(0, buf.data(), 512));
    blk.drain_end();
    co_await co_sleep(std::chrono::milliseconds(5));
    EXPECT_FALSE(w.done());
    blk.drain_end();
    Status st = co_await w.join();
    EXPECT_TRUE(st);
  };
  sync_wait(loop(), scenario());
  ASSERT_TRUE(blk.close());
}

}  // namespace
}  // namespace coblk::test
