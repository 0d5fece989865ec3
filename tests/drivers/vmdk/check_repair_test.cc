// VMDK check and repair (issue 13): hand-made corruptions of each kind are
// found with the right count; repair (-r leaks / -r all) makes coblk's and
// qemu-img's checks clean, keeps every intact guest range as it read, and a
// second repair changes nothing.
#include <gtest/gtest.h>

#include <set>

#include "drivers/vmdk/vmdk_check.h"
#include "tests/drivers/vmdk/vmdk_write_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kGrain = 65536;

// Offsets in a VMDK4 header (sector 0, or the footer's copy).
constexpr size_t kHdrCapacity = 12, kHdrRgd = 48, kHdrGd = 56;

class CheckRepairTest : public VmdkWriteTest {
 protected:
  void SetUp() override {
    VmdkWriteTest::SetUp();
    img_ = dir_ / "a.vmdk";
  }

  Result<CheckResult> Check(uint32_t fix = 0) {
    auto n = fix ? OpenRw(img_) : OpenVmdk(img_);
    if (!n) return std::unexpected(n.error());
    auto r = sync_wait(loop(), (*n)->check(fix));
    Close(*n);
    return r;
  }
  static std::string All(const CheckResult& r) {
    std::string s;
    for (const auto& m : r.messages) s += m + "\n";
    return s;
  }
  // The file offset of the grain-table entry of `grain` (primary or redundant).
  uint64_t EntryOffset(const Bytes& f, uint64_t grain, bool redundant = false) {
    const uint64_t gd = LoadLe64(f, redundant ? kHdrRgd : kHdrGd) * 512;
    const uint64_t per = LoadLe32(f, 44);
    const uint64_t table = uint64_t{LoadLe32(f, gd + grain / per * 4)} * 512;
    return table + grain % per * 4;
  }
  void SetEntry(uint64_t grain, uint32_t v, bool primary = true, bool redundant = true) {
    Bytes f = ReadFile(img_);
    if (primary) StoreLe32(f, EntryOffset(f, grain), v);
    if (redundant) StoreLe32(f, EntryOffset(f, grain, true), v);
    ASSERT_TRUE(WriteFile(img_, f));
  }
  uint32_t Entry(uint64_t grain, bool redundant = false) {
    Bytes f = ReadFile(img_);
    return LoadLe32(f, EntryOffset(f, grain, redundant));
  }
  // monolithicSparse 64 MiB, grains 0..5 and 40 written with patterns.
  void MakeSparse(const std::string& opts = "") {
    ASSERT_TRUE(Create(img_, "size=64M" + opts));
    auto n = OpenRw(img_);
    ASSERT_TRUE(n) << n.error().ToString();
    for (int g : {0, 1, 2, 3, 4, 5, 40})
      ASSERT_TRUE(Apply(**n, {WriteOp::kData, g * kGrain, kGrain, static_cast<uint8_t>(g + 1)}, &shadow_));
    Close(*n);
  }
  // Guest content equals the shadow, except in `lost` grains (zeros).
  void ExpectData(const std::set<int64_t>& lost = {}) {
    auto n = OpenVmdk(img_);
    ASSERT_TRUE(n) << n.error().ToString();
    for (int64_t g = 0; g < 64; ++g) {
      auto got = ReadRange(**n, g * kGrain, kGrain);
      ASSERT_TRUE(got) << got.error().ToString();
      Bytes want = lost.count(g) ? Bytes(kGrain, 0) : shadow_.Get(g * kGrain, kGrain);
      EXPECT_TRUE(*got == want) << "grain " << g;
    }
    Close(*n);
  }
  // Repair, then: both checks clean, a second repair changes nothing.
  CheckResult RepairAndVerify(uint32_t fix = kCheckFixAll) {
    auto r = Check(fix);
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r) return {};
    auto again = Check();
    EXPECT_TRUE(again);
    if (again) {
      EXPECT_EQ(again->corruptions, 0) << All(*again);
      EXPECT_EQ(again->check_errors, 0) << All(*again);
    }
    if (HaveQemu()) ExpectQemuCheckClean(img_);
    const Bytes before = ReadFile(img_);
    auto second = Check(fix);
    EXPECT_TRUE(second);
    if (second) {
      EXPECT_EQ(second->corruptions_fixed, 0) << All(*second);
      EXPECT_EQ(second->leaks_fixed, 0) << All(*second);
    }
    EXPECT_TRUE(ReadFile(img_) == before) << "a second repair changed the file";
    return *r;
  }

  ScratchDir dir_;
  std::string img_;
  Shadow shadow_;
};

