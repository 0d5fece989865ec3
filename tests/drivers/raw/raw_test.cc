#include <gtest/gtest.h>

#include <cstring>

#include "block/block_driver.h"
#include "tests/drivers/driver_test_util.h"

namespace coblk {
namespace {

using testing_util::DriverTest;
using testing_util::HostFileSize;
using testing_util::Pattern;
using testing_util::ReadHostFile;
using testing_util::WriteHostFile;

constexpr int64_t kMiB = 1 << 20;

class RawDriverTest : public DriverTest {
 protected:
  std::string Opts(const std::string& path, const std::string& extra = "") {
    return "driver=raw," + (extra.empty() ? "" : extra + ",") +
           "file.driver=file,file.filename=" + path;
  }
};

TEST_F(RawDriverTest, PassesThroughWholeFile) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path()));
  ASSERT_TRUE(node);
  EXPECT_EQ(node->size(), kMiB);
  ASSERT_NE(node->file(), nullptr);
  auto data = Pattern(10000, 1);
  ASSERT_TRUE(Write(*node, 777, data));
  auto back = Read(*node, 777, data.size());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, data);
  ASSERT_TRUE(sync_wait(loop(), node->flush()));
  EXPECT_EQ(ReadHostFile(f.path(), 777, data.size()), data);
  EXPECT_TRUE(node->has_zero_init());
}

TEST_F(RawDriverTest, OffsetAndSizeWindow) {
  TempFile f(kMiB);
  auto content = Pattern(kMiB, 2);
  ASSERT_TRUE(WriteHostFile(f.path(), 0, content));
  auto node = MustOpen(Opts(f.path(), "offset=4096,size=8192"));
  ASSERT_TRUE(node);
  EXPECT_EQ(node->size(), 8192);
  auto back = Read(*node, 0, 8192);
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::equal(back->begin(), back->end(), content.begin() + 4096));

  auto data = Pattern(8192, 3);
  ASSERT_TRUE(Write(*node, 0, data));
  ASSERT_TRUE(sync_wait(loop(), node->flush()));
  EXPECT_EQ(ReadHostFile(f.path(), 4096, 8192), data);
  auto before = ReadHostFile(f.path(), 0, 4096);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), content.begin()));
  auto after = ReadHostFile(f.path(), 12288, 4096);
  EXPECT_TRUE(std::equal(after.begin(), after.end(), content.begin() + 12288));

  // Outside the window: refused, nothing touched.
  EXPECT_FALSE(Read(*node, 8192, 512));
  EXPECT_FALSE(Read(*node, 4096, 8192));
  EXPECT_FALSE(Write(*node, 8000, Pattern(512, 4)));
  EXPECT_EQ(ReadHostFile(f.path(), 12288, 512),
            std::vector<uint8_t>(content.begin() + 12288, content.begin() + 12288 + 512));

  // A fixed-size window cannot be resized.
  Status t = sync_wait(loop(), node->truncate(16384, true, PreallocMode::kOff));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().errnum(), ENOTSUP);
}

TEST_F(RawDriverTest, OffsetOnlyRunsToEndOfFile) {
  TempFile f(kMiB);
  auto node = MustOpen(Opts(f.path(), "offset=65536"));
  ASSERT_TRUE(node);
  EXPECT_EQ(node->size(), kMiB - 65536);
  ASSERT_TRUE(sync_wait(loop(), node->truncate(kMiB, true, PreallocMode::kOff)));
  EXPECT_EQ(node->size(), kMiB);
  EXPECT_EQ(HostFileSize(f.path()), kMiB + 65536);
}

