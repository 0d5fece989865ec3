#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <vector>

#include "block/block_driver.h"
#include "coroutine/when_all.h"
#include "drivers/file/file_io.h"
#include "drivers/file/file_node.h"
#include "io/aligned_buffer.h"
#include "tests/drivers/driver_test_util.h"

namespace coblk {
namespace {

using file_proto::FileNode;
using testing_util::DriverTest;
using testing_util::HostFileSize;
using testing_util::Pattern;
using testing_util::ReadHostFile;

constexpr int64_t kMiB = 1 << 20;

class FileDriverTest : public DriverTest {
 protected:
  std::string Opts(const std::string& path, const std::string& extra = "") {
    return "driver=file,filename=" + path + (extra.empty() ? "" : "," + extra);
  }

  // Writes unaligned and aligned data and checks it through the node and on disk.
  void CheckReadWrite(BlockNode& node, const std::string& path) {
    auto a = Pattern(64 * 1024, 1);
    ASSERT_TRUE(Write(node, 4096, a));
    auto b = Pattern(1000, 2);  // unaligned: read-modify-write under O_DIRECT
    ASSERT_TRUE(Write(node, 100, b));
    auto back = Read(node, 4096, a.size());
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, a);
    back = Read(node, 100, b.size());
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, b);
    ASSERT_TRUE(sync_wait(loop(), node.flush()));
    EXPECT_EQ(ReadHostFile(path, 4096, a.size()), a);
    EXPECT_EQ(ReadHostFile(path, 100, b.size()), b);
    EXPECT_EQ(ReadHostFile(path, 0, 100), std::vector<uint8_t>(100, 0));
  }
};

TEST_F(FileDriverTest, DirectNativeAioReadWrite) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path()));
  ASSERT_TRUE(node);
  auto* fn = dynamic_cast<FileNode*>(node.get());
  ASSERT_NE(fn, nullptr);
  EXPECT_TRUE(fn->direct());
  EXPECT_TRUE(fn->native_aio());
  EXPECT_EQ(node->size(), kMiB);
  EXPECT_GE(node->limits().request_alignment, 512u);
  EXPECT_GE(node->limits().min_mem_alignment, 1u);
  CheckReadWrite(*node, f.path());
}

TEST_F(FileDriverTest, BufferedReadWrite) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path(), "cache.direct=off"));
  ASSERT_TRUE(node);
  auto* fn = dynamic_cast<FileNode*>(node.get());
  EXPECT_FALSE(fn->direct());
  EXPECT_FALSE(fn->native_aio());
  EXPECT_EQ(node->limits().request_alignment, 1u);
  CheckReadWrite(*node, f.path());
}

TEST_F(FileDriverTest, DirectOnThreadPool) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path(), "aio=threads"));
  ASSERT_TRUE(node);
  auto* fn = dynamic_cast<FileNode*>(node.get());
  EXPECT_TRUE(fn->direct());
  EXPECT_FALSE(fn->native_aio());
  CheckReadWrite(*node, f.path());
}

TEST_F(FileDriverTest, CacheShorthand) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path(), "cache=writeback"));
  ASSERT_TRUE(node);
  EXPECT_FALSE(dynamic_cast<FileNode*>(node.get())->direct());
  auto unsafe = MustOpen(Opts(f.path(), "cache=unsafe,locking=off"));
  ASSERT_TRUE(unsafe);
  EXPECT_TRUE(sync_wait(loop(), unsafe->flush()));
  auto bad = Open(Opts(f.path(), "cache=sometimes,locking=off"));
  EXPECT_FALSE(bad);
}

