// coblk-img dd and measure beside qemu-img 7.2 on the same inputs: messages
// and exit statuses equal, dd's output images equal in size, contents and
// allocation map, measure's figures equal (JSON parsed field by field).
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/tools/qemu_parity.h"

namespace coblk::testing {
namespace {

class DdMeasureTest : public QemuParityTest {
 protected:
  void SetUp() override {
    QemuParityTest::SetUp();
    if (IsSkipped()) return;
    // A 1 MiB VMDK with data in the first 256 KiB and an odd-sized run.
    MustImg({"create", "-q", "-f", "vmdk", "s.vmdk", "1M"}, true);
    MustIo({"-c", "write -P 7 0 256k", "-c", "write -P 8 700k 5000", "s.vmdk"}, true);
  }

  // Runs dd with "OUT" in the arguments replaced by c / q for the two tools,
  // then compares messages, statuses and the two outputs.
  void SameDd(const std::vector<std::string>& args, const std::string& ext = "raw") {
    std::vector<std::string> c = {"dd"}, q = {"dd"};
    for (const std::string& a : args) {
      std::string ca = a, qa = a;
      if (size_t p = a.find("OUT"); p != std::string::npos) {
        ca.replace(p, 3, "c");
        qa.replace(p, 3, "q");
      }
      c.push_back(ca);
      q.push_back(qa);
    }
    std::filesystem::remove(Path("c." + ext));
    std::filesystem::remove(Path("q." + ext));
    RunResult rc = Img(c), rq = QImg(q);
    const std::string what = Describe(c);
    EXPECT_EQ(rc.status, rq.status) << what << rc.err << rq.err;
    EXPECT_EQ(rc.out, rq.out) << what;
    EXPECT_EQ(Unprefix(Unprefix(rc.err, "c." + ext), "coblk-img"),
              Unprefix(Unprefix(rq.err, "q." + ext), "qemu-img"))
        << what;
    const bool c_made = std::filesystem::exists(Path("c." + ext));
    ASSERT_EQ(c_made, std::filesystem::exists(Path("q." + ext))) << what;
    if (!c_made || rq.status != 0) return;
    // Same guest-visible contents, size and allocation: qemu-img compare in
    // strict mode judges both outputs.
    RunResult cmp = QImg({"compare", "-s", "c." + ext, "q." + ext});
    EXPECT_EQ(cmp.status, 0) << what << cmp.out << cmp.err;
    if (ext == "raw") {
      EXPECT_EQ(std::filesystem::file_size(Path("c.raw")),
                std::filesystem::file_size(Path("q.raw")))
          << what;
    }
  }
  void SameMeasure(std::vector<std::string> args) {
    args.insert(args.begin(), "measure");
    RunResult c = Img(args), q = QImg(args);
    EXPECT_EQ(c.status, q.status) << Describe(args) << c.err << q.err;
    EXPECT_EQ(Unprefix(c.err, "coblk-img"), Unprefix(q.err, "qemu-img")) << Describe(args);
    EXPECT_EQ(c.out, q.out) << Describe(args);
    bool json = false;
    for (const std::string& a : args) json = json || a == "--output=json";
    if (json && q.status == 0) {
      nlohmann::json jc = nlohmann::json::parse(c.out), jq = nlohmann::json::parse(q.out);
      ASSERT_EQ(jc.size(), jq.size()) << c.out;
      for (auto& [key, value] : jq.items()) EXPECT_EQ(jc[key], value) << key;
    }
  }
};

TEST_F(DdMeasureTest, DdCopies) {
  SameDd({"if=s.vmdk", "of=OUT.raw"});
  SameDd({"-O", "raw", "if=s.vmdk", "of=OUT.raw", "bs=256k", "count=3", "skip=1"});
  SameDd({"-O", "vmdk", "if=s.vmdk", "of=OUT.vmdk", "bs=64k", "skip=3"}, "vmdk");
  SameDd({"if=s.vmdk", "of=OUT.raw", "bs=3", "count=5"});  // 15 bytes: a 512-byte image
  SameDd({"if=s.vmdk", "of=OUT.raw", "bs=1k", "bs=3000", "skip=0x10", "count=1100"});
  SameDd({"-f", "raw", "-U", "if=s.vmdk", "of=OUT.raw", "bs=1G"});
  // A skip past the end: a warning, an empty output, success.
  SameDd({"--image-opts", "if=driver=vmdk,file.filename=s.vmdk", "of=OUT.raw", "bs=1M",
          "count=2", "skip=3"});
}

TEST_F(DdMeasureTest, DdErrors) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"if=nonexist", "of=OUT.raw"}, {"if=s.vmdk"}, {"foo"},
           {"if=s.vmdk", "of=OUT.raw", "bs=0"}, {"if=s.vmdk", "of=OUT.raw", "count=-1"},
           {"if=s.vmdk", "of=OUT.raw", "skip=9E"}, {"if=s.vmdk", "of=OUT.raw", "conv=notrunc"},
           {"if=", "of=OUT.raw"}, {"if=s.vmdk", "of="},
           {"-O", "bogus", "if=s.vmdk", "of=OUT.raw"}, {"-x", "if=s.vmdk", "of=OUT.raw"}}) {
    SameDd(args);
  }
}

