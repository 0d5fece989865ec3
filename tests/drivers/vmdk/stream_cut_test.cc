// A streamOptimized image cut off before its end (issue 13): coblk's
// streams say GD_AT_END in the header and keep the real directory offset in
// the footer, so a copy cut short (a partial download, a kill while the
// stream was copied) has no footer and no normal open accepts it. Opened for
// check (OpenFlags::check, QEMU's BDRV_O_CHECK) it is reported, and -r all
// rebuilds the tables, directory, footer and end-of-stream marker from the
// grain markers: both checks are clean afterwards, every grain that was
// whole before the cut reads as before, and a second repair changes
// nothing. qemu-img's streams (directory at the front) cut the same way
// lose the entries of grains past the cut.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "drivers/vmdk/vmdk_check.h"
#include "tests/drivers/vmdk/vmdk_write_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kGrain = 65536;
constexpr int64_t kDiskBytes = 8 << 20;  // 128 grains

class StreamCutTest : public VmdkWriteTest {
 protected:
  void SetUp() override {
    VmdkWriteTest::SetUp();
    full_ = dir_ / "full.vmdk";
    img_ = dir_ / "cut.vmdk";
    std::mt19937_64 rng(22);
    disk_.assign(kDiskBytes, 0);
    // Every third grain: half random (a grain marker spanning many
    // sectors), half a pattern; grain 127 last (the end of the disk).
    for (int64_t g = 0; g < kDiskBytes / kGrain; g += 3) {
      for (int64_t k = 0; k < kGrain / 2; ++k) disk_[g * kGrain + k] = static_cast<uint8_t>(rng());
      std::fill_n(disk_.begin() + g * kGrain + kGrain / 2, kGrain / 2, static_cast<uint8_t>(g + 1));
    }
  }

  // Opens for check (as coblk-img check does) and checks.
  Result<CheckResult> Check(const std::string& img, uint32_t fix) {
    auto opts = Options::Parse("driver=vmdk,file.filename=" + img);
    if (!opts) return std::unexpected(opts.error());
    BlockGraph graph(loop());
    auto n = sync_wait(loop(), graph.open(std::move(*opts), OpenFlags{.read_only = fix == 0, .check = true}));
    if (!n) return std::unexpected(n.error());
    auto r = sync_wait(loop(), (*n)->check(fix));
    sync_wait(loop(), (*n)->close());
    return r;
  }
  static std::string All(const CheckResult& r) {
    std::string s;
    for (const auto& m : r.messages) s += m + "\n";
    return s;
  }

  // A streamOptimized image of disk_, written by coblk (its header says
  // GD_AT_END) or converted by qemu-img (directory at the front).
  void MakeStream(bool qemu) {
    if (qemu) {
      const std::string raw = dir_ / "disk.raw";
      ASSERT_TRUE(WriteFile(raw, disk_));
      ASSERT_EQ(Sh("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized " + raw + " " + full_), 0);
    } else {
      ASSERT_TRUE(Create(full_, "size=" + std::to_string(kDiskBytes) + ",subformat=streamOptimized"));
      auto n = OpenRw(full_);
      ASSERT_TRUE(n) << n.error().ToString();
      for (int64_t g = 0; g < kDiskBytes / kGrain; g += 3)
        ASSERT_TRUE(sync_wait(loop(), (*n)->pwrite(g * kGrain, disk_.data() + g * kGrain, kGrain)));
      Close(*n);
    }
    const Bytes f = ReadFile(full_);
    ASSERT_EQ(LoadLe64(f, 56) == kGdAtEnd, !qemu) << "gd_offset in the header";
    // The stream's markers: where each grain ends, and the first table.
    for (uint64_t at = LoadLe64(f, 64) * 512; at + 16 <= f.size(); at += 512) {
      const uint64_t lba = LoadLe64(f, at);
      const uint32_t size = LoadLe32(f, at + 8), type = LoadLe32(f, at + 12);
      if (size > 0 && lba % 128 == 0 && lba * 512 < kDiskBytes && size < 2 * kGrain) {
        grain_end_[lba * 512 / kGrain] = at + 12 + size;
        at += (12 + size - 1) / 512 * 512;
      } else if (size == 0 && type == 1 && !table_marker_) {
        table_marker_ = at;
      }
    }
    ASSERT_EQ(grain_end_.size(), static_cast<size_t>(kDiskBytes / kGrain / 3 + 1));
  }

