// Block jobs (block/block_job.h) on VMDK chains while a guest does 4 KiB
// reads and writes at queue depth 32 through the BlockBackend, every read
// checked against a model: snapshot, commit (active and not), stream (to no
// backing file and to a kept base), pause/resume, cancel, and blkdebug
// failing a job midway. Afterwards qemu-img check is clean and qemu-img
// compare finds the chain equal to the model (qemu-img reading through the
// chain also proves the parentCID links).
#include "block/block_job.h"

#include <gtest/gtest.h>

#include "tests/block/job_test_util.h"
#include "tests/coroutine/test_loop.h"

namespace coblk::jobtest {
namespace {

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kDisk = 16 * kMiB;

class JobTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (!HaveQemu()) GTEST_SKIP() << "qemu-img/qemu-io not installed";
    ASSERT_FALSE(dir_.path().empty());
  }
  std::string P(const std::string& n) { return dir_ / n; }
  void Q(const std::string& cmd) {
    std::string out;
    ASSERT_EQ(Sh("cd " + dir_.path() + " && " + cmd, &out), 0) << cmd << "\n" << out;
  }
  // base.vmdk: 0x5a in [0, 8M); mid.vmdk (-b base): 0x6b in [4M, 12M);
  // top.vmdk (-b mid): 0x7c in [10M, 11M). Returns the guest view.
  std::vector<uint8_t> MakeChain(int layers) {
    std::vector<uint8_t> m(kDisk, 0);
    Q("qemu-img create -q -f vmdk base.vmdk 16M && qemu-io -c 'write -P 0x5a 0 8M' base.vmdk");
    std::fill(m.begin(), m.begin() + 8 * kMiB, 0x5a);
    if (layers >= 2) {
      Q("qemu-img create -q -f vmdk -b base.vmdk -F vmdk mid.vmdk && "
        "qemu-io -c 'write -P 0x6b 4M 8M' mid.vmdk");
      std::fill(m.begin() + 4 * kMiB, m.begin() + 12 * kMiB, 0x6b);
    }
    if (layers >= 3) {
      Q("qemu-img create -q -f vmdk -b mid.vmdk -F vmdk top.vmdk && "
        "qemu-io -c 'write -P 0x7c 10M 1M' top.vmdk");
      std::fill(m.begin() + 10 * kMiB, m.begin() + 11 * kMiB, 0x7c);
    }
    return m;
  }
  std::unique_ptr<BlockBackend> OpenBackend(const std::string& opts) {
    return jobtest::OpenBackend(loop(), opts);
  }

  // Guest I/O at QD32 while `start` starts a job and until it ends, then
  // 4000 more operations. Returns the job's status.
  template <class StartFn>
  Status RunWithGuest(Guest& guest, StartFn start,
                      std::shared_ptr<BlockJob>* out = nullptr) {
    auto scenario = [&]() -> Task<Status> {
      std::vector<JoinHandle<void>> workers = guest.start(loop(), 50);
      for (int i = 0; i < 20; ++i) co_await co_yield_now();
      Result<std::shared_ptr<BlockJob>> job = start();
      if (!job) {
        guest.stop();
        for (auto& w : workers) co_await w.join();
        co_return std::unexpected(job.error());
      }
      if (out) *out = *job;
      Status st = co_await (*job)->co_wait();
      EXPECT_TRUE((*job)->done());
      // Some more guest I/O on the new graph.
      const uint64_t target = guest.writes() + guest.reads() + 4000;
      while (guest.writes() + guest.reads() < target && guest.errors() == 0)
        co_await co_sleep(std::chrono::milliseconds(1));
      guest.stop();
      for (auto& w : workers) co_await w.join();
      co_return st;
    };
    return sync_wait(loop(), scenario());
  }

  void ExpectGuestClean(Guest& g) {
    EXPECT_EQ(g.errors(), 0u) << g.last_error();
    EXPECT_EQ(g.mismatches(), 0u);
    EXPECT_GT(g.writes(), 1000u);
    EXPECT_GT(g.reads(), 1000u);
    EXPECT_TRUE(sync_wait(loop(), g.verify_all())) << g.last_error();
  }
  // After the backend is closed: each image checks clean and `img` shows
  // what the model holds.
  void ExpectChainIs(Guest& g, const std::string& img, const std::vector<std::string>& layers) {
    ASSERT_TRUE(g.write_model(P("expected.raw")));
    for (const std::string& l : layers) Q("qemu-img check " + l);
    Q("qemu-img compare -f vmdk -F raw " + img + " expected.raw");
  }

  Scratch dir_;
};

