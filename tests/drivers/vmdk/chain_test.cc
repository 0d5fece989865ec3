// Backing chains in the generic layer: is_allocated_above and
// block_status_above answer for a whole range with one block_status call
// per layer, and say which layer holds the data.
#include <gtest/gtest.h>

#include "block/block_graph.h"
#include "coroutine/sync_wait.h"
#include "tests/drivers/vmdk/vmdk_image_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kMiB = 1 << 20;

class ChainAllocationTest : public VmdkImageTest {
 protected:
  // l0 (base) <- l1 <- l2 <- l3, 4 MiB; layer i holds [i MiB, i+1 MiB) and
  // l3 also the first 64 KiB.
  void SetUp() override {
    VmdkImageTest::SetUp();
    for (int i = 0; i < 4; ++i) {
      Options o;
      o.set("size", std::to_string(4 * kMiB));
      if (i > 0) {
        o.set("backing_file", "l" + std::to_string(i - 1) + ".vmdk");
        o.set("backing_fmt", "vmdk");
      }
      const std::string path = dir_ / ("l" + std::to_string(i) + ".vmdk");
      ASSERT_TRUE(sync_wait(loop(), CreateImage(loop(), "vmdk", path, o)));
      auto n = OpenVmdk(path, ",backing=", /*read_only=*/false);
      ASSERT_TRUE(n) << n.error().ToString();
      ASSERT_TRUE(Write(**n, i * kMiB, testing_util::Pattern(kMiB, static_cast<uint8_t>(i + 1))));
      if (i == 3) {
        ASSERT_TRUE(Write(**n, 0, testing_util::Pattern(64 * 1024, 9)));
      }
      Close(*n);
    }
    auto top = OpenVmdk(dir_ / "l3.vmdk");
    ASSERT_TRUE(top) << top.error().ToString();
    top_ = *top;
    for (BlockNode* n = top_.get(); n; n = n->backing()) layers_.push_back(n);
    ASSERT_EQ(layers_.size(), 4u);
  }

  struct Answer {
    bool allocated;
    int64_t pnum;
    int depth;
  };
  Answer Above(BlockNode* base, bool include_base, int64_t offset, int64_t bytes) {
    int64_t pnum = -1;
    int depth = -1;
    auto r = sync_wait(loop(), top_->is_allocated_above(base, include_base, offset, bytes, &pnum,
                                                        &depth));
    EXPECT_TRUE(r) << r.error().ToString();
    return {r.value_or(false), pnum, depth};
  }

  ScratchDir dir_;
  std::shared_ptr<BlockNode> top_;
  std::vector<BlockNode*> layers_;  // top first
};

TEST_F(ChainAllocationTest, IsAllocatedAboveNamesTheLayerForWholeRuns) {
  // [64K, 1M) lies in l0 only: one answer for the whole run.
  Answer a = Above(nullptr, false, 64 * 1024, 4 * kMiB);
  EXPECT_TRUE(a.allocated);
  EXPECT_EQ(a.pnum, kMiB - 64 * 1024);
  EXPECT_EQ(a.depth, 3);
  a = Above(nullptr, false, 0, 4 * kMiB);
  EXPECT_TRUE(a.allocated);
  EXPECT_EQ(a.pnum, 64 * 1024);
  EXPECT_EQ(a.depth, 0);
  for (int i = 1; i < 4; ++i) {
    a = Above(nullptr, false, i * kMiB, 4 * kMiB - i * kMiB);
    EXPECT_TRUE(a.allocated) << i;
    EXPECT_EQ(a.pnum, kMiB) << i;
    EXPECT_EQ(a.depth, 3 - i) << i;
  }
  // Excluding the base l0: its quarter is unallocated above it, as one run.
  a = Above(layers_[3], false, 64 * 1024, 4 * kMiB - 64 * 1024);
  EXPECT_FALSE(a.allocated);
  EXPECT_EQ(a.pnum, kMiB - 64 * 1024);
  a = Above(layers_[3], true, 64 * 1024, 4 * kMiB - 64 * 1024);
  EXPECT_TRUE(a.allocated);
  // Base l2: only l3 counts; [1M, 3M) is unallocated above it in one answer.
  a = Above(layers_[1], false, kMiB, 3 * kMiB);
  EXPECT_FALSE(a.allocated);
  EXPECT_EQ(a.pnum, 2 * kMiB);
  // The top itself as base: nothing is above it.
  a = Above(top_.get(), false, 0, 4 * kMiB);
  EXPECT_FALSE(a.allocated);
  EXPECT_EQ(a.pnum, 4 * kMiB);
  // Past the end: nothing to answer.
  a = Above(nullptr, false, 4 * kMiB, kMiB);
  EXPECT_FALSE(a.allocated);
  EXPECT_EQ(a.pnum, 0);
}

TEST_F(ChainAllocationTest, BlockStatusAboveAndReadsFallThroughEveryLayer) {
  for (int i = 0; i < 4; ++i) {
    const int64_t start = i == 0 ? 64 * 1024 : i * kMiB;
    auto st = sync_wait(loop(), top_->block_status_above(nullptr, false, start, 4 * kMiB - start));
    ASSERT_TRUE(st) << st.error().ToString();
    EXPECT_EQ(st->pnum, (i + 1) * kMiB - start) << i;
    EXPECT_TRUE(st->status & kStatusAllocated) << i;
    EXPECT_TRUE(st->status & kStatusData) << i;
    // The data's file is the layer's own file.
    EXPECT_EQ(st->file, layers_[3 - static_cast<size_t>(i)]->file()) << i;
    auto got = ReadRange(*top_, i * kMiB, kMiB);
    ASSERT_TRUE(got) << got.error().ToString();
    auto want = testing_util::Pattern(kMiB, static_cast<uint8_t>(i + 1));
    if (i == 0) {
      auto head = testing_util::Pattern(64 * 1024, 9);
      std::copy(head.begin(), head.end(), want.begin());
    }
    EXPECT_TRUE(*got == want) << i;
  }
}

}  // namespace
}  // namespace coblk::vmdk::test