TEST_F(CheckRepairTest, CleanImagesHaveNoFindingsAndQemuFigures) {
  MakeSparse();
  auto r = Check();
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->corruptions, 0) << All(*r);
  EXPECT_EQ(r->leaks, 0) << All(*r);
  EXPECT_EQ(r->allocated_clusters, 7);
  EXPECT_EQ(r->total_clusters, 1024);
  EXPECT_EQ(r->fragmented_clusters, 0);  // grain 40 follows grain 5 in the file, as in qcow2's count
  EXPECT_EQ(r->compressed_clusters, 0);
  EXPECT_EQ(r->image_end_offset, static_cast<int64_t>(ReadFile(img_).size()));
  if (!HaveQemu()) return;
  // qemu-img's own images, every writable subformat.
  for (const char* sub : {"monolithicSparse", "streamOptimized", "twoGbMaxExtentSparse"}) {
    const std::string q = dir_ / (std::string(sub) + ".vmdk");
    ASSERT_EQ(Sh("qemu-img create -q -f vmdk -o subformat=" + std::string(sub) + " " + q + " 100M"), 0);
    ASSERT_EQ(Sh("qemu-io -c 'write -P 7 0 1M' -c 'write -P 8 50M 64k' " + q), 0);
    img_ = q;
    auto c = Check();
    ASSERT_TRUE(c) << c.error().ToString();
    EXPECT_EQ(c->corruptions, 0) << sub << "\n" << All(*c);
    EXPECT_EQ(c->leaks, 0) << sub << "\n" << All(*c);
  }
}

TEST_F(CheckRepairTest, LeakAtTheEndIsCountedAndCut) {
  MakeSparse();
  const uint64_t size = ReadFile(img_).size();
  Bytes f = ReadFile(img_);
  f.resize(size + 3 * kGrain + 100, 0x5a);  // 3 grains and a bit: 4 leaked grains
  ASSERT_TRUE(WriteFile(img_, f));
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 0) << All(*r);
  EXPECT_EQ(r->leaks, 4) << All(*r);
  EXPECT_EQ(r->image_end_offset, static_cast<int64_t>(size));
  EXPECT_NE(All(*r).find("at the end of the file"), std::string::npos) << All(*r);
  CheckResult fixed = RepairAndVerify(kCheckFixLeaks);
  EXPECT_EQ(fixed.leaks_fixed, 4);
  EXPECT_EQ(ReadFile(img_).size(), size);
  ExpectData();
}

TEST_F(CheckRepairTest, LeakInsideIsReportedNotCut) {
  MakeSparse();
  SetEntry(2, 0);  // grain 2's data is now referenced by nothing
  shadow_.Apply(2 * kGrain, Bytes(kGrain, 0));
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 0) << All(*r);
  EXPECT_EQ(r->leaks, 1) << All(*r);
  EXPECT_NE(All(*r).find("inside the file"), std::string::npos) << All(*r);
  const uint64_t size = ReadFile(img_).size();
  auto fixed = Check(kCheckFixLeaks);
  ASSERT_TRUE(fixed);
  EXPECT_EQ(fixed->leaks_fixed, 0);
  EXPECT_EQ(ReadFile(img_).size(), size);
  ExpectData();
}

TEST_F(CheckRepairTest, EntriesPastEofIntoMetadataAndDuplicatesAreClearedByRepairAll) {
  MakeSparse();
  Bytes f = ReadFile(img_);
  const uint32_t gd_sector = static_cast<uint32_t>(LoadLe64(f, kHdrGd));
  const uint32_t grain0 = Entry(0);
  SetEntry(1, 0x100000);    // past the end of the file
  SetEntry(2, gd_sector);   // into the grain directory
  SetEntry(3, 2);           // into the descriptor
  SetEntry(4, grain0);      // the same grain as entry 0
  SetEntry(5, 1);           // zeroed-grain entry, no zeroed-grain flag
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 5) << All(*r);
  const std::string all = All(*r);
  for (const char* what : {"points after EOF", "points into the grain directory", "points into the descriptor",
                           "another entry already uses", "no zeroed-grain flag"})
    EXPECT_NE(all.find(what), std::string::npos) << what << "\n" << all;
  // The grains those entries named before are leaked now (grains 1..5: 5).
  EXPECT_EQ(r->leaks, 5) << all;
  if (HaveQemu()) {
    std::string out;
    EXPECT_NE(ShOut("qemu-img check -f vmdk " + img_, &out), 0);  // QEMU sees the EOF one
  }
  CheckResult fixed = RepairAndVerify();
  EXPECT_EQ(fixed.corruptions_fixed, 5);
  EXPECT_NE(All(fixed).find("now read as unallocated"), std::string::npos);
  ExpectData({1, 2, 3, 4, 5});
}

