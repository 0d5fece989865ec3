#include "block/block_backend.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/block/block_test_util.h"
#include "tests/coroutine/test_loop.h"
#include "tests/io/temp_file.h"

namespace coblk::test {
namespace {

class BackendTest : public LoopTest {
 protected:
  std::unique_ptr<BlockBackend> Open(const std::string& text) {
    auto opts = Options::Parse(text);
    EXPECT_TRUE(opts);
    auto blk = BlockBackend::Open(loop(), "", std::move(*opts));
    EXPECT_TRUE(blk) << blk.error().ToString();
    return blk ? std::move(*blk) : nullptr;
  }
};

TEST_F(BackendTest, BlockingIoAndStats) {
  auto blk = Open("driver=testmem,size=1M,align=512");
  ASSERT_TRUE(blk);
  EXPECT_EQ(blk->size(), 1 << 20);
  std::vector<uint8_t> data(1000, 0xAB), got(1000);
  ASSERT_TRUE(blk->write(12345, data.data(), 1000));
  ASSERT_TRUE(blk->read(12345, got.data(), 1000));
  EXPECT_EQ(got, data);
  ASSERT_TRUE(blk->write_zeroes(12345, 10));
  ASSERT_TRUE(blk->discard(0, 4096));
  ASSERT_TRUE(blk->flush());
  EXPECT_FALSE(blk->read(1 << 20, got.data(), 1));

  const BlockStats& st = blk->stats();
  EXPECT_EQ(st.write.ops, 1u);
  EXPECT_EQ(st.write.bytes, 1000u);
  EXPECT_EQ(st.read.ops, 1u);
  EXPECT_EQ(st.read.bytes, 1000u);
  EXPECT_EQ(st.read.errors, 1u);
  EXPECT_EQ(st.zero.ops, 1u);
  EXPECT_EQ(st.discard.ops, 1u);
  EXPECT_EQ(st.flush.ops, 1u);
  EXPECT_GE(st.write.total_latency_ns, st.write.max_latency_ns);
  EXPECT_EQ(blk->truncate(2 << 20).error().errnum(), ENOTSUP);
}

Task<Status> CoroutineUser(BlockBackend& blk) {
  std::vector<uint8_t> buf(4096, 3);
  COBLK_CO_RETURN_IF_ERROR(co_await blk.co_write(0, buf.data(), 4096));
  std::vector<uint8_t> back(4096);
  COBLK_CO_RETURN_IF_ERROR(co_await blk.co_read(0, back.data(), 4096));
  if (back != buf) co_return MakeError(EIO, "mismatch");
  co_return co_await blk.co_close();
}

TEST_F(BackendTest, CoroutineApi) {
  auto blk = Open("driver=testmem,size=64k");
  ASSERT_TRUE(blk);
  Status s = sync_wait(loop(), CoroutineUser(*blk));
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_TRUE(dynamic_cast<TestMemNode&>(blk->node()).closed);
  EXPECT_TRUE(blk->close());  // already closed: no-op
}

TEST_F(BackendTest, AioCallbacksRunOnTheLoop) {
  auto blk = Open("driver=testmem,size=64k,delay_us=100");
  ASSERT_TRUE(blk);
  std::vector<uint8_t> data(512, 9), got(512);
  int done = 0;
  Status write_status, read_status;
  blk->aio_write(512, data.data(), 512, [&](Status s) {
    write_status = s;
    done++;
    // Issue the read from the write's completion.
    blk->aio_read(512, got.data(), 512, [&](Status r) {
      read_status = r;
      done++;
    });
  });
  blk->aio_flush([&](Status s) {
    EXPECT_TRUE(s);
    done++;
  });
  EXPECT_EQ(done, 0);  // nothing runs until the loop does
  while (done < 3) loop().run_once(true);
  EXPECT_TRUE(write_status);
  EXPECT_TRUE(read_status);
  EXPECT_EQ(got, data);
  EXPECT_EQ(blk->stats().write.ops, 1u);
  EXPECT_EQ(blk->stats().read.ops, 1u);
}

TEST_F(BackendTest, OpenErrorsAndClose) {
  auto bad = BlockBackend::Open(loop(), "", Options{});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().errnum(), EINVAL);
  auto blk = Open("driver=testmem,size=64k");
  ASSERT_TRUE(blk);
  EXPECT_TRUE(blk->close());
  uint8_t b;
  EXPECT_EQ(blk->read(0, &b, 1).error().errnum(), ENOMEDIUM);
}

}  // namespace
}  // namespace coblk::test

namespace coblk::test {
namespace {

// The real stack: raw over the file protocol on a host file (O_DIRECT by
// default), with unaligned requests padded by the generic layer.
TEST_F(BackendTest, RawOverHostFile) {
  if (!FindFormatDriver("raw") || !FindProtocolDriver("file")) GTEST_SKIP();
  TempFile tmp(1 << 20);
  ASSERT_FALSE(tmp.path().empty());
  Options opts;
  opts.set("driver", "raw");
  auto blk = BlockBackend::Open(loop(), tmp.path(), std::move(opts));
  ASSERT_TRUE(blk) << blk.error().ToString();
  std::vector<uint8_t> data(3000);
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<uint8_t>(i * 13);
  ASSERT_TRUE((*blk)->write(777, data.data(), 3000));
  std::vector<uint8_t> got(3000);
  ASSERT_TRUE((*blk)->read(777, got.data(), 3000));
  EXPECT_EQ(got, data);
  ASSERT_TRUE((*blk)->close());

  // Probed: raw, read-only, no warning needed; data still there.
  OpenFlags ro;
  ro.read_only = true;
  auto probed = BlockBackend::Open(loop(), tmp.path(), Options{}, ro);
  ASSERT_TRUE(probed) << probed.error().ToString();
  EXPECT_EQ((*probed)->node().driver()->format_name(), "raw");
  ASSERT_TRUE((*probed)->read(777, got.data(), 3000));
  EXPECT_EQ(got, data);
}

}  // namespace
}  // namespace coblk::test
