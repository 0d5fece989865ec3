// coblk-img commit (and rebase) on chains whose layers both tools made: the
// base afterwards holds what the guest saw through the committed image
// (checked with qemu-img compare and qemu-img check), the same as qemu-img
// commit gives on a copy of the chain; messages and exit codes as qemu-img.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/tools/qemu_parity.h"

namespace coblk::testing {
namespace {

class CommitTest : public QemuParityTest {
 protected:
  // Copies the chain's files to "<prefix><name>" with the links intact
  // (the copies keep their relative parentFileNameHint names in a copy
  // directory).
  void CopyChainTo(const std::string& sub) {
    ASSERT_EQ(std::system(("mkdir -p " + ShellQuote(Path(sub)) + " && cp " +
                           ShellQuote(Path("")) + "*.vmdk " + ShellQuote(Path(sub)))
                              .c_str()),
              0);
  }
  void ExpectCompare(const std::string& a, const std::string& b) {
    RunResult r = QImg({"compare", a, b});
    EXPECT_EQ(r.status, 0) << a << " vs " << b << ": " << r.out << r.err;
  }
  void ExpectClean(const std::string& img) {
    RunResult r = QImg({"check", img});
    EXPECT_EQ(r.status, 0) << img << ": " << r.out << r.err;
  }
};

TEST_F(CommitTest, IntoBackingFile) {
  MakeChain();
  CopyChainTo("q");
  RunResult r = Img({"commit", "top.vmdk"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "Image committed.\n");
  ExpectCompare("mid.vmdk", "flat.raw");
  ExpectClean("mid.vmdk");
  // qemu-img commit on the copy gives the same image.
  ASSERT_EQ(QImg({"commit", "q/top.vmdk"}).status, 0);
  ExpectCompare("mid.vmdk", "q/mid.vmdk");
}

TEST_F(CommitTest, IntoBaseThroughIntermediate) {
  MakeChain();
  CopyChainTo("q");
  ASSERT_EQ(Img({"convert", "-O", "raw", "mid.vmdk", "midflat.raw"}).status, 0);
  RunResult r = Img({"commit", "-q", "-b", "base.vmdk", "top.vmdk"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");
  ExpectCompare("base.vmdk", "flat.raw");
  ExpectClean("base.vmdk");
  ASSERT_EQ(QImg({"commit", "-b", "base.vmdk", "q/top.vmdk"}).status, 0);
  ExpectCompare("base.vmdk", "q/base.vmdk");
}

TEST_F(CommitTest, MiddleLayerByAbsoluteBaseNameWithProgress) {
  MakeChain();
  ASSERT_EQ(Img({"convert", "-O", "raw", "mid.vmdk", "midflat.raw"}).status, 0);
  RunResult r = Img({"commit", "-p", "-d", "-b", Path("base.vmdk"), "mid.vmdk"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("    (0.00/100%)\r")) << r.out;
  EXPECT_NE(r.out.find("    (100.00/100%)\r\nImage committed.\n"), std::string::npos) << r.out;
  ExpectCompare("base.vmdk", "midflat.raw");
  ExpectClean("base.vmdk");
}

// -r: bytes per second, as qemu-img's commit job speed. top.vmdk holds
// 128 KiB at 768K, then 1 MiB at 7M above mid.vmdk: at 256 KiB/s the second
// extent waits the 0.5 s the first one is worth.
TEST_F(CommitTest, RateLimit) {
  MakeChain();
  const auto t0 = std::chrono::steady_clock::now();
  RunResult r = Img({"commit", "-r", "256k", "top.vmdk"});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "Image committed.\n");
  EXPECT_GE(seconds, 0.45);
  ExpectCompare("mid.vmdk", "flat.raw");
  ExpectClean("mid.vmdk");
}

TEST_F(CommitTest, Errors) {
  MakeChain();
  ExpectSameImg({"commit", "-r", "abc", "top.vmdk"});
  ExpectSameImg({"commit", "-r", "-1", "top.vmdk"});
  ExpectSameImg({"commit", "-b", "nonexist.vmdk", "top.vmdk"});
  ExpectSameImg({"commit", "base.vmdk"});
  ExpectSameImg({"commit", "nonexist.vmdk"});
  ExpectSameImg({"commit"});
  ExpectSameImg({"commit", "-z", "top.vmdk"});
}

// The CID a VMDK records for itself, from qemu-img info's JSON.
int64_t Cid(RunResult info) {
  return nlohmann::json::parse(info.out)["format-specific"]["data"]["cid"].get<int64_t>();
}

TEST_F(CommitTest, RebaseSafeKeepsTheGuestView) {
  MakeChain();
  MustImg({"create", "-q", "-f", "vmdk", "other.vmdk", "8M"}, true);
  MustIo({"-c", "write -P 0x99 0 8M", "other.vmdk"}, true);
  // Onto the base, skipping mid: mid's data is copied up.
  RunResult r = Img({"rebase", "-b", "base.vmdk", "-F", "vmdk", "top.vmdk"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");
  ExpectCompare("top.vmdk", "flat.raw");
  ExpectClean("top.vmdk");
  RunResult info = QImg({"info", "--output=json", "top.vmdk"});
  EXPECT_EQ(nlohmann::json::parse(info.out)["backing-filename"], "base.vmdk") << info.out;
  // Onto an unrelated image full of data, with progress.
  r = Img({"rebase", "-p", "-b", "other.vmdk", "-F", "vmdk", "top.vmdk"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("(100.00/100%)"), std::string::npos) << r.out;
  ExpectCompare("top.vmdk", "flat.raw");
  // Flattened: no backing file left, same data.
  r = Img({"rebase", "-b", "", "top.vmdk"});
  ASSERT_EQ(r.status, 0) << r.err;
  ExpectCompare("top.vmdk", "flat.raw");
  ExpectClean("top.vmdk");
  info = QImg({"info", "--output=json", "top.vmdk"});
  EXPECT_FALSE(nlohmann::json::parse(info.out).contains("backing-filename")) << info.out;
}

TEST_F(CommitTest, RebaseUnsafeRewritesHintAndParentCid) {
  MakeChain();
  MustImg({"create", "-q", "-f", "vmdk", "other.vmdk", "8M"}, true);
  MustIo({"-c", "write -P 0x99 0 8M", "other.vmdk"}, true);
  RunResult r = Img({"rebase", "-u", "-b", "other.vmdk", "-F", "vmdk", "top.vmdk"});
  ASSERT_EQ(r.status, 0) << r.err;
  RunResult info = QImg({"info", "--output=json", "top.vmdk"});
  nlohmann::json j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["backing-filename"], "other.vmdk");
  EXPECT_EQ(j["format-specific"]["data"]["parent-cid"].get<int64_t>(),
            Cid(QImg({"info", "--output=json", "other.vmdk"})));
  // QEMU reads the unallocated ranges from the new parent (CID accepted)
  // and the image's own data as before.
  MustIo({"-r", "-c", "read -P 0x99 5M 4k", "-c", "read -P 0x31 768k 128k", "top.vmdk"}, true);
  // Back onto mid, unsafely: the original chain again.
  ASSERT_EQ(Img({"rebase", "-u", "-b", "mid.vmdk", "-F", "vmdk", "top.vmdk"}).status, 0);
  ExpectCompare("top.vmdk", "flat.raw");
}

TEST_F(CommitTest, RebaseErrors) {
  MakeChain();
  ExpectSameImg({"rebase", "top.vmdk"});
  ExpectSameImg({"rebase", "-b", "base.vmdk", "-F", "vmdk", "nonexist.vmdk"});
  ExpectSameImg({"rebase", "-b", "nonexist.vmdk", "-F", "vmdk", "top.vmdk"});
  ExpectSameImg({"rebase", "-b", "base.vmdk", "top.vmdk"});
  ExpectSameImg({"rebase", "-b", "base.vmdk", "-F", "vmdk"});
  // A raw image cannot record a backing file (qemu-img's words).
  ExpectSameImg({"rebase", "-u", "-b", "base.vmdk", "-F", "vmdk", "-f", "raw", "flat.raw"});
  ExpectCompare("top.vmdk", "flat.raw");  // nothing changed
}

}  // namespace
}  // namespace coblk::testing
