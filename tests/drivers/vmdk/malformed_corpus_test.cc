// Malformed-image corpus: deterministic broken images, each made from a
// valid in-test image by patching bytes, each hitting one open-time (or
// read-time) check. Every case must give a clear error - never a crash,
// hang, huge allocation or garbage data.
#include <gtest/gtest.h>
#include <unistd.h>

#include "tests/drivers/vmdk/vmdk_image_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr uint64_t kSize = 1 << 20;  // 16 grains of 64 KiB

// VMDK4 header field offsets (packed struct, magic first).
enum : size_t {
  kVersion = 4, kFlags = 8, kCapacity = 12, kGranularity = 20, kNumGtes = 44,
  kRgdOffset = 48, kGdOffset = 56, kGrainOffset = 64,
};

BuiltImage Sparse(bool compress = false, bool footer = false) {
  std::vector<GrainSpec> grains = {{0, GrainKind::kData, 1}, {3, GrainKind::kData, 2}};
  if (!compress) grains.push_back({1, GrainKind::kZero});
  return BuildVmdk4(kSize, compress, !compress, grains, footer);
}

class MalformedTest : public VmdkImageTest {
 protected:
  // Opens `path` and expects an error whose message contains `what`.
  void ExpectOpenError(const std::string& path, const std::string& what,
                       const std::string& extra = "", bool read_only = true) {
    auto node = OpenVmdk(path, extra, read_only);
    ASSERT_FALSE(node) << "opened, expected: " << what;
    EXPECT_NE(node.error().message().find(what), std::string::npos)
        << "want '" << what << "', got: " << node.error().ToString();
  }
  void ExpectImageError(const Bytes& file, const std::string& what, bool read_only = true) {
    ASSERT_TRUE(WriteFile(img_, file));
    ExpectOpenError(img_, what, "", read_only);
  }
  void ExpectDescriptorError(const std::string& text, const std::string& what,
                             const std::string& extra = "") {
    ASSERT_TRUE(WriteFile(desc_, text));
    ExpectOpenError(desc_, what, extra);
  }
  // A descriptor with one extent line (and a 1 MiB flat file "flat.img").
  std::string WithExtent(const std::string& line, const std::string& type = "monolithicFlat") {
    Bytes flat(kSize, 0x5a);
    EXPECT_TRUE(WriteFile(dir_ / "flat.img", flat));
    return SimpleDescriptor(type, {line});
  }

  ScratchDir dir_;
  std::string img_ = dir_ / "img.vmdk";
  std::string desc_ = dir_ / "desc.vmdk";
};

TEST_F(MalformedTest, BaseImagesAreValid) {
  for (bool compress : {false, true}) {
    for (bool footer : {false, true}) {
      if (footer && !compress) continue;
      BuiltImage img = Sparse(compress, footer);
      ASSERT_TRUE(WriteFile(img_, img.file));
      auto node = OpenVmdk(img_);
      ASSERT_TRUE(node) << node.error().ToString();
      auto got = ReadRange(**node, 0, kSize);
      ASSERT_TRUE(got) << got.error().ToString();
      EXPECT_TRUE(*got == img.expected);
      auto check = sync_wait(loop(), (*node)->check(false));
      ASSERT_TRUE(check);
      EXPECT_EQ(check->corruptions, 0);
    }
  }
}

