#include "drivers/vmdk/layout.h"

#include <gtest/gtest.h>

#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/create.h"

namespace coblk::vmdk {
namespace {

struct Image {
  Vmdk4Header h;
  uint64_t file_size;
};

Image Valid1G() {
  auto plan = PlanSparseExtent(int64_t{1} << 30, false, false);
  return {plan->header, plan->file_bytes()};
}

template <typename T>
void ExpectError(const Result<T>& r, int errnum, const std::string& msg) {
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errnum(), errnum);
  EXPECT_EQ(r.error().message(), msg);
}

TEST(LayoutVmdk4, ValidQemuImage) {
  Image img = Valid1G();
  auto l = LayoutFromVmdk4(img.h, std::nullopt, img.file_size, true);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->format, ExtentFormat::kVmdk4);
  EXPECT_EQ(l->version, 1u);
  EXPECT_EQ(l->sectors, 2097152u);
  EXPECT_EQ(l->cluster_sectors, 128u);
  EXPECT_EQ(l->cluster_bytes(), 65536u);
  EXPECT_EQ(l->l2_size, 512u);
  EXPECT_EQ(l->l1_entry_sectors, 65536u);
  EXPECT_EQ(l->l1_size, 32u);
  EXPECT_EQ(l->l1_table_bytes(), 128u);
  EXPECT_EQ(l->l1_table_offset, 150u * 512);
  EXPECT_EQ(l->l1_backup_offset, 21u * 512);
  EXPECT_EQ(l->grain_start_sector, 384u);
  EXPECT_EQ(l->next_cluster_sector, 384u);
  EXPECT_FALSE(l->compressed);
  EXPECT_FALSE(l->has_marker);
  EXPECT_FALSE(l->has_zero_grain);
  EXPECT_FALSE(l->gd_at_end);
}

TEST(LayoutVmdk4, FlagsAndNextCluster) {
  auto plan = PlanSparseExtent(int64_t{1} << 30, true, true);
  auto l = LayoutFromVmdk4(plan->header, std::nullopt,
                           plan->file_bytes() + 1000, true);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_TRUE(l->compressed);
  EXPECT_TRUE(l->has_marker);
  EXPECT_TRUE(l->has_zero_grain);
  EXPECT_EQ(l->version, 3u);  // compressed v3 may be opened read-write
  EXPECT_EQ(l->next_cluster_sector, 512u);  // 384 + 2 sectors -> next grain
}

TEST(LayoutVmdk4, NoRgdFlagMeansNoBackup) {
  Image img = Valid1G();
  img.h.flags &= ~kFlagRgd;
  auto l = LayoutFromVmdk4(img.h, std::nullopt, img.file_size, true);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->l1_backup_offset, 0u);
}

TEST(LayoutVmdk4, UnsupportedVersion) {
  Image img = Valid1G();
  img.h.version = 4;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              ENOTSUP, "Unsupported VMDK version 4");
}

TEST(LayoutVmdk4, Version3ReadOnly) {
  Image img = Valid1G();
  img.h.version = 3;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, true),
              EINVAL, "VMDK version 3 must be read only");
  EXPECT_TRUE(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false));
}

TEST(LayoutVmdk4, L2TooBig) {
  Image img = Valid1G();
  img.h.num_gtes_per_gt = 513;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL, "L2 table size too big");
  img.h.num_gtes_per_gt = 0xffffffff;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL, "L2 table size too big");
}

TEST(LayoutVmdk4, L1EntrySizeInvalid) {
  Image img = Valid1G();
  img.h.num_gtes_per_gt = 0;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL, "L1 entry size is invalid");
  img = Valid1G();
  img.h.granularity = 0;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL, "L1 entry size is invalid");
}

TEST(LayoutVmdk4, Granularity) {
  Image img = Valid1G();
  img.h.granularity = 0x400000;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EFBIG, "Invalid granularity, image may be corrupt");
  img.h.granularity = 0xffffffffffffffffULL;  // would overflow gtes * gran
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EFBIG, "Invalid granularity, image may be corrupt");
  img.h.granularity = 100;  // not a power of two
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL, "Invalid granularity, image may be corrupt");
  img.h.granularity = 0x200000;  // 1 GiB grains: the largest accepted
  EXPECT_TRUE(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false));
}

TEST(LayoutVmdk4, L1SizeTooBig) {
  Image img = Valid1G();
  img.h.granularity = 1;
  img.h.num_gtes_per_gt = 1;
  img.h.capacity = kMaxL1Size + 1;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EFBIG, "L1 size too big");
  img.h.capacity = 0xffffffffffffffffULL / 256;  // and capacity overflow
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EFBIG, "Extent capacity too big: 72057594037927935 sectors");
}

