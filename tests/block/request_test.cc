// The generic request layer: bounds, alignment, serialisation, splitting,
// write-zeroes fallback, discard, close.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "block/block_node.h"
#include "coroutine/when_all.h"
#include "io/aligned_buffer.h"
#include "tests/block/block_test_util.h"
#include "tests/coroutine/test_loop.h"

namespace coblk::test {
namespace {

class RequestTest : public LoopTest {
 protected:
  std::shared_ptr<BlockNode> Open(const std::string& text, OpenFlags flags = {}) {
    auto n = OpenNode(loop(), text, flags);
    EXPECT_TRUE(n.has_value()) << n.error().ToString();
    return n ? *n : nullptr;
  }
  Status Read(BlockNode& n, int64_t off, void* buf, int64_t len) {
    return sync_wait(loop(), n.pread(off, buf, len));
  }
  Status Write(BlockNode& n, int64_t off, const void* buf, int64_t len) {
    return sync_wait(loop(), n.pwrite(off, buf, len));
  }
  Status Zero(BlockNode& n, int64_t off, int64_t len, uint32_t flags = 0) {
    return sync_wait(loop(), n.pwrite_zeroes(off, len, flags));
  }
};

TEST_F(RequestTest, BoundsAreChecked) {
  auto n = Open("driver=testmem,size=64k");
  std::vector<uint8_t> buf(4096);
  Status s = Read(*n, 64 * 1024 - 100, buf.data(), 4096);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EIO);
  s = Read(*n, -1, buf.data(), 1);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EIO);
  s = Read(*n, 0, buf.data(), -5);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EIO);
  IoVector qiov(buf.data(), buf.size());
  s = sync_wait(loop(), n->preadv(INT64_MAX - 10, 4096, qiov));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EIO);
  s = Write(*n, 64 * 1024, buf.data(), 1);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EIO);
  EXPECT_TRUE(Read(*n, 64 * 1024, buf.data(), 0));  // empty request at the end
  EXPECT_TRUE(Mem(n)->reqs.empty());
}

TEST_F(RequestTest, ReadOnlyNodeRefusesWrites) {
  OpenFlags ro;
  ro.read_only = true;
  auto n = Open("driver=testmem,size=64k", ro);
  EXPECT_TRUE(n->read_only());
  uint8_t b = 1;
  Status s = Write(*n, 0, &b, 1);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EPERM);
  EXPECT_EQ(s.error().message(), "Block node is read-only");
  EXPECT_EQ(Zero(*n, 0, 512).error().errnum(), EPERM);
  EXPECT_EQ(sync_wait(loop(), n->pdiscard(0, 512)).error().errnum(), EPERM);
  EXPECT_TRUE(sync_wait(loop(), n->flush()));
  EXPECT_TRUE(Read(*n, 0, &b, 1));
}

class AlignmentTest : public RequestTest, public ::testing::WithParamInterface<int> {};

TEST_P(AlignmentTest, UnalignedRequestsReachDriverAligned) {
  const int align = GetParam();
  const int64_t size = 256 * 1024;
  auto n = Open("driver=testmem,size=256k,align=" + std::to_string(align));
  ASSERT_EQ(n->limits().request_alignment, static_cast<uint32_t>(align));
  std::vector<uint8_t> ref(size, 0);
  std::mt19937 rng(align);
  for (int i = 0; i < 200; i++) {
    int64_t off = rng() % size;
    int64_t len = 1 + rng() % std::min<int64_t>(3 * align + 17, size - off);
    std::vector<uint8_t> data(static_cast<size_t>(len));
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    ASSERT_TRUE(Write(*n, off, data.data(), len));
    std::memcpy(&ref[off], data.data(), data.size());
    // An unaligned read of a random range matches the reference.
    int64_t roff = rng() % size;
    int64_t rlen = 1 + rng() % std::min<int64_t>(2 * align + 5, size - roff);
    std::vector<uint8_t> got(static_cast<size_t>(rlen));
    ASSERT_TRUE(Read(*n, roff, got.data(), rlen));
    ASSERT_EQ(0, std::memcmp(got.data(), &ref[roff], got.size())) << "iteration " << i;
  }
  std::vector<uint8_t> all(size);
  ASSERT_TRUE(Read(*n, 0, all.data(), size));
  EXPECT_EQ(all, ref);
  EXPECT_FALSE(Mem(n)->violation);
}