TEST_F(JobTest, SnapshotWhileTheGuestWrites) {
  std::vector<uint8_t> model = MakeChain(1);
  auto blk = OpenBackend("driver=vmdk,file.filename=" + P("base.vmdk"));
  ASSERT_TRUE(blk);
  Guest guest(*blk, std::move(model));
  std::shared_ptr<BlockJob> job;
  Status st = RunWithGuest(guest, [&] { return StartSnapshotJob(*blk, {.overlay = P("snap.vmdk")}); }, &job);
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(job->type(), "snapshot");
  EXPECT_EQ(job->progress_current(), job->progress_total());
  EXPECT_EQ(blk->node().filename(), P("snap.vmdk"));
  ASSERT_NE(blk->node().backing(), nullptr);
  EXPECT_EQ(blk->node().backing()->filename(), P("base.vmdk"));
  ExpectGuestClean(guest);
  ASSERT_TRUE(blk->close());
  std::string info;
  Sh("qemu-img info " + P("snap.vmdk"), &info);
  EXPECT_NE(info.find("backing file: base.vmdk"), std::string::npos) << info;
  ExpectChainIs(guest, "snap.vmdk", {"snap.vmdk", "base.vmdk"});
  // An existing overlay file is refused.
  auto again = OpenBackend("driver=vmdk,file.filename=" + P("snap.vmdk"));
  ASSERT_TRUE(again);
  auto j = StartSnapshotJob(*again, {.overlay = P("base.vmdk")});
  ASSERT_TRUE(j);
  Status s2 = (*j)->wait();
  ASSERT_FALSE(s2);
  EXPECT_EQ(s2.error().errnum(), EEXIST);
}

TEST_F(JobTest, ActiveCommitWhileTheGuestWrites) {
  std::vector<uint8_t> model = MakeChain(3);
  auto blk = OpenBackend("driver=vmdk,file.filename=" + P("top.vmdk") +
                         ",backing.read-only=off,backing.backing.read-only=off");
  ASSERT_TRUE(blk);
  Guest guest(*blk, std::move(model));
  // Small chunks: the job takes many steps while the guest writes.
  std::shared_ptr<BlockJob> job;
  Status st = RunWithGuest(guest, [&] { return StartCommitJob(*blk, {.chunk = 64 * 1024}); }, &job);
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_GE(job->progress_current(), kDisk);
  EXPECT_EQ(job->progress_current(), job->progress_total());
  // The backend now writes the base.
  EXPECT_EQ(blk->node().filename(), P("base.vmdk"));
  EXPECT_EQ(blk->node().backing(), nullptr);
  ExpectGuestClean(guest);
  ASSERT_TRUE(blk->close());
  ExpectChainIs(guest, "base.vmdk", {"base.vmdk"});
}

TEST_F(JobTest, CommitOfAnIntermediateLayerRelinksTheOverlay) {
  std::vector<uint8_t> model = MakeChain(3);
  auto blk = OpenBackend("driver=vmdk,file.filename=" + P("top.vmdk") +
                         ",backing.read-only=off,backing.backing.read-only=off");
  ASSERT_TRUE(blk);
  BlockNode* mid = blk->node().backing();
  ASSERT_NE(mid, nullptr);
  Guest guest(*blk, std::move(model));
  Status st = RunWithGuest(guest, [&] {
    return StartCommitJob(*blk, {.top = mid, .chunk = 128 * 1024});
  });
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(blk->node().filename(), P("top.vmdk"));
  ASSERT_NE(blk->node().backing(), nullptr);
  EXPECT_EQ(blk->node().backing()->filename(), P("base.vmdk"));
  ExpectGuestClean(guest);
  ASSERT_TRUE(blk->close());
  std::string info;
  Sh("qemu-img info " + P("top.vmdk"), &info);
  EXPECT_NE(info.find("backing file: base.vmdk"), std::string::npos) << info;
  ExpectChainIs(guest, "top.vmdk", {"top.vmdk", "base.vmdk"});
}

TEST_F(JobTest, StreamEverythingIntoTheTopAndDropTheBacking) {
  std::vector<uint8_t> model = MakeChain(3);
  auto blk = OpenBackend("driver=vmdk,file.filename=" + P("top.vmdk"));
  ASSERT_TRUE(blk);
  Guest guest(*blk, std::move(model));
  Status st = RunWithGuest(guest, [&] { return StartStreamJob(*blk, {.chunk = 64 * 1024}); });
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(blk->node().filename(), P("top.vmdk"));
  EXPECT_EQ(blk->node().backing(), nullptr);
  ExpectGuestClean(guest);
  ASSERT_TRUE(blk->close());
  std::string info;
  Sh("qemu-img info " + P("top.vmdk"), &info);
  EXPECT_EQ(info.find("backing file"), std::string::npos) << info;
  ExpectChainIs(guest, "top.vmdk", {"top.vmdk"});
}

