// The copy-on-read filter: reads copy chain data up into the top image
// (map then shows it allocated in the top, qemu-img agrees), `bottom`
// limits what is copied, and reads and writes at QD32 through the filter
// stay consistent with a model (a copy-up never overwrites a guest write).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "block/block_backend.h"
#include "tests/block/job_test_util.h"
#include "tests/coroutine/test_loop.h"

namespace coblk::jobtest {
namespace {

constexpr int64_t kMiB = 1 << 20;

class CorTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (!HaveQemu()) GTEST_SKIP() << "qemu-img/qemu-io not installed";
  }
  void Q(const std::string& cmd, std::string* out = nullptr) {
    std::string o;
    ASSERT_EQ(Sh("cd " + dir_.path() + " && " + cmd, &o), 0) << cmd << "\n" << o;
    if (out) *out = o;
  }
  std::unique_ptr<BlockBackend> OpenBackend(const std::string& opts) {
    return jobtest::OpenBackend(loop(), opts);
  }
  // base.vmdk: 0x11 in [0, 4M); mid.vmdk: 0x22 in [2M, 3M); top.vmdk empty.
  void MakeChain() {
    Q("qemu-img create -q -f vmdk base.vmdk 4M && qemu-io -c 'write -P 0x11 0 4M' base.vmdk && "
      "qemu-img create -q -f vmdk -b base.vmdk -F vmdk mid.vmdk && "
      "qemu-io -c 'write -P 0x22 2M 1M' mid.vmdk && "
      "qemu-img create -q -f vmdk -b mid.vmdk -F vmdk top.vmdk");
  }
  std::string CorOpts(const std::string& extra = "") {
    return "driver=copy-on-read" + extra + ",file.driver=vmdk,file.file.filename=" +
           (dir_ / "top.vmdk");
  }
  // qemu-img map of top.vmdk: the depth of the entry holding `offset`.
  int DepthAt(int64_t offset) {
    std::string out;
    Q("qemu-img map --output=json top.vmdk", &out);
    for (const auto& e : nlohmann::json::parse(out)) {
      const int64_t start = e["start"], len = e["length"];
      if (offset >= start && offset < start + len) return e["depth"];
    }
    return -1;
  }

  Scratch dir_;
};

TEST_F(CorTest, ReadsCopyChainDataIntoTheTop) {
  MakeChain();
  auto blk = OpenBackend(CorOpts());
  ASSERT_TRUE(blk);
  EXPECT_EQ(blk->size(), 4 * kMiB);
  BlockNode* top = blk->node().file();
  ASSERT_NE(top, nullptr);
  // Unaligned, across the boundary between base and mid data.
  std::vector<uint8_t> buf(300000);
  ASSERT_TRUE(blk->read(2 * kMiB - 100000, buf.data(), 300000));
  for (size_t i = 0; i < buf.size(); ++i) {
    ASSERT_EQ(buf[i], i < 100000 ? 0x11 : 0x22) << i;
  }
  // Whole clusters around the read are now in the top.
  int64_t pnum = 0;
  auto alloc = sync_wait(loop(), top->is_allocated(2 * kMiB - 131072, 393216, &pnum));
  ASSERT_TRUE(alloc);
  EXPECT_TRUE(*alloc);
  EXPECT_EQ(pnum, 393216);
  alloc = sync_wait(loop(), top->is_allocated(0, kMiB, &pnum));
  EXPECT_FALSE(*alloc);
  ASSERT_TRUE(blk->close());
  EXPECT_EQ(DepthAt(2 * kMiB - 100000), 0);
  EXPECT_EQ(DepthAt(2 * kMiB + 100000), 0);
  EXPECT_EQ(DepthAt(2 * kMiB + 300000), 1);
  EXPECT_EQ(DepthAt(0), 2);
  Q("qemu-img check top.vmdk");
  // The copied data is in the top alone.
  Q("qemu-io -r -c 'read -P 0x11 1966080 131072' -c 'read -P 0x22 2M 196608' "
    "'json:{\"driver\":\"vmdk\",\"file\":{\"filename\":\"top.vmdk\"},\"backing\":null}'");
}

// A filter that may not write could copy nothing up: refused read-only,
// as QEMU's permission check refuses it ("Block node is read-only").
TEST_F(CorTest, ReadOnlyOpenIsRefused) {
  MakeChain();
  auto o = Options::Parse(CorOpts());
  ASSERT_TRUE(o);
  OpenFlags flags;
  flags.read_only = true;
  auto blk = BlockBackend::Open(loop(), "", std::move(*o), flags);
  ASSERT_FALSE(blk);
  EXPECT_EQ(blk.error().errnum(), EPERM);
  EXPECT_EQ(blk.error().message(), "Block node is read-only");
}

TEST_F(CorTest, BottomLimitsWhatIsCopied) {
  MakeChain();
  auto blk = OpenBackend(CorOpts(",bottom=midnode") + ",file.backing.node-name=midnode");
  ASSERT_TRUE(blk);
  std::vector<uint8_t> buf(4 * kMiB);
  ASSERT_TRUE(blk->read(0, buf.data(), 4 * kMiB));
  ASSERT_TRUE(blk->close());
  // mid's data was copied; base's (below bottom) was not.
  EXPECT_EQ(DepthAt(2 * kMiB), 0);
  EXPECT_EQ(DepthAt(0), 2);
  EXPECT_EQ(DepthAt(3 * kMiB), 2);
  auto o = Options::Parse(CorOpts(",bottom=nosuch"));
  auto bad = BlockBackend::Open(loop(), "", std::move(*o));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("Bottom node 'nosuch' is not in the backing chain"),
            std::string::npos)
      << bad.error().ToString();
}

// 32 coroutines read and write 4 KiB blocks through the filter; each owns
// every 32nd block, so every 64 KiB cluster is copied up by one reader while
// others write into it. A copy-up that overwrote a write would show up in
// the model check, at once or at the end.
TEST_F(CorTest, ReadsAndWritesAtQueueDepth32StayConsistent) {
  MakeChain();
  std::vector<uint8_t> model(4 * kMiB, 0x11);
  std::fill(model.begin() + 2 * kMiB, model.begin() + 3 * kMiB, 0x22);
  auto blk = OpenBackend(CorOpts());
  ASSERT_TRUE(blk);
  Guest guest(*blk, std::move(model));
  auto run = [&]() -> Task<void> {
    std::vector<JoinHandle<void>> w = guest.start(loop(), 300);
    guest.stop();
    for (auto& h : w) co_await h.join();
  };
  sync_wait(loop(), run());
  EXPECT_EQ(guest.errors(), 0u) << guest.last_error();
  EXPECT_EQ(guest.mismatches(), 0u);
  EXPECT_TRUE(sync_wait(loop(), guest.verify_all()));
  ASSERT_TRUE(blk->close());
  ASSERT_TRUE(guest.write_model(dir_ / "expected.raw"));
  Q("qemu-img check top.vmdk");
  Q("qemu-img compare -f vmdk -F raw top.vmdk expected.raw");
  // Everything was read at least once: the top alone holds most of it.
  EXPECT_EQ(DepthAt(0), 0);
}

}  // namespace
}  // namespace coblk::jobtest
