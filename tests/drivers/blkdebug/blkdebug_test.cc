#include <gtest/gtest.h>

#include <fstream>

#include "tests/drivers/driver_test_util.h"

namespace coblk {
namespace {

using testing_util::DriverTest;
using testing_util::Pattern;
using testing_util::ReadHostFile;

constexpr int64_t kMiB = 1 << 20;

class BlkdebugTest : public DriverTest {
 protected:
  // blkdebug directly over a buffered file.
  std::shared_ptr<BlockNode> Debug(const std::string& rules) {
    return MustOpen("driver=blkdebug," + (rules.empty() ? "" : rules + ",") +
                    "file.driver=file,file.cache.direct=off,file.filename=" + file_.path());
  }
  // raw over blkdebug over file: raw emits read_aio/write_aio events.
  std::shared_ptr<BlockNode> RawOverDebug(const std::string& debug_opts) {
    return MustOpen("driver=raw,file.driver=blkdebug," + debug_opts +
                    (debug_opts.empty() ? "" : ",") +
                    "file.file.driver=file,file.file.cache.direct=off,file.file.filename=" +
                    file_.path());
  }
  int ReadErrno(BlockNode& n, int64_t offset, size_t len = 4096) {
    auto r = Read(n, offset, len);
    return r ? 0 : r.error().errnum();
  }
  int WriteErrno(BlockNode& n, int64_t offset, size_t len = 4096) {
    Status s = Write(n, offset, Pattern(len, 9));
    return s ? 0 : s.error().errnum();
  }

  TempFile file_{kMiB};
};

TEST_F(BlkdebugTest, PassesThroughWithoutRules) {
  auto node = Debug("");
  ASSERT_TRUE(node);
  EXPECT_TRUE(node->driver()->is_filter());
  EXPECT_EQ(node->size(), kMiB);
  auto data = Pattern(12345, 1);
  ASSERT_TRUE(Write(*node, 1000, data));
  auto back = Read(*node, 1000, data.size());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, data);
  ASSERT_TRUE(sync_wait(loop(), node->flush()));
  EXPECT_EQ(ReadHostFile(file_.path(), 1000, data.size()), data);
  auto st = GetStatus(*node, 0, 4096);
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_TRUE(st->status & kStatusData);
}

// QEMU names blkdebug's child "image"; coblk takes that as "file".
TEST_F(BlkdebugTest, QemuImageChildName) {
  auto node = MustOpen("driver=blkdebug,inject-error.0.offset=0,inject-error.0.errno=28,"
                       "image.driver=file,image.cache.direct=off,image.filename=" + file_.path());
  ASSERT_TRUE(node);
  EXPECT_EQ(node->file()->driver()->format_name(), "file");
  EXPECT_EQ(ReadErrno(*node, 0), 28);
  auto both = Open("driver=blkdebug,image.filename=" + file_.path() + ",file.filename=" + file_.path());
  ASSERT_FALSE(both);
  EXPECT_NE(both.error().ToString().find("'image' or 'file'"), std::string::npos)
      << both.error().ToString();
}

TEST_F(BlkdebugTest, ErrnoForOverlappingRange) {
  auto node = Debug(
      "inject-error.0.errno=28,inject-error.0.offset=8192,inject-error.0.length=4096");
  ASSERT_TRUE(node);
  EXPECT_EQ(ReadErrno(*node, 0), 0);
  EXPECT_EQ(ReadErrno(*node, 8192), ENOSPC);
  EXPECT_EQ(ReadErrno(*node, 4096, 8192), ENOSPC);   // overlaps the start
  EXPECT_EQ(ReadErrno(*node, 10000, 100), ENOSPC);   // inside
  EXPECT_EQ(WriteErrno(*node, 8192), ENOSPC);         // always, every type
  EXPECT_EQ(ReadErrno(*node, 12288), 0);
  EXPECT_EQ(ReadErrno(*node, 4096), 0);
  EXPECT_TRUE(sync_wait(loop(), node->flush()));      // flush has no range
  EXPECT_EQ(InfoValue(*node, "errors injected"), "4");
}

TEST_F(BlkdebugTest, QemuSectorIsOneByte) {
  auto node = Debug("inject-error.0.sector=16,inject-error.0.immediately=on");
  ASSERT_TRUE(node);
  EXPECT_EQ(ReadErrno(*node, 8192, 512), EIO);  // default errno
  EXPECT_EQ(ReadErrno(*node, 8704, 512), 0);
}

TEST_F(BlkdebugTest, OnceVersusAlways) {
  auto once = Debug("inject-error.0.errno=5,inject-error.0.once=on");
  ASSERT_TRUE(once);
  EXPECT_EQ(ReadErrno(*once, 0), EIO);
  EXPECT_EQ(ReadErrno(*once, 0), 0);
  EXPECT_EQ(WriteErrno(*once, 0), 0);
}

TEST_F(BlkdebugTest, IoTypeSelectsRequests) {
  auto node = Debug("inject-error.0.errno=30,inject-error.0.iotype=write|flush");
  ASSERT_TRUE(node);
  EXPECT_EQ(ReadErrno(*node, 0), 0);
  EXPECT_EQ(WriteErrno(*node, 0), EROFS);
  Status f = sync_wait(loop(), node->flush());
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().errnum(), EROFS);
  EXPECT_TRUE(sync_wait(loop(), node->pdiscard(0, 4096)));
  EXPECT_FALSE(Open("driver=blkdebug,inject-error.0.iotype=sideways,file.driver=file,"
                    "file.locking=off,file.filename=" + file_.path()));
}

