// Growing a host file through the generic layer: padded writes past the end
// under O_DIRECT, concurrent extending writes, and the bounds check near
// INT64_MAX for every request kind.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "block/block_driver.h"
#include "coroutine/when_all.h"
#include "drivers/file/file_node.h"
#include "io/aligned_buffer.h"
#include "tests/drivers/driver_test_util.h"

namespace coblk {
namespace {

using testing_util::DriverTest;
using testing_util::HostFileSize;
using testing_util::Pattern;
using testing_util::ReadHostFile;

class FileGrowthTest : public DriverTest, public ::testing::WithParamInterface<const char*> {
 protected:
  std::shared_ptr<BlockNode> OpenEmpty(TempFile& f) {
    return MustOpen("driver=file,filename=" + f.path() + "," + GetParam());
  }
};

// An unaligned write at 0 pads its block; an aligned write beyond it extends
// the file further at the same time. Both must survive: the padding cut-back
// never shrinks the file below what the other write extended.
TEST_P(FileGrowthTest, ConcurrentExtendingWritesKeepTheirData) {
  TempFile f;
  auto node = OpenEmpty(f);
  ASSERT_TRUE(node);
  auto small = Pattern(100, 1);
  auto big = Pattern(4096, 2);
  AlignedBuffer bigbuf(4096, 4096);
  std::copy(big.begin(), big.end(), bigbuf.data());
  std::vector<Task<Status>> writes;
  writes.push_back(node->pwrite(0, small.data(), 100));
  writes.push_back(node->pwrite(4096, bigbuf.data(), 4096));
  auto results = sync_wait(loop(), when_all(std::move(writes)));
  for (auto& r : results) ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(node->size(), 8192);
  EXPECT_EQ(HostFileSize(f.path()), 8192);
  EXPECT_EQ(ReadHostFile(f.path(), 0, 100), small);
  EXPECT_EQ(ReadHostFile(f.path(), 100, 3996), std::vector<uint8_t>(3996, 0));
  EXPECT_EQ(ReadHostFile(f.path(), 4096, 4096), big);
}

// Many unaligned appends racing each other: the file ends exactly at the
// furthest data, and every write's bytes are there.
TEST_P(FileGrowthTest, ManyUnalignedAppendsEndAtTheData) {
  TempFile f;
  auto node = OpenEmpty(f);
  ASSERT_TRUE(node);
  constexpr int kWrites = 24;
  std::vector<std::vector<uint8_t>> data;
  std::vector<Task<Status>> writes;
  for (int i = 0; i < kWrites; ++i) data.push_back(Pattern(700, static_cast<uint8_t>(i)));
  // Interleave offsets so later-issued writes end both before and after
  // earlier ones.
  for (int i = 0; i < kWrites; ++i) {
    const int slot = (i * 7) % kWrites;
    writes.push_back(node->pwrite(slot * 3000 + 50, data[slot].data(), 700));
  }
  auto results = sync_wait(loop(), when_all(std::move(writes)));
  for (auto& r : results) ASSERT_TRUE(r) << r.error().ToString();
  const int64_t end = (kWrites - 1) * 3000 + 50 + 700;
  EXPECT_EQ(node->size(), end);
  EXPECT_EQ(HostFileSize(f.path()), end);
  for (int i = 0; i < kWrites; ++i)
    EXPECT_EQ(ReadHostFile(f.path(), i * 3000 + 50, 700), data[i]) << i;
}

// A lone unaligned append still leaves the file ending at its data
// (streamOptimized VMDK finds its footer from the end).
TEST_P(FileGrowthTest, UnalignedAppendEndsAtTheData) {
  TempFile f;
  auto node = OpenEmpty(f);
  ASSERT_TRUE(node);
  auto a = Pattern(5000, 3);
  ASSERT_TRUE(Write(*node, 0, a));
  EXPECT_EQ(HostFileSize(f.path()), 5000);
  auto b = Pattern(10, 4);
  ASSERT_TRUE(Write(*node, 6000, b));
  EXPECT_EQ(node->size(), 6010);
  EXPECT_EQ(HostFileSize(f.path()), 6010);
  EXPECT_EQ(ReadHostFile(f.path(), 0, 5000), a);
  EXPECT_EQ(ReadHostFile(f.path(), 5000, 1000), std::vector<uint8_t>(1000, 0));
  EXPECT_EQ(ReadHostFile(f.path(), 6000, 10), b);
}

// write_zeroes grows a protocol node just as a data write does.
TEST_P(FileGrowthTest, ZeroWritesGrowLikeDataWrites) {
  TempFile f;
  auto node = OpenEmpty(f);
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(*node, 0, Pattern(4096, 5)));
  ASSERT_TRUE(sync_wait(loop(), node->pwrite_zeroes(4096, 8192, kReqMayUnmap)));
  EXPECT_EQ(node->size(), 12288);
  EXPECT_EQ(HostFileSize(f.path()), 12288);
  ASSERT_TRUE(sync_wait(loop(), node->pwrite_zeroes(12288, 100)));
  EXPECT_EQ(node->size(), 12388);
  EXPECT_EQ(HostFileSize(f.path()), 12388);
  EXPECT_EQ(ReadHostFile(f.path(), 4096, 8292), std::vector<uint8_t>(8292, 0));
}

// Requests whose alignment would overflow int64 fail cleanly on a growing
// node as on any other, for every kind of request, and change nothing.
TEST_P(FileGrowthTest, RequestsNearInt64MaxAreRejected) {
  TempFile f(8192);
  auto node = OpenEmpty(f);
  ASSERT_TRUE(node);
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  std::vector<uint8_t> buf(4096);
  for (int64_t off : {kMax - 10, kMax - 4096, kMax - (int64_t{1} << 30)}) {
    SCOPED_TRACE(off);
    Status s = sync_wait(loop(), node->pwrite(off, buf.data(), 10));
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().errnum(), EIO);
    s = sync_wait(loop(), node->pwrite_zeroes(off, 10));
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().errnum(), EIO);
    s = sync_wait(loop(), node->pread(off, buf.data(), 10));
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().errnum(), EIO);
    s = sync_wait(loop(), node->pdiscard(off, 10));
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().errnum(), EIO);
    auto st = GetStatus(*node, off, 10);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().errnum(), EIO);
    s = sync_wait(loop(), node->truncate(off + 10, true, PreallocMode::kOff));
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().errnum(), EIO);
  }
  EXPECT_EQ(node->size(), 8192);
  EXPECT_EQ(HostFileSize(f.path()), 8192);
}

INSTANTIATE_TEST_SUITE_P(Modes, FileGrowthTest,
                         ::testing::Values("cache.direct=on", "aio=threads", "cache.direct=off"));

}  // namespace
}  // namespace coblk
