// Closing a BlockBackend from a coroutine: co_close() is the non-blocking
// form; destroying an open backend there fails loudly instead of re-entering
// the running loop.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace coblk::test