TEST_F(BlkdebugTest, AfterNOperations) {
  auto node = Debug("inject-error.0.iotype=write,inject-error.0.after=3,"
                    "inject-error.1.iotype=read,inject-error.1.after=1,inject-error.1.once=on");
  ASSERT_TRUE(node);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(WriteErrno(*node, i * 4096), 0) << i;
  EXPECT_EQ(WriteErrno(*node, 0), EIO);
  EXPECT_EQ(WriteErrno(*node, 0), EIO);
  EXPECT_EQ(ReadErrno(*node, 0), 0);
  EXPECT_EQ(ReadErrno(*node, 0), EIO);
  EXPECT_EQ(ReadErrno(*node, 0), 0);
}

TEST_F(BlkdebugTest, EventArmsTheNextRequest) {
  auto node = Debug("inject-error.0.event=l2_update,inject-error.0.errno=5,"
                    "inject-error.0.once=on");
  ASSERT_TRUE(node);
  EXPECT_EQ(ReadErrno(*node, 0), 0);
  node->debug_event("l1_update");  // other events arm nothing
  EXPECT_EQ(ReadErrno(*node, 0), 0);
  node->debug_event("l2_update");
  EXPECT_EQ(WriteErrno(*node, 4096), EIO);
  EXPECT_EQ(WriteErrno(*node, 4096), 0);
  node->debug_event("l2_update");  // once: the rule is gone
  EXPECT_EQ(ReadErrno(*node, 0), 0);
}

TEST_F(BlkdebugTest, EventsReachBlkdebugThroughAFormat) {
  auto node = RawOverDebug("file.inject-error.0.event=write_aio,file.inject-error.0.errno=27");
  ASSERT_TRUE(node);
  EXPECT_EQ(ReadErrno(*node, 0), 0);
  EXPECT_EQ(WriteErrno(*node, 0), EFBIG);  // raw fires write_aio before writing
  node->debug_event("write_aio");          // forwarded down to blkdebug
  EXPECT_EQ(ReadErrno(*node, 0), EFBIG);
}

TEST_F(BlkdebugTest, SetStateScriptsASequence) {
  auto node = RawOverDebug(
      "file.set-state.0.event=l2_update,file.set-state.0.state=1,file.set-state.0.new_state=2,"
      "file.inject-error.0.event=read_aio,file.inject-error.0.state=2");
  ASSERT_TRUE(node);
  EXPECT_EQ(ReadErrno(*node, 0), 0);
  node->debug_event("l2_update");
  EXPECT_EQ(InfoValue(*node->file(), "state"), "2");
  EXPECT_EQ(ReadErrno(*node, 0), EIO);
}

TEST_F(BlkdebugTest, ConfigFile) {
  TempFile cfg;
  {
    std::ofstream out(cfg.path());
    out << "# fail the first read after it was issued\n"
           "[inject-error]\n"
           "event = \"read_aio\"\n"
           "errno = \"7\"\n"
           "once = \"on\"\n";
  }
  auto node = RawOverDebug("file.config=" + cfg.path());
  ASSERT_TRUE(node);
  EXPECT_EQ(WriteErrno(*node, 0), 0);
  EXPECT_EQ(ReadErrno(*node, 0), E2BIG);
  EXPECT_EQ(ReadErrno(*node, 0), 0);

  {
    std::ofstream out(cfg.path());
    out << "[inject-error]\nevent = \"read_aio\"\nfrobnicate = \"1\"\n";
  }
  EXPECT_FALSE(Open("driver=blkdebug,config=" + cfg.path() +
                    ",file.driver=file,file.locking=off,file.filename=" + file_.path()));
  EXPECT_FALSE(Open("driver=blkdebug,config=/nonexistent/blkdebug.conf,file.driver=file,"
                    "file.locking=off,file.filename=" + file_.path()));
}