TEST_F(FileDriverTest, NativeAioNeedsDirect) {
  TempFile f(kMiB);
  auto r = Open(Opts(f.path(), "cache.direct=off,aio=native"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("aio=native"), std::string::npos);
  EXPECT_FALSE(Open(Opts(f.path(), "aio=bogus")));
}

TEST_F(FileDriverTest, ManyConcurrentRequests) {
  TempFile f(4 * kMiB);
  auto node = MustOpen(Opts(f.path()));
  ASSERT_TRUE(node);
  constexpr int kRequests = 64;
  std::vector<AlignedBuffer> bufs;
  for (int i = 0; i < kRequests; ++i) {
    bufs.emplace_back(16384, 4096);
    auto p = Pattern(16384, static_cast<uint8_t>(i));
    std::copy(p.begin(), p.end(), bufs.back().data());
  }
  std::vector<Task<Status>> writes;
  for (int i = 0; i < kRequests; ++i)
    writes.push_back(node->pwrite(i * 16384, bufs[i].data(), 16384));
  auto results = sync_wait(loop(), when_all(std::move(writes)));
  for (auto& r : results) EXPECT_TRUE(r) << r.error().ToString();
  for (int i = 0; i < kRequests; ++i)
    EXPECT_EQ(ReadHostFile(f.path(), i * 16384, 16384), Pattern(16384, static_cast<uint8_t>(i)));
}

// The file shrinks behind the node's back: the driver zero-fills the tail.
TEST_F(FileDriverTest, ShortReadAtEofIsZeroFilled) {
  for (const char* mode : {"cache.direct=off", "cache.direct=on", "aio=threads"}) {
    SCOPED_TRACE(mode);
    TempFile f(64 * 1024);
    auto data = Pattern(8192, 3);
    ASSERT_TRUE(testing_util::WriteHostFile(f.path(), 0, data));
    auto node = MustOpen(Opts(f.path(), mode));
    ASSERT_TRUE(node);
    ASSERT_EQ(truncate(f.path().c_str(), 1000), 0);
    auto back = Read(*node, 0, 8192, 0xee);
    ASSERT_TRUE(back) << back.error().ToString();
    EXPECT_TRUE(std::equal(back->begin(), back->begin() + 1000, data.begin()));
    EXPECT_EQ(std::vector<uint8_t>(back->begin() + 1000, back->end()),
              std::vector<uint8_t>(8192 - 1000, 0));
    Close(node);
  }
}

// Evicts the file's pages from the page cache (after writing them back).
bool DropPageCache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fdatasync(fd) == 0 && ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  ::close(fd);
  return ok;
}

// cache.direct=on: a read of at least kPageCacheReadMin whose every page
// the page cache holds is copied from the cache (qemu-img compare reads
// through the cache by default, so on warm files coblk's O_DIRECT reads went
// to the disk while qemu-img copied from memory); what it returns is the
// file's content, dirty pages and the node's own O_DIRECT writes included.
// A smaller read, or one missing the cache anywhere, stays O_DIRECT and
// leaves the cache as it was.
TEST_F(FileDriverTest, DirectReadsOfCachedRangesCopyFromThePageCache) {
  constexpr int64_t kMin = FileNode::kPageCacheReadMin;
  TempFile f(4 * kMiB);
  ASSERT_TRUE(DropPageCache(f.path()));
  auto data = Pattern(2 * kMiB, 3);
  ASSERT_TRUE(testing_util::WriteHostFile(f.path(), 0, data));  // cached, dirty
  auto node = MustOpen(Opts(f.path()));
  ASSERT_TRUE(node);
  auto* fn = dynamic_cast<FileNode*>(node.get());
  ASSERT_NE(fn, nullptr);
  if (!fn->direct()) GTEST_SKIP() << "no O_DIRECT on this filesystem";
  {
    int fd = ::open(f.path().c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const bool have = file_proto::FullyInPageCache(fd, 0, 2 * kMiB);
    ::close(fd);
    if (!have) GTEST_SKIP() << "no cachestat(2) in this kernel";
  }

  // (The generic layer may split a request: counts are compared, not fixed.)
  auto back = Read(*node, 0, 2 * kMiB);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, data);
  uint64_t cached = fn->page_cache_reads();
  EXPECT_GT(cached, 0u);
  back = Read(*node, 4096, kMin - 4096);  // below the minimum: O_DIRECT
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::equal(back->begin(), back->end(), data.begin() + 4096));
  EXPECT_EQ(fn->page_cache_reads(), cached);

  // The node's O_DIRECT write drops the cached pages it covers: the read
  // that follows misses the cache there and reads the new data from disk.
  auto fresh = Pattern(kMiB, 4);
  ASSERT_TRUE(Write(*node, kMiB, fresh));
  back = Read(*node, 0, 2 * kMiB);
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::equal(back->begin(), back->begin() + kMiB, data.begin()));
  EXPECT_TRUE(std::equal(back->begin() + kMiB, back->end(), fresh.begin()));
  cached = fn->page_cache_reads();  // (the first MiB may still be cached)

  // Another writer's buffered write is in the cache (dirty): copied from it.
  auto other = Pattern(kMiB, 5);
  ASSERT_TRUE(testing_util::WriteHostFile(f.path(), 0, other));
  back = Read(*node, 0, kMiB);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, other);
  EXPECT_GT(fn->page_cache_reads(), cached);
  cached = fn->page_cache_reads();

  // Not cached: O_DIRECT, and the cache stays empty there. (A tmpfs keeps
  // its files in the page cache: nothing to drop, nothing more to check.)
  ASSERT_TRUE(DropPageCache(f.path()));
  {
    int fd = ::open(f.path().c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const bool kept = file_proto::FullyInPageCache(fd, 0, 4096);
    ::close(fd);
    if (kept) {
      Close(node);
      return;
    }
  }
  back = Read(*node, 0, 2 * kMiB);
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::equal(back->begin(), back->begin() + kMiB, other.begin()));
  EXPECT_TRUE(std::equal(back->begin() + kMiB, back->end(), fresh.begin()));
  EXPECT_EQ(fn->page_cache_reads(), cached);
  int fd = ::open(f.path().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(file_proto::FullyInPageCache(fd, 0, 2 * kMiB));
  ::close(fd);
  Close(node);
}