INSTANTIATE_TEST_SUITE_P(Alignments, AlignmentTest, ::testing::Values(512, 4096));

TEST_F(RequestTest, MisalignedMemoryIsBounced) {
  auto n = Open("driver=testmem,size=64k,align=512,mem_align=512");
  AlignedBuffer buf(8192 + 1, 4096);
  uint8_t* odd = buf.data() + 1;  // aligned request, misaligned memory
  for (int i = 0; i < 8192; i++) odd[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(Write(*n, 4096, odd, 8192));
  std::vector<uint8_t> back(8192);
  AlignedBuffer rbuf(8192 + 3, 4096);
  ASSERT_TRUE(Read(*n, 4096, rbuf.data() + 3, 8192));
  EXPECT_EQ(0, std::memcmp(rbuf.data() + 3, odd, 8192));
  EXPECT_FALSE(Mem(n)->violation);
}

Task<Status> WriteByte(BlockNode* n, int64_t off, uint8_t value) {
  uint8_t b = value;
  co_return co_await n->pwrite(off, &b, 1);
}

// 64 read-modify-writes of one 4 KiB block run concurrently; each reads the
// block (slowly), patches one byte and writes it back. Without serialising
// them, all but one byte would be lost.
TEST_F(RequestTest, ConcurrentUnalignedWritesToOneBlockAllSurvive) {
  auto n = Open("driver=testmem,size=64k,align=4096,delay_us=200");
  std::vector<Task<Status>> tasks;
  for (int i = 0; i < 64; i++) tasks.push_back(WriteByte(n.get(), 8192 + 8 + i * 50, i + 1));
  auto results = sync_wait(loop(), when_all(std::move(tasks)));
  for (auto& r : results) ASSERT_TRUE(r) << r.error().ToString();
  std::vector<uint8_t> block(4096);
  ASSERT_TRUE(Read(*n, 8192, block.data(), 4096));
  for (int i = 0; i < 64; i++) EXPECT_EQ(block[8 + i * 50], i + 1) << "byte " << i;
  EXPECT_FALSE(Mem(n)->violation);
}

Task<Status> WriteFill(BlockNode* n, int64_t off, int64_t len, uint8_t value) {
  std::vector<uint8_t> buf(static_cast<size_t>(len), value);
  co_return co_await n->pwrite(off, buf.data(), len);
}

// An aligned write that arrives while an overlapping RMW is in flight waits
// for it; otherwise the RMW would write back stale bytes over it.
TEST_F(RequestTest, AlignedWriteWaitsForOverlappingReadModifyWrite) {
  auto n = Open("driver=testmem,size=64k,align=4096,delay_us=500");
  std::vector<Task<Status>> tasks;
  tasks.push_back(WriteFill(n.get(), 10, 1, 0xAA));
  tasks.push_back(WriteFill(n.get(), 0, 4096, 0x55));
  auto results = sync_wait(loop(), when_all(std::move(tasks)));
  for (auto& r : results) ASSERT_TRUE(r);
  std::vector<uint8_t> block(4096);
  ASSERT_TRUE(Read(*n, 0, block.data(), 4096));
  EXPECT_EQ(block, std::vector<uint8_t>(4096, 0x55));
}

TEST_F(RequestTest, NonOverlappingRequestsRunConcurrently) {
  auto n = Open("driver=testmem,size=64k,align=512,delay_us=1000");
  std::vector<Task<Status>> tasks;
  for (int i = 0; i < 8; i++) tasks.push_back(WriteFill(n.get(), i * 4096 + 1, 100, 1));
  auto results = sync_wait(loop(), when_all(std::move(tasks)));
  for (auto& r : results) ASSERT_TRUE(r);
  EXPECT_GT(Mem(n)->max_in_flight, 1);
}

TEST_F(RequestTest, SplitsAtMaxTransfer) {
  auto n = Open("driver=testmem,size=1M,align=512,max_transfer=64k");
  std::vector<uint8_t> data(300 * 1024 + 77);
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<uint8_t>(i ^ (i >> 8));
  ASSERT_TRUE(Write(*n, 1000, data.data(), static_cast<int64_t>(data.size())));
  Mem(n)->reqs.clear();
  std::vector<uint8_t> got(data.size());
  ASSERT_TRUE(Read(*n, 1000, got.data(), static_cast<int64_t>(got.size())));
  EXPECT_EQ(got, data);
  ASSERT_GE(Mem(n)->count('r'), 5u);
  for (const Req& r : Mem(n)->reqs) EXPECT_LE(r.bytes, 64 * 1024);
  std::vector<uint8_t> aligned(320 * 1024);
  Mem(n)->reqs.clear();
  ASSERT_TRUE(Read(*n, 0, aligned.data(), 320 * 1024));
  EXPECT_EQ(Mem(n)->count('r'), 5u);
  EXPECT_FALSE(Mem(n)->violation);
}

TEST_F(RequestTest, WriteZeroesUsesDriverForAlignedMiddle) {
  auto n = Open("driver=testmem,size=64k,align=512");
  Mem(n)->fill(0, 64 * 1024, 0xFF);
  ASSERT_TRUE(Zero(*n, 100, 5000));
  std::vector<uint8_t> got(64 * 1024);
  ASSERT_TRUE(Read(*n, 0, got.data(), 64 * 1024));
  for (int i = 0; i < 64 * 1024; i++) {
    ASSERT_EQ(got[i], (i >= 100 && i < 5100) ? 0 : 0xFF) << i;
  }
  ASSERT_EQ(Mem(n)->count('z'), 1u);
  for (const Req& r : Mem(n)->reqs) {
    if (r.op != 'z') continue;
    EXPECT_EQ(r.offset, 512);
    EXPECT_EQ(r.bytes, 4096);
  }
  EXPECT_EQ(Mem(n)->count('w'), 2u);  // head and tail blocks
  EXPECT_FALSE(Mem(n)->violation);
}

TEST_F(RequestTest, WriteZeroesFallsBackToZeroedBuffers) {
  auto n = Open("driver=testmem,size=4M,align=512,zeroes=off");
  Mem(n)->fill(0, 4 << 20, 0xFF);
  ASSERT_TRUE(Zero(*n, 512, 3 << 20));
  EXPECT_EQ(Mem(n)->count('z'), 0u);
  EXPECT_GE(Mem(n)->count('w'), 3u);
  for (const Req& r : Mem(n)->reqs) {
    EXPECT_LE(r.bytes, 1 << 20);
    EXPECT_EQ(r.flags, 0u);  // no internal flag reaches the driver
  }
  std::vector<uint8_t> got(4 << 20);
  ASSERT_TRUE(Read(*n, 0, got.data(), 4 << 20));
  for (int64_t i = 0; i < (4 << 20); i++) {
    ASSERT_EQ(got[i], (i >= 512 && i < 512 + (3 << 20)) ? 0 : 0xFF) << i;
  }
}

// FUA where the driver does not honour it: the request reaches the driver
// without the flag and a flush follows it before the request returns, for
// data writes, write_zeroes and the zeroed-buffer fallback alike.
TEST_F(RequestTest, FuaIsEmulatedWithAFlushWhereTheDriverLacksIt) {
  for (const char* zeroes : {"on", "off"}) {
    SCOPED_TRACE(zeroes);
    auto n = Open(std::string("driver=testmem,size=64k,align=512,zeroes=") + zeroes);
    std::vector<uint8_t> buf(4096, 0x5a);
    ASSERT_TRUE(Zero(*n, 4096, 8192, kReqFua));
    ASSERT_FALSE(Mem(n)->reqs.empty());
    EXPECT_EQ(Mem(n)->reqs.back().op, 'f');
    EXPECT_EQ(Mem(n)->count('f'), 1u);
    for (const Req& r : Mem(n)->reqs) EXPECT_FALSE(r.flags & kReqFua) << r.op;
    Mem(n)->reqs.clear();
    ASSERT_TRUE(sync_wait(loop(), n->pwrite(0, buf.data(), 4096, kReqFua)));
    ASSERT_EQ(Mem(n)->reqs.size(), 2u);
    EXPECT_EQ(Mem(n)->reqs[0].op, 'w');
    EXPECT_FALSE(Mem(n)->reqs[0].flags & kReqFua);
    EXPECT_EQ(Mem(n)->reqs[1].op, 'f');
    Mem(n)->reqs.clear();
    // Without FUA nothing is flushed.
    ASSERT_TRUE(Zero(*n, 0, 4096));
    ASSERT_TRUE(sync_wait(loop(), n->pwrite(0, buf.data(), 4096)));
    EXPECT_EQ(Mem(n)->count('f'), 0u);
  }
}

// A driver that declares FUA gets the flag and no extra flush.
TEST_F(RequestTest, FuaPassesToADriverThatHonoursIt) {
  auto n = Open("driver=testmem,size=64k,fua=on");
  std::vector<uint8_t> buf(4096, 0x5a);
  ASSERT_TRUE(sync_wait(loop(), n->pwrite(0, buf.data(), 4096, kReqFua)));
  ASSERT_TRUE(Zero(*n, 4096, 4096, kReqFua));
  ASSERT_EQ(Mem(n)->reqs.size(), 2u);
  EXPECT_TRUE(Mem(n)->reqs[0].flags & kReqFua);
  EXPECT_TRUE(Mem(n)->reqs[1].flags & kReqFua);
  EXPECT_EQ(Mem(n)->count('f'), 0u);
}

TEST_F(RequestTest, WriteZeroesNoFallbackFailsWithEnotsup) {
  auto n = Open("driver=testmem,size=64k,zeroes=off");
  Status s = Zero(*n, 0, 4096, kReqNoFallback);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), ENOTSUP);
  EXPECT_TRUE(Mem(n)->reqs.empty());
}