// align=4096 makes the generic layer do read-modify-write; blkdebug itself
// rejects any request that is not aligned or exceeds max-transfer.
TEST_F(BlkdebugTest, AlignmentForcesReadModifyWrite) {
  auto node = RawOverDebug("file.align=4096,file.max-transfer=8192");
  ASSERT_TRUE(node);
  EXPECT_EQ(node->limits().request_alignment, 4096u);
  std::vector<uint8_t> expect(65536, 0);
  auto put = [&](int64_t off, std::vector<uint8_t> d) {
    ASSERT_TRUE(Write(*node, off, d)) << off;
    std::copy(d.begin(), d.end(), expect.begin() + off);
  };
  put(10, Pattern(100, 1));
  put(3000, Pattern(5000, 2));
  put(4095, Pattern(2, 3));
  put(20000, Pattern(30000, 4));
  auto back = Read(*node, 0, expect.size());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, expect);
  auto piece = Read(*node, 4000, 300);
  ASSERT_TRUE(piece);
  EXPECT_TRUE(std::equal(piece->begin(), piece->end(), expect.begin() + 4000));
  EXPECT_EQ(ReadHostFile(file_.path(), 0, expect.size()), expect);

  EXPECT_FALSE(Open("driver=blkdebug,align=3000,file.driver=file,file.locking=off,"
                    "file.filename=" + file_.path()));
  EXPECT_FALSE(Open("driver=blkdebug,align=4096,max-transfer=6000,file.driver=file,"
                    "file.locking=off,file.filename=" + file_.path()));
}

TEST_F(BlkdebugTest, DropWritesAfterSimulatesPowerLoss) {
  auto node = Debug("drop-writes-after=2");
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(*node, 0, Pattern(4096, 1)));
  ASSERT_TRUE(Write(*node, 4096, Pattern(4096, 2)));
  ASSERT_TRUE(Write(*node, 8192, Pattern(4096, 3)));     // dropped, reported fine
  ASSERT_TRUE(sync_wait(loop(), node->pwrite_zeroes(0, 4096)));  // dropped
  ASSERT_TRUE(sync_wait(loop(), node->flush()));         // dropped
  EXPECT_EQ(InfoValue(*node, "writes passed"), "2");
  EXPECT_EQ(InfoValue(*node, "requests dropped"), "3");
  EXPECT_EQ(ReadHostFile(file_.path(), 0, 4096), Pattern(4096, 1));
  EXPECT_EQ(ReadHostFile(file_.path(), 4096, 4096), Pattern(4096, 2));
  EXPECT_EQ(ReadHostFile(file_.path(), 8192, 4096), std::vector<uint8_t>(4096, 0));
}

TEST_F(BlkdebugTest, DropWritesFromAnEvent) {
  auto node = Debug("drop-writes-event=l2_update");
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(*node, 0, Pattern(4096, 1)));
  node->debug_event("l2_update");
  ASSERT_TRUE(Write(*node, 4096, Pattern(4096, 2)));
  EXPECT_EQ(ReadHostFile(file_.path(), 0, 4096), Pattern(4096, 1));
  EXPECT_EQ(ReadHostFile(file_.path(), 4096, 4096), std::vector<uint8_t>(4096, 0));
  auto back = Read(*node, 4096, 4096);  // reads see what really reached the disk
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, std::vector<uint8_t>(4096, 0));
}

TEST_F(BlkdebugTest, BadRuleOptions) {
  const std::string tail = ",file.driver=file,file.locking=off,file.filename=" + file_.path();
  EXPECT_FALSE(Open("driver=blkdebug,inject-error.0.colour=red" + tail));
  EXPECT_FALSE(Open("driver=blkdebug,inject-error.x.errno=5" + tail));
  EXPECT_FALSE(Open("driver=blkdebug,set-state.0.new_state=2" + tail));  // needs an event
  EXPECT_FALSE(Open("driver=blkdebug,drop-writes-after=-5" + tail));
}

}  // namespace
}  // namespace coblk