  // Cuts the image at `cut`, repairs it and verifies the result.
  void CutAndRepair(uint64_t cut, bool qemu) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    Bytes f = ReadFile(full_);
    ASSERT_LT(cut, f.size());
    f.resize(cut);
    ASSERT_TRUE(WriteFile(img_, f));
    if (!qemu) {
      // A normal open refuses it, saying what happened and what to do.
      auto n = OpenVmdk(img_);
      ASSERT_FALSE(n);
      EXPECT_NE(n.error().message().find("Invalid footer"), std::string::npos) << n.error().ToString();
      EXPECT_NE(n.error().message().find("check -r all"), std::string::npos) << n.error().ToString();
    }
    auto r = Check(img_, 0);
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_GE(r->corruptions + r->leaks, 1) << All(*r);
    if (!qemu) {
      EXPECT_EQ(r->corruptions, 1) << All(*r);
      EXPECT_NE(All(*r).find("no valid footer ends the file"), std::string::npos) << All(*r);
    }
    EXPECT_TRUE(ReadFile(img_) == f) << "a check without -r wrote";

    auto fixed = Check(img_, kCheckFixAll);
    ASSERT_TRUE(fixed) << fixed.error().ToString();
    EXPECT_GE(fixed->corruptions_fixed + fixed->leaks_fixed, 1) << All(*fixed);
    // Now a normal open and both checks are clean.
    auto again = Check(img_, 0);
    ASSERT_TRUE(again) << again.error().ToString();
    EXPECT_EQ(again->corruptions, 0) << All(*again);
    EXPECT_EQ(again->leaks, 0) << All(*again);
    ExpectCoblkCheckClean(img_);
    if (HaveQemu()) ExpectQemuCheckClean(img_);
    {
      auto n = OpenVmdk(img_);
      ASSERT_TRUE(n) << n.error().ToString();
      for (int64_t g = 0; g < kDiskBytes / kGrain; ++g) {
        auto got = ReadRange(**n, g * kGrain, kGrain);
        ASSERT_TRUE(got) << got.error().ToString();
        auto it = grain_end_.find(g);
        const bool whole = it != grain_end_.end() && it->second <= cut;
        Bytes want = whole ? Bytes(disk_.begin() + g * kGrain, disk_.begin() + (g + 1) * kGrain) : Bytes(kGrain, 0);
        EXPECT_TRUE(*got == want) << "grain " << g << (whole ? " (whole before the cut)" : "");
      }
      Close(*n);
    }
    const Bytes repaired = ReadFile(img_);
    auto second = Check(img_, kCheckFixAll);
    ASSERT_TRUE(second) << second.error().ToString();
    EXPECT_EQ(second->corruptions_fixed, 0) << All(*second);
    EXPECT_EQ(second->leaks_fixed, 0) << All(*second);
    EXPECT_TRUE(ReadFile(img_) == repaired) << "a second repair changed the file";
  }

  ScratchDir dir_;
  std::string full_, img_;
  Bytes disk_;
  std::map<int64_t, uint64_t> grain_end_;  // grain -> file offset where its compressed data ends
  uint64_t table_marker_ = 0;
};

TEST_F(StreamCutTest, CoblkStreamCutBeforeItsFooterIsRebuilt) {
  MakeStream(false);
  ASSERT_NE(table_marker_, 0u);
  const uint64_t g30 = grain_end_.at(30), g60 = grain_end_.at(60), last = grain_end_.at(126);
  const uint64_t size = ReadFile(full_).size();
  for (uint64_t cut : {g30 - 1000,             // inside a grain
                       (g60 + 511) / 512 * 512,  // right after a grain
                       last - 7,                 // inside the last grain
                       table_marker_ + 300,      // inside a grain table marker
                       table_marker_ + 700,      // inside the table after it
                       size - 700})              // inside the footer
    CutAndRepair(cut, false);
}

TEST_F(StreamCutTest, QemuStreamCutShortLosesOnlyTheGrainsPastTheCut) {
  if (!HaveQemu()) GTEST_SKIP() << "qemu-img not installed";
  MakeStream(true);
  const uint64_t g30 = grain_end_.at(30), g60 = grain_end_.at(60);
  for (uint64_t cut : {g30 - 1000, (g60 + 511) / 512 * 512}) CutAndRepair(cut, true);
}

}  // namespace
}  // namespace coblk::vmdk::test
