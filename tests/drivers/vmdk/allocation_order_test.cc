// AllocationOrder: pieces of one request allocate in index order, whatever
// order they become ready in, and a piece that allocates nothing (done()
// without waiting) lets the later ones through.
#include "drivers/vmdk/allocation_order.h"

#include <gtest/gtest.h>

#include <chrono>

#include "coroutine/sleep.h"
#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "tests/coroutine/test_loop.h"

namespace coblk::vmdk {
namespace {

class AllocationOrderTest : public LoopTest {};

TEST_F(AllocationOrderTest, TurnsFollowIndexNotReadiness) {
  AllocationOrder order(4);
  std::vector<size_t> allocated;
  // Piece k becomes ready after (4 - k) ms: the last piece is ready first.
  auto piece = [&](size_t k) -> Task<void> {
    co_await co_sleep(std::chrono::milliseconds(4 - static_cast<int>(k)));
    if (k == 1) {  // allocates nothing: e.g. an overwrite
      order.done(k);
      co_return;
    }
    co_await order.wait_turn(k);
    allocated.push_back(k);
    order.done(k);
    order.done(k);  // idempotent
  };
  std::vector<Task<void>> tasks;
  for (size_t k = 0; k < 4; ++k) tasks.push_back(piece(k));
  sync_wait(loop(), when_all(std::move(tasks)));
  EXPECT_EQ(allocated, (std::vector<size_t>{0, 2, 3}));
}

TEST_F(AllocationOrderTest, FirstPieceNeverWaits) {
  AllocationOrder order(2);
  bool passed = false;
  auto first = [&]() -> Task<void> {
    co_await order.wait_turn(0);
    passed = true;
  };
  sync_wait(loop(), first());
  EXPECT_TRUE(passed);
}

}  // namespace
}  // namespace coblk::vmdk