TEST_F(MalformedTest, Vmdk4HeaderChecks) {
  struct Case {
    size_t field, width;
    uint64_t value;
    const char* message;
  } cases[] = {
      {kVersion, 4, 4, "Unsupported VMDK version 4"},
      {kVersion, 4, 0xffffffff, "Unsupported VMDK version 4294967295"},
      {kNumGtes, 4, 1024, "L2 table size too big"},
      {kNumGtes, 4, 0, "L1 entry size is invalid"},
      {kGranularity, 8, 0, "L1 entry size is invalid"},
      {kGranularity, 8, 3, "Invalid granularity"},
      {kGranularity, 8, 0x400000, "Invalid granularity"},
      {kGranularity, 8, uint64_t{1} << 63, "Invalid granularity"},
      {kCapacity, 8, uint64_t{1} << 62, "Extent capacity too big"},
      {kGdOffset, 8, 0x7fffffff, "beyond the end of the file"},
      {kGdOffset, 8, 0, "overlaps the header"},
      {kGdOffset, 8, uint64_t{1} << 60, "out of range"},
      {kRgdOffset, 8, 0x7fffffff, "Redundant grain directory"},
      {kGrainOffset, 8, 1 << 20, "File truncated, expecting at least"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    BuiltImage img = Sparse();
    StoreLe(img.file, c.field, c.width, c.value);
    ExpectImageError(img.file, c.message);
  }
  // L1 size: 1-sector grains, 1 GTE per GT, 64 Mi sectors -> 64 Mi GD entries.
  BuiltImage img = Sparse();
  StoreLe64(img.file, kGranularity, 1);
  StoreLe32(img.file, kNumGtes, 1);
  StoreLe64(img.file, kCapacity, uint64_t{64} << 20);
  ExpectImageError(img.file, "L1 size too big");
}

TEST_F(MalformedTest, TruncatedFiles) {
  BuiltImage img = Sparse();
  for (size_t keep : {size_t{0}, size_t{3}, size_t{100}, size_t{512}, size_t{2048}, size_t{70000}}) {
    SCOPED_TRACE(keep);
    Bytes cut(img.file.begin(), img.file.begin() + static_cast<std::ptrdiff_t>(keep));
    ASSERT_TRUE(WriteFile(img_, cut));
    auto node = OpenVmdk(img_);
    if (keep == 0) {
      ASSERT_FALSE(node);
      EXPECT_NE(node.error().message().find("too small"), std::string::npos) << node.error().ToString();
    } else if (keep < 4) {
      // The node is a whole sector (QEMU rounds a file's length up to 512
      // bytes and reads the tail as zeros), so the magic is not VMDK's and
      // the file is taken as a descriptor, as qemu-img does.
      ASSERT_FALSE(node);
      EXPECT_NE(node.error().message().find("invalid VMDK image descriptor"), std::string::npos)
          << node.error().ToString();
    } else if (keep < 70000) {
      ASSERT_FALSE(node) << "opened a " << keep << "-byte file";
    }
    // 70000 bytes: metadata present, grains cut off - grain data past EOF
    // reads as zeros (QEMU does the same).
  }
}

TEST_F(MalformedTest, VersionThreeMustBeReadOnly) {
  BuiltImage img = Sparse();
  StoreLe32(img.file, kVersion, 3);
  ExpectImageError(img.file, "VMDK version 3 must be read only", /*read_only=*/false);
  ASSERT_TRUE(WriteFile(img_, img.file));
  auto node = OpenVmdk(img_);
  ASSERT_TRUE(node) << node.error().ToString();
  auto got = ReadRange(**node, 0, kSize);
  ASSERT_TRUE(got);
  EXPECT_TRUE(*got == img.expected);
}

TEST_F(MalformedTest, InvalidFooter) {
  BuiltImage good = Sparse(true, true);
  const size_t footer = good.file.size() - kFooterBytes;
  struct Patch {
    size_t at;
    uint8_t value;
  } patches[] = {
      {footer + 12, 7},          // footer marker type
      {footer + 8, 1},           // footer marker size
      {footer + 512, 'X'},       // header magic in the footer
      {footer + 1024 + 12, 3},   // EOS marker type
  };
  for (const Patch& p : patches) {
    SCOPED_TRACE(p.at - footer);
    Bytes f = good.file;
    f[p.at] = p.value;
    ExpectImageError(f, "Invalid footer");
  }
  // The footer header itself says GD_AT_END.
  Bytes f = good.file;
  StoreLe64(f, footer + 512 + kGdOffset, kGdAtEnd);
  ExpectImageError(f, "Invalid footer");
  // Too short to hold a footer.
  Bytes tiny(good.file.begin(), good.file.begin() + 1024);
  ExpectImageError(tiny, "Invalid footer");
}

TEST_F(MalformedTest, GrainDirectoryAndTableEntries) {
  BuiltImage good = Sparse();
  Vmdk4Header h = Vmdk4Header::Decode(good.file).value();
  const uint64_t gd = h.gd_offset * 512, rgd = h.rgd_offset * 512;
  const uint64_t gt = LoadLe32(good.file, gd) * 512ull;
  struct Case {
    uint64_t at;
    uint32_t value;
    const char* message;  // from the read of grain 0
  } cases[] = {
      {gd, 0x7ffffff0, "outside the image file"},  // GT past EOF
      {gd, 0xffffffff, "outside the image file"},
      {gd, static_cast<uint32_t>(good.file.size() / 512 - 1), "outside the image file"},  // GT straddles EOF
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value);
    Bytes f = good.file;
    StoreLe32(f, c.at, c.value);
    ASSERT_TRUE(WriteFile(img_, f));
    auto node = OpenVmdk(img_);
    ASSERT_TRUE(node) << node.error().ToString();
    auto r = Read(**node, 0, 4096);
    ASSERT_FALSE(r) << "read garbage instead of an error";
    EXPECT_EQ(r.error().errnum(), EIO);
    EXPECT_NE(r.error().message().find(c.message), std::string::npos) << r.error().ToString();
    auto st = GetStatus(**node, 0, 65536);
    EXPECT_FALSE(st);
    auto check = sync_wait(loop(), (*node)->check(false));
    ASSERT_TRUE(check);
    EXPECT_GT(check->corruptions, 0);
  }
  // A GD entry pointing into metadata (the descriptor): its text is taken
  // as grain table entries, which point far past EOF - zeros, no crash,
  // and check reports every such grain.
  {
    Bytes f = good.file;
    StoreLe32(f, gd, static_cast<uint32_t>(h.desc_offset));
    ASSERT_TRUE(WriteFile(img_, f));
    auto node = OpenVmdk(img_);
    ASSERT_TRUE(node);
    auto r = ReadRange(**node, 0, kSize);
    ASSERT_TRUE(r) << r.error().ToString();
    auto check = sync_wait(loop(), (*node)->check(false));
    ASSERT_TRUE(check);
    EXPECT_GT(check->corruptions, 0);
  }
  // A GTE past the end of the file: zeros (as QEMU), and check reports it.
  {
    Bytes f = good.file;
    StoreLe32(f, gt, 0x7fffff00);
    ASSERT_TRUE(WriteFile(img_, f));
    auto node = OpenVmdk(img_);
    ASSERT_TRUE(node);
    auto r = Read(**node, 0, 4096);
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(*r, Bytes(4096, 0));
    auto check = sync_wait(loop(), (*node)->check(false));
    ASSERT_TRUE(check);
    EXPECT_GT(check->corruptions, 0);
    ASSERT_FALSE(check->messages.empty());
    EXPECT_NE(check->messages[0].find("after EOF"), std::string::npos) << check->messages[0];
  }
  // Redundant GD disagreeing with the primary: reported by check and info.
  {
    Bytes f = good.file;
    StoreLe32(f, rgd, 0);
    ASSERT_TRUE(WriteFile(img_, f));
    auto node = OpenVmdk(img_);
    ASSERT_TRUE(node);
    auto check = sync_wait(loop(), (*node)->check(false));
    ASSERT_TRUE(check);
    EXPECT_EQ(check->corruptions, 1);
    bool found = false;
    for (const auto& m : check->messages) found |= m.find("redundant grain directory") != std::string::npos;
    EXPECT_TRUE(found);
    const InfoTree info = (*node)->get_specific_info();
    ASSERT_FALSE(info.children.empty());
    const InfoTree& ext = info.children[0].second.children.at(0).second;
    found = false;
    for (const auto& [k, v] : ext.values) found |= k == "redundant-gd-mismatch";
    EXPECT_TRUE(found);
    // The primary stays authoritative.
    auto r = ReadRange(**node, 0, kSize);
    ASSERT_TRUE(r);
    EXPECT_TRUE(*r == good.expected);
  }
}

