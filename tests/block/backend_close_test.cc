// Closing a BlockBackend from a coroutine: co_close() is the non-blocking
// form; destroying an open backend there fails loudly instead of re-entering
// the running loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "block/block_backend.h"
#include "coroutine/sleep.h"
#include "coroutine/spawn.h"
#include "tests/block/block_test_util.h"
#include "tests/coroutine/test_loop.h"

namespace coblk::test {
namespace {

std::unique_ptr<BlockBackend> OpenBackend(EventLoop& loop, const std::string& text) {
  auto opts = Options::Parse(text);
  EXPECT_TRUE(opts);
  auto blk = BlockBackend::Open(loop, "", std::move(*opts));
  EXPECT_TRUE(blk) << blk.error().ToString();
  return blk ? std::move(*blk) : nullptr;
}

void DestroyOpenBackendInACoroutine() {
  auto loop = EventLoop::Create().value();
  auto blk = OpenBackend(*loop, "driver=testmem,size=64k,delay_us=100");
  auto user = [&]() -> Task<void> {
    std::vector<uint8_t> buf(512, 1);
    (void)co_await blk->co_write(0, buf.data(), 512);
    blk.reset();  // the blocking close would run the loop inside itself
  };
  // Another coroutine is ready in the same iteration.
  auto other = [&]() -> Task<void> { co_await co_yield_now(); };
  spawn(*loop, other());
  sync_wait(*loop, user());
}

TEST(BackendCloseDeathTest, DestroyingAnOpenBackendOnItsLoopAbortsWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(DestroyOpenBackendInACoroutine(), "co_close");
}

using BackendCloseTest = LoopTest;

TEST_F(BackendCloseTest, CoCloseThenDestroyInACoroutine) {
  auto blk = OpenBackend(loop(), "driver=testmem,size=64k,delay_us=100");
  ASSERT_TRUE(blk);
  TestMemNode* mem = dynamic_cast<TestMemNode*>(&blk->node());
  ASSERT_NE(mem, nullptr);
  auto user = [&]() -> Task<Status> {
    std::vector<uint8_t> buf(512, 1);
    COBLK_CO_RETURN_IF_ERROR(co_await blk->co_write(0, buf.data(), 512));
    Status s = co_await blk->co_close();
    blk.reset();
    co_return s;
  };
  Status s = sync_wait(loop(), user());
  EXPECT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(blk, nullptr);
}

class CloseTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    Disks()["close-test"] = std::vector<uint8_t>(64 * 1024, 0);
    ProtoLog().clear();
  }
  void TearDown() override { Disks().erase("close-test"); }
  size_t Count(const std::string& what) {
    return static_cast<size_t>(std::count(ProtoLog().begin(), ProtoLog().end(), what));
  }
};

// One backend close: the graph is flushed once; the nodes' own closes find
// nothing new to flush (there were three fdatasyncs per close).
TEST_F(CloseTest, CloseFlushesTheProtocolNodeOnce) {
  for (const char* stack : {"driver=raw,file.driver=testproto,file.filename=close-test",
                            "driver=testfmt,file.driver=testproto,file.filename=close-test",
                            "driver=testproto,filename=close-test"}) {
    SCOPED_TRACE(stack);
    ProtoLog().clear();
    auto blk = OpenBackend(loop(), stack);
    ASSERT_TRUE(blk);
    std::vector<uint8_t> buf(512, 7);
    ASSERT_TRUE(blk->write(0, buf.data(), 512));
    ASSERT_TRUE(blk->close());
    EXPECT_EQ(Count("flush"), 1u);
    EXPECT_EQ(Count("close"), 1u);
    ASSERT_FALSE(ProtoLog().empty());
    EXPECT_EQ(ProtoLog().back(), "close");
  }
}

// No write since the last flush: a flush of a protocol node does nothing.
TEST_F(CloseTest, FlushWithoutWritesIsSkippedOnAProtocolNode) {
  auto blk = OpenBackend(loop(), "driver=raw,file.driver=testproto,file.filename=close-test");
  ASSERT_TRUE(blk);
  std::vector<uint8_t> buf(512, 7);
  ASSERT_TRUE(blk->write(0, buf.data(), 512));
  ASSERT_TRUE(blk->flush());
  ASSERT_TRUE(blk->flush());
  EXPECT_EQ(Count("flush"), 1u);
  ASSERT_TRUE(blk->write(512, buf.data(), 512));
  ASSERT_TRUE(blk->flush());
  EXPECT_EQ(Count("flush"), 2u);
}

// Errors of the flush at close and of the driver's close are reported.
TEST_F(CloseTest, CloseReportsFlushAndDriverErrors) {
  std::vector<uint8_t> buf(512, 7);
  auto blk = OpenBackend(loop(), "driver=raw,file.driver=testproto,file.filename=close-test,"
                                 "file.close_errno=28");
  ASSERT_TRUE(blk);
  ASSERT_TRUE(blk->write(0, buf.data(), 512));
  Status s = blk->close();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), 28);

  blk = OpenBackend(loop(), "driver=raw,file.driver=testproto,file.filename=close-test,"
                            "file.flush_errno=5");
  ASSERT_TRUE(blk);
  ASSERT_TRUE(blk->write(0, buf.data(), 512));
  auto user = [&]() -> Task<Status> { co_return co_await blk->co_close(); };
  s = sync_wait(loop(), user());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), 5);
  EXPECT_EQ(Count("close"), 2u);  // the driver was still closed
}

// A flush in flight when close() starts ends before the driver closes (the
// file driver's would otherwise fdatasync a closed or reused descriptor).
TEST_F(CloseTest, CloseWaitsForAFlushInFlight) {
  auto blk = OpenBackend(loop(), "driver=testproto,filename=close-test,flush_delay_us=20000");
  ASSERT_TRUE(blk);
  std::vector<uint8_t> buf(512, 7);
  ASSERT_TRUE(blk->write(0, buf.data(), 512));
  Status flushed = MakeError(EINPROGRESS, "not done");
  auto flusher = [&]() -> Task<void> { flushed = co_await blk->co_flush(); };
  auto closer = [&]() -> Task<Status> {
    JoinHandle<void> h = spawn_now(flusher());
    Status s = co_await blk->co_close();
    co_await h.join();
    co_return s;
  };
  Status s = sync_wait(loop(), closer());
  EXPECT_TRUE(s) << s.error().ToString();
  EXPECT_TRUE(flushed) << flushed.error().ToString();
  EXPECT_EQ(ProtoLog(), (std::vector<std::string>{"flush", "flushed", "close"}));
}

}  // namespace
}  // namespace coblk::test