TEST(LayoutVmdk4, Truncated) {
  Image img = Valid1G();
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size - 512, false),
              EINVAL, "File truncated, expecting at least 196608 bytes");
  img.h.grain_offset = 0xffffffffffffffffULL;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL,
              "File truncated, expecting at least 18446744073709551615 sectors");
}

TEST(LayoutVmdk4, GrainDirectoryBounds) {
  Image img = Valid1G();
  img.h.gd_offset = 0;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL, "Grain directory at offset 0 overlaps the header");
  img.h.gd_offset = 383;  // 128 bytes at 383*512 = 196096 fit
  EXPECT_TRUE(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false));
  img.h.gd_offset = 384;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL,
              "Grain directory at offset 196608 (128 bytes) is beyond the end "
              "of the file (196608 bytes)");
  img.h.gd_offset = 1ULL << 60;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL, "Grain directory offset out of range");
  img = Valid1G();
  img.h.rgd_offset = 1000;
  ExpectError(LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false),
              EINVAL,
              "Redundant grain directory at offset 512000 (128 bytes) is "
              "beyond the end of the file (196608 bytes)");
}

TEST(LayoutVmdk4, EmptyExtentSkipsTableChecks) {
  Image img = Valid1G();
  img.h.capacity = 0;
  img.h.gd_offset = 0;
  auto l = LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->l1_size, 0u);
}

TEST(LayoutVmdk4, WrappedDescriptor) {
  Image img = Valid1G();
  EXPECT_FALSE(WrappedDescriptorOffset(img.h));
  auto r = Vmdk4DescriptorRange(img.h, img.file_size);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->offset, 512u);
  EXPECT_EQ(r->length, 10240u);
  r = Vmdk4DescriptorRange(img.h, 600);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->length, 88u);
  r = Vmdk4DescriptorRange(img.h, 100);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->length, 0u);

  img.h.capacity = 0;
  img.h.desc_offset = 2;
  EXPECT_EQ(WrappedDescriptorOffset(img.h), 2u);
  r = Vmdk4DescriptorRange(img.h, 4 << 20);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->offset, 1024u);
  EXPECT_EQ(r->length, kMaxDescriptorBytes);
  ExpectError(Vmdk4DescriptorRange(img.h, 1024), EINVAL,
              "Descriptor offset out of range");
  img.h.desc_offset = 1ULL << 62;
  ExpectError(Vmdk4DescriptorRange(img.h, 1024), EINVAL,
              "Descriptor offset out of range");
}

// streamOptimized as VMware writes it: GD_AT_END in the header, the real
// header in the footer.
TEST(LayoutVmdk4, Footer) {
  auto plan = PlanSparseExtent(int64_t{1} << 30, true, false);
  Vmdk4Header header = plan->header;
  header.gd_offset = kGdAtEnd;
  const uint64_t file_size = plan->file_bytes() + 3 * 512;
  EXPECT_TRUE(NeedsFooter(header));
  ExpectError(LayoutFromVmdk4(header, std::nullopt, file_size, false), EINVAL,
              "Invalid footer");

  auto off = FooterOffset(file_size);
  ASSERT_TRUE(off);
  EXPECT_EQ(*off, plan->file_bytes());
  EXPECT_EQ(*FooterOffset(file_size - 100), plan->file_bytes());  // rounds up
  ExpectError(FooterOffset(1536), EINVAL, "Invalid footer");
  EXPECT_EQ(*FooterOffset(1537), 512u);

  std::vector<uint8_t> footer = EncodeFooter(plan->header);
  auto fh = ValidateFooter(footer);
  ASSERT_TRUE(fh) << fh.error().message();
  EXPECT_EQ(*fh, plan->header);
  auto l = LayoutFromVmdk4(header, *fh, file_size, false);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_TRUE(l->gd_at_end);
  EXPECT_TRUE(l->compressed);
  EXPECT_EQ(l->l1_table_offset, plan->header.gd_offset * 512);

  // A footer that again says GD_AT_END is useless.
  ExpectError(LayoutFromVmdk4(header, header, file_size, false), EINVAL,
              "Invalid footer");

  // Each footer sanity check.
  const std::vector<std::pair<size_t, uint8_t>> corruptions = {
      {8, 1},             // footer marker size != 0
      {12, 2},            // footer marker type != FOOTER
      {512, 'X'},         // header magic
      {1024, 1},          // eos val != 0
      {1024 + 8, 1},      // eos size != 0
      {1024 + 12, 1},     // eos type != EOS
  };
  for (auto [pos, val] : corruptions) {
    auto f = footer;
    f[pos] = val;
    ExpectError(ValidateFooter(f), EINVAL, "Invalid footer");
  }
  ExpectError(ValidateFooter(std::span(footer).first(1535)), EINVAL,
              "Invalid footer");
}