TEST_F(MalformedTest, CompressedGrains) {
  BuiltImage good = Sparse(true);
  Vmdk4Header h = Vmdk4Header::Decode(good.file).value();
  const uint64_t gt = LoadLe32(good.file, h.gd_offset * 512) * 512ull;
  const uint64_t grain0 = LoadLe32(good.file, gt) * 512ull;
  const uint32_t csize = LoadLe32(good.file, grain0 + 8);
  struct Case {
    uint64_t at;
    size_t width;
    uint64_t value;
    const char* message;
  } cases[] = {
      {grain0 + 8, 4, 0, "size 0"},
      {grain0 + 8, 4, 0x7fffffff, "exceeds"},
      {grain0 + 12, 2, 0xffff, "Invalid compressed grain data"},        // zlib header
      {grain0 + 12 + csize / 2, 4, 0xdeadbeef, "grain"},                  // stream body
      {grain0 + 8, 4, 4, "Invalid compressed grain data"},               // truncated stream
      {gt, 4, 0x7ffffff0, "past end of file"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    Bytes f = good.file;
    StoreLe(f, c.at, c.width, c.value);
    ASSERT_TRUE(WriteFile(img_, f));
    auto node = OpenVmdk(img_);
    ASSERT_TRUE(node) << node.error().ToString();
    auto r = Read(**node, 0, 65536);
    ASSERT_FALSE(r) << "garbage instead of an error";
    EXPECT_NE(r.error().message().find(c.message), std::string::npos) << r.error().ToString();
    // Other grains are unaffected.
    auto other = Read(**node, 3 * 65536, 65536);
    ASSERT_TRUE(other) << other.error().ToString();
  }
  // A stream that inflates to more than a grain.
  {
    Bytes big(2 * 65536, 0x33);
    Bytes blob2 = CompressGrain(big, 0).value();
    Bytes f = good.file;
    const uint64_t at = f.size();
    Put(f, at, blob2);
    StoreLe32(f, gt, static_cast<uint32_t>(at / 512));
    ASSERT_TRUE(WriteFile(img_, f));
    auto node = OpenVmdk(img_);
    ASSERT_TRUE(node);
    auto r = Read(**node, 0, 65536);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("beyond the grain size"), std::string::npos)
        << r.error().ToString();
  }
}