TEST_F(DdMeasureTest, Measure) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-O", "raw", "--size", "1000"}, {"--size", "9223372036854775807"},
           {"-O", "raw", "-o", "preallocation=full,size=5M", "--size", "1.5k"},
           {"-f", "raw", "-U", "s.vmdk"}, {"--output=json", "--size", "0"},
           {"--output=json", "--image-opts", "driver=vmdk,file.filename=s.vmdk"},
           {"--output=human", "--size", "1G", "--size", "2G"}}) {
    SameMeasure(args);
  }
}

TEST_F(DdMeasureTest, MeasureRefusals) {
  // QEMU 7.2's vmdk driver cannot measure (any subformat); nor can protocols.
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"-O", "vmdk", "s.vmdk"},
           {"-O", "vmdk", "-o", "subformat=streamOptimized", "--size", "1G"},
           {"-O", "vmdk", "-o", "subformat=monolithicFlat", "--size", "1G"},
           {"-O", "file", "--size", "1G"}, {"-O", "blkdebug", "--size", "1G"}, {},
           {"--size", "1G", "s.vmdk"}, {"--size", "abc"}, {"--size", "9E"},
           {"-O", "bogus", "--size", "1G"}, {"-o", "bogus=1", "--size", "1G"},
           {"--output=xml", "--size", "1G"}, {"-l", "snap", "s.vmdk"}, {"a", "b"}, {"-f", "raw"}}) {
    SameMeasure(args);
  }
  // Like qemu-img: an unknown option prints getopt's message and the help.
  RunResult r = Img({"measure", "-x"});
  EXPECT_EQ(r.status, QImg({"measure", "-x"}).status);
  EXPECT_EQ(r.err, "measure: invalid option -- 'x'\n");
  EXPECT_NE(r.out.find("measure [--output=ofmt]"), std::string::npos);
  for (const char* cmd : {"dd", "measure"}) {
    RunResult h = Img({cmd, "--help"});
    EXPECT_EQ(h.status, 0);
    EXPECT_NE(h.out.find(std::string("  ") + cmd + " ["), std::string::npos) << h.out;
  }
}

// QEMU's file and vmdk create round the size up to whole sectors.
TEST_F(DdMeasureTest, CreateRoundsSizeToSectors) {
  for (const char* fmt : {"raw", "vmdk"}) {
    const std::string c = std::string("c15.") + fmt, q = std::string("q15.") + fmt;
    MustImg({"create", "-q", "-f", fmt, c, "15"}, false);
    MustImg({"create", "-q", "-f", fmt, q, "15"}, true);
    RunResult ic = QImg({"info", "--output=json", c}), iq = QImg({"info", "--output=json", q});
    EXPECT_EQ(nlohmann::json::parse(ic.out)["virtual-size"],
              nlohmann::json::parse(iq.out)["virtual-size"])
        << fmt;
  }
  EXPECT_EQ(std::filesystem::file_size(Path("c15.raw")), 512u);
}

}  // namespace
}  // namespace coblk::testing