TEST(LayoutVmdk3, ValidAndChecks) {
  Vmdk3Header h;
  h.disk_sectors = 1 << 20;
  h.granularity = 8;
  h.l1dir_offset = 1;
  h.l1dir_size = 32;  // 32 * 4096 * 8 sectors covers the disk
  const uint64_t file_size = 64 * 1024;
  auto l = LayoutFromVmdk3(h, file_size);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->format, ExtentFormat::kVmdk3);
  EXPECT_EQ(l->l2_size, 4096u);
  EXPECT_EQ(l->l2_table_bytes(), 16384u);
  EXPECT_EQ(l->l1_entry_sectors, 32768u);
  EXPECT_EQ(l->l1_table_offset, 512u);
  EXPECT_EQ(l->sectors, 1u << 20);
  EXPECT_EQ(l->l1_backup_offset, 0u);

  auto bad = h;
  bad.granularity = 0;  // QEMU divides by zero here
  ExpectError(LayoutFromVmdk3(bad, file_size), EINVAL,
              "Invalid granularity, image may be corrupt");
  bad.granularity = 0x200001;
  ExpectError(LayoutFromVmdk3(bad, file_size), EFBIG,
              "Invalid granularity, image may be corrupt");
  bad.granularity = 6;
  ExpectError(LayoutFromVmdk3(bad, file_size), EINVAL,
              "Invalid granularity, image may be corrupt");
  bad = h;
  bad.l1dir_size = 0xffffffff;
  ExpectError(LayoutFromVmdk3(bad, file_size), EFBIG, "L1 size too big");
  bad = h;
  bad.l1dir_offset = 0;
  ExpectError(LayoutFromVmdk3(bad, file_size), EINVAL,
              "Grain directory at offset 0 overlaps the header");
  bad = h;
  bad.l1dir_offset = 0xffffffff;
  ExpectError(LayoutFromVmdk3(bad, file_size), EINVAL,
              "Grain directory at offset 2199023255040 (128 bytes) is beyond "
              "the end of the file (65536 bytes)");
}

SeSparseConstHeader ValidSe() {
  SeSparseConstHeader c;
  c.magic = kSeSparseConstMagic;
  c.version = kSeSparseVersion;
  c.capacity = 204800;
  c.grain_size = 8;
  c.grain_table_size = 64;
  c.volatile_header_offset = 1;
  c.volatile_header_size = 1;
  c.journal_header_offset = 2;
  c.journal_header_size = 2;
  c.journal_offset = 2048;
  c.journal_size = 2048;
  c.grain_dir_offset = 4096;
  c.grain_dir_size = 2048;
  c.grain_tables_offset = 6144;
  c.grain_tables_size = 2048;
  c.free_bitmap_offset = 8192;
  c.free_bitmap_size = 2048;
  c.backmap_offset = 10240;
  c.backmap_size = 2048;
  c.grains_offset = 12288;
  c.grains_size = 204800;
  return c;
}
constexpr uint64_t kSeFile = 12288 * 512;

TEST(LayoutSeSparse, Valid) {
  auto l = LayoutFromSeSparse(ValidSe(), kSeFile);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->format, ExtentFormat::kSeSparse);
  EXPECT_EQ(l->entry_size, 8u);
  EXPECT_EQ(l->cluster_sectors, 8u);
  EXPECT_EQ(l->l2_size, 4096u);
  EXPECT_EQ(l->l1_size, 2048u * 512 / 8);
  EXPECT_EQ(l->l1_table_offset, 4096u * 512);
  EXPECT_EQ(l->l1_entry_sectors, 4096u * 8);
  EXPECT_EQ(l->sesparse_l2_tables_offset, 6144u);
  EXPECT_EQ(l->sesparse_clusters_offset, 12288u);
  EXPECT_EQ(l->sectors, 204800u);
  auto v = SeSparseVolatileHeaderOffset(ValidSe(), kSeFile);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 512u);
}