TEST_F(FileDriverTest, WriteZeroesAndDiscardMakeHoles) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path()));
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(*node, 0, Pattern(kMiB, 4)));
  auto st = GetStatus(*node, 0, kMiB);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusData);
  EXPECT_TRUE(st->status & kStatusOffsetValid);
  EXPECT_EQ(st->pnum, kMiB);

  ASSERT_TRUE(sync_wait(loop(), node->pwrite_zeroes(64 * 1024, 64 * 1024, kReqMayUnmap)));
  ASSERT_TRUE(sync_wait(loop(), node->pdiscard(256 * 1024, 128 * 1024)));
  ASSERT_TRUE(sync_wait(loop(), node->pwrite_zeroes(512 * 1024, 64 * 1024)));

  st = GetStatus(*node, 0, kMiB);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusData);
  EXPECT_EQ(st->pnum, 64 * 1024);
  st = GetStatus(*node, 64 * 1024, kMiB - 64 * 1024);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusZero);
  EXPECT_FALSE(st->status & kStatusData);
  EXPECT_EQ(st->pnum, 64 * 1024);
  EXPECT_EQ(st->map, 64 * 1024);
  st = GetStatus(*node, 256 * 1024, 256 * 1024);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusZero);
  EXPECT_EQ(st->pnum, 128 * 1024);

  for (int64_t off : {64 * 1024, 256 * 1024, 320 * 1024, 512 * 1024}) {
    auto back = Read(*node, off, 64 * 1024, 0x55);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, std::vector<uint8_t>(64 * 1024, 0)) << off;
  }
  auto kept = Read(*node, 128 * 1024, 4096);
  ASSERT_TRUE(kept);
  auto p = Pattern(kMiB, 4);
  EXPECT_TRUE(std::equal(kept->begin(), kept->end(), p.begin() + 128 * 1024));

  // want_zero=false: everything is reported as allocated data (QEMU).
  st = GetStatus(*node, 64 * 1024, 64 * 1024, /*want_zero=*/false);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusData);
  EXPECT_EQ(st->pnum, 64 * 1024);
}

TEST_F(FileDriverTest, SparseFileIsZeroUntilWritten) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path(), "cache.direct=off"));
  ASSERT_TRUE(node);
  auto st = GetStatus(*node, 0, kMiB);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusZero);
  EXPECT_EQ(st->pnum, kMiB);
  EXPECT_TRUE(node->has_zero_init());
}

TEST_F(FileDriverTest, Truncate) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path()));
  ASSERT_TRUE(node);
  ASSERT_TRUE(sync_wait(loop(), node->truncate(2 * kMiB, true, PreallocMode::kOff)));
  EXPECT_EQ(node->size(), 2 * kMiB);
  EXPECT_EQ(HostFileSize(f.path()), 2 * kMiB);
  ASSERT_TRUE(sync_wait(loop(), node->truncate(kMiB / 2, true, PreallocMode::kOff)));
  EXPECT_EQ(HostFileSize(f.path()), kMiB / 2);

  const int64_t before = node->allocated_file_size();
  ASSERT_TRUE(sync_wait(loop(), node->truncate(4 * kMiB, true, PreallocMode::kFalloc)));
  EXPECT_EQ(HostFileSize(f.path()), 4 * kMiB);
  EXPECT_GE(node->allocated_file_size(), before + 3 * kMiB);
  ASSERT_TRUE(sync_wait(loop(), node->truncate(5 * kMiB, true, PreallocMode::kFull)));
  EXPECT_EQ(HostFileSize(f.path()), 5 * kMiB);

  Status shrink = sync_wait(loop(), node->truncate(kMiB, true, PreallocMode::kFalloc));
  ASSERT_FALSE(shrink);
  EXPECT_EQ(shrink.error().errnum(), ENOTSUP);
}

TEST_F(FileDriverTest, FlushAndFua) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path(), "cache.direct=off"));
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(*node, 0, Pattern(4096, 5), kReqFua));
  EXPECT_TRUE(sync_wait(loop(), node->flush()));
  EXPECT_EQ(ReadHostFile(f.path(), 0, 4096), Pattern(4096, 5));
}

