// coblk-img compare beside qemu-img compare: the same images (raw, VMDK
// from both tools, chains), the same messages and exit codes.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "tests/tools/qemu_parity.h"

namespace coblk::testing {
namespace {

class CompareTest : public QemuParityTest {
 protected:
  // Both tools, with and without -s and -q; exit codes and output equal.
  void ExpectSameCompare(const std::string& a, const std::string& b,
                         std::vector<std::string> extra = {}) {
    for (const std::vector<std::string>& flags :
         {std::vector<std::string>{}, {"-s"}, {"-q"}, {"-p"}}) {
      std::vector<std::string> args = {"compare"};
      args.insert(args.end(), extra.begin(), extra.end());
      args.insert(args.end(), flags.begin(), flags.end());
      args.push_back(a);
      args.push_back(b);
      ExpectSameImg(args);  // -p included: the progress figures are qemu-img's
    }
  }
};

TEST_F(CompareTest, RawContentAndSizes) {
  MustImg({"create", "-q", "-f", "raw", "a.raw", "10M"}, true);
  MustImg({"create", "-q", "-f", "raw", "b.raw", "10M"}, true);
  ExpectSameCompare("a.raw", "b.raw");
  // One byte differs inside a sector: reported at the sector's start.
  MustIo({"-f", "raw", "-c", "write -P 1 3145828 1", "b.raw"}, true);
  ExpectSameCompare("a.raw", "b.raw");
  ExpectSameCompare("b.raw", "a.raw");
  // Larger second image, zeros in the tail: identical with a warning.
  MustImg({"create", "-q", "-f", "raw", "c.raw", "12M"}, true);
  MustIo({"-f", "raw", "-c", "write -P 0 0 12M", "c.raw"}, true);
  ExpectSameCompare("a.raw", "c.raw");
  ExpectSameCompare("c.raw", "a.raw");
  // Data in the tail of the larger one.
  MustIo({"-f", "raw", "-c", "write -P 3 11M 4k", "c.raw"}, true);
  ExpectSameCompare("a.raw", "c.raw");
  ExpectSameCompare("c.raw", "a.raw");
}

// Many chunks (data every other 64 KiB, holes between), more than the
// read-ahead window holds: a difference deep inside, after equal sectors of
// an allocated chunk, and one in a hole of the other image, are reported
// at the same offsets as qemu-img's sequential walk.
TEST_F(CompareTest, ManyChunksDifferenceFarIn) {
  for (const char* f : {"a.raw", "b.raw"}) {
    MustImg({"create", "-q", "-f", "raw", f, "24M"}, true);
    std::vector<std::string> args = {"-f", "raw"};
    for (int i = 0; i < 24 * 16; i += 2) {
      args.push_back("-c");
      args.push_back("write -P 9 " + std::to_string(i * 65536) + " 64k");
    }
    args.push_back(f);
    MustIo(args, true);
  }
  ExpectSameCompare("a.raw", "b.raw");
  MustIo({"-f", "raw", "-c", "write -P 8 " + std::to_string(20 * 1048576 + 4096 + 700) + " 1",
          "b.raw"},
         true);
  ExpectSameCompare("a.raw", "b.raw");
  MustIo({"-f", "raw", "-c", "write -P 7 " + std::to_string(17 * 1048576 + 65536 + 1536) + " 1",
          "a.raw"},
         true);
  ExpectSameCompare("a.raw", "b.raw");
  ExpectSameCompare("b.raw", "a.raw");
}

TEST_F(CompareTest, VmdkFromBothToolsAgainstRaw) {
  for (bool qemu : {false, true}) {
    const std::string v = qemu ? "q.vmdk" : "c.vmdk";
    MustImg({"create", "-q", "-f", "vmdk", v, "16M"}, qemu);
    MustIo({"-c", "write -P 0x5a 1M 192k", "-c", "write -P 0 4M 64k", "-c", "write -P 7 15M 4k", v},
           qemu);
  }
  MustImg({"convert", "-O", "raw", "q.vmdk", "q.raw"}, true);
  ExpectSameCompare("c.vmdk", "q.vmdk");
  ExpectSameCompare("q.vmdk", "q.raw");
  ExpectSameCompare("c.vmdk", "q.raw", {"-F", "raw"});
  ExpectSameCompare("q.raw", "c.vmdk", {"-f", "raw", "-F", "vmdk"});
  MustIo({"-c", "write -P 0x5b 1M 64k", "c.vmdk"}, false);
  ExpectSameCompare("c.vmdk", "q.vmdk");
  ExpectSameCompare("q.raw", "c.vmdk");
}

// Strict mode on VMDK: QEMU's status answers are one grain each, so the
// end-of-image flag differs only in the last grain, and the first status
// mismatch is where the data of one image ends, not at offset 0.
TEST_F(CompareTest, StrictModeOnVmdkReportsWhereTheStatusFirstDiffers) {
  for (const char* f : {"full.vmdk", "half.vmdk"}) {
    MustImg({"create", "-q", "-f", "vmdk", f, "8M"}, true);
  }
  MustIo({"-c", "write -P 1 0 8M", "full.vmdk"}, true);
  MustIo({"-c", "write -P 1 0 4M", "half.vmdk"}, true);
  ExpectSameCompare("full.vmdk", "half.vmdk");
  ExpectSameCompare("half.vmdk", "full.vmdk");
  // One grain short of the end: the difference is in the last grain.
  MustIo({"-c", "write -P 1 4M 4032k", "half.vmdk"}, true);
  ExpectSameCompare("full.vmdk", "half.vmdk");
}

TEST_F(CompareTest, ChainAgainstItsFlatCopy) {
  MakeChain();
  ExpectSameCompare("top.vmdk", "flat.raw");
  ExpectSameCompare("mid.vmdk", "flat.raw");
  ExpectSameCompare("base.vmdk", "top.vmdk");
}

TEST_F(CompareTest, ErrorsAndUsage) {
  MustImg({"create", "-q", "-f", "raw", "a.raw", "1M"}, true);
  ExpectSameImg({"compare", "a.raw", "nonexist.raw"});      // 2: open error
  ExpectSameImg({"compare", "a.raw"});                      // usage
  ExpectSameImg({"compare", "-z", "a.raw", "a.raw"});
  ExpectSameImg({"compare", "--bogus", "a.raw", "a.raw"});
  ExpectSameImg({"compare", "a.raw", "-f"});
  ExpectSameImg({"compare", "-f", "vmdk", "a.raw", "a.raw"});
  // 4: a read error, injected with blkdebug on the second image.
  const std::string failing =
      R"(json:{"driver":"raw","file":{"driver":"blkdebug","inject-error":[{"event":"read_aio",)"
      R"("errno":"5"}],"image":{"driver":"file","filename":"a.raw"}}})";
  MustIo({"-f", "raw", "-c", "write -P 1 0 4k", "a.raw"}, true);
  ExpectSameImg({"compare", "a.raw", failing});
}

}  // namespace
}  // namespace coblk::testing
