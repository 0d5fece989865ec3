#include "drivers/vmdk/sesparse.h"

#include <gtest/gtest.h>

namespace coblk::vmdk {
namespace {

SparseLayout SeLayout() {
  SparseLayout l;
  l.format = ExtentFormat::kSeSparse;
  l.cluster_sectors = 8;
  l.l1_size = 128 * 1024;
  l.l2_size = 4096;
  l.entry_size = 8;
  l.l1_entry_sectors = 4096 * 8;
  l.sesparse_l2_tables_offset = 6144;
  l.sesparse_l2_tables_sectors = 2048;  // 32 tables of 64 sectors
  l.sesparse_clusters_offset = 12288;
  l.sesparse_clusters_sectors = 204800;  // 25600 grains
  return l;
}

template <typename T>
void ExpectError(const Result<T>& r, int errnum, const std::string& msg) {
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errnum(), errnum);
  EXPECT_EQ(r.error().message(), msg);
}

TEST(SeSparseGd, Decode) {
  const SparseLayout l = SeLayout();
  auto r = DecodeSeSparseGdEntry(l, 0);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->allocated);
  r = DecodeSeSparseGdEntry(l, EncodeSeSparseGdEntry(0));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->allocated);
  EXPECT_EQ(r->gt_offset, 6144u * 512);
  r = DecodeSeSparseGdEntry(l, 0x1000000000000001ULL);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->gt_offset, (6144u + 64) * 512);
  r = DecodeSeSparseGdEntry(l, EncodeSeSparseGdEntry(31));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->gt_offset, (6144u + 31 * 64) * 512);
  ExpectError(DecodeSeSparseGdEntry(l, EncodeSeSparseGdEntry(32)), EIO,
              "seSparse grain table index 32 out of range");
  ExpectError(DecodeSeSparseGdEntry(l, 0x1000000100000000ULL), EIO,
              "Invalid seSparse grain directory entry 0x1000000100000000");
  ExpectError(DecodeSeSparseGdEntry(l, 0x2000000000000000ULL), EIO,
              "Invalid seSparse grain directory entry 0x2000000000000000");
  ExpectError(DecodeSeSparseGdEntry(l, 5), EIO,
              "Invalid seSparse grain directory entry 0x0000000000000005");
  SparseLayout vmdk4;
  ExpectError(DecodeSeSparseGdEntry(vmdk4, 0), EINVAL, "Not a seSparse extent");
}

TEST(SeSparseGt, FourStates) {
  const SparseLayout l = SeLayout();
  auto g = DecodeSeSparseGtEntry(l, 0);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->state, GrainState::kUnallocated);
  ExpectError(DecodeSeSparseGtEntry(l, 0x0000000000000010ULL), EIO,
              "Invalid seSparse grain table entry 0x0000000000000010");
  // 0x1: unmapped (the low bits still point at the old grain) -> zeros.
  g = DecodeSeSparseGtEntry(l, 0x1000000000001234ULL);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->state, GrainState::kZero);
  g = DecodeSeSparseGtEntry(l, 0x2000000000000000ULL);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->state, GrainState::kZero);
  for (uint64_t bad : {0x4000000000000000ULL, 0x8000000000000000ULL,
                       0xf000000000000000ULL}) {
    EXPECT_FALSE(DecodeSeSparseGtEntry(l, bad));
  }
}

TEST(SeSparseGt, AllocatedIndexEncoding) {
  const SparseLayout l = SeLayout();
  // Index 0x1234 = low 12 bits 0x234 in bits 48..59, 0x1 in bits 0..47.
  const uint64_t entry = 0x3234000000000001ULL;
  EXPECT_EQ(EncodeSeSparseAllocatedGte(0x1234), entry);
  auto g = DecodeSeSparseGtEntry(l, entry);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->state, GrainState::kAllocated);
  EXPECT_EQ(g->offset, (12288u + 0x1234u * 8) * 512);
  g = DecodeSeSparseGtEntry(l, EncodeSeSparseAllocatedGte(0));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->offset, 12288u * 512);
  g = DecodeSeSparseGtEntry(l, EncodeSeSparseAllocatedGte(25599));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->offset, (12288u + 25599u * 8) * 512);
  ExpectError(DecodeSeSparseGtEntry(l, EncodeSeSparseAllocatedGte(25600)), EIO,
              "seSparse grain index 25600 out of range");
  // Largest encodable index overflows nothing, just out of range.
  ExpectError(DecodeSeSparseGtEntry(l, 0x3fffffffffffffffULL), EIO,
              "seSparse grain index 1152921504606846975 out of range");
}

}  // namespace
}  // namespace coblk::vmdk
