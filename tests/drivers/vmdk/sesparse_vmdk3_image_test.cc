// seSparse and VMDK3 (vmfsSparse, "COWD") images, which qemu-img cannot
// create: built here from the format description, with data grains, zero
// grains, unmapped grains and unallocated grains/tables, then read by coblk
// and checked against the intended content and against QEMU reading the
// same files through a descriptor.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/drivers/vmdk/vmdk_image_util.h"

namespace coblk::vmdk::test {
namespace {

std::vector<MapEntry> QemuMap(const std::string& img) {
  std::string text;
  if (Sh("qemu-img map -f vmdk --output=json " + img, &text) != 0) return {};
  std::vector<MapEntry> out;
  for (const auto& e : nlohmann::json::parse(text)) {
    MapEntry m;
    m.start = e["start"].get<int64_t>();
    m.length = e["length"].get<int64_t>();
    m.present = e["present"].get<bool>();
    m.zero = e["zero"].get<bool>();
    m.data = e["data"].get<bool>();
    m.has_offset = e.contains("offset");
    m.offset = m.has_offset ? e["offset"].get<int64_t>() : 0;
    out.push_back(m);
  }
  return Merge(out);
}

class BuiltImageTest : public VmdkImageTest {
 protected:
  // Writes the extent and a descriptor naming it.
  void WriteImage(const BuiltImage& img, const std::string& create_type,
                  const std::string& extent_type) {
    ASSERT_TRUE(WriteFile(extent_, img.file));
    const std::string line = "RW " + std::to_string(img.expected.size() / 512) + " " +
                             extent_type + " \"" + extent_name_ + "\"";
    ASSERT_TRUE(WriteFile(desc_, SimpleDescriptor(create_type, {line})));
  }

  void ExpectCoblkReads(const std::string& path, const Bytes& expected,
                        const std::string& extra = "") {
    auto node = OpenVmdk(path, extra);
    ASSERT_TRUE(node) << node.error().ToString();
    ASSERT_EQ((*node)->size(), static_cast<int64_t>(expected.size()));
    auto got = ReadRange(**node, 0, (*node)->size());
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_TRUE(*got == expected);
    // Unaligned reads across grain boundaries.
    for (int64_t off : {int64_t{1}, int64_t{4095}, int64_t{8191}, int64_t{12345}}) {
      auto part = ReadRange(**node, off, 20000);
      ASSERT_TRUE(part) << part.error().ToString();
      EXPECT_TRUE(std::equal(part->begin(), part->end(), expected.begin() + off)) << off;
    }
  }

  void ExpectQemuReads(const Bytes& expected) {
    const std::string raw = dir_ / "qemu.raw";
    ASSERT_EQ(Sh("qemu-img convert -f vmdk -O raw " + desc_ + " " + raw), 0);
    EXPECT_TRUE(ReadFile(raw) == expected);
  }

  void ExpectMapMatchesQemu() {
    auto node = OpenVmdk(desc_);
    ASSERT_TRUE(node) << node.error().ToString();
    auto map = Map(**node);
    ASSERT_TRUE(map) << map.error().ToString();
    EXPECT_EQ(*map, QemuMap(desc_));
  }