TEST_F(MalformedTest, DescriptorShapes) {
  struct Case {
    const char* line;
    const char* message;
  } lines[] = {
      {"RW abc FLAT \"flat.img\" 0", "Invalid extent line"},
      {"RW -5 FLAT \"flat.img\" 0", "Invalid extent line"},
      {"RW 99999999999999999999 FLAT \"flat.img\" 0", "Invalid extent line"},
      {"RW 2048 FLAT \"flat.img\"", "Invalid extent line"},                 // FLAT needs offset
      {"RW 2048 FLAT \"flat.img\" -1", "Invalid extent line"},
      {"RW 2048 FLAT \"flat.img\" 0 junk", "Invalid extent line"},
      {"RW 2048 FLAT \"flat.img", "Invalid extent line"},                   // missing quote
      {"RW 2048 FLAT flat.img 0", "Invalid extent line"},                   // unquoted
      {"RW 2048 FLAT \"\" 0", "Invalid extent line"},
      {"RW 2048 SPARSE \"flat.img\" 7", "Invalid extent line"},
      {"RW 2048 VMFS \"flat.img\" 0", "Invalid extent line"},
      {"RW 2048", "Invalid extent line"},
      {"RW 2048 ZERO \"\"", "Invalid extent line"},
      {"RW 2048 VMFSRDM \"flat.img\"", "Unsupported extent type 'VMFSRDM'"},
      {"RW 2048 VMFSRAW \"flat.img\"", "Unsupported extent type 'VMFSRAW'"},
      {"RW 2048 FOO \"flat.img\" 0", "Unsupported extent type 'FOO'"},
      // CVE-2024-4467: extent names must be plain files.
      {"RW 2048 FLAT \"json:{}\" 0", "json:"},
      {"RW 2048 FLAT \"nbd:localhost:10809\" 0", "protocol"},
      {"RW 2048 FLAT \"file:flat.img\" 0", "protocol"},
      {"RW 2048 FLAT \"missing.img\" 0", "missing.img"},
  };
  for (const Case& c : lines) {
    SCOPED_TRACE(c.line);
    ExpectDescriptorError(WithExtent(c.line), c.message);
  }
  // Disk sizes beyond QEMU's BDRV_MAX_LENGTH (2^63 - 1 GiB).
  ExpectDescriptorError(WithExtent("RW 18014398509481983 FLAT \"flat.img\" 0"), "Image size too big");
  // sectors + offset beyond INT64_MAX / 512: the line itself is invalid.
  ExpectDescriptorError(WithExtent("RW 18014398509481983 FLAT \"flat.img\" 1"),
                        "Invalid extent line");
  const std::string ok_line = "RW 2048 FLAT \"flat.img\" 0";
  // Sanity: the unpatched descriptor opens.
  ASSERT_TRUE(WriteFile(desc_, WithExtent(ok_line)));
  ASSERT_TRUE(OpenVmdk(desc_)) << "valid descriptor";

  std::string d = WithExtent(ok_line);
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string t = d;
    size_t at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) t.replace(at, from.size(), to);
    return t;
  };
  ExpectDescriptorError(replace("monolithicFlat", "monolithicFoo"), "Unsupported image type 'monolithicFoo'");
  ExpectDescriptorError(replace("createType=\"monolithicFlat\"\n", ""), "invalid VMDK image descriptor");
  ExpectDescriptorError(replace("createType=\"monolithicFlat\"", "createType=\"\""), "invalid VMDK image descriptor");
  ExpectDescriptorError(replace("createType=\"monolithicFlat\"", "createType=\"monolithicFlat"), "invalid VMDK image descriptor");
  ExpectDescriptorError(replace("CID=1a2b3c4d", "CID=zzzz"), "Invalid CID");
  ExpectDescriptorError(replace("CID=1a2b3c4d", "CID=123456789abc"), "Invalid CID");
  ExpectDescriptorError(replace("CID=1a2b3c4d\n", ""), "no CID");
  ExpectDescriptorError(replace("parentCID=ffffffff\n", ""), "no parentCID");
  ExpectDescriptorError(replace("version=1", "version=99999999999999"), "Invalid descriptor version");
  ExpectDescriptorError(replace("# Extent description\n", "parentFileNameHint=\"\"\n"), "parentFileNameHint");
  ExpectDescriptorError(replace("RW 2048 FLAT \"flat.img\" 0\n", ""), "no extents");
  ExpectDescriptorError(replace("RW 2048 FLAT \"flat.img\" 0", ok_line + "\n" + ok_line + "\n" +
                                    "RW 18014398509481980 ZERO"),
                        "too big");
  // Huge descriptor: only the first MiB is read; no createType there, the
  // first thing QEMU looks for.
  ExpectDescriptorError("version=1\n" + std::string(3 << 20, '#'), "invalid VMDK image descriptor");
  // Binary junk that is not a VMDK at all.
  Bytes junk(4096);
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<uint8_t>(i * 7 + 1);
  ASSERT_TRUE(WriteFile(desc_, junk));
  EXPECT_FALSE(OpenVmdk(desc_));
}