TEST(LayoutSeSparse, ConstHeaderChecks) {
  struct Case {
    void (*mutate)(SeSparseConstHeader&);
    int errnum;
    const char* msg;
  };
  const Case cases[] = {
      {[](SeSparseConstHeader& c) { c.magic = 0xcafecafe; }, EINVAL,
       "Bad const header magic: 0x00000000cafecafe"},
      {[](SeSparseConstHeader& c) { c.version = 0x200000000ULL; }, ENOTSUP,
       "Unsupported version: 0x0000000200000000"},
      {[](SeSparseConstHeader& c) { c.grain_size = 16; }, ENOTSUP,
       "Unsupported grain size: 16"},
      {[](SeSparseConstHeader& c) { c.grain_table_size = 128; }, ENOTSUP,
       "Unsupported grain table size: 128"},
      {[](SeSparseConstHeader& c) { c.flags = 1; }, ENOTSUP,
       "Unsupported flags: 0x0000000000000001"},
      {[](SeSparseConstHeader& c) { c.reserved3 = 5; }, ENOTSUP,
       "Unsupported reserved bits: 0x0000000000000000 0x0000000000000000 "
       "0x0000000000000005 0x0000000000000000"},
      {[](SeSparseConstHeader& c) { c.pad_is_zero = false; }, ENOTSUP,
       "Unsupported non-zero const header padding"},
      {[](SeSparseConstHeader& c) { c.capacity = 1ULL << 62; }, EFBIG,
       "Extent capacity too big: 4611686018427387904 sectors"},
      {[](SeSparseConstHeader& c) { c.grain_dir_size = 1ULL << 60; }, EFBIG,
       "L1 size too big"},
      {[](SeSparseConstHeader& c) { c.grain_dir_size = 4 * 1024 * 1024 + 1; },
       EFBIG, "L1 size too big"},
      {[](SeSparseConstHeader& c) { c.grain_dir_offset = 0; }, EINVAL,
       "Grain directory at offset 0 overlaps the header"},
      {[](SeSparseConstHeader& c) { c.grain_dir_offset = 12000; }, EINVAL,
       "Grain directory at offset 6144000 (1048576 bytes) is beyond the end "
       "of the file (6291456 bytes)"},
      {[](SeSparseConstHeader& c) { c.grain_tables_size = 1ULL << 60; },
       EINVAL, "Grain tables offset out of range"},
      {[](SeSparseConstHeader& c) { c.grain_tables_offset = 12000; }, EINVAL,
       "Grain tables at offset 6144000 (1048576 bytes) is beyond the end of "
       "the file (6291456 bytes)"},
      {[](SeSparseConstHeader& c) { c.grains_offset = 0; }, EINVAL,
       "Grains offset out of range"},
      {[](SeSparseConstHeader& c) { c.grains_size = ~0ULL; }, EINVAL,
       "Grains offset out of range"},
  };
  for (const Case& c : cases) {
    SeSparseConstHeader h = ValidSe();
    c.mutate(h);
    SCOPED_TRACE(c.msg);
    ExpectError(LayoutFromSeSparse(h, kSeFile), c.errnum, c.msg);
  }
  SeSparseConstHeader h = ValidSe();
  h.magic = 1;
  ExpectError(CheckSeSparseConstHeader(h), EINVAL,
              "Bad const header magic: 0x0000000000000001");
}

TEST(LayoutSeSparse, VolatileHeader) {
  SeSparseVolatileHeader v;
  v.magic = kSeSparseVolatileMagic;
  EXPECT_TRUE(CheckSeSparseVolatileHeader(v));
  v.replay_journal = 1;
  ExpectError(CheckSeSparseVolatileHeader(v), ENOTSUP,
              "Image is dirty, Replaying journal not supported");
  v.replay_journal = 0;
  v.pad_is_zero = false;
  ExpectError(CheckSeSparseVolatileHeader(v), ENOTSUP,
              "Unsupported non-zero volatile header padding");
  v.magic = kSeSparseConstMagic;
  ExpectError(CheckSeSparseVolatileHeader(v), EINVAL,
              "Bad volatile header magic: 0x00000000cafebabe");

  SeSparseConstHeader c = ValidSe();
  c.volatile_header_offset = kSeFile / 512;
  ExpectError(SeSparseVolatileHeaderOffset(c, kSeFile), EINVAL,
              "Volatile header at offset 6291456 (512 bytes) is beyond the "
              "end of the file (6291456 bytes)");
  c.volatile_header_offset = ~0ULL;
  ExpectError(SeSparseVolatileHeaderOffset(c, kSeFile), EINVAL,
              "Volatile header offset out of range");
}

TEST(LocateGrain, Indices) {
  Image img = Valid1G();
  auto l = LayoutFromVmdk4(img.h, std::nullopt, img.file_size, false);
  ASSERT_TRUE(l);
  auto loc = LocateGrain(*l, 0);
  ASSERT_TRUE(loc);
  EXPECT_EQ(loc->l1_index, 0u);
  EXPECT_EQ(loc->l2_index, 0u);
  const uint64_t off = 3 * 32 * 1024 * 1024 + 5 * 65536 + 777;
  loc = LocateGrain(*l, off);
  ASSERT_TRUE(loc);
  EXPECT_EQ(loc->l1_index, 3u);
  EXPECT_EQ(loc->l2_index, 5u);
  EXPECT_EQ(loc->offset_in_cluster, 777u);
  ExpectError(LocateGrain(*l, uint64_t{1} << 30), EIO,
              "Offset 1073741824 is not covered by the grain directory");
  ExpectError(LocateGrain(SparseLayout{}, 0), EIO, "Invalid extent layout");
}

}  // namespace
}  // namespace coblk::vmdk
