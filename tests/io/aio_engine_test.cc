#include "io/aio_engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "io/aligned_buffer.h"
#include "io/alignment.h"
#include "tests/coroutine/test_loop.h"
#include "tests/io/temp_file.h"

namespace coblk {
namespace {

class AioEngineTest : public LoopTest {
 protected:
  std::unique_ptr<AioEngine> make_engine(unsigned depth) {
    auto e = AioEngine::Create(loop(), depth);
    EXPECT_TRUE(e.has_value()) << e.error().ToString();
    return e ? std::move(*e) : nullptr;
  }
  int open_direct(const std::string& path, int flags = O_RDWR) {
    int fd = open(path.c_str(), flags | O_DIRECT | O_CLOEXEC);
    EXPECT_GE(fd, 0) << strerror(errno);
    return fd;
  }
};

Task<Status> one_request(AioEngine& e, bool write, int fd, IoVector& v, uint64_t off) {
  if (write) co_return co_await e.pwritev(fd, v, off);
  co_return co_await e.preadv(fd, v, off);
}

Task<Status> write_then_read(AioEngine& e, int fd, uint64_t off, uint8_t pattern) {
  AlignedBuffer w(4096), r(4096);
  std::memset(w.data(), pattern, 4096);
  IoVector wv = w.iov(), rv = r.iov();
  COBLK_CO_RETURN_IF_ERROR(co_await e.pwritev(fd, wv, off));
  COBLK_CO_RETURN_IF_ERROR(co_await e.preadv(fd, rv, off));
  if (std::memcmp(w.data(), r.data(), 4096) != 0) co_return MakeError(EIO, "mismatch");
  co_return OkStatus();
}

TEST_F(AioEngineTest, DirectReadWriteQueueDepthOne) {
  TempFile f(1 << 20);
  int fd = open_direct(f.path());
  auto e = make_engine(1);
  for (int i = 0; i < 16; ++i) {
    auto s = sync_wait(loop(), write_then_read(*e, fd, i * 8192ull, uint8_t(i + 1)));
    ASSERT_TRUE(s) << s.error().ToString();
  }
  EXPECT_EQ(e->stats().max_in_flight, 1u);
  close(fd);
}

// 128 requests issued in one loop iteration share a handful of io_submit
// calls. Writes and reads are two such bursts: reads issued one by one as
// their writes complete would depend on how the kernel batches completions
// (a loaded machine spreads them out), which is not what this tests.
TEST_F(AioEngineTest, DirectReadWriteQueueDepth128BatchesSubmissions) {
  TempFile f(4 << 20);
  int fd = open_direct(f.path());
  auto e = make_engine(128);
  std::vector<AlignedBuffer> wbufs, rbufs;
  std::vector<IoVector> wv, rv;
  for (int i = 0; i < 128; ++i) {
    wbufs.emplace_back(4096);
    rbufs.emplace_back(4096);
    std::memset(wbufs.back().data(), i, 4096);
  }
  for (int i = 0; i < 128; ++i) {
    wv.push_back(wbufs[i].iov());
    rv.push_back(rbufs[i].iov());
  }
  auto burst = [&](bool write) {
    std::vector<Task<Status>> tasks;
    for (int i = 0; i < 128; ++i)
      tasks.push_back(one_request(*e, write, fd, write ? wv[i] : rv[i], i * 4096ull));
    for (auto& r : sync_wait(loop(), when_all(std::move(tasks)))) ASSERT_TRUE(r) << r.error().ToString();
  };
  burst(true);
  const uint64_t write_submits = e->stats().submit_calls;
  EXPECT_LE(write_submits, 4u);
  EXPECT_GT(e->stats().max_in_flight, 32u);
  burst(false);
  EXPECT_LE(e->stats().submit_calls - write_submits, 4u);
  EXPECT_EQ(e->stats().requests, 256u);
  for (int i = 0; i < 128; ++i)
    ASSERT_EQ(std::memcmp(wbufs[i].data(), rbufs[i].data(), 4096), 0) << "block " << i;
  close(fd);
}

TEST_F(AioEngineTest, ScatterGatherVector) {
  TempFile f(1 << 20);
  int fd = open_direct(f.path());
  auto e = make_engine(8);
  AlignedBuffer a(4096), b(8192), whole(12288);
  std::memset(a.data(), 'a', 4096);
  std::memset(b.data(), 'b', 8192);
  IoVector v;
  v.append(a.data(), 4096);
  v.append(b.data(), 8192);
  ASSERT_TRUE(sync_wait(loop(), [&]() -> Task<Status> { co_return co_await e->pwritev(fd, v, 8192); }()));
  ASSERT_TRUE(sync_wait(loop(), [&]() -> Task<Status> {
    IoVector wv = whole.iov();
    co_return co_await e->preadv(fd, wv, 8192);
  }()));
  EXPECT_EQ(whole.data()[0], 'a');
  EXPECT_EQ(whole.data()[4095], 'a');
  EXPECT_EQ(whole.data()[4096], 'b');
  EXPECT_EQ(whole.data()[12287], 'b');
  close(fd);
}

TEST_F(AioEngineTest, ShortReadAtEndOfFileIsZeroFilled) {
  TempFile f;
  {
    int fd = open(f.path().c_str(), O_WRONLY);
    std::vector<char> data(4096 + 512, 'x');
    ASSERT_EQ(write(fd, data.data(), data.size()), ssize_t(data.size()));
    close(fd);
  }
  int fd = open_direct(f.path(), O_RDONLY);
  auto e = make_engine(4);
  AlignedBuffer buf(16384);
  std::memset(buf.data(), 0xff, buf.size());
  auto s = sync_wait(loop(), [&]() -> Task<Status> {
    IoVector v = buf.iov();
    co_return co_await e->preadv(fd, v, 0);
  }());
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(buf.data()[0], 'x');
  EXPECT_EQ(buf.data()[4096 + 511], 'x');
  for (size_t i = 4096 + 512; i < buf.size(); ++i) ASSERT_EQ(buf.data()[i], 0) << i;
  close(fd);
}

TEST_F(AioEngineTest, ParksRequestsBeyondQueueDepth) {
  TempFile f(1 << 20);
  int fd = open_direct(f.path());
  auto e = make_engine(4);
  std::vector<Task<Status>> tasks;
  for (int i = 0; i < 100; ++i)
    tasks.push_back(write_then_read(*e, fd, i * 4096ull, uint8_t(i)));
  auto results = sync_wait(loop(), when_all(std::move(tasks)));
  for (auto& r : results) ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(e->stats().requests, 200u);
  EXPECT_LE(e->stats().max_in_flight, 4u);
  EXPECT_GT(e->stats().parked, 0u);
  EXPECT_EQ(e->in_flight(), 0u);
  EXPECT_EQ(e->parked(), 0u);
  close(fd);
}

TEST_F(AioEngineTest, BadFileDescriptorFails) {
  auto e = make_engine(4);
  AlignedBuffer buf(4096);
  auto s = sync_wait(loop(), [&]() -> Task<Status> {
    IoVector v = buf.iov();
    co_return co_await e->preadv(987654, v, 0);
  }());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EBADF);
}

TEST_F(AioEngineTest, WriteToReadOnlyDescriptorFails) {
  TempFile f(1 << 16);
  int fd = open_direct(f.path(), O_RDONLY);
  auto e = make_engine(4);
  AlignedBuffer buf(4096);
  auto s = sync_wait(loop(), [&]() -> Task<Status> {
    IoVector v = buf.iov();
    co_return co_await e->pwritev(fd, v, 0);
  }());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EBADF);
  close(fd);
}