TEST_F(RequestTest, WriteZeroesRespectsZeroAlignment) {
  auto n = Open("driver=testmem,size=1M,align=512,zero_align=65536");
  ASSERT_TRUE(Zero(*n, 1536, 200 * 1024));
  std::vector<Req> z;
  for (const Req& r : Mem(n)->reqs) z.push_back(r);
  ASSERT_EQ(z.size(), 3u);
  EXPECT_EQ(z[0].offset, 1536);
  EXPECT_EQ(z[0].offset + z[0].bytes, 65536);
  EXPECT_EQ(z[1].offset, 65536);
  EXPECT_EQ(z[1].bytes % 65536, 0);
  EXPECT_EQ(z[2].offset + z[2].bytes, 1536 + 200 * 1024);
}

TEST_F(RequestTest, DiscardIgnoresEnotsup) {
  auto n = Open("driver=testmem,size=64k,align=512");
  EXPECT_TRUE(sync_wait(loop(), n->pdiscard(0, 8192)));
  auto d = Open("driver=testmem,size=64k,align=512,discard=on");
  EXPECT_TRUE(sync_wait(loop(), d->pdiscard(100, 8192)));
  ASSERT_EQ(Mem(d)->count('d'), 1u);
  EXPECT_EQ(Mem(d)->reqs[0].offset, 512);  // partial blocks are kept
  EXPECT_EQ(Mem(d)->reqs[0].bytes, 7680);
}