TEST_F(MalformedTest, ConfinedExtents) {
  const std::string sub = dir_ / "sub";
  ASSERT_EQ(mkdir(sub.c_str(), 0755), 0);
  const std::string desc = sub + "/d.vmdk";
  ASSERT_TRUE(WriteFile(sub + "/in.img", Bytes(kSize, 1)));
  ASSERT_TRUE(WriteFile(dir_ / "out.img", Bytes(kSize, 2)));
  ASSERT_EQ(symlink((dir_ / "out.img").c_str(), (sub + "/link.img").c_str()), 0);
  ASSERT_EQ(symlink("/etc/passwd", (sub + "/passwd.img").c_str()), 0);
  auto with = [&](const std::string& name) {
    return SimpleDescriptor("monolithicFlat", {"RW 1 FLAT \"" + name + "\" 0"});
  };
  const std::string on = ",confine-extents=on";
  struct Case {
    std::string name, message;
  } cases[] = {
      {"/etc/passwd", "relative to the descriptor"},
      {dir_ / "out.img", "relative to the descriptor"},
      {"../out.img", "must not leave"},
      {"./../out.img", "must not leave"},
      {"a/../../out.img", "must not leave"},
      {"link.img", "outside the descriptor's directory"},
      {"passwd.img", "outside the descriptor's directory"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(WriteFile(desc, with(c.name)));
    ExpectOpenError(desc, c.message, on);
  }
  // Inside the directory is fine, with and without confinement; outside
  // is allowed only without it (QEMU's behaviour).
  ASSERT_TRUE(WriteFile(desc, with("in.img")));
  EXPECT_TRUE(OpenVmdk(desc, on));
  ASSERT_TRUE(WriteFile(desc, with("../out.img")));
  EXPECT_TRUE(OpenVmdk(desc));
}

TEST_F(MalformedTest, SeSparseAndVmdk3Checks) {
  const std::vector<GrainSpec> grains = {{0, GrainKind::kData, 1}, {2, GrainKind::kZero, 1}};
  BuiltImage se = BuildSeSparse(2048, grains);
  struct Case {
    size_t at;
    uint64_t value;
    const char* message;
  } se_cases[] = {
      {0, 0xcafebabf, ""},  // no longer recognised as seSparse at all
      {8, 0x0000000200000002ULL, "Unsupported version"},
      {24, 16, "Unsupported grain size"},
      {32, 32, "Unsupported grain table size"},
      {40, 1, "Unsupported flags"},
      {48, 1, "Unsupported reserved bits"},
      {400, 1, "padding"},
      {80, 0x7fffffff, "Volatile header"},              // volatile header past EOF
      {512, 0xcafecafd, "Bad volatile header magic"},
      {512 + 24, 1, "Replaying journal not supported"},
      {16 * 8, 0x7fffffff, "Grain directory"},          // GD past EOF
      {17 * 8, uint64_t{1} << 60, "L1 size too big"},
      {19 * 8, 0x7fffffff, "Grain tables"},
      {24 * 8, 0, "Grains offset"},
  };
  for (const Case& c : se_cases) {
    SCOPED_TRACE(c.message);
    Bytes f = se.file;
    StoreLe64(f, c.at, c.value);
    ExpectImageError(f, c.message);
  }
  ASSERT_TRUE(WriteFile(img_, se.file));
  ExpectOpenError(img_, "No write support for seSparse", "", /*read_only=*/false);
  // Corrupt grain directory / table entries: EIO on read, not garbage.
  const uint64_t gte = 8 * 512;
  struct Entry {
    uint64_t at, value;
  } entries[] = {
      {4 * 512, 0x2000000000000000ULL},   // GD entry with bad top bits
      {4 * 512, 0x1000000000000005ULL},   // GT index beyond the GT area
      {gte, 0x4000000000000000ULL},       // GTE type 4
      {gte, 0x0000000000000001ULL},       // "unallocated" with junk bits
      {gte, 0x3fffffffffffffffULL},       // grain index beyond the grains area
  };
  for (const Entry& e : entries) {
    SCOPED_TRACE(e.value);
    Bytes f = se.file;
    StoreLe64(f, e.at, e.value);
    ASSERT_TRUE(WriteFile(img_, f));
    auto node = OpenVmdk(img_);
    ASSERT_TRUE(node) << node.error().ToString();
    auto r = Read(**node, 0, 4096);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().errnum(), EIO) << r.error().ToString();
  }

  BuiltImage v3 = BuildVmdk3(2048, grains);
  {
    Bytes f = v3.file;
    StoreLe32(f, 16, 0);  // granularity
    ExpectImageError(f, "Invalid granularity");
    StoreLe32(f, 16, 3);
    ExpectImageError(f, "Invalid granularity");
    f = v3.file;
    StoreLe32(f, 20, 0x7fffffff);  // l1dir_offset
    ExpectImageError(f, "Grain directory");
    f = v3.file;
    StoreLe32(f, 24, 0xffffffff);  // l1dir_size
    ExpectImageError(f, "L1 size too big");
  }
}

}  // namespace
}  // namespace coblk::vmdk::test
