#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "tests/drivers/driver_test_util.h"

namespace coblk {
namespace {

using testing_util::DriverTest;
using testing_util::Pattern;
using testing_util::ReadHostFile;
using testing_util::WriteHostFile;

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

// A node whose request alignment is larger than its (sector-rounded) end
// reads its last block padded past the end. QEMU reads that padding as
// zeros; blkdebug passes the padded read on to its file, which must not
// refuse it ("Request out of bounds"). A vmdk descriptor file of a few
// hundred bytes under blkdebug on a 4 KiB-sector disk (cache=none) hit it.
TEST_F(BlkdebugTest, PaddedReadPastTheEndOfASmallFile) {
  TempFile small;
  const std::vector<uint8_t> data = Pattern(1000, 5);
  ASSERT_TRUE(WriteHostFile(small.path(), 0, data));
  const std::string file = "file.driver=file,file.cache.direct=on,file.filename=" + small.path();

  auto debug = MustOpen("driver=blkdebug,align=4096," + file, true);
  ASSERT_TRUE(debug);
  EXPECT_EQ(debug->size(), 1024);  // a whole number of sectors, as in QEMU
  auto back = Read(*debug, 0, data.size());
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, data);
  auto tail = Read(*debug, 1000, 24, 0xff);  // past the host file's end: zeros
  ASSERT_TRUE(tail) << tail.error().ToString();
  EXPECT_EQ(*tail, std::vector<uint8_t>(24, 0));
  // The caller's own range is still checked against the node's end.
  EXPECT_FALSE(Read(*debug, 1000, 100));
  EXPECT_FALSE(Read(*debug, 1024, 512));
  Close(debug);

  // Through a format node above it (raw inherits the 4 KiB alignment and
  // forwards the padded read to blkdebug, which forwards it to the file).
  auto raw = MustOpen("driver=raw,file.driver=blkdebug,file.align=4096,file." + file, true);
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->limits().request_alignment, 4096u);
  back = Read(*raw, 1, 998);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_TRUE(std::equal(back->begin(), back->end(), data.begin() + 1));
  EXPECT_FALSE(Read(*raw, 512, 1024));
  Close(raw);

  // Read-modify-write of the last block of a writable blkdebug.
  auto rw = MustOpen("driver=blkdebug,align=4096," + file);
  ASSERT_TRUE(rw);
  ASSERT_TRUE(Write(*rw, 100, Pattern(50, 6)));
  std::vector<uint8_t> expect = data;
  const std::vector<uint8_t> patch = Pattern(50, 6);
  std::copy(patch.begin(), patch.end(), expect.begin() + 100);
  ASSERT_TRUE(sync_wait(loop(), rw->flush()));
  EXPECT_EQ(ReadHostFile(small.path(), 0, expect.size()), expect);
  Close(rw);

  // A vmdk whose descriptor is such a file.
  TempFile flat(1 << 20);
  ASSERT_TRUE(WriteHostFile(flat.path(), 4096, Pattern(4096, 7)));
  const std::string name = flat.path().substr(flat.path().rfind('/') + 1);
  const std::string text =
      "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
      "createType=\"monolithicFlat\"\n\n# Extent description\nRW 2048 FLAT \"" + name +
      "\" 0\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n"
      "ddb.adapterType = \"ide\"\n";
  ASSERT_NE(text.size() % 512, 0u);
  TempFile desc;
  ASSERT_TRUE(WriteHostFile(desc.path(), 0, std::vector<uint8_t>(text.begin(), text.end())));
  auto vmdk = MustOpen("driver=vmdk,file.driver=blkdebug,file.align=4096,"
                       "file.image.driver=file,file.image.cache.direct=on,file.image.filename=" +
                       desc.path(), true);
  ASSERT_TRUE(vmdk);
  back = Read(*vmdk, 4096, 4096);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, Pattern(4096, 7));
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