TEST_F(RequestTest, DefaultDriverMethods) {
  auto n = Open("driver=testmem,size=64k");
  Status t = sync_wait(loop(), n->truncate(128 * 1024, false, PreallocMode::kOff));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().errnum(), ENOTSUP);
  auto c = sync_wait(loop(), n->check(false));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message(), "This image format does not support checks");
  uint8_t b[512] = {};
  IoVector qiov(b, sizeof b);
  Status s = sync_wait(loop(), n->pwritev_compressed(0, 512, qiov));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), ENOTSUP);
  EXPECT_TRUE(sync_wait(loop(), n->flush()));
}

TEST_F(RequestTest, CloseIsIdempotentAndStopsRequests) {
  auto n = Open("driver=testmem,size=64k,backing.driver=testmem,backing.size=64k");
  ASSERT_NE(n->backing(), nullptr);
  sync_wait(loop(), n->close());
  EXPECT_TRUE(Mem(n)->closed);
  EXPECT_EQ(n->backing(), nullptr);
  sync_wait(loop(), n->close());
  uint8_t b;
  Status s = Read(*n, 0, &b, 1);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), ENOMEDIUM);
}

TEST_F(RequestTest, CloseKeepsChildrenUsedElsewhere) {
  auto n = Open("driver=testmem,size=64k,backing.driver=testmem,backing.size=64k");
  std::shared_ptr<BlockNode> base;
  for (const BdrvChild& c : n->children()) base = c.node;
  sync_wait(loop(), n->close());
  EXPECT_FALSE(Mem(base)->closed);
  sync_wait(loop(), base->close());
  EXPECT_TRUE(Mem(base)->closed);
}