  ScratchDir dir_;
  std::string extent_name_ = "disk-delta.vmdk";
  std::string extent_ = dir_ / extent_name_;
  std::string desc_ = dir_ / "disk.vmdk";
};

// 40 MiB: GT 0 and GT 1 allocated, GT 2 not.
std::vector<GrainSpec> SeSparseGrains() {
  return {
      {0, GrainKind::kData, 3},
      {1, GrainKind::kZero, 1},     // zero grain (0x2)
      {2, GrainKind::kZero, 0},     // unmapped (0x1): zeros too
      // grain 3 unallocated
      {5, GrainKind::kData, 4},
      {6, GrainKind::kData, 9},
      {4095, GrainKind::kData, 0xee},  // grain number 4097: split index bits
      {4096 + 100, GrainKind::kData, 5},
  };
}

TEST_F(BuiltImageTest, SeSparseThroughDescriptor) {
  BuiltImage img = BuildSeSparse(40 * 2048, SeSparseGrains());
  WriteImage(img, "seSparse", "SESPARSE");
  ExpectCoblkReads(desc_, img.expected);
  // The intended content really is non-trivial.
  EXPECT_NE(img.expected[0], 0);
  EXPECT_NE(img.expected[4095 * 4096ull + 7], 0);
  if (!HaveQemu()) GTEST_SKIP() << "qemu-img not installed: no cross-check";
  ExpectQemuReads(img.expected);
  // Spot checks with qemu-io's pattern verification.
  std::string out;
  Sh("qemu-io -r -f vmdk -c 'read -P 0 4096 12288' -c 'read -P 0 " +
         std::to_string(20 * 1024 * 1024) + " 65536' " + desc_,
     &out);
  EXPECT_EQ(out.find("Pattern verification failed"), std::string::npos) << out;
  EXPECT_NE(out.find("read 12288/12288"), std::string::npos) << out;
  ExpectMapMatchesQemu();
}

TEST_F(BuiltImageTest, SeSparseBareFileIsReadByCoblkOnly) {
  BuiltImage img = BuildSeSparse(40 * 2048, SeSparseGrains());
  WriteImage(img, "seSparse", "SESPARSE");
  ExpectCoblkReads(extent_, img.expected);
  if (HaveQemu()) {
    EXPECT_NE(Sh("qemu-img convert -f vmdk -O raw " + extent_ + " " + (dir_ / "x.raw")), 0);
  }
}

TEST_F(BuiltImageTest, SeSparseReadWriteOpenIsRefused) {
  BuiltImage img = BuildSeSparse(40 * 2048, SeSparseGrains());
  WriteImage(img, "seSparse", "SESPARSE");
  auto node = OpenVmdk(desc_, "", /*read_only=*/false);
  ASSERT_FALSE(node);
  EXPECT_NE(node.error().message().find("No write support for seSparse"), std::string::npos)
      << node.error().ToString();
}

// A seSparse file named by a SPARSE or VMFSSPARSE line is refused, as by
// QEMU (which opens those lines as VMDK3 or VMDK4 only).
TEST_F(BuiltImageTest, SeSparseFileUnderSparseLineIsRefused) {
  BuiltImage img = BuildSeSparse(40 * 2048, SeSparseGrains());
  for (const char* type : {"SPARSE", "VMFSSPARSE"}) {
    WriteImage(img, "vmfsSparse", type);
    auto node = OpenVmdk(desc_);
    ASSERT_FALSE(node) << type;
    EXPECT_EQ(node.error().message(), "Image not in VMDK format") << type;
    if (HaveQemu()) {
      EXPECT_NE(Sh("qemu-img info " + desc_ + " >/dev/null 2>&1"), 0) << type;
    }
  }
}

// Any other file under a SESPARSE line: QEMU's message, with the magic.
TEST_F(BuiltImageTest, OtherFileUnderSeSparseLineIsRefused) {
  BuiltImage img = BuildVmdk3(48 * 2048, {{0, GrainKind::kData, 1}});
  WriteImage(img, "seSparse", "SESPARSE");
  auto node = OpenVmdk(desc_);
  ASSERT_FALSE(node);
  EXPECT_EQ(node.error().message(), "Bad const header magic: 0x0000000144574f43");
  if (HaveQemu()) {
    std::string out;
    EXPECT_NE(Sh("{ qemu-img info " + desc_ + " 2>&1 ; }", &out), 0);
    EXPECT_NE(out.find("Bad const header magic: 0x0000000144574f43"), std::string::npos) << out;
  }
}

TEST_F(BuiltImageTest, SeSparseWithUnallocatedGrainReadsBacking) {
  // An seSparse delta over a base: unallocated grains come from the base,
  // zero and unmapped grains do not.
  BuiltImage img = BuildSeSparse(40 * 2048, SeSparseGrains());
  ASSERT_TRUE(WriteFile(extent_, img.file));
  Bytes base(img.expected.size());
  for (size_t i = 0; i < base.size(); ++i) base[i] = static_cast<uint8_t>(0x80 | (i >> 12));
  const std::string base_flat = dir_ / "base-flat.vmdk";
  ASSERT_TRUE(WriteFile(base_flat, base));
  const std::string line = "RW " + std::to_string(base.size() / 512) + " FLAT \"base-flat.vmdk\" 0";
  ASSERT_TRUE(WriteFile(dir_ / "base.vmdk", SimpleDescriptor("monolithicFlat", {line}, 0x0badcafe)));
  std::string desc = SimpleDescriptor(
      "seSparse", {"RW " + std::to_string(base.size() / 512) + " SESPARSE \"" + extent_name_ + "\""},
      0x11111111, 0x0badcafe);
  desc.insert(desc.find("\n# Extent"), "parentFileNameHint=\"base.vmdk\"\n");
  ASSERT_TRUE(WriteFile(desc_, desc));
  Bytes expected = img.expected;
  const std::vector<uint64_t> from_base_grains = {3, 4, 7, 200, 4096, 8192, 9000};
  for (uint64_t g : from_base_grains)
    std::copy(base.begin() + g * 4096, base.begin() + (g + 1) * 4096, expected.begin() + g * 4096);
  auto node = OpenVmdk(desc_);
  ASSERT_TRUE(node) << node.error().ToString();
  for (uint64_t g : {0, 1, 2, 3, 4, 5, 7, 200, 4095, 4096, 4196, 8192, 9000}) {
    auto got = Read(**node, static_cast<int64_t>(g * 4096), 4096);
    ASSERT_TRUE(got) << g << ": " << got.error().ToString();
    EXPECT_TRUE(std::equal(got->begin(), got->end(), expected.begin() + g * 4096)) << "grain " << g;
  }
  if (!HaveQemu()) return;
  const std::string raw = dir_ / "qemu.raw";
  ASSERT_EQ(Sh("qemu-img convert -f vmdk -O raw " + desc_ + " " + raw), 0);
  Bytes q = ReadFile(raw);
  for (uint64_t g : {0, 1, 2, 3, 4, 5, 7, 200, 4095, 4096, 4196, 8192, 9000})
    EXPECT_TRUE(std::equal(q.begin() + g * 4096, q.begin() + (g + 1) * 4096,
                           expected.begin() + g * 4096))
        << "qemu grain " << g;
}

// 48 MiB with 8 KiB grains: GT 0 and GT 1 allocated (each covers 32 MiB).
std::vector<GrainSpec> Vmdk3Grains() {
  return {{0, GrainKind::kData, 21},   {1, GrainKind::kData, 22}, {7, GrainKind::kData, 23},
          {4095, GrainKind::kData, 24}, {4099, GrainKind::kData, 25}};
}

TEST_F(BuiltImageTest, Vmdk3ThroughDescriptor) {
  BuiltImage img = BuildVmdk3(48 * 2048, Vmdk3Grains());
  WriteImage(img, "vmfsSparse", "VMFSSPARSE");
  ExpectCoblkReads(desc_, img.expected);
  if (!HaveQemu()) GTEST_SKIP() << "qemu-img not installed: no cross-check";
  ExpectQemuReads(img.expected);
  ExpectMapMatchesQemu();
}

TEST_F(BuiltImageTest, Vmdk3WithPartialLastGrain) {
  // Capacity not a multiple of the grain.
  BuiltImage img = BuildVmdk3(2048 * 3 + 5, {{0, GrainKind::kData, 1}, {384, GrainKind::kData, 2}});
  WriteImage(img, "vmfsSparse", "VMFSSPARSE");
  ExpectCoblkReads(desc_, img.expected);
  if (HaveQemu()) ExpectQemuReads(img.expected);
}

TEST_F(BuiltImageTest, Vmdk3BareFileIsReadByCoblkOnly) {
  BuiltImage img = BuildVmdk3(48 * 2048, Vmdk3Grains());
  WriteImage(img, "vmfsSparse", "VMFSSPARSE");
  // QEMU needs the descriptor (its CID lookup fails); coblk is lenient.
  ExpectCoblkReads(extent_, img.expected);
  auto node = OpenVmdk(extent_);
  ASSERT_TRUE(node);
  EXPECT_EQ(InfoValue(**node, "create-type"), "vmfsSparse");
  if (HaveQemu()) {
    EXPECT_NE(Sh("qemu-img convert -f vmdk -O raw " + extent_ + " " + (dir_ / "x.raw")), 0);
  }
}

// QEMU 7.2 writes VMDK3 extents (grains appended, table entries updated);
// coblk did not (ENOTSUP). Same commands through coblk-io and qemu-io on
// copies: same guest content and file size, both checks clean, and the
// header's freeSector (which QEMU leaves stale) at the end of the file.
TEST_F(BuiltImageTest, Vmdk3IsWrittenAsQemuWritesIt) {
  BuiltImage img = BuildVmdk3(48 * 2048, Vmdk3Grains());
  WriteImage(img, "vmfsSparse", "VMFSSPARSE");
  const std::string bin = std::string(COBLK_BIN_DIR);
  const std::string cmds =
      " -c 'write -P 0x41 0 512' -c 'write -P 0x42 8000 9000' -c 'write -P 0x43 5M 8k'"
      " -c 'write -z 6M 16k' -c 'write -P 0x44 33550000 10000' -c 'aio_write -P 0x45 40M 64k'"
      " -c aio_flush -c 'write -P 0x46 50327040 1024' ";
  std::string out;
  ASSERT_EQ(Sh(bin + "/coblk-io" + cmds + desc_ + " 2>&1", &out), 0) << out;
  Bytes expected = img.expected;
  auto fill = [&expected](uint64_t at, uint64_t n, uint8_t v) {
    std::fill_n(expected.begin() + static_cast<std::ptrdiff_t>(at), n, v);
  };
  fill(0, 512, 0x41);
  fill(8000, 9000, 0x42);
  fill(5 << 20, 8192, 0x43);
  fill(6 << 20, 16384, 0);
  fill(33550000, 10000, 0x44);
  fill(40 << 20, 65536, 0x45);
  fill(50327040, 1024, 0x46);
  ExpectCoblkReads(desc_, expected);
  const Bytes file = ReadFile(extent_);
  ASSERT_EQ(file.size() % 512, 0u);
  EXPECT_EQ(LoadLe32(file, 28), file.size() / 512) << "freeSector";
  EXPECT_EQ(Sh(bin + "/coblk-img check " + desc_ + " 2>&1", &out), 0) << out;
  if (!HaveQemu()) GTEST_SKIP() << "qemu-img not installed: no cross-check";
  ExpectQemuReads(expected);
  EXPECT_EQ(Sh("qemu-img check " + desc_ + " 2>&1", &out), 0) << out;
  // qemu-io on a copy of the original: same file size (same grains appended).
  const std::string qext = dir_ / "q-delta.vmdk", qdesc = dir_ / "q.vmdk";
  ASSERT_TRUE(WriteFile(qext, img.file));
  ASSERT_TRUE(WriteFile(qdesc, SimpleDescriptor("vmfsSparse",
                                                {"RW 98304 VMFSSPARSE \"q-delta.vmdk\""})));
  ASSERT_EQ(Sh("qemu-io" + cmds + qdesc + " 2>&1", &out), 0) << out;
  EXPECT_EQ(Sh("qemu-img compare " + qdesc + " " + desc_ + " 2>&1", &out), 0) << out;
  EXPECT_EQ(ReadFile(qext).size(), file.size());
}

// A grain whose directory entry is 0 has no table to take it: the write
// fails and the file is unchanged (QEMU 7.2 writes the data over the header).
TEST_F(BuiltImageTest, Vmdk3WriteWithoutGrainTableIsRefused) {
  BuiltImage img = BuildVmdk3(48 * 2048, {{0, GrainKind::kData, 1}});
  WriteImage(img, "vmfsSparse", "VMFSSPARSE");
  auto node = OpenVmdk(desc_, "", /*read_only=*/false);
  ASSERT_TRUE(node) << node.error().ToString();
  Bytes data(4096, 0x5a);
  Status st = sync_wait(loop(), (*node)->pwrite(40 << 20, data.data(), 4096));
  EXPECT_FALSE(st);
  ASSERT_TRUE(sync_wait(loop(), (*node)->close()));
  EXPECT_TRUE(ReadFile(extent_) == img.file);
}

// coblk-img check reads VMDK3 and seSparse (QEMU's lookup walk); repair
// is refused for both, before anything is written, with qemu-img's exit
// code for "unsupported" (63) and a message that says what is refused.
TEST_F(BuiltImageTest, Vmdk3AndSeSparseAreCheckedButNotRepaired) {
  const std::string bin = std::string(COBLK_BIN_DIR) + "/coblk-img";
  for (bool se : {false, true}) {
    SCOPED_TRACE(se ? "seSparse" : "VMDK3");
    BuiltImage img = se ? BuildSeSparse(40 * 2048, SeSparseGrains()) : BuildVmdk3(48 * 2048, Vmdk3Grains());
    WriteImage(img, se ? "seSparse" : "vmfsSparse", se ? "SESPARSE" : "VMFSSPARSE");
    std::string out;
    EXPECT_EQ(Sh("{ " + bin + " check " + desc_ + " 2>&1 ; }", &out), 0) << out;
    EXPECT_NE(out.find("No errors were found on the image."), std::string::npos) << out;
    for (const char* mode : {"leaks", "all"}) {
      out.clear();
      EXPECT_EQ(Sh("{ " + bin + " check -r " + mode + " " + desc_ + " 2>&1 ; }", &out), 63) << out;
      EXPECT_EQ(out, "coblk-img: Repair of VMDK3 (COWD) and seSparse extents is not supported; "
                     "'check' without -r reports their problems\n");
    }
    EXPECT_TRUE(ReadFile(extent_) == img.file) << "a refused repair wrote";
  }
}

}  // namespace
}  // namespace coblk::vmdk::test