TEST_F(AioEngineTest, CompletionResumesFromLoopNotSubmitPath) {
  TempFile f(1 << 16);
  int fd = open_direct(f.path(), O_RDONLY);
  auto e = make_engine(4);
  AlignedBuffer buf(4096);
  bool in_submit_path = false;
  bool resumed_inside = false;
  auto t = [&]() -> Task<void> {
    in_submit_path = true;
    // A named vector: the Op keeps a reference to it until it completes.
    IoVector v = buf.iov();
    // The op suspends; when it resumes we must not be inside this frame's
    // call stack any more (the flag was cleared by the code after co_await).
    Status s = co_await e->preadv(fd, v, 0);
    EXPECT_TRUE(s) << s.error().ToString();
    resumed_inside = in_submit_path;
  };
  auto wrapper = [&]() -> Task<void> {
    auto h = spawn_now(t());
    in_submit_path = false;
    co_await h.join();
  };
  sync_wait(loop(), wrapper());
  EXPECT_FALSE(resumed_inside);
  close(fd);
}

// Misuse of AioEngine::Op does not compile: the Op cannot be copied or
// moved (its iocb points at itself), and the vector cannot be a temporary
// (the kernel uses it until completion) or const for a read (the tail of a
// short read is zero-filled through it). These fail the build if broken.
template <typename E>
concept ReadsIntoTemporary = requires(E& e) { e.preadv(0, IoVector{}, 0); };
template <typename E>
concept WritesFromTemporary = requires(E& e) { e.pwritev(0, IoVector{}, 0); };
template <typename E>
concept ReadsIntoConst = requires(E& e, const IoVector& v) { e.preadv(0, v, 0); };
template <typename E>
concept ReadsIntoNamed = requires(E& e, IoVector& v) { e.preadv(0, v, 0); };
static_assert(!ReadsIntoTemporary<AioEngine>);
static_assert(!WritesFromTemporary<AioEngine>);
static_assert(!ReadsIntoConst<AioEngine>);
static_assert(ReadsIntoNamed<AioEngine>);
static_assert(!std::is_copy_constructible_v<AioEngine::Op>);
static_assert(!std::is_move_constructible_v<AioEngine::Op>);
static_assert(!std::is_copy_assignable_v<AioEngine::Op>);
static_assert(!std::is_move_assignable_v<AioEngine::Op>);

TEST_F(AioEngineTest, ProbesDirectAlignment) {
  TempFile f(1 << 16);
  int fd = open_direct(f.path(), O_RDONLY);
  auto a = ProbeDirectAlignment(fd, true);
  EXPECT_TRUE(a.request == 512 || a.request == 1024 || a.request == 2048 || a.request == 4096)
      << a.request;
  EXPECT_GE(a.buffer, 512u);
  auto none = ProbeDirectAlignment(fd, false);
  EXPECT_EQ(none.request, 1u);
  close(fd);
}

}  // namespace
}  // namespace coblk
