// Deterministic mutation tests: valid inputs with random byte flips must
// yield a value or an error - never a crash, hang, UB or huge allocation.
// Run under ASan+UBSan as well.
#include <gtest/gtest.h>

#include <random>

#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/create.h"
#include "drivers/vmdk/descriptor.h"
#include "drivers/vmdk/format.h"
#include "drivers/vmdk/layout.h"
#include "drivers/vmdk/sesparse.h"

namespace coblk::vmdk {
namespace {

constexpr int kIterations = 10000;

template <typename Container>
void Mutate(Container& c, std::mt19937_64& rng) {
  if (c.empty()) return;
  const int flips = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < flips; ++i) {
    size_t pos = rng() % c.size();
    switch (rng() % 4) {
      case 0: c[pos] = static_cast<uint8_t>(rng()); break;
      case 1: c[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
      case 2: c[pos] = 0xff; break;
      default: c[pos] = 0; break;
    }
  }
}

// Exercises everything downstream of a decoded layout, like the driver would.
void UseLayout(const SparseLayout& l, std::mt19937_64& rng) {
  ASSERT_LE(l.l1_size, kMaxL1Size);
  ASSERT_GT(l.cluster_sectors, 0u);
  ASSERT_LE(l.cluster_sectors, kMaxClusterSectors);
  for (int i = 0; i < 4; ++i) {
    (void)LocateGrain(l, rng() % (l.sectors * 512 + 1));
    if (l.format == ExtentFormat::kSeSparse) {
      (void)DecodeSeSparseGdEntry(l, rng());
      (void)DecodeSeSparseGtEntry(l, rng());
    }
  }
}

TEST(Fuzz, Vmdk4HeaderAndFooter) {
  std::mt19937_64 rng(0x5eed1);
  auto plan = PlanSparseExtent(int64_t{1} << 30, true, true);
  Vmdk4Header at_end = plan->header;
  at_end.gd_offset = kGdAtEnd;  // streamOptimized as VMware writes it
  const Sector bases[2] = {plan->header.Encode(), at_end.Encode()};
  const std::vector<uint8_t> footer = EncodeFooter(plan->header);
  int ok = 0;
  for (int i = 0; i < kIterations; ++i) {
    Sector s = bases[i % 2];
    Mutate(s, rng);
    const uint64_t file_size = plan->file_bytes() + (rng() % 3) * 4096;
    auto h = Vmdk4Header::Decode(s);
    if (!h) continue;
    (void)Vmdk4DescriptorRange(*h, file_size);
    std::optional<Vmdk4Header> fh;
    if (NeedsFooter(*h) || i % 3 == 0) {
      auto f = footer;
      Mutate(f, rng);
      auto v = ValidateFooter(f);
      if (v) fh = *v;
    }
    auto l = LayoutFromVmdk4(*h, fh, file_size, (rng() & 1) != 0);
    if (l) {
      ++ok;
      UseLayout(*l, rng);
      ASSERT_LE(l->l1_table_offset + l->l1_table_bytes(), file_size);
    }
  }
  EXPECT_GT(ok, 0);
}

TEST(Fuzz, Vmdk3Header) {
  std::mt19937_64 rng(0x5eed2);
  Vmdk3Header h;
  h.disk_sectors = 1 << 20;
  h.granularity = 8;
  h.l1dir_offset = 1;
  h.l1dir_size = 32;
  const Sector base = h.Encode();
  for (int i = 0; i < kIterations; ++i) {
    Sector s = base;
    Mutate(s, rng);
    auto d = Vmdk3Header::Decode(s);
    if (!d) continue;
    auto l = LayoutFromVmdk3(*d, 1 << 20);
    if (l) UseLayout(*l, rng);
  }
}

TEST(Fuzz, SeSparseHeaders) {
  std::mt19937_64 rng(0x5eed3);
  SeSparseConstHeader c;
  c.magic = kSeSparseConstMagic;
  c.version = kSeSparseVersion;
  c.capacity = 204800;
  c.grain_size = 8;
  c.grain_table_size = 64;
  c.volatile_header_offset = 1;
  c.grain_dir_offset = 4096;
  c.grain_dir_size = 2048;
  c.grain_tables_offset = 6144;
  c.grain_tables_size = 2048;
  c.grains_offset = 12288;
  c.grains_size = 204800;
  const Sector base = c.Encode();
  SeSparseVolatileHeader v;
  v.magic = kSeSparseVolatileMagic;
  const Sector vbase = v.Encode();
  int ok = 0;
  for (int i = 0; i < kIterations; ++i) {
    Sector s = base;
    // Mutate mostly the fields, so that some headers still pass the checks.
    if (i % 2) Mutate(s, rng);
    else s[rng() % 208] ^= static_cast<uint8_t>(rng());
    auto d = SeSparseConstHeader::Decode(s);
    ASSERT_TRUE(d);
    (void)SeSparseVolatileHeaderOffset(*d, 12288 * 512);
    auto l = LayoutFromSeSparse(*d, 12288 * 512);
    if (l) {
      ++ok;
      UseLayout(*l, rng);
    }
    Sector vs = vbase;
    Mutate(vs, rng);
    (void)CheckSeSparseVolatileHeader(*SeSparseVolatileHeader::Decode(vs));
  }
  EXPECT_GT(ok, 0);
}

TEST(Fuzz, Descriptor) {
  std::mt19937_64 rng(0x5eed4);
  const std::string base =
      "# Disk DescriptorFile\n"
      "version=1\n"
      "encoding=\"UTF-8\"\n"
      "CID=23879da9\n"
      "parentCID=ffffffff\n"
      "createType=\"twoGbMaxExtentFlat\"\n"
      "parentFileNameHint=\"base.vmdk\"\n"
      "RW 4194304 FLAT \"t-f001.vmdk\" 0\n"
      "RDONLY 4194304 SPARSE \"t-s002.vmdk\"\n"
      "RW 4194304 VMFS \"t-v.vmdk\"\n"
      "RW 100 ZERO\n"
      "ddb.virtualHWVersion = \"4\"\n"
      "ddb.geometry.cylinders = \"652\"\n"
      "ddb.adapterType = \"lsilogic\"\n";
  int ok = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::string t = base;
    Mutate(t, rng);
    if (i % 5 == 0) t.resize(rng() % (t.size() + 1));
    auto d = ParseDescriptor(t);
    if (d) {
      ++ok;
      (void)CheckDescriptorFileCreateType(d->create_type);
      for (const auto& e : d->extents) {
        (void)ValidateExtentFilename(e.filename, true);
        (void)ResolveExtentPath("/dir/desc.vmdk", e.filename);
      }
    }
    auto s = SetCid(t, i % 2 ? CidField::kCid : CidField::kParentCid,
                    static_cast<uint32_t>(rng()));
    if (s && d) {
      auto d2 = ParseDescriptor(*s);
      ASSERT_TRUE(d2) << *s;
    }
    (void)ProbeScore(std::span(reinterpret_cast<const uint8_t*>(t.data()),
                               t.size()));
  }
  EXPECT_GT(ok, 0);
}

TEST(Fuzz, CompressedGrain) {
  std::mt19937_64 rng(0x5eed5);
  constexpr size_t kGrain = 4096;
  std::vector<uint8_t> data(kGrain);
  for (size_t i = 0; i < kGrain; ++i) data[i] = static_cast<uint8_t>(i * 7 / 13);
  auto enc = CompressGrain(data, 8);
  ASSERT_TRUE(enc);
  std::vector<uint8_t> out(kGrain);
  for (int i = 0; i < kIterations; ++i) {
    std::vector<uint8_t> raw = *enc;
    Mutate(raw, rng);
    if (i % 4 == 0) raw.resize(rng() % (raw.size() + 1));
    (void)DecompressGrain(raw, (i & 1) != 0, out, kGrain);
    (void)GrainMarker::Decode(raw);
  }
}

}  // namespace
}  // namespace coblk::vmdk
