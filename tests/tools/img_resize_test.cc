// coblk-img resize beside qemu-img resize: raw grows and shrinks to the
// same sizes with the same messages; VMDK is refused with QEMU's message.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <string>
#include <vector>

#include "tests/tools/qemu_parity.h"

namespace coblk::testing {
namespace {

class ResizeTest : public QemuParityTest {
 protected:
  int64_t FileSize(const std::string& name) {
    struct stat st;
    return ::stat(Path(name).c_str(), &st) == 0 ? st.st_size : -1;
  }
};

TEST_F(ResizeTest, RawLikeQemu) {
  const std::vector<std::vector<std::string>> cases = {
      {"-f", "raw", "IMG", "16M"},        {"-f", "raw", "IMG", "-4M"},
      {"-f", "raw", "--shrink", "IMG", "-4M"}, {"-f", "raw", "IMG", "+1M"},
      {"IMG", "+1M"},                      {"-f", "raw", "IMG", "x"},
      {"-f", "raw", "IMG"},                {"-f", "raw", "-q", "IMG", "20M"},
      {"-f", "raw", "IMG", "-30M"},        {"-f", "raw", "--preallocation=full", "IMG", "24M"},
      {"-f", "raw", "--preallocation=bogus", "IMG", "24M"}, {}};
  for (const std::vector<std::string>& c : cases) {
    MustImg({"create", "-q", "-f", "raw", "c.raw", "8M"}, true);
    MustImg({"create", "-q", "-f", "raw", "q.raw", "8M"}, true);
    std::vector<std::string> cargs = {"resize"}, qargs = {"resize"};
    for (const std::string& a : c) {
      cargs.push_back(a == "IMG" ? "c.raw" : a);
      qargs.push_back(a == "IMG" ? "q.raw" : a);
    }
    RunResult cr = Img(cargs), qr = QImg(qargs);
    EXPECT_EQ(cr.status, qr.status) << Describe(cargs) << cr.err << qr.err;
    EXPECT_EQ(cr.out, qr.out) << Describe(cargs);
    std::string cerr = Unprefix(cr.err, "coblk-img"), qerr = Unprefix(qr.err, "qemu-img");
    for (size_t p; (p = cerr.find("c.raw")) != std::string::npos;) cerr.replace(p, 5, "X");
    for (size_t p; (p = qerr.find("q.raw")) != std::string::npos;) qerr.replace(p, 5, "X");
    EXPECT_EQ(cerr, qerr) << Describe(cargs);
    EXPECT_EQ(FileSize("c.raw"), FileSize("q.raw")) << Describe(cargs);
  }
}

// QEMU's file driver writes the first block (512 bytes below 4 KiB, else
// 4 KiB) of a file it grows from empty, with preallocation off or falloc:
// images made by qemu-img create, convert and resize from an empty file
// map with a 4 KiB data range at 0 and a disk size of 4 KiB. coblk left the
// whole file a hole. Mapped by qemu-img so only the files can differ.
TEST_F(ResizeTest, GrowingAnEmptyFileAllocatesItsFirstBlockAsQemu) {
  const std::vector<std::vector<std::string>> creates = {
      {"create", "-q", "-f", "raw", "IMG", "1M"},
      {"create", "-q", "-f", "raw", "IMG", "2048"},
      {"create", "-q", "-f", "raw", "-o", "preallocation=falloc", "IMG", "1M"},
      {"create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "IMG", "1M"}};
  for (const std::vector<std::string>& c : creates) {
    std::vector<std::string> cargs, qargs;
    for (const std::string& a : c) {
      cargs.push_back(a == "IMG" ? "c.img" : a);
      qargs.push_back(a == "IMG" ? "q.img" : a);
    }
    MustImg(cargs, false);
    MustImg(qargs, true);
    const bool flat = c[3] == "vmdk";
    const std::string cfile = flat ? "c-flat.img" : "c.img", qfile = flat ? "q-flat.img" : "q.img";
    RunResult cm = QImg({"map", "--output=json", "-f", "raw", cfile});
    RunResult qm = QImg({"map", "--output=json", "-f", "raw", qfile});
    ASSERT_EQ(cm.status, 0) << cm.err;
    EXPECT_EQ(cm.out, qm.out) << Describe(cargs);
    EXPECT_EQ(FileSize(cfile), FileSize(qfile)) << Describe(cargs);
  }
  // resize of an empty raw file, and convert into a new raw file.
  MustImg({"create", "-q", "-f", "raw", "src.raw", "1M"}, true);
  for (const char* name : {"c0.raw", "q0.raw"}) {
    const int fd = ::open(Path(name).c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ASSERT_GE(fd, 0) << ::strerror(errno);
    ::close(fd);
  }
  MustImg({"resize", "-q", "-f", "raw", "c0.raw", "1M"}, false);
  MustImg({"resize", "-q", "-f", "raw", "q0.raw", "1M"}, true);
  MustImg({"convert", "-O", "raw", "src.raw", "cc.raw"}, false);
  MustImg({"convert", "-O", "raw", "src.raw", "qc.raw"}, true);
  for (const auto& [c, q] : {std::pair{"c0.raw", "q0.raw"}, std::pair{"cc.raw", "qc.raw"}}) {
    RunResult cm = QImg({"map", "--output=json", "-f", "raw", c});
    RunResult qm = QImg({"map", "--output=json", "-f", "raw", q});
    EXPECT_EQ(cm.out, qm.out) << c;
  }
}

TEST_F(ResizeTest, VmdkRefused) {
  MustImg({"create", "-q", "-f", "vmdk", "v.vmdk", "8M"}, true);
  ExpectSameImg({"resize", "v.vmdk", "16M"});
  ExpectSameImg({"resize", "--shrink", "v.vmdk", "-1M"});
}

}  // namespace
}  // namespace coblk::testing