// ---- block status ----

TEST_F(RequestTest, BlockStatusOfOneNode) {
  auto n = Open("driver=testmem,size=64k,align=512");
  Mem(n)->fill(4096, 4096, 7);
  auto st = sync_wait(loop(), n->block_status(true, 0, 64 * 1024));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 4096);
  EXPECT_EQ(st->status & (kStatusAllocated | kStatusData), 0u);
  EXPECT_TRUE(st->status & kStatusZero);  // unallocated, no backing
  st = sync_wait(loop(), n->block_status(true, 4000, 64 * 1024));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 96);  // clamped to the unaligned start
  st = sync_wait(loop(), n->block_status(true, 4096, 1 << 30));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 4096);
  EXPECT_EQ(st->status & (kStatusAllocated | kStatusData), kStatusAllocated | kStatusData);
  st = sync_wait(loop(), n->block_status(true, 8192, 1 << 30));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 64 * 1024 - 8192);
  EXPECT_TRUE(st->status & kStatusEof);
  st = sync_wait(loop(), n->block_status(true, 64 * 1024, 512));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 0);
  EXPECT_TRUE(st->status & kStatusEof);
  int64_t pnum = 0;
  auto alloc = sync_wait(loop(), n->is_allocated(4096, 8192, &pnum));
  ASSERT_TRUE(alloc);
  EXPECT_TRUE(*alloc);
  EXPECT_EQ(pnum, 4096);
}

TEST_F(RequestTest, BlockStatusAboveWalksBackingChain) {
  // top: 1 MiB over a 512 KiB base.
  auto top = Open("driver=testmem,size=1M,backing.driver=testmem,backing.size=512k");
  auto* base = dynamic_cast<TestMemNode*>(top->backing());
  ASSERT_NE(base, nullptr);
  EXPECT_TRUE(base->read_only());
  base->fill(0, 64 * 1024, 0xBB);
  Mem(top)->fill(64 * 1024, 64 * 1024, 0xCC);

  auto st = sync_wait(loop(), top->block_status_above(nullptr, true, 0, 1 << 20));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 64 * 1024);
  EXPECT_TRUE(st->status & kStatusAllocated);
  EXPECT_TRUE(st->status & kStatusData);

  st = sync_wait(loop(), top->block_status_above(nullptr, true, 64 * 1024, 1 << 20));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 64 * 1024);
  EXPECT_TRUE(st->status & kStatusData);

  // Unallocated everywhere: zero, not allocated.
  st = sync_wait(loop(), top->block_status_above(nullptr, true, 128 * 1024, 1 << 20));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 384 * 1024);
  EXPECT_TRUE(st->status & kStatusZero);
  EXPECT_FALSE(st->status & kStatusAllocated);

  // Past the end of the shorter base: zeroes, up to the end of top.
  st = sync_wait(loop(), top->block_status_above(nullptr, true, 512 * 1024, 1 << 20));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 512 * 1024);
  EXPECT_TRUE(st->status & kStatusZero);
  EXPECT_TRUE(st->status & kStatusEof);

  // Stopping at the base: only top's own allocation counts.
  st = sync_wait(loop(), top->block_status_above(top->backing(), true, 0, 1 << 20));
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->status & kStatusAllocated);
  EXPECT_EQ(st->pnum, 64 * 1024);

  int64_t pnum = 0;
  auto alloc = sync_wait(loop(), top->is_allocated(0, 1 << 20, &pnum));
  ASSERT_TRUE(alloc);
  EXPECT_FALSE(*alloc);
  EXPECT_EQ(pnum, 64 * 1024);

  // Reads see the chain.
  std::vector<uint8_t> buf(192 * 1024);
  ASSERT_TRUE(Read(*top, 0, buf.data(), 192 * 1024));
  EXPECT_EQ(buf[0], 0xBB);
  EXPECT_EQ(buf[64 * 1024], 0xCC);
  EXPECT_EQ(buf[128 * 1024], 0);
}

