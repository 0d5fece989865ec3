#include "drivers/vmdk/format.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "drivers/vmdk/create.h"

namespace coblk::vmdk {
namespace {

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// First 80 bytes of `qemu-img create -f vmdk a.vmdk 1G` (qemu 7.2).
const std::vector<uint8_t> kQemu1GHeader = {
    0x4b, 0x44, 0x4d, 0x56, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
    0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x96, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x0a, 0x20, 0x0d, 0x0a, 0x00, 0x00, 0x00};

TEST(Vmdk4Header, DecodesQemuHeader) {
  auto h = Vmdk4Header::Decode(kQemu1GHeader);
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_EQ(h->version, 1u);
  EXPECT_EQ(h->flags, kFlagRgd | kFlagNlDetect);
  EXPECT_EQ(h->capacity, 2097152u);
  EXPECT_EQ(h->granularity, 128u);
  EXPECT_EQ(h->desc_offset, 1u);
  EXPECT_EQ(h->desc_size, 20u);
  EXPECT_EQ(h->num_gtes_per_gt, 512u);
  EXPECT_EQ(h->rgd_offset, 21u);
  EXPECT_EQ(h->gd_offset, 150u);
  EXPECT_EQ(h->grain_offset, 384u);
  EXPECT_EQ(h->check_bytes, kCheckBytes);
  EXPECT_EQ(h->compress_algorithm, 0u);
}

TEST(Vmdk4Header, EncodeMatchesQemuCreateByteForByte) {
  auto plan = PlanSparseExtent(int64_t{1} << 30, false, false);
  ASSERT_TRUE(plan);
  Sector s = plan->header.Encode();
  std::vector<uint8_t> want(512, 0);
  std::copy(kQemu1GHeader.begin(), kQemu1GHeader.end(), want.begin());
  EXPECT_EQ(std::vector<uint8_t>(s.begin(), s.end()), want);
}

TEST(Vmdk4Header, RoundTripAllFields) {
  Vmdk4Header h;
  h.version = 3;
  h.flags = 0x30007;
  h.capacity = 0x0102030405060708ULL;
  h.granularity = 0x1112131415161718ULL;
  h.desc_offset = 0x2122232425262728ULL;
  h.desc_size = 0x3132333435363738ULL;
  h.num_gtes_per_gt = 0x41424344;
  h.rgd_offset = 0x5152535455565758ULL;
  h.gd_offset = kGdAtEnd;
  h.grain_offset = 0x6162636465666768ULL;
  h.filler = 0x77;
  h.check_bytes = {1, 2, 3, 4};
  h.compress_algorithm = 0xabcd;
  Sector s = h.Encode();
  EXPECT_EQ(s[77], 0xcd);
  EXPECT_EQ(s[78], 0xab);
  EXPECT_EQ(s[79], 0);
  auto d = Vmdk4Header::Decode(s);
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, h);
}

TEST(Vmdk4Header, DecodeErrors) {
  auto h = Vmdk4Header::Decode(std::span(kQemu1GHeader).first(78));
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().errnum(), EINVAL);
  EXPECT_EQ(h.error().message(), "VMDK4 header truncated: need 79 bytes, have 78");
  std::vector<uint8_t> bad = kQemu1GHeader;
  bad[0] = 'X';
  h = Vmdk4Header::Decode(bad);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().message(), "Image not in VMDK format");
  EXPECT_FALSE(Vmdk4Header::Decode({}));
}

TEST(Vmdk3Header, RoundTripAndErrors) {
  Vmdk3Header h;
  h.version = 1;
  h.flags = 3;
  h.disk_sectors = 0x12345678;
  h.granularity = 8;
  h.l1dir_offset = 4;
  h.l1dir_size = 9;
  h.file_sectors = 1000;
  h.cylinders = 10;
  h.heads = 16;
  h.sectors_per_track = 63;
  Sector s = h.Encode();
  EXPECT_EQ(std::string(s.begin(), s.begin() + 4), "COWD");
  EXPECT_EQ(s[12], 0x78);
  auto d = Vmdk3Header::Decode(s);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->disk_sectors, h.disk_sectors);
  EXPECT_EQ(d->granularity, 8u);
  EXPECT_EQ(d->l1dir_offset, 4u);
  EXPECT_EQ(d->l1dir_size, 9u);
  EXPECT_EQ(d->sectors_per_track, 63u);
  auto short_h = Vmdk3Header::Decode(std::span(s).first(43));
  ASSERT_FALSE(short_h);
  EXPECT_EQ(short_h.error().message(), "VMDK3 header truncated: need 44 bytes, have 43");
  s[0] = 'K';
  auto bad = Vmdk3Header::Decode(s);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "Image not in VMDK format");
}