TEST_F(CheckRepairTest, RedundantTableLaggingThePrimaryIsRebuilt) {
  MakeSparse();
  SetEntry(3, 0, /*primary=*/false);  // the redundant table lost grain 3
  SetEntry(4, 0, false);
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 2) << All(*r);
  EXPECT_NE(All(*r).find("the primary is plausible"), std::string::npos) << All(*r);
  CheckResult fixed = RepairAndVerify();
  EXPECT_EQ(fixed.corruptions_fixed, 2);
  EXPECT_EQ(Entry(3, true), Entry(3));
  ExpectData();
}

TEST_F(CheckRepairTest, BadPrimaryEntryIsTakenFromThePlausibleRedundant) {
  MakeSparse();
  SetEntry(2, 0x100000, /*primary=*/true, /*redundant=*/false);
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 2) << All(*r);  // the bad entry, and the difference
  EXPECT_NE(All(*r).find("the redundant is plausible"), std::string::npos) << All(*r);
  RepairAndVerify();
  ExpectData();  // grain 2 reads its data again
}

TEST_F(CheckRepairTest, GrainTableOutsideTheFileGetsANewTableFromTheRedundant) {
  MakeSparse();
  Bytes f = ReadFile(img_);
  const uint64_t gd = LoadLe64(f, kHdrGd) * 512;
  StoreLe32(f, gd, 0x7fffff00);  // primary directory entry 0: far past the end
  ASSERT_TRUE(WriteFile(img_, f));
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 1) << All(*r);
  EXPECT_NE(All(*r).find("lies past the end of the file"), std::string::npos) << All(*r);
  CheckResult fixed = RepairAndVerify();
  EXPECT_EQ(fixed.corruptions_fixed, 1);
  ExpectData();
  // And the image takes writes in that table's range.
  auto n = OpenRw(img_);
  ASSERT_TRUE(n);
  ASSERT_TRUE(Apply(**n, {WriteOp::kData, 9 * kGrain, kGrain, 0x99}, &shadow_));
  Close(*n);
  ExpectData();
}

// Found by mutating a header: a capacity raised to 1 TiB makes both 128 KiB
// directories run over each other (and the tables after them). Repair then
// wrote new tables for the garbage entries of one directory into the other,
// never converged (each run grew the file, 196 KiB -> 71 MiB, and left
// thousands of findings) and took a minute. The overlap is one corruption
// and nothing is written.
TEST_F(CheckRepairTest, OverlappingDirectoriesAreReportedNotRepaired) {
  MakeSparse();
  Bytes f = ReadFile(img_);
  StoreLe64(f, 12, uint64_t{1} << 31);  // capacity: 2^31 sectors
  ASSERT_TRUE(WriteFile(img_, f));
  auto r = Check();
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_GE(r->corruptions, 1);
  EXPECT_NE(All(*r).find("overlaps the grain directory"), std::string::npos) << All(*r);
  for (uint32_t fix : {kCheckFixAll, kCheckFixLeaks}) {
    auto fixed = Check(fix);
    ASSERT_TRUE(fixed) << fixed.error().ToString();
    EXPECT_EQ(fixed->corruptions_fixed, 0) << All(*fixed);
    EXPECT_EQ(fixed->leaks_fixed, 0) << All(*fixed);
    EXPECT_TRUE(ReadFile(img_) == f) << "repair wrote to an image whose directories overlap";
  }
}

