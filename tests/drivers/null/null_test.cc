#include <gtest/gtest.h>

#include <chrono>

#include "tests/drivers/driver_test_util.h"

namespace coblk {
namespace {

using testing_util::DriverTest;
using testing_util::Pattern;

class NullDriverTest : public DriverTest {};

TEST_F(NullDriverTest, DefaultSizeIsOneGiB) {
  auto node = MustOpen("driver=null-co");
  ASSERT_TRUE(node);
  EXPECT_EQ(node->size(), int64_t{1} << 30);
  EXPECT_EQ(node->filename(), "null-co://");
}

TEST_F(NullDriverTest, ReadsLeaveBufferUntouchedByDefault) {
  auto node = MustOpen("driver=null-co,size=1M");
  ASSERT_TRUE(node);
  EXPECT_EQ(node->size(), 1 << 20);
  auto back = Read(*node, 4096, 8192, 0xab);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, std::vector<uint8_t>(8192, 0xab));
  EXPECT_FALSE(Read(*node, (1 << 20) - 512, 1024));  // past the end
}

TEST_F(NullDriverTest, ReadZeroes) {
  auto node = MustOpen("driver=null-co,size=1M,read-zeroes=on");
  ASSERT_TRUE(node);
  auto back = Read(*node, 100, 5000, 0xab);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, std::vector<uint8_t>(5000, 0));
  auto st = GetStatus(*node, 0, 1 << 20);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusZero);
  EXPECT_TRUE(st->status & kStatusOffsetValid);
  EXPECT_EQ(st->pnum, 1 << 20);
}

TEST_F(NullDriverTest, WritesAreDiscarded) {
  auto node = MustOpen("driver=null-co,size=1M,read-zeroes=on");
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(*node, 0, Pattern(65536, 1)));
  ASSERT_TRUE(sync_wait(loop(), node->pwrite_zeroes(0, 4096)));
  ASSERT_TRUE(sync_wait(loop(), node->pdiscard(0, 4096)));
  ASSERT_TRUE(sync_wait(loop(), node->flush()));
  auto back = Read(*node, 0, 65536);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, std::vector<uint8_t>(65536, 0));
}

TEST_F(NullDriverTest, LatencyDelaysCompletion) {
  auto node = MustOpen("driver=null-co,size=1M,latency-ns=20000000");
  ASSERT_TRUE(node);
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(Read(*node, 0, 512));
  ASSERT_TRUE(Write(*node, 0, Pattern(512, 2)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(40));
}

TEST_F(NullDriverTest, BadOptions) {
  EXPECT_FALSE(Open("driver=null-co,latency-ns=-1"));
  EXPECT_FALSE(Open("driver=null-co,read-zeroes=maybe"));
  EXPECT_FALSE(Open("driver=null-co,size=1M,bogus=1"));
}

}  // namespace
}  // namespace coblk
