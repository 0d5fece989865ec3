// compare -p prints exactly qemu-img 7.2's progress figures on the same
// images: QEMU's vmdk answers block status one grain per call and coblk's a
// whole run, so coblk-img reports each run as the grain steps qemu-img takes
// (including runs that end inside a grain, where the host file has a hole,
// and the size-mismatch tail walk of the larger image).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/tools/qemu_parity.h"

namespace coblk::testing {
namespace {

TEST_F(QemuParityTest, CompareProgressFiguresEqualQemu) {
  MustImg({"create", "-q", "-f", "vmdk", "a.vmdk", "8M"}, true);
  // 100k ends inside a grain: the host file ends (or has a hole) there.
  MustIo({"-c", "write -P 1 0 1M", "-c", "write -P 2 3M 100k", "a.vmdk"}, true);
  std::filesystem::copy_file(Path("a.vmdk"), Path("b.vmdk"));
  MustIo({"-c", "write -P 3 3200k 4k", "b.vmdk"}, true);
  MustImg({"create", "-q", "-f", "vmdk", "c.vmdk", "10M"}, false);
  MustIo({"-c", "write -P 1 0 1M", "-c", "write -P 2 3M 100k", "c.vmdk"}, false);
  MustImg({"create", "-q", "-f", "vmdk", "-b", "a.vmdk", "-F", "vmdk", "top.vmdk"}, false);
  MustIo({"-c", "write -P 9 64k 8k", "-c", "write -P 9 5M 1M", "top.vmdk"}, false);
  MustImg({"convert", "-O", "raw", "top.vmdk", "top.raw"}, true);
  MustImg({"create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "s.vmdk", "8M"}, true);
  MustIo({"-c", "write -P 1 0 1M", "-c", "write -P 2 3M 128k", "s.vmdk"}, true);
  for (const std::vector<std::string>& pair : std::vector<std::vector<std::string>>{
           {"a.vmdk", "a.vmdk"},      // identical, sparse
           {"a.vmdk", "b.vmdk"},      // content mismatch after a partial grain
           {"a.vmdk", "c.vmdk"},      // size mismatch: tail walk of c.vmdk
           {"c.vmdk", "a.vmdk"},
           {"top.vmdk", "top.raw"},   // a chain against its flattened raw
           {"s.vmdk", "b.vmdk"}}) {   // streamOptimized against sparse
    ExpectSameImg({"compare", "-p", pair[0], pair[1]});
  }
}

}  // namespace
}  // namespace coblk::testing