TEST_F(CheckRepairTest, RedundantDirectoryEntryMissingIsRebuilt) {
  MakeSparse();
  Bytes f = ReadFile(img_);
  StoreLe32(f, LoadLe64(f, kHdrRgd) * 512, 0);
  ASSERT_TRUE(WriteFile(img_, f));
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 1) << All(*r);
  EXPECT_NE(All(*r).find("differs from the redundant grain directory"), std::string::npos) << All(*r);
  RepairAndVerify();
  ExpectData();
}

// streamOptimized made by coblk (GD_AT_END, footer).
class StreamCheckTest : public CheckRepairTest {
 protected:
  void MakeStream() {
    ASSERT_TRUE(Create(img_, "size=64M,subformat=streamOptimized"));
    auto n = OpenRw(img_);
    ASSERT_TRUE(n) << n.error().ToString();
    for (int g : {0, 1, 2, 7})
      ASSERT_TRUE(Apply(**n, {WriteOp::kData, g * kGrain, kGrain, static_cast<uint8_t>(g + 1)}, &shadow_));
    Close(*n);
  }
  // Entries through the footer's directory.
  uint64_t StreamEntryOffset(const Bytes& f, uint64_t grain) {
    const uint64_t footer = f.size() - 1024;
    const uint64_t gd = LoadLe64(f, footer + kHdrGd) * 512;
    const uint64_t table = uint64_t{LoadLe32(f, gd + grain / 512 * 4)} * 512;
    return table + grain % 512 * 4;
  }
};

TEST_F(StreamCheckTest, FooterDisagreeingWithHeaderIsFound) {
  MakeStream();
  Bytes f = ReadFile(img_);
  StoreLe64(f, kHdrCapacity, 12345 * 128);
  ASSERT_TRUE(WriteFile(img_, f));
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 1) << All(*r);
  EXPECT_NE(All(*r).find("footer disagrees with the header: capacity"), std::string::npos) << All(*r);
  RepairAndVerify();
  ExpectData();
}

// What coblk's stream writer leaves if it stops after writing its final
// footer but before the header says GD_AT_END again: the header names the
// directory of the session's last flush, the footer a newer one. Both are
// plausible; the footer's (later in the file) wins, and repair makes the
// header say GD_AT_END, so grains written after that flush read again.
TEST_F(StreamCheckTest, FooterNamingANewerDirectoryWins) {
  ASSERT_TRUE(Create(img_, "size=64M,subformat=streamOptimized"));
  auto n = OpenRw(img_);
  ASSERT_TRUE(n) << n.error().ToString();
  for (int g : {0, 1, 2})
    ASSERT_TRUE(Apply(**n, {WriteOp::kData, g * kGrain, kGrain, static_cast<uint8_t>(g + 1)}, &shadow_));
  ASSERT_TRUE(sync_wait(loop(), (*n)->flush()));
  const uint64_t flushed_gd = LoadLe64(ReadFile(img_), kHdrGd);  // the session's directory
  ASSERT_NE(flushed_gd, kGdAtEnd);
  for (int g : {7, 40})
    ASSERT_TRUE(Apply(**n, {WriteOp::kData, g * kGrain, kGrain, static_cast<uint8_t>(g + 1)}, &shadow_));
  Close(*n);
  Bytes f = ReadFile(img_);
  ASSERT_EQ(LoadLe64(f, kHdrGd), kGdAtEnd);
  StoreLe64(f, kHdrGd, flushed_gd);
  ASSERT_TRUE(WriteFile(img_, f));
  ExpectData({7, 40});  // the header's older directory does not have them
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 1) << All(*r);
  EXPECT_NE(All(*r).find("both are plausible, the footer's is newer"), std::string::npos) << All(*r);
  CheckResult fixed = RepairAndVerify();
  EXPECT_EQ(fixed.corruptions_fixed, 1) << All(fixed);
  EXPECT_EQ(LoadLe64(ReadFile(img_), kHdrGd), kGdAtEnd);
  ExpectData();
}