TEST_F(RawDriverTest, WindowChecks) {
  TempFile f(kMiB);
  auto r = Open(Opts(f.path(), "offset=2M"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("cannot be greater than size of the containing file"),
            std::string::npos);
  r = Open(Opts(f.path(), "offset=4096,size=1M"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("The sum of offset"), std::string::npos);
  r = Open(Opts(f.path(), "size=1000"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("not multiple of 512"), std::string::npos);
  EXPECT_FALSE(Open(Opts(f.path(), "bogus=1")));
}

TEST_F(RawDriverTest, BlockStatusComesFromTheFile) {
  TempFile f(kMiB);  // sparse
  ASSERT_TRUE(WriteHostFile(f.path(), 65536, Pattern(65536, 5)));
  auto node = MustOpen(Opts(f.path()));
  ASSERT_TRUE(node);
  auto st = GetStatus(*node, 0, kMiB);
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_TRUE(st->status & kStatusZero);
  EXPECT_EQ(st->pnum, 65536);
  st = GetStatus(*node, 65536, kMiB - 65536);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusData);
  EXPECT_EQ(st->pnum, 65536);
  st = GetStatus(*node, 131072, kMiB - 131072);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusZero);

  // With an offset the file is asked at the shifted position.
  auto window = MustOpen(Opts(f.path(), "offset=4096") + ",file.locking=off");
  ASSERT_TRUE(window);
  st = GetStatus(*window, 0, 1 << 19);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusZero);
  EXPECT_EQ(st->pnum, 65536 - 4096);
  st = GetStatus(*window, 65536 - 4096, 4096);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusData);
}

TEST_F(RawDriverTest, ZeroesDiscardPassThrough) {
  TempFile f(kMiB);
  ASSERT_TRUE(WriteHostFile(f.path(), 0, Pattern(kMiB, 6)));
  auto node = MustOpen(Opts(f.path(), "offset=65536"));
  ASSERT_TRUE(node);
  ASSERT_TRUE(sync_wait(loop(), node->pwrite_zeroes(0, 65536, kReqMayUnmap)));
  ASSERT_TRUE(sync_wait(loop(), node->pdiscard(65536, 65536)));
  EXPECT_EQ(ReadHostFile(f.path(), 65536, 65536), std::vector<uint8_t>(65536, 0));
  auto head = ReadHostFile(f.path(), 0, 65536);
  auto p = Pattern(kMiB, 6);
  EXPECT_TRUE(std::equal(head.begin(), head.end(), p.begin()));
}

TEST_F(RawDriverTest, CreateDelegatesToFile) {
  TempFile f;
  Options o;
  o.set("size", "3M");
  ASSERT_TRUE(sync_wait(loop(), CreateImage(loop(), "raw", f.path(), o)));
  EXPECT_EQ(HostFileSize(f.path()), 3 * kMiB);
  Options bad;
  bad.set("cluster_size", "64k");
  EXPECT_FALSE(sync_wait(loop(), CreateImage(loop(), "raw", f.path(), bad)));
}

// A probe-only format so the probed-raw protection can be exercised.
class MagicFormat final : public BlockDriver {
 public:
  std::string_view format_name() const override { return "coblk-test-magic"; }
  int probe(std::span<const uint8_t> b, std::string_view) const override {
    return b.size() >= 8 && std::memcmp(b.data(), "TESTFMT!", 8) == 0 ? 100 : 0;
  }
  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext&) const override {
    co_return MakeError(ENOTSUP, "test format");
  }
};

TEST_F(RawDriverTest, ProbedRawRefusesForeignHeader) {
  static const bool registered = RegisterBlockDriver(std::make_unique<MagicFormat>()).has_value();
  ASSERT_TRUE(registered);
  TempFile f(kMiB);
  BlockGraph graph(loop());
  auto r = sync_wait(loop(), graph.open_file(f.path(), "", OpenFlags{}));
  ASSERT_TRUE(r) << r.error().ToString();
  auto node = *r;
  nodes_.push_back(node);
  EXPECT_EQ(node->driver()->format_name(), "raw");
  EXPECT_FALSE(graph.warnings().empty());
  std::vector<uint8_t> header(512, 0);
  std::memcpy(header.data(), "TESTFMT!", 8);
  Status s = Write(*node, 0, header);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EPERM);
  EXPECT_TRUE(Write(*node, 512, header));
  EXPECT_TRUE(Write(*node, 0, Pattern(512, 7)));
  // Not probed: no restriction.
  auto explicit_raw = MustOpen(Opts(f.path()) + ",file.locking=off");
  ASSERT_TRUE(explicit_raw);
  EXPECT_TRUE(Write(*explicit_raw, 0, header));
}

}  // namespace
}  // namespace coblk
