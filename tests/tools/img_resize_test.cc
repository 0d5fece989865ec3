// coblk-img resize beside qemu-img resize: raw grows and shrinks to the
// same sizes with the same messages; VMDK is refused with QEMU's message.
#include <gtest/gtest.h>
#include <sys/stat.h>

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

TEST_F(ResizeTest, VmdkRefused) {
  MustImg({"create", "-q", "-f", "vmdk", "v.vmdk", "8M"}, true);
  ExpectSameImg({"resize", "v.vmdk", "16M"});
  ExpectSameImg({"resize", "--shrink", "v.vmdk", "-1M"});
}

}  // namespace
}  // namespace coblk::testing