TEST_F(RequestTest, BlockStatusRawFollowsFile) {
  Disks()["bs"] = std::vector<uint8_t>(8192, 1);
  auto n = Open("driver=testfmt,file.driver=testproto,file.filename=bs");
  auto st = sync_wait(loop(), n->block_status(true, 100, 1000));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 1000);
  EXPECT_EQ(st->status & (kStatusData | kStatusAllocated), kStatusData | kStatusAllocated);
  EXPECT_FALSE(st->status & kStatusRaw);
  st = sync_wait(loop(), n->block_status(true, 100, 1 << 20));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pnum, 8092);
  EXPECT_TRUE(st->status & kStatusEof);
  Disks().erase("bs");
}

// A driver's data answer is refined with its file's holes only when it
// sets kStatusRecurse (QEMU's BDRV_BLOCK_RECURSE), only for want_zero
// queries, and the bit never reaches the caller. (Every data answer over
// "file" used to be refined, so map called a sparse VMDK grain over a hole
// of its file zero where qemu-img says data.)
TEST_F(RequestTest, BlockStatusRefinesDataOnlyWhenAsked) {
  for (const char* kind : {"data", "recurse"}) {
    auto n = Open(std::string("driver=testfmt,status=") + kind +
                  ",file.driver=testmem,file.size=64k,file.align=512");
    ASSERT_NE(n, nullptr);
    auto* file = dynamic_cast<TestMemNode*>(n->file());
    ASSERT_NE(file, nullptr);
    file->fill(4096, 4096, 7);  // the rest of the file is a hole (zeroes)
    auto st = sync_wait(loop(), n->block_status(true, 0, 64 * 1024));
    ASSERT_TRUE(st) << st.error().ToString();
    EXPECT_FALSE(st->status & kStatusRecurse);
    EXPECT_EQ(st->status & (kStatusData | kStatusAllocated | kStatusOffsetValid),
              kStatusData | kStatusAllocated | kStatusOffsetValid);
    EXPECT_EQ(st->file, n->file());
    if (std::string(kind) == "data") {
      EXPECT_FALSE(st->status & kStatusZero);
      EXPECT_EQ(st->pnum, 64 * 1024);
      continue;
    }
    EXPECT_TRUE(st->status & kStatusZero);
    EXPECT_EQ(st->pnum, 4096);
    st = sync_wait(loop(), n->block_status(true, 4096, 64 * 1024));
    ASSERT_TRUE(st);
    EXPECT_FALSE(st->status & (kStatusZero | kStatusRecurse));
    EXPECT_EQ(st->pnum, 4096);
    st = sync_wait(loop(), n->block_status(false, 0, 64 * 1024));  // no refining
    ASSERT_TRUE(st);
    EXPECT_FALSE(st->status & (kStatusZero | kStatusRecurse));
    EXPECT_EQ(st->pnum, 64 * 1024);
  }
  auto bad = Open("driver=testfmt,status=badrecurse,file.driver=testmem,file.size=64k");
  ASSERT_NE(bad, nullptr);
  auto st = sync_wait(loop(), bad->block_status(true, 0, 4096));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().errnum(), EIO);
  EXPECT_NE(st.error().message().find("recurse status without a mapping"), std::string::npos)
      << st.error().ToString();
}

}  // namespace
}  // namespace coblk::test
