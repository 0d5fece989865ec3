// Backing chains through the generic backing child, against qemu-img /
// qemu-io 7.2 on the same chains (layers made by both tools): reads fall
// through every layer, partial-grain writes copy the rest of the grain from
// the chain, map and check agree; create -b/-F; backing.* options, backing
// null, a raw backing file; the parentCID check.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/tools/qemu_parity.h"

namespace coblk::testing {
namespace {

class ChainTest : public QemuParityTest {
 protected:
  // base.vmdk (qemu) <- l1.vmdk (coblk) <- l2.vmdk (qemu) <- l3.vmdk (coblk),
  // 4 MiB, each layer writing whole grains, partial grains (so the rest of
  // the grain is copied from the layers below) and zeroes.
  void MakeMixedChain() {
    MustImg({"create", "-q", "-f", "vmdk", "base.vmdk", "4M"}, true);
    MustIo({"-c", "write -P 0x11 0 4M", "base.vmdk"}, true);
    MustImg({"create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "l1.vmdk"}, false);
    MustIo({"-c", "write -P 0x21 1000 3000", "-c", "write -P 0x22 1M 64k", "-c",
            "write -z 2M 128k", "l1.vmdk"}, false);
    MustImg({"create", "-q", "-f", "vmdk", "-b", "l1.vmdk", "-F", "vmdk", "l2.vmdk"}, true);
    MustIo({"-c", "write -P 0x31 2000 512", "-c", "write -P 0x32 1100000 70000", "l2.vmdk"}, true);
    MustImg({"create", "-q", "-f", "vmdk", "-b", "l2.vmdk", "-F", "vmdk", "l3.vmdk"}, false);
    MustIo({"-c", "write -P 0x41 65000 1100", "-c", "write -P 0x42 2100000 5000", "-c",
            "write -P 0x43 4128768 65536", "l3.vmdk"}, false);
  }
  static nlohmann::json Json(const RunResult& r) { return nlohmann::json::parse(r.out); }
};

TEST_F(ChainTest, MixedFourLayerChainReadsMapsAndChecksLikeQemu) {
  MakeMixedChain();
  // What the guest sees through l3, by each tool.
  MustImg({"convert", "-O", "raw", "l3.vmdk", "q.raw"}, true);
  MustImg({"convert", "-O", "raw", "l3.vmdk", "c.raw"}, false);
  RunResult r = QImg({"compare", "-f", "raw", "-F", "raw", "q.raw", "c.raw"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  // The partial-grain writes kept the rest of their grains from below.
  EXPECT_SAME_IO({"-r", "-c", "read -P 0x11 0 1000", "-c", "read -P 0x21 1000 1000", "-c",
                  "read -P 0x31 2000 512", "-c", "read -P 0x21 2512 1488", "-c",
                  "read -P 0x11 4000 61000", "-c", "read -P 0x41 65000 1100", "-c",
                  "read -P 0x11 66100 10000", "-c", "read -P 0 2M 100000", "-c",
                  "read -P 0x42 2100000 5000", "-c", "read -P 0 2105000 25000", "l3.vmdk"});
  // Both tools' map of every layer, with depth through the chain.
  for (const char* img : {"l1.vmdk", "l2.vmdk", "l3.vmdk"}) {
    RunResult c = Img({"map", "--output=json", img}), q = QImg({"map", "--output=json", img});
    ASSERT_EQ(c.status, 0) << c.err;
    ASSERT_EQ(q.status, 0) << q.err;
    EXPECT_EQ(Json(c), Json(q)) << img << "\n" << c.out << q.out;
    RunResult qc = QImg({"check", img});
    EXPECT_EQ(qc.status, 0) << img << qc.out << qc.err;
  }
  RunResult c = Img({"info", "--backing-chain", "--output=json", "l3.vmdk"});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(Json(c).size(), 4u);
}

TEST_F(ChainTest, CreateWithBackingWritesHintAndParentCidAndTakesItsSize) {
  MustImg({"create", "-q", "-f", "vmdk", "base.vmdk", "3M"}, true);
  MustIo({"-c", "write -P 0x5a 0 3M", "base.vmdk"}, true);
  RunResult r = Img({"create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "top.vmdk"});
  ASSERT_EQ(r.status, 0) << r.err;
  MustImg({"create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "qtop.vmdk"}, true);
  nlohmann::json c = Json(QImg({"info", "--output=json", "top.vmdk"}));
  nlohmann::json q = Json(QImg({"info", "--output=json", "qtop.vmdk"}));
  EXPECT_EQ(c["virtual-size"], 3 * 1048576);
  EXPECT_EQ(c["virtual-size"], q["virtual-size"]);
  EXPECT_EQ(c["backing-filename"], "base.vmdk");
  EXPECT_EQ(c["backing-filename-format"], q["backing-filename-format"]);
  EXPECT_EQ(c["format-specific"]["data"]["parent-cid"], q["format-specific"]["data"]["parent-cid"]);
  // qemu-io checks the parentCID on every read that falls through.
  RunResult qr = QIo({"-r", "-c", "read -P 0x5a 0 3M", "top.vmdk"});
  EXPECT_EQ(qr.status, 0) << qr.out << qr.err;
}

TEST_F(ChainTest, BackingFileWithoutFormatIsRefusedAsByQemu) {
  MustImg({"create", "-q", "-f", "vmdk", "base.vmdk", "1M"}, true);
  MustImg({"create", "-q", "-f", "raw", "base.raw", "1M"}, true);
  ExpectSameImg({"create", "-f", "vmdk", "-b", "base.vmdk", "t1.vmdk"});
  ExpectSameImg({"create", "-f", "vmdk", "-b", "base.raw", "t2.vmdk"});
  ExpectSameImg({"create", "-f", "vmdk", "-u", "-b", "base.vmdk", "t3.vmdk", "1M"});
  ExpectSameImg({"create", "-f", "vmdk", "-o", "backing_file=base.vmdk", "t4.vmdk"});
  ExpectSameImg({"create", "-f", "vmdk", "-b", "nonexist.vmdk", "t5.vmdk"});
  ExpectSameImg({"create", "-f", "vmdk", "-b", "base.raw", "-F", "raw", "t6.vmdk"});
  for (const char* t : {"t1.vmdk", "t2.vmdk", "t3.vmdk", "t4.vmdk", "t5.vmdk"})
    EXPECT_FALSE(std::filesystem::exists(Path(t))) << t;
}

TEST_F(ChainTest, BackingOptionsOverrideTheHint) {
  MakeMixedChain();
  // l3's hint names l2.vmdk; move it away and name it in the options.
  std::filesystem::rename(Path("l2.vmdk"), Path("moved-l2"));
  EXPECT_SAME_IO({"-r", "-c", "read 0 4k", "l3.vmdk"});  // both fail: no l2.vmdk
  const std::string opts = "driver=vmdk,file.filename=l3.vmdk,backing.file.filename=moved-l2";
  EXPECT_SAME_IO({"-r", "--image-opts", "-c", "read -P 0x31 2000 512", "-c",
                  "read -P 0x32 1100000 70000", "-c", "read -P 0x11 4000 61000", opts});
  // The JSON form, and one level deeper (l2's own backing, l1, whose zeroes
  // at 2162688 hide base's 0x11).
  std::filesystem::rename(Path("l1.vmdk"), Path("moved-l1"));
  EXPECT_SAME_IO({"-r", "-c", "read -P 0 2162688 64k", "-c", "read -P 0x11 3M 64k",
                  R"(json:{"driver":"vmdk","file":{"filename":"l3.vmdk"},)"
                  R"("backing":{"driver":"vmdk","file":{"filename":"moved-l2"},)"
                  R"("backing":{"driver":"vmdk","file":{"filename":"moved-l1"}}}})"});
}

TEST_F(ChainTest, BackingNullOpensWithoutBackingFile) {
  MakeMixedChain();
  // Unallocated in l3 alone: zeroes (QEMU's "backing": null).
  EXPECT_SAME_IO({"-r", "-c", "read -P 0 3M 4k", "-c", "read -P 0x41 65000 1100",
                  R"(json:{"driver":"vmdk","file":{"filename":"l3.vmdk"},"backing":null})"});
  // backing=null in key=value form (-blockdev's spelling) and the older
  // empty value.
  for (const char* v : {"null", ""}) {
    RunResult r = Io({"-r", "--image-opts", "-c", "read -P 0 3M 4k", "-c", "read -P 0x41 65000 1100",
                      std::string("driver=vmdk,file.filename=l3.vmdk,backing=") + v});
    EXPECT_EQ(r.status, 0) << v << r.out << r.err;
  }
  // "backing": null is only for backing children.
  RunResult r = Io({"-r", "-c", "read 0 4k", R"(json:{"driver":"vmdk","file":null})"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("Invalid JSON value for option 'file'"), std::string::npos) << r.err;
}

// A raw image as the backing file of a VMDK, given at open time. QEMU
// opens it too, but then fails every read that falls through (a raw parent
// has no CID, vmdk_is_cid_valid says no); coblk reads through it.
TEST_F(ChainTest, RawBackingGivenAtOpenReadsThrough) {
  MustImg({"create", "-q", "-f", "raw", "base.raw", "4M"}, true);
  MustIo({"-f", "raw", "-c", "write -P 0x66 0 4M", "base.raw"}, true);
  MustImg({"create", "-q", "-f", "vmdk", "top.vmdk", "4M"}, false);
  const std::string opts =
      "driver=vmdk,file.filename=top.vmdk,backing.driver=raw,backing.file.filename=base.raw";
  RunResult q = QIo({"-r", "--image-opts", "-c", "read -P 0x66 0 4k", opts});
  EXPECT_EQ(q.status, 1) << "QEMU 7.2 reads through a raw backing file now: " << q.out;
  // Reads fall through; a partial-grain write copies the grain's other
  // bytes from the raw file.
  RunResult r = Io({"--image-opts", "-c", "read -P 0x66 0 4M", "-c", "write -P 0x77 70000 100",
                    "-c", "read -P 0x66 65536 4464", "-c", "read -P 0x77 70000 100", "-c",
                    "read -P 0x66 70100 61000", opts});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  // The grain is now in top.vmdk alone: without the backing file, its
  // copied bytes are there and the rest of the disk reads as zeroes.
  r = Io({"-r", "-c", "read -P 0x66 65536 4464", "-c", "read -P 0x77 70000 100", "-c",
          "read -P 0 0 64k", "-c", "read -P 0 131072 64k", "top.vmdk"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  RunResult qc = QImg({"check", "top.vmdk"});
  EXPECT_EQ(qc.status, 0) << qc.out << qc.err;
}

TEST_F(ChainTest, ParentCidMismatchFailsFallThroughReadsWithAClearError) {
  MakeMixedChain();
  // Writing l2 gives it a new CID: l3's parentCID no longer matches.
  MustIo({"-c", "write -P 0x99 3M 4k", "l2.vmdk"}, true);
  RunResult c = Io({"-r", "-c", "read 1M 4k", "l3.vmdk"});
  RunResult q = QIo({"-r", "-c", "read 1M 4k", "l3.vmdk"});
  EXPECT_EQ(c.status, q.status);
  EXPECT_EQ(q.out, "read failed: Invalid argument\n");
  EXPECT_EQ(c.out, q.out);  // the full message: drivers/vmdk InteropBacking test
  // Data allocated in l3 itself still reads, as in QEMU.
  EXPECT_SAME_IO({"-r", "-c", "read -P 0x41 65000 1100", "l3.vmdk"});
}

}  // namespace
}  // namespace coblk::testing