TEST_F(FileDriverTest, SecondWriterFailsToGetWriteLock) {
  TempFile f(kMiB);
  auto first = MustOpen(Opts(f.path()));
  ASSERT_TRUE(first);
  auto second = Open(Opts(f.path()));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().errnum(), EAGAIN);
  EXPECT_NE(second.error().message().find("Failed to get \"write\" lock"), std::string::npos)
      << second.error().message();

  // A reader next to a writer wants consistent reads (QEMU without -U).
  auto reader = Open(Opts(f.path()), /*read_only=*/true);
  ASSERT_FALSE(reader);
  EXPECT_NE(reader.error().message().find("Failed to get shared \"write\" lock"),
            std::string::npos);
  EXPECT_TRUE(MustOpen(Opts(f.path(), "force-share=on"), true));
  EXPECT_TRUE(MustOpen(Opts(f.path(), "locking=off")));

  Close(first);
  EXPECT_TRUE(MustOpen(Opts(f.path())));
}

TEST_F(FileDriverTest, ReadersShare) {
  TempFile f(kMiB);
  auto a = MustOpen(Opts(f.path()), true);
  auto b = MustOpen(Opts(f.path()), true);
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(a->read_only());
  auto writer = Open(Opts(f.path()));
  ASSERT_FALSE(writer);
  EXPECT_NE(writer.error().message().find("Failed to get \"write\" lock"), std::string::npos);
  EXPECT_FALSE(Open(Opts(f.path(), "force-share=on")));  // only for read-only opens
}

// Lock bytes are QEMU's: a read-write qemu-io sees coblk's write lock.
TEST_F(FileDriverTest, QemuIoSeesTheLock) {
  if (access("/usr/bin/qemu-io", X_OK) != 0) GTEST_SKIP() << "qemu-io not installed";
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path()));
  ASSERT_TRUE(node);
  std::string cmd = "/usr/bin/qemu-io -f raw -c 'read 0 512' " + f.path() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  EXPECT_NE(pclose(p), 0);
  EXPECT_NE(out.find("Failed to get \"write\" lock"), std::string::npos) << out;
}

TEST_F(FileDriverTest, CreateMakesAFileOfTheSize) {
  TempFile f;
  ASSERT_TRUE(testing_util::WriteHostFile(f.path(), 0, Pattern(8192, 6)));
  Options o;
  o.set("size", "1M");
  ASSERT_TRUE(sync_wait(loop(), CreateImage(loop(), "file", f.path(), o)));
  EXPECT_EQ(HostFileSize(f.path()), kMiB);
  EXPECT_EQ(ReadHostFile(f.path(), 0, 8192), std::vector<uint8_t>(8192, 0));

  Options full;
  full.set("size", "2M");
  full.set("preallocation", "full");
  ASSERT_TRUE(sync_wait(loop(), CreateImage(loop(), "file", f.path(), full)));
  auto node = MustOpen(Opts(f.path()));
  ASSERT_TRUE(node);
  EXPECT_EQ(node->size(), 2 * kMiB);
  EXPECT_GE(node->allocated_file_size(), 2 * kMiB);

  // An image in use is not clobbered.
  Options again;
  again.set("size", "4096");
  Status s = sync_wait(loop(), CreateImage(loop(), "file", f.path(), again));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EAGAIN);
  EXPECT_EQ(HostFileSize(f.path()), 2 * kMiB);

  Options bad;
  bad.set("size", "1M");
  bad.set("preallocation", "metadata");
  TempFile g;
  EXPECT_FALSE(sync_wait(loop(), CreateImage(loop(), "file", g.path(), bad)));
}

TEST_F(FileDriverTest, OpenErrors) {
  auto r = Open("driver=file,filename=/nonexistent/coblk-file");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum(), ENOENT);
  EXPECT_NE(r.error().message().find("Could not open '/nonexistent/coblk-file'"),
            std::string::npos);
  TempFile f(kMiB);
  EXPECT_FALSE(Open(Opts(f.path(), "no-such-option=1")));
  EXPECT_FALSE(Open(Opts(f.path(), "locking=maybe")));
  EXPECT_FALSE(Open(std::string("driver=file,filename=") + COBLK_BIN_DIR));  // a directory
}

TEST_F(FileDriverTest, ReadOnlyRefusesWrites) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path()), true);
  ASSERT_TRUE(node);
  EXPECT_FALSE(Write(*node, 0, Pattern(4096, 7)));
  EXPECT_TRUE(Read(*node, 0, 4096));
}

}  // namespace
}  // namespace coblk
