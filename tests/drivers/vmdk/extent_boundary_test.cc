// Reads that end where an extent or the disk ends inside a grain: the last
// grain of an extent whose size is not a multiple of the grain size holds
// only the extent's part, and what follows belongs to the next extent or is
// padding past the end of the disk.
#include <gtest/gtest.h>

#include "tests/drivers/vmdk/vmdk_image_util.h"

namespace coblk::vmdk::test {
namespace {

class ExtentBoundaryTest : public VmdkImageTest {
 protected:
  ScratchDir dir_;
};

// Two sparse extents of 100 sectors each (one partial 64 KiB grain each): a
// read across the boundary takes bytes 51200.. from the second extent, not
// from the first extent's grain past its end.
TEST_F(ExtentBoundaryTest, ReadAcrossExtentsEndingInsideAGrain) {
  constexpr uint64_t kExtent = 100 * 512;
  const BuiltImage a = BuildVmdk4(kExtent, false, false, {{.index = 0, .seed = 1}});
  const BuiltImage b = BuildVmdk4(kExtent, false, false, {{.index = 0, .seed = 2}});
  ASSERT_TRUE(WriteFile(dir_ / "a.vmdk", a.file));
  ASSERT_TRUE(WriteFile(dir_ / "b.vmdk", b.file));
  ASSERT_TRUE(WriteFile(dir_ / "disk.vmdk",
                        SimpleDescriptor("twoGbMaxExtentSparse",
                                         {"RW 100 SPARSE \"a.vmdk\"", "RW 100 SPARSE \"b.vmdk\""})));
  auto node = OpenVmdk(dir_ / "disk.vmdk");
  ASSERT_TRUE(node) << node.error().ToString();
  ASSERT_EQ((*node)->size(), static_cast<int64_t>(2 * kExtent));
  Bytes want = a.expected;
  want.insert(want.end(), b.expected.begin(), b.expected.end());
  for (int64_t off : {int64_t{0}, int64_t{50688}, int64_t{4096}}) {
    auto got = ReadRange(**node, off, static_cast<int64_t>(2 * kExtent) - off);
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_TRUE(std::equal(got->begin(), got->end(), want.begin() + off))
        << "read from " << off << " differs";
  }
}

// qemu-img compresses only the disk's part of a streamOptimized image's last
// grain. Opened over a 4 KiB-aligned file (blkdebug align=4096, as O_DIRECT
// on a 4K-sector disk), a read of the last sectors is padded past the end of
// the disk; the padding must read as zeros, not as "grain too short".
TEST_F(ExtentBoundaryTest, QemuStreamImageWhoseSizeIsNotAMultipleOf4K) {
  SKIP_WITHOUT_QEMU();
  const std::string raw = dir_ / "disk.raw", img = dir_ / "disk.vmdk";
  constexpr int64_t kSize = 33 * 1024 * 1024 + 1536;
  ASSERT_EQ(Sh("qemu-img create -q -f raw " + raw + " " + std::to_string(kSize)), 0);
  ASSERT_EQ(Sh("qemu-io -f raw -c 'write -P 0x55 34600000 4544' " + raw + " >/dev/null"), 0);
  ASSERT_EQ(Sh("qemu-img convert -O vmdk -o subformat=streamOptimized " + raw + " " + img), 0);
  auto node = Open("driver=vmdk,file.driver=blkdebug,file.align=4096,file.image.driver=file,"
                   "file.image.filename=" + img, true);
  ASSERT_TRUE(node) << node.error().ToString();
  ASSERT_EQ((*node)->size(), kSize);
  auto got = ReadRange(**node, kSize - 8192, 8192);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_TRUE(*got == testing_util::ReadHostFile(raw, kSize - 8192, 8192));
}

}  // namespace
}  // namespace coblk::vmdk::test