TEST_F(JobTest, StreamDownToAKeptBase) {
  std::vector<uint8_t> model = MakeChain(3);
  auto blk = OpenBackend("driver=vmdk,file.filename=" + P("top.vmdk"));
  ASSERT_TRUE(blk);
  BlockNode* base = blk->node().backing()->backing();
  Guest guest(*blk, std::move(model));
  Status st = RunWithGuest(guest, [&] { return StartStreamJob(*blk, {.base = base}); });
  ASSERT_TRUE(st) << st.error().ToString();
  ASSERT_EQ(blk->node().backing(), base);
  ExpectGuestClean(guest);
  ASSERT_TRUE(blk->close());
  std::string map;
  // Nothing of mid's is needed any more: top and base alone give the view.
  ExpectChainIs(guest, "top.vmdk", {"top.vmdk", "base.vmdk"});
  std::filesystem::remove(P("mid.vmdk"));
  Q("qemu-img compare -f vmdk -F raw top.vmdk expected.raw");
}

TEST_F(JobTest, PauseResumeAndCancel) {
  std::vector<uint8_t> model = MakeChain(3);
  auto blk = OpenBackend("driver=vmdk,file.filename=" + P("top.vmdk") +
                         ",backing.read-only=off,backing.backing.read-only=off");
  ASSERT_TRUE(blk);
  auto scenario = [&]() -> Task<void> {
    auto job = StartCommitJob(*blk, {.chunk = 64 * 1024});
    EXPECT_TRUE(job);
    if (!job) co_return;
    (*job)->pause();
    for (int i = 0; i < 50 && !(*job)->paused(); ++i) co_await co_yield_now();
    EXPECT_TRUE((*job)->paused());
    const int64_t at = (*job)->progress_current();
    for (int i = 0; i < 50; ++i) co_await co_yield_now();
    EXPECT_EQ((*job)->progress_current(), at);
    EXPECT_FALSE((*job)->done());
    // A second job on the same backend is refused.
    auto other = StartStreamJob(*blk, {});
    EXPECT_FALSE(other);
    (*job)->resume();
    for (int i = 0; i < 20; ++i) co_await co_yield_now();
    EXPECT_FALSE((*job)->paused());
    (*job)->cancel();
    Status st = co_await (*job)->co_wait();
    EXPECT_FALSE(st);
    if (!st) {
      EXPECT_EQ(st.error().errnum(), ECANCELED);
    }
  };
  sync_wait(loop(), scenario());
  // Nothing switched: the chain and the guest view are what they were.
  EXPECT_EQ(blk->node().filename(), P("top.vmdk"));
  Guest guest(*blk, model);
  EXPECT_TRUE(sync_wait(loop(), guest.verify_all())) << guest.last_error();
  ASSERT_TRUE(blk->close());
  ExpectChainIs(guest, "top.vmdk", {"top.vmdk", "mid.vmdk", "base.vmdk"});
}

// speed (QEMU's): commit of mid's 8 MiB into base at 16 MiB/s in 1 MiB
// chunks takes at least 3/8 s (each 100 ms slice lets 1.6 MB through, a
// chunk is paid for after it is copied: two chunks per 125 ms); a
// negative speed is refused; a job throttled to 1 byte/s waits until
// set_speed(0) lifts the limit, and cancel ends a throttled stream at once.
TEST_F(JobTest, SpeedLimitsCopying) {
  std::vector<uint8_t> model = MakeChain(2);
  auto blk = OpenBackend("driver=vmdk,file.filename=" + P("mid.vmdk") + ",backing.read-only=off");
  ASSERT_TRUE(blk);
  auto refused = StartCommitJob(*blk, {.speed = -1});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().errnum(), EINVAL);

  const auto t0 = std::chrono::steady_clock::now();
  auto job = StartCommitJob(*blk, {.speed = 16 * kMiB});
  ASSERT_TRUE(job);
  Status st = (*job)->wait();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_GE(seconds, 0.35);
  Guest guest(*blk, model);
  EXPECT_TRUE(sync_wait(loop(), guest.verify_all())) << guest.last_error();
  ASSERT_TRUE(blk->close());
  ExpectChainIs(guest, "base.vmdk", {"base.vmdk"});

  // Stream at 1 byte/s: one chunk, then nothing until the limit goes.
  Q("qemu-img create -q -f vmdk -b base.vmdk -F vmdk top.vmdk");
  blk = OpenBackend("driver=vmdk,file.filename=" + P("top.vmdk"));
  ASSERT_TRUE(blk);
  auto scenario = [&](bool lift) -> Task<Status> {
    auto stream = StartStreamJob(*blk, {.chunk = kMiB, .speed = 1});
    EXPECT_TRUE(stream);
    if (!stream) co_return std::unexpected(stream.error());
    // The first chunk copied, the job holds still.
    while ((*stream)->progress_current() == 0) co_await co_sleep(std::chrono::milliseconds(1));
    co_await co_sleep(std::chrono::milliseconds(50));
    const int64_t at = (*stream)->progress_current();
    co_await co_sleep(std::chrono::milliseconds(250));
    EXPECT_EQ((*stream)->progress_current(), at);
    EXPECT_LT(at, kDisk);
    EXPECT_FALSE((*stream)->done());
    if (lift) {
      EXPECT_TRUE((*stream)->set_speed(0));
    } else {
      (*stream)->cancel();
    }
    co_return co_await (*stream)->co_wait();
  };
  const auto t1 = std::chrono::steady_clock::now();
  st = sync_wait(loop(), scenario(false));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().errnum(), ECANCELED);
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::seconds(2));
  st = sync_wait(loop(), scenario(true));
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(blk->node().backing(), nullptr);
  ASSERT_TRUE(blk->close());
  ExpectChainIs(guest, "top.vmdk", {"top.vmdk"});
}

