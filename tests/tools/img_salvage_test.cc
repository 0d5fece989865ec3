// coblk-img convert --salvage (issue 13): read errors become zeros with
// qemu-img 7.2's warning, sector by sector; a damaged VMDK whose grain table
// cannot be read is still copied out.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "tests/tools/qemu_parity.h"

namespace coblk::testing {
namespace {

class SalvageTest : public QemuParityTest {
 protected:
  std::string Read(const std::string& name) {
    std::ifstream f(Path(name), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  std::string Path(const std::string& name) { return dir_.path() + "/" + name; }
};

TEST_F(SalvageTest, ReadErrorsBecomeZerosWithQemusWarning) {
  ASSERT_EQ(QImg({"create", "-q", "-f", "raw", "src.raw", "4M"}).status, 0);
  ASSERT_EQ(QIo({"-f", "raw", "-c", "write -P 7 0 4M", "src.raw"}).status, 0);
  {
    std::ofstream conf(Path("dbg.conf"));
    conf << "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"2048\"\n";
  }
  const std::string src =
      R"(json:{"driver":"raw","file":{"driver":"blkdebug","config":"dbg.conf",)"
      R"("image":{"driver":"file","filename":"src.raw"}}})";
  // Without --salvage both fail at the first error.
  RunResult c = Img({"convert", "-O", "raw", src, "c0.raw"}), q = QImg({"convert", "-O", "raw", src, "q0.raw"});
  EXPECT_EQ(c.status, 1) << c.err;
  EXPECT_EQ(q.status, 1) << q.err;
  c = Img({"convert", "--salvage", "-O", "raw", src, "c.raw"});
  q = QImg({"convert", "--salvage", "-O", "raw", src, "q.raw"});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(q.status, 0) << q.err;
  EXPECT_EQ(Unprefix(c.err, "coblk-img"), Unprefix(q.err, "qemu-img"));
  EXPECT_EQ(c.err, "coblk-img: warning: error while reading offset 1048576: Input/output error\n");
  const std::string out = Read("c.raw");
  EXPECT_EQ(out, Read("q.raw"));
  ASSERT_EQ(out.size(), 4u << 20);
  EXPECT_EQ(out.substr(1048576, 512), std::string(512, '\0'));  // the one bad sector
  EXPECT_EQ(out.substr(1048576 + 512, 512), std::string(512, '\7'));
}

TEST_F(SalvageTest, DamagedVmdkIsCopiedOut) {
  ASSERT_EQ(Img({"create", "-q", "-f", "vmdk", "d.vmdk", "64M"}).status, 0);
  ASSERT_EQ(Io({"-c", "write -P 1 0 64k", "-c", "write -P 2 40M 64k", "d.vmdk"}).status, 0);
  // The primary grain directory's first entry: far past the end of the file.
  int fd = ::open(Path("d.vmdk").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t header[512];
  ASSERT_EQ(::pread(fd, header, sizeof header, 0), 512);
  uint64_t gd = 0;
  std::memcpy(&gd, header + 56, 8);
  const uint32_t bogus = 0x7fffff00;
  ASSERT_EQ(::pwrite(fd, &bogus, 4, static_cast<off_t>(gd * 512)), 4);
  ::close(fd);
  RunResult r = Img({"convert", "-O", "raw", "d.vmdk", "x.raw"});
  EXPECT_EQ(r.status, 1) << r.err;
  r = Img({"convert", "--salvage", "-O", "raw", "d.vmdk", "s.raw"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("coblk-img: warning: error while reading"), std::string::npos) << r.err;
  const std::string out = Read("s.raw");
  ASSERT_EQ(out.size(), 64u << 20);
  EXPECT_EQ(out.substr(0, 65536), std::string(65536, '\0'));           // its table is lost
  EXPECT_EQ(out.substr(40 << 20, 65536), std::string(65536, '\2'));    // the other table's grain
}

// A streamOptimized image cut before its footer (GD_AT_END): every open
// refuses it, saying so, except check's (qemu-img's BDRV_O_CHECK idea),
// which reports it (exit 2) and with -r all rebuilds its tail (exit 0);
// then it opens and converts as the stream did up to the cut.
TEST_F(SalvageTest, CutStreamIsCheckedAndRebuilt) {
  ASSERT_EQ(QImg({"create", "-q", "-f", "raw", "src.raw", "4M"}).status, 0);
  ASSERT_EQ(QIo({"-f", "raw", "-c", "write -P 7 0 1M", "-c", "write -P 9 3M 64k", "src.raw"}).status, 0);
  ASSERT_EQ(Img({"convert", "-O", "vmdk", "-o", "subformat=streamOptimized", "src.raw", "s.vmdk"}).status, 0);
  const std::string whole = Read("s.vmdk");
  ASSERT_EQ(::truncate(Path("s.vmdk").c_str(), static_cast<off_t>(whole.size() - 700)), 0);  // inside the footer
  RunResult r = Img({"info", "s.vmdk"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("Invalid footer"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("check -r all"), std::string::npos) << r.err;
  r = Img({"check", "s.vmdk"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("no valid footer ends the file"), std::string::npos) << r.err;
  r = Img({"check", "-r", "all", "s.vmdk"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("No errors were found on the image."), std::string::npos) << r.out;
  EXPECT_EQ(QImg({"check", "s.vmdk"}).status, 0);
  EXPECT_EQ(Img({"check", "s.vmdk"}).status, 0);
  EXPECT_EQ(Img({"convert", "-O", "raw", "s.vmdk", "back.raw"}).status, 0);
  EXPECT_TRUE(Read("back.raw") == Read("src.raw"));
}

}  // namespace
}  // namespace coblk::testing