TEST(SeSparseHeaders, RoundTripAndPadding) {
  SeSparseConstHeader c;
  c.magic = kSeSparseConstMagic;
  c.version = kSeSparseVersion;
  c.capacity = 204800;
  c.grain_size = 8;
  c.grain_table_size = 64;
  c.grains_offset = 12288;
  c.grains_size = 204800;
  c.backmap_size = 2048;
  Sector s = c.Encode();
  auto d = SeSparseConstHeader::Decode(s);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->magic, kSeSparseConstMagic);
  EXPECT_EQ(d->grains_offset, 12288u);
  EXPECT_EQ(d->grains_size, 204800u);
  EXPECT_EQ(d->backmap_size, 2048u);
  EXPECT_TRUE(d->pad_is_zero);
  s[511] = 1;
  EXPECT_FALSE(SeSparseConstHeader::Decode(s)->pad_is_zero);
  auto t = SeSparseConstHeader::Decode(std::span(s).first(511));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().message(),
            "seSparse const header truncated: need 512 bytes, have 511");

  SeSparseVolatileHeader v;
  v.magic = kSeSparseVolatileMagic;
  v.replay_journal = 1;
  v.next_txn_seq_number = 42;
  Sector vs = v.Encode();
  auto vd = SeSparseVolatileHeader::Decode(vs);
  ASSERT_TRUE(vd);
  EXPECT_EQ(vd->magic, kSeSparseVolatileMagic);
  EXPECT_EQ(vd->replay_journal, 1u);
  EXPECT_EQ(vd->next_txn_seq_number, 42u);
  EXPECT_TRUE(vd->pad_is_zero);
  vs[32] = 1;
  EXPECT_FALSE(SeSparseVolatileHeader::Decode(vs)->pad_is_zero);
  EXPECT_FALSE(SeSparseVolatileHeader::Decode(std::span(vs).first(100)));
}

TEST(GrainMarker, Decode) {
  std::vector<uint8_t> b = {0x10, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0};
  auto m = GrainMarker::Decode(b);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->lba, 0x10u);
  EXPECT_EQ(m->size, 0x20u);
  EXPECT_FALSE(m->is_metadata());
  b[8] = 0;  // size 0: metadata marker needs its type
  auto t = GrainMarker::Decode(b);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().message(), "metadata marker truncated: need 16 bytes, have 12");
  b.insert(b.end(), {2, 0, 0, 0});
  m = GrainMarker::Decode(b);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->is_metadata());
  EXPECT_EQ(m->type, static_cast<uint32_t>(MarkerType::kGrainDirectory));
  auto s = GrainMarker::Decode(std::span(b).first(11));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "grain marker truncated: need 12 bytes, have 11");
}

TEST(Probe, Magics) {
  EXPECT_EQ(ProbeScore(Bytes("KDMV")), 100);
  EXPECT_EQ(ProbeScore(Bytes("COWDxxxx")), 100);
  EXPECT_EQ(ProbeScore(Bytes("KDM")), 0);
  EXPECT_EQ(ProbeScore(Bytes("")), 0);
  EXPECT_EQ(ProbeScore(kQemu1GHeader), 100);
}

TEST(Probe, DescriptorText) {
  EXPECT_EQ(ProbeScore(Bytes("version=1\n")), 100);
  EXPECT_EQ(ProbeScore(Bytes("version=2\r\n")), 100);
  EXPECT_EQ(ProbeScore(Bytes("version=3\nCID=1\n")), 100);
  EXPECT_EQ(ProbeScore(Bytes("# Disk DescriptorFile\nversion=1\nCID=fffffffe\n")), 100);
  EXPECT_EQ(ProbeScore(Bytes("#a\n#b\r\n   \n  \r\nversion=1\n")), 100);
  EXPECT_EQ(ProbeScore(Bytes("version=4\n")), 0);
  EXPECT_EQ(ProbeScore(Bytes("version=1")), 0);      // no newline
  EXPECT_EQ(ProbeScore(Bytes("version=1\r")), 0);
  EXPECT_EQ(ProbeScore(Bytes(" version=1\n")), 0);   // spaces then text
  EXPECT_EQ(ProbeScore(Bytes("\tversion=1\n")), 0);
  EXPECT_EQ(ProbeScore(Bytes("\nversion=1\n")), 0);  // empty line is not spaces
  EXPECT_EQ(ProbeScore(Bytes("# only a comment")), 0);
  EXPECT_EQ(ProbeScore(Bytes("#\n#\n")), 0);
  EXPECT_EQ(ProbeScore(Bytes("    ")), 0);
  EXPECT_EQ(ProbeScore(Bytes("QFI\xfb")), 0);
}

}  // namespace
}  // namespace coblk::vmdk
