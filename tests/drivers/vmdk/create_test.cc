#include "drivers/vmdk/create.h"

#include <gtest/gtest.h>

#include "drivers/vmdk/layout.h"

namespace coblk::vmdk {
namespace {

template <typename T>
void ExpectError(const Result<T>& r, int errnum, const std::string& msg) {
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errnum(), errnum);
  EXPECT_EQ(r.error().message(), msg);
}

TEST(CreateOptions, Checks) {
  EXPECT_TRUE(CheckCreateOptions(Subformat::kMonolithicSparse, 1 << 20, true, true));
  ExpectError(CheckCreateOptions(Subformat::kMonolithicFlat, 1 << 20, true, false),
              ENOTSUP, "Flat image can't have backing file");
  ExpectError(CheckCreateOptions(Subformat::kTwoGbMaxExtentFlat, 1 << 20, false, true),
              ENOTSUP, "Flat image can't enable zeroed grain");
  ExpectError(CheckCreateOptions(Subformat::kMonolithicSparse, 1000, false, false),
              EINVAL, "Image size must be a multiple of 512 bytes");
  ExpectError(CheckCreateOptions(Subformat::kMonolithicSparse, -512, false, false),
              EINVAL, "Image size must be a multiple of 512 bytes");
}

TEST(CreateNames, DecomposeAndExtentNames) {
  auto p = DecomposeFilename("/img/disk.vmdk");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->path, "/img/");
  EXPECT_EQ(p->prefix, "disk");
  EXPECT_EQ(p->postfix, ".vmdk");
  EXPECT_EQ(ExtentFileName(*p, 0, false, false), "/img/disk.vmdk");
  EXPECT_EQ(ExtentFileName(*p, 1, true, false), "/img/disk-flat.vmdk");
  EXPECT_EQ(ExtentFileName(*p, 2, false, true), "/img/disk-s002.vmdk");
  EXPECT_EQ(ExtentFileName(*p, 12, true, true), "/img/disk-f012.vmdk");
  p = DecomposeFilename("noext");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->path, "");
  EXPECT_EQ(ExtentFileName(*p, 1, true, false), "noext-flat");
  ExpectError(DecomposeFilename(""), EINVAL, "No filename provided");
  ExpectError(DecomposeFilename(std::string(5000, 'a')), ENAMETOOLONG,
              "File name too long");
}

TEST(CreatePlan, ExtentSizes) {
  auto p = PlanExtents(int64_t{5} << 30, Subformat::kTwoGbMaxExtentFlat);
  EXPECT_FALSE(p.descriptor_is_extent);
  EXPECT_EQ(p.extent_sizes,
            (std::vector<int64_t>{2LL << 30, 2LL << 30, 1LL << 30}));
  p = PlanExtents(int64_t{1} << 30, Subformat::kMonolithicSparse);
  EXPECT_TRUE(p.descriptor_is_extent);
  EXPECT_TRUE(p.extent_sizes.empty());
  p = PlanExtents(int64_t{1} << 30, Subformat::kMonolithicFlat);
  EXPECT_EQ(p.extent_sizes, (std::vector<int64_t>{1LL << 30}));
  p = PlanExtents(0, Subformat::kTwoGbMaxExtentSparse);
  EXPECT_TRUE(p.extent_sizes.empty());
}

TEST(CreatePlan, SparseExtentLikeQemu) {
  auto p = PlanSparseExtent(int64_t{1} << 30, false, false);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->gt_count, 32u);
  EXPECT_EQ(p->gd_sectors, 1u);
  EXPECT_EQ(p->gt_sectors, 4u);
  EXPECT_EQ(p->header.rgd_offset, 21u);
  EXPECT_EQ(p->header.gd_offset, 150u);
  EXPECT_EQ(p->header.grain_offset, 384u);
  EXPECT_EQ(p->file_bytes(), 196608u);  // qemu-img's 1G image is 192 KiB
  auto rgd = BuildGrainDirectory(*p, true);
  ASSERT_EQ(rgd.size(), 512u);
  EXPECT_EQ(rgd[0], 22);        // 21 + 1
  EXPECT_EQ(rgd[4], 26);        // + 4 sectors per GT
  EXPECT_EQ(rgd[31 * 4], 22 + 31 * 4);
  EXPECT_EQ(rgd[32 * 4], 0);
  auto gd = BuildGrainDirectory(*p, false);
  EXPECT_EQ(gd[0], 151);
  // The planned image passes the open-time checks.
  auto l = LayoutFromVmdk4(p->header, std::nullopt, p->file_bytes(), true);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->l1_size, 32u);

  auto s = PlanSparseExtent(int64_t{1} << 30, true, false);
  EXPECT_EQ(s->header.version, 3u);
  EXPECT_EQ(s->header.flags, kFlagRgd | kFlagNlDetect | kFlagCompress | kFlagMarker);
  EXPECT_EQ(s->header.compress_algorithm, kCompressionDeflate);
  auto z = PlanSparseExtent(int64_t{1} << 30, false, true);
  EXPECT_EQ(z->header.version, 2u);
  EXPECT_TRUE(z->header.flags & kFlagZeroGrain);

  auto empty = PlanSparseExtent(0, false, false);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->gt_count, 0u);
  EXPECT_EQ(empty->header.grain_offset, 128u);

  ExpectError(PlanSparseExtent(int64_t{1} << 62, false, false), EFBIG,
              "Image size too big for a sparse VMDK extent");
  ExpectError(PlanSparseExtent(-1, false, false), EINVAL, "Invalid image size");
}

}  // namespace
}  // namespace coblk::vmdk