// A footer whose directory is not plausible (it names sectors of grain
// data): the header's wins and repair makes the footer name it.
TEST_F(StreamCheckTest, FooterNamingAnImplausibleDirectoryIsCorrected) {
  MakeStream();
  Bytes f = ReadFile(img_);
  const uint64_t footer = f.size() - 1024, gd = LoadLe64(f, footer + kHdrGd);
  StoreLe64(f, kHdrGd, gd);  // the header names the directory itself
  const uint64_t grain1 = LoadLe32(f, StreamEntryOffset(f, 1));
  StoreLe64(f, footer + kHdrGd, grain1);  // the footer: grain 1's compressed data
  ASSERT_TRUE(WriteFile(img_, f));
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 1) << All(*r);
  EXPECT_NE(All(*r).find("the header's is plausible, the footer's not"), std::string::npos) << All(*r);
  CheckResult fixed = RepairAndVerify();
  EXPECT_EQ(fixed.corruptions_fixed, 1) << All(fixed);
  const Bytes after = ReadFile(img_);
  EXPECT_EQ(LoadLe64(after, after.size() - 1024 + kHdrGd), gd);
  EXPECT_EQ(LoadLe64(after, kHdrGd), gd);
  ExpectData();
}

TEST_F(StreamCheckTest, MarkerWithImpossibleSizeAndLeakedGrainIsSalvaged) {
  MakeStream();
  Bytes f = ReadFile(img_);
  const uint64_t e1 = StreamEntryOffset(f, 1), e2 = StreamEntryOffset(f, 2);
  // Grain 1's marker claims 3 grains of compressed data.
  StoreLe32(f, uint64_t{LoadLe32(f, e1)} * 512 + 8, 3 * kGrain);
  // Grain 2's entry is lost: its marker is a leaked grain.
  StoreLe32(f, e2, 0);
  ASSERT_TRUE(WriteFile(img_, f));
  auto r = Check();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->corruptions, 1) << All(*r);
  EXPECT_NE(All(*r).find("impossible size"), std::string::npos) << All(*r);
  EXPECT_EQ(r->leaks, 2) << All(*r);  // grain 2's marker, grain 1's sectors
  CheckResult fixed = RepairAndVerify();
  EXPECT_EQ(fixed.corruptions_fixed, 1);
  EXPECT_GE(fixed.leaks_fixed, 1);
  EXPECT_NE(All(fixed).find("recovered the grain of guest sector 256"), std::string::npos) << All(fixed);
  ExpectData({1});  // grain 2 is back; grain 1's marker was broken
}

TEST_F(StreamCheckTest, ExitCodesAndJsonOfTheTool) {
  MakeStream();
  const std::string bin = std::string(COBLK_BIN_DIR) + "/coblk-img";
  std::string out;
  EXPECT_EQ(Sh(bin + " check " + img_), 0);
  Bytes f = ReadFile(img_);
  const uint64_t e1 = StreamEntryOffset(f, 1);
  const uint32_t grain1 = LoadLe32(f, e1);
  Bytes leaky = f;
  StoreLe32(leaky, e1, 0);  // only a leak
  ASSERT_TRUE(WriteFile(img_, leaky));
  EXPECT_EQ(Sh(bin + " check " + img_), 3);
  Bytes bad = f;
  StoreLe32(bad, StreamEntryOffset(f, 7), grain1);  // grain 7 names grain 1's marker
  ASSERT_TRUE(WriteFile(img_, bad));
  EXPECT_EQ(Sh(bin + " check --output=json " + img_, &out), 2);
  EXPECT_NE(out.find("\"corruptions\": 1"), std::string::npos) << out;
  EXPECT_NE(out.find("\"leaks\": 1"), std::string::npos) << out;
  EXPECT_NE(out.find("\"compressed-clusters\": 3"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(Sh(bin + " check -r all --output=json " + img_, &out), 0);
  EXPECT_NE(out.find("\"corruptions-fixed\": 1"), std::string::npos) << out;
  EXPECT_NE(out.find("\"leaks-fixed\": 1"), std::string::npos) << out;  // grain 7 salvaged
  EXPECT_EQ(out.find("\"corruptions\":"), std::string::npos) << out;
  ExpectData();
}

// Another process holding the image: repair refuses (the file lock).
TEST_F(CheckRepairTest, RepairRefusesAnImageAnotherProcessHolds) {
  MakeSparse();
  auto held = OpenRw(img_);
  ASSERT_TRUE(held) << held.error().ToString();
  std::string out;
  const int rc = ShOut(std::string(COBLK_BIN_DIR) + "/coblk-img check -r all " + img_, &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("lock"), std::string::npos) << out;
  Close(*held);
}

}  // namespace
}  // namespace coblk::vmdk::test
