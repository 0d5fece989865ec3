// Blocking helpers of the file driver (the aio=threads path).
#include "drivers/file/file_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

#include "io/aligned_buffer.h"
#include "tests/drivers/driver_test_util.h"

namespace coblk::file_proto {
namespace {

using testing_util::Pattern;
using testing_util::WriteHostFile;

int g_calls = 0;
std::string g_path;

// The real preadv, but after the first call another writer extends the
// file, as a concurrent append would between the two calls of one read.
ssize_t PreadvThenGrow(int fd, const iovec* iov, int count, off_t offset) {
  const ssize_t n = ::preadv(fd, iov, count, offset);
  if (g_calls++ == 0) {
    EXPECT_TRUE(WriteHostFile(g_path, 100, Pattern(16384, 9)));
  }
  return n;
}

// aio=threads with O_DIRECT: a short read at the end of a 100-byte file is
// continued at offset 100, unaligned; the file has grown meanwhile, so the
// kernel says EINVAL. That is the end of file as of the first call (QEMU),
// not an error.
TEST(FileIoTest, DirectShortReadThenGrowthIsEndOfFile) {
  TempFile f;
  g_path = f.path();
  auto head = Pattern(100, 1);
  ASSERT_TRUE(WriteHostFile(f.path(), 0, head));
  const int fd = ::open(f.path().c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) GTEST_SKIP() << "no O_DIRECT on this filesystem";
  AlignedBuffer buf(8192, 4096);
  // The premise: an O_DIRECT read at an unaligned offset is refused. tmpfs
  // (Linux 6.6+) takes it, and then reads the grown data, rightly.
  if (::pread(fd, buf.data(), 512, 1) >= 0) {
    ::close(fd);
    GTEST_SKIP() << "this filesystem takes unaligned O_DIRECT reads";
  }
  std::fill(buf.data(), buf.data() + 8192, 0xee);
  IoVector qiov = buf.iov(0, 8192);
  g_calls = 0;
  const int r = BlockingPreadvWith(PreadvThenGrow, fd, qiov, 0);
  ::close(fd);
  ASSERT_EQ(r, 0) << strerror(-r);
  EXPECT_GE(g_calls, 2);  // the continuation did happen
  EXPECT_TRUE(std::equal(head.begin(), head.end(), buf.data()));
  EXPECT_EQ(std::vector<uint8_t>(buf.data() + 100, buf.data() + 8192),
            std::vector<uint8_t>(8092, 0));
}

// Without O_DIRECT an EINVAL is a real error and is reported.
TEST(FileIoTest, BufferedEinvalIsAnError) {
  auto failing = [](int, const iovec*, int, off_t) -> ssize_t {
    errno = EINVAL;
    return -1;
  };
  TempFile f(4096);
  const int fd = ::open(f.path().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> buf(4096);
  IoVector qiov(buf.data(), buf.size());
  EXPECT_EQ(BlockingPreadvWith(failing, fd, qiov, 0), -EINVAL);
  ::close(fd);
}

}  // namespace
}  // namespace coblk::file_proto