// blkdebug under the base fails the commit's 40th write to the base file;
// the guest keeps its view and the chain stays readable by QEMU.
TEST_F(JobTest, CommitFailingMidwayLeavesAConsistentChain) {
  std::vector<uint8_t> model = MakeChain(2);
  auto blk = OpenBackend("driver=vmdk,file.filename=" + P("mid.vmdk") +
                         ",backing.driver=vmdk,backing.read-only=off,"
                         "backing.file.driver=blkdebug,backing.file.image.filename=" +
                         P("base.vmdk") +
                         ",backing.file.inject-error.0.iotype=write,"
                         "backing.file.inject-error.0.after=40");
  ASSERT_TRUE(blk);
  Guest guest(*blk, std::move(model));
  std::shared_ptr<BlockJob> job;
  Status st = RunWithGuest(guest, [&] { return StartCommitJob(*blk, {.chunk = 64 * 1024}); }, &job);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().errnum(), EIO) << st.error().ToString();
  EXPECT_GT(job->progress_current(), 0);
  EXPECT_LT(job->progress_current(), job->progress_total());
  EXPECT_EQ(blk->node().filename(), P("mid.vmdk"));
  ExpectGuestClean(guest);
  ASSERT_TRUE(blk->close());
  ExpectChainIs(guest, "mid.vmdk", {"mid.vmdk", "base.vmdk"});
}

// blkdebug under the top fails the stream's copy-ups after a while.
TEST_F(JobTest, StreamFailingMidwayLeavesAConsistentChain) {
  std::vector<uint8_t> model = MakeChain(3);
  auto blk = OpenBackend("driver=vmdk,file.driver=blkdebug,file.image.filename=" + P("top.vmdk") +
                         ",file.inject-error.0.iotype=write,file.inject-error.0.after=60,"
                         "file.inject-error.0.once=on");
  ASSERT_TRUE(blk);
  Guest guest(*blk, std::move(model));
  auto scenario = [&]() -> Task<Status> {
    // No guest writes here: they would meet the injected errors too.
    auto job = StartStreamJob(*blk, {.chunk = 64 * 1024});
    if (!job) co_return std::unexpected(job.error());
    co_return co_await (*job)->co_wait();
  };
  Status st = sync_wait(loop(), scenario());
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().errnum(), EIO) << st.error().ToString();
  // The filter is gone again, the backing chain is still there.
  EXPECT_EQ(blk->node().filename(), P("top.vmdk"));
  ASSERT_NE(blk->node().backing(), nullptr);
  EXPECT_TRUE(sync_wait(loop(), guest.verify_all())) << guest.last_error();
  ASSERT_TRUE(blk->close());
  ExpectChainIs(guest, "top.vmdk", {"top.vmdk", "mid.vmdk", "base.vmdk"});
}

TEST_F(JobTest, CommitRefusesReadOnlyBase) {
  MakeChain(2);
  auto blk = OpenBackend("driver=vmdk,file.filename=" + P("mid.vmdk"));
  ASSERT_TRUE(blk);
  auto job = StartCommitJob(*blk, {});
  ASSERT_FALSE(job);
  EXPECT_NE(job.error().message().find("must be open read-write to commit into it"),
            std::string::npos)
      << job.error().ToString();
}

}  // namespace
}  // namespace coblk::jobtest
