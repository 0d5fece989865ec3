#include "drivers/vmdk/descriptor.h"

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

// What qemu-img 7.2 writes for `create -f vmdk a.vmdk 1G` (CID aside).
const char kQemuDesc[] =
    "# Disk DescriptorFile\n"
    "version=1\n"
    "CID=23879da9\n"
    "parentCID=ffffffff\n"
    "createType=\"monolithicSparse\"\n"
    "\n"
    "# Extent description\n"
    "RW 2097152 SPARSE \"a.vmdk\"\n"
    "\n"
    "# The Disk Data Base\n"
    "#DDB\n"
    "\n"
    "ddb.virtualHWVersion = \"4\"\n"
    "ddb.geometry.cylinders = \"2080\"\n"
    "ddb.geometry.heads = \"16\"\n"
    "ddb.geometry.sectors = \"63\"\n"
    "ddb.adapterType = \"ide\"\n"
    "ddb.toolsVersion = \"2147483647\"\n";

std::string WithExtent(const std::string& line) {
  return "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"vmfs\"\n" + line +
         "\n";
}

TEST(ParseDescriptor, QemuMonolithicSparse) {
  auto d = ParseDescriptor(kQemuDesc);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->version, 1);
  EXPECT_EQ(d->cid, 0x23879da9u);
  EXPECT_EQ(d->parent_cid, kNoParentCid);
  EXPECT_FALSE(d->has_parent());
  EXPECT_EQ(d->create_type, "monolithicSparse");
  EXPECT_FALSE(d->parent_file_name_hint);
  ASSERT_EQ(d->extents.size(), 1u);
  EXPECT_EQ(d->extents[0].access, ExtentAccess::kReadWrite);
  EXPECT_EQ(d->extents[0].sectors, 2097152u);
  EXPECT_EQ(d->extents[0].type, ExtentType::kSparse);
  EXPECT_EQ(d->extents[0].filename, "a.vmdk");
  EXPECT_EQ(d->total_sectors, 2097152u);
  ASSERT_EQ(d->ddb.size(), 6u);
  EXPECT_EQ(d->ddb[0], (std::pair<std::string, std::string>{
                           "ddb.virtualHWVersion", "4"}));
  EXPECT_EQ(d->ddb[5].first, "ddb.toolsVersion");
  EXPECT_EQ(d->ddb[5].second, "2147483647");
}

TEST(ParseDescriptor, VmwareStyleWithAllExtentKinds) {
  const char text[] =
      "# Disk DescriptorFile\r\n"
      "version=1\r\n"
      "encoding=\"UTF-8\"\r\n"
      "CID=0x0000abcd\r\n"
      "parentCID=12345678\r\n"
      "isNativeSnapshot=\"no\"\r\n"
      "createType=\"twoGbMaxExtentFlat\"\r\n"
      "parentFileNameHint=\"base dir/parent.vmdk\"\r\n"
      "\r\n"
      "RW 100 FLAT \"f 1.vmdk\" 7\r\n"
      "RDONLY 200 SPARSE \"s.vmdk\"\r\n"
      "NOACCESS 300 VMFS \"v.vmdk\"\r\n"
      "  RW\t400\tVMFSSPARSE  \"vs.vmdk\"  \r\n"
      "RW 500 SESPARSE \"se.vmdk\"\r\n"
      "RW 600 ZERO\r\n"
      "RW 700 ZERO \"z.vmdk\"\r\n"
      "RW 0 SPARSE \"empty.vmdk\"\r\n"
      "some junk line without equals\r\n"
      "ddb.uuid = \"60 00 C2 9a\"\r\n"
      "ddb.longContentID = bare\r\n";
  auto d = ParseDescriptor(text);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->cid, 0xabcdu);
  EXPECT_EQ(d->parent_cid, 0x12345678u);
  EXPECT_TRUE(d->has_parent());
  EXPECT_EQ(d->encoding, "UTF-8");
  EXPECT_EQ(d->parent_file_name_hint, "base dir/parent.vmdk");
  EXPECT_EQ(d->create_type, "twoGbMaxExtentFlat");
  ASSERT_EQ(d->other.size(), 1u);
  EXPECT_EQ(d->other[0].first, "isNativeSnapshot");
  ASSERT_EQ(d->ddb.size(), 2u);
  EXPECT_EQ(d->ddb[0].second, "60 00 C2 9a");
  EXPECT_EQ(d->ddb[1].second, "bare");
  ASSERT_EQ(d->extents.size(), 7u);  // the 0-sector line is dropped
  EXPECT_EQ(d->extents[0].type, ExtentType::kFlat);
  EXPECT_EQ(d->extents[0].filename, "f 1.vmdk");
  EXPECT_EQ(d->extents[0].offset, 7u);
  EXPECT_EQ(d->extents[1].access, ExtentAccess::kReadOnly);
  EXPECT_EQ(d->extents[2].access, ExtentAccess::kNoAccess);
  EXPECT_EQ(d->extents[2].type, ExtentType::kVmfs);
  EXPECT_EQ(d->extents[2].offset, 0u);
  EXPECT_EQ(d->extents[3].type, ExtentType::kVmfsSparse);
  EXPECT_EQ(d->extents[3].filename, "vs.vmdk");
  EXPECT_EQ(d->extents[4].type, ExtentType::kSeSparse);
  EXPECT_EQ(d->extents[5].type, ExtentType::kZero);
  EXPECT_EQ(d->extents[5].filename, "");
  EXPECT_EQ(d->extents[6].filename, "z.vmdk");
  EXPECT_EQ(d->total_sectors, 2800u);
}

// The opener's way: lines counted, not kept, then read one at a time;
// the reader yields what ParseDescriptor keeps, field for field.
TEST(ParseDescriptor, ExtentLinesReadOneAtATime) {
  std::string text =
      "CID=1\nparentCID=ffffffff\ncreateType=\"vmfs\"\n"
      "# RW 9 FLAT \"comment.vmdk\" 0\n"
      "RW 100 FLAT \"f 1.vmdk\" 7\r\n"
      "RW 0 SPARSE \"empty.vmdk\"\n"
      "ddb.x = \"RW 5 ZERO\"\n"
      "  RDONLY\t400\tVMFSSPARSE  \"vs.vmdk\"  \n"
      "RW 600 ZERO\n";
  auto all = ParseDescriptor(text);
  ASSERT_TRUE(all) << all.error().message();
  ASSERT_EQ(all->extents.size(), 3u);
  EXPECT_EQ(all->extent_count, 3u);
  text += std::string(1, '\0') + "RW 7 ZERO\n";  // past the NUL: never seen
  auto counted = ParseDescriptor(text, /*keep_extent_lines=*/false);
  ASSERT_TRUE(counted) << counted.error().message();
  EXPECT_TRUE(counted->extents.empty());
  EXPECT_EQ(counted->extent_count, 3u);
  EXPECT_EQ(counted->total_sectors, 1100u);
  ExtentLineReader reader(text);
  for (const ExtentLine& want : all->extents) {
    auto got = reader.next();
    ASSERT_TRUE(got) << got.error().message();
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ((*got)->access, want.access);
    EXPECT_EQ((*got)->sectors, want.sectors);
    EXPECT_EQ((*got)->type, want.type);
    EXPECT_EQ((*got)->filename, want.filename);
    EXPECT_EQ((*got)->offset, want.offset);
  }
  auto end = reader.next();
  ASSERT_TRUE(end);
  EXPECT_FALSE(end->has_value());
  // A broken line is the reader's error too (an opener checks first anyway).
  ExtentLineReader broken("RW 1 FLAT \"a\"\n");
  auto bad = broken.next();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "Invalid extent line: RW 1 FLAT \"a\"");
}

TEST(ParseDescriptor, StopsAtNul) {
  std::string text(kQemuDesc);
  text += std::string(1, '\0') + "RW garbage that is never seen";
  text.resize(10240, '\0');
  auto d = ParseDescriptor(text);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->extents.size(), 1u);
}

TEST(ParseDescriptor, FirstOccurrenceWins) {
  auto d = ParseDescriptor("CID=1\nparentCID=2\nCID=zzz\nparentCID=3\n");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->cid, 1u);
  EXPECT_EQ(d->parent_cid, 2u);
}

TEST(ParseDescriptor, BrokenExtentLines) {
  const char* bad[] = {
      "RW",
      "RW 100",
      "RW abc SPARSE \"a\"",
      "RW -5 SPARSE \"a\"",
      "RW +5 SPARSE \"a\"",
      "RW 99999999999999999999999 SPARSE \"a\"",
      "RW 18014398509481984 SPARSE \"a\"",  // sectors * 512 > INT64_MAX
      "RW 100 SPARSE",
      "RW 100 SPARSE a.vmdk",
      "RW 100 SPARSE \"a.vmdk",
      "RW 100 SPARSE \"\"",
      "RW 100 SPARSE \"a\"x",
      "RW 100 SPARSE \"a\" 0",
      "RW 100 SPARSE \"a\" \"b\"",
      "RW 100 SESPARSE \"a\" 5",
      "RW 100 VMFSSPARSE \"a\" 5",
      "RW 100 FLAT \"a\"",
      "RW 100 FLAT \"a\" -1",
      "RW 100 FLAT \"a\" x",
      "RW 100 FLAT \"a\" 5 6",
      "RW 100 FLAT \"a\" 18014398509481900",  // offset + sectors too big
      "RW 100 VMFS \"a\" 0",
      "RW 100 ZERO \"\"",
      "RW 100 ZERO 5",
      "RW 100 ZERO \"z\" 5",
      "RDONLY 100",
      "NOACCESS",
  };
  for (const char* line : bad) {
    SCOPED_TRACE(line);
    ExpectError(ParseDescriptor(WithExtent(line)), EINVAL,
                std::string("Invalid extent line: ") + line);
  }
}

TEST(ParseDescriptor, UnsupportedExtentTypes) {
  for (const char* t : {"VMFSRDM", "VMFSRAW", "sparse", "FOO"}) {
    SCOPED_TRACE(t);
    ExpectError(
        ParseDescriptor(WithExtent(std::string("RW 10 ") + t + " \"a\"")),
        ENOTSUP, std::string("Unsupported extent type '") + t + "'");
  }
}

TEST(ParseDescriptor, ExtentFileNamesAreChecked) {
  ExpectError(ParseDescriptor(WithExtent("RW 10 FLAT \"json:{}\" 0")), EINVAL,
              "Extent file name must not be a json: specification: 'json:{}'");
  ExpectError(
      ParseDescriptor(WithExtent("RW 10 SPARSE \"nbd:host:10809\"")), EINVAL,
      "Extent file name must be a plain path, not a protocol: 'nbd:host:10809'");
  std::string long_name(4096, 'a');
  ExpectError(
      ParseDescriptor(WithExtent("RW 10 SPARSE \"" + long_name + "\"")),
      ENAMETOOLONG, "Extent file name too long");
}

TEST(ParseDescriptor, KeyErrors) {
  ExpectError(ParseDescriptor("parentCID=ffffffff\n"), EINVAL,
              "Descriptor has no CID");
  ExpectError(ParseDescriptor("CID=1\n"), EINVAL, "Descriptor has no parentCID");
  ExpectError(ParseDescriptor("CID=123456789\nparentCID=1\n"), EINVAL,
              "Invalid CID in descriptor: 123456789");
  ExpectError(ParseDescriptor("CID=\nparentCID=1\n"), EINVAL,
              "Invalid CID in descriptor: ");
  ExpectError(ParseDescriptor("CID=1\nparentCID=xyz\n"), EINVAL,
              "Invalid parentCID in descriptor: xyz");
  ExpectError(ParseDescriptor("version=x\nCID=1\nparentCID=1\n"), EINVAL,
              "Invalid descriptor version: x");
  ExpectError(ParseDescriptor("createType=\"vmfs\nCID=1\nparentCID=1\n"),
              EINVAL, "invalid VMDK image descriptor");
  ExpectError(ParseDescriptor("createType=\"\"\nCID=1\nparentCID=1\n"), EINVAL,
              "invalid VMDK image descriptor");
  ExpectError(
      ParseDescriptor("parentFileNameHint=\"a\nCID=1\nparentCID=1\n"), EINVAL,
      "Invalid parentFileNameHint in descriptor");
  ExpectError(ParseDescriptor("CID=1\nparentCID=1\nparentFileNameHint=\"" +
                              std::string(4096, 'p') + "\"\n"),
              EINVAL, "parentFileNameHint too long");
}

TEST(ParseDescriptor, SizeLimits) {
  std::string big(kMaxDescriptorBytes + 1, '#');
  ExpectError(ParseDescriptor(big), EFBIG, "Descriptor too big: 1048576 bytes");
  // Sum of extents must stay addressable.
  std::string text = "CID=1\nparentCID=1\n";
  for (int i = 0; i < 3; ++i)
    text += "RW 9007199254740991 FLAT \"f\" 0\n";  // 2^53 - 1 each
  ExpectError(ParseDescriptor(text), EFBIG,
              "Descriptor describes a disk that is too big");
}

TEST(CreateType, DescriptorFileList) {
  for (const char* ok : {"monolithicFlat", "vmfs", "vmfsSparse", "seSparse",
                         "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"}) {
    EXPECT_TRUE(CheckDescriptorFileCreateType(ok)) << ok;
  }
  ExpectError(CheckDescriptorFileCreateType("monolithicSparse"), ENOTSUP,
              "Unsupported image type 'monolithicSparse'");
  ExpectError(CheckDescriptorFileCreateType("vmfsRaw"), ENOTSUP,
              "Unsupported image type 'vmfsRaw'");
  ExpectError(CheckDescriptorFileCreateType(""), EINVAL,
              "invalid VMDK image descriptor");
}

TEST(ExtentFilename, SecurityRules) {
  EXPECT_TRUE(ValidateExtentFilename("a.vmdk", true));
  EXPECT_TRUE(ValidateExtentFilename("sub/dir/a.vmdk", true));
  EXPECT_TRUE(ValidateExtentFilename("a..b.vmdk", true));
  EXPECT_TRUE(ValidateExtentFilename("./a.vmdk", true));
  EXPECT_TRUE(ValidateExtentFilename("/abs/a.vmdk", false));
  EXPECT_TRUE(ValidateExtentFilename("../up.vmdk", false));
  EXPECT_TRUE(ValidateExtentFilename("dir/a:b.vmdk", true));  // colon after /
  ExpectError(ValidateExtentFilename("", false), EINVAL,
              "Empty extent file name");
  ExpectError(ValidateExtentFilename(std::string_view("a\0b", 3), false),
              EINVAL, "Extent file name contains a NUL byte");
  ExpectError(ValidateExtentFilename("json:{\"driver\":\"file\"}", false),
              EINVAL,
              "Extent file name must not be a json: specification: "
              "'json:{\"driver\":\"file\"}'");
  ExpectError(ValidateExtentFilename("file:a.vmdk", false), EINVAL,
              "Extent file name must be a plain path, not a protocol: "
              "'file:a.vmdk'");
  ExpectError(ValidateExtentFilename("http://evil/a", false), EINVAL,
              "Extent file name must be a plain path, not a protocol: "
              "'http://evil/a'");
  ExpectError(ValidateExtentFilename("/etc/shadow", true), EACCES,
              "Extent file name must be relative to the descriptor: "
              "'/etc/shadow'");
  for (const char* up : {"..", "../a", "a/../../b", "a/..", "a//../b"}) {
    SCOPED_TRACE(up);
    ExpectError(ValidateExtentFilename(up, true), EACCES,
                std::string("Extent file name must not leave the "
                            "descriptor's directory: '") + up + "'");
  }
}

TEST(ExtentFilename, Resolve) {
  EXPECT_EQ(*ResolveExtentPath("/images/d.vmdk", "e.vmdk"), "/images/e.vmdk");
  EXPECT_EQ(*ResolveExtentPath("/images/d.vmdk", "sub/e.vmdk"),
            "/images/sub/e.vmdk");
  EXPECT_EQ(*ResolveExtentPath("d.vmdk", "e.vmdk"), "e.vmdk");
  EXPECT_EQ(*ResolveExtentPath("rel/d.vmdk", "e.vmdk"), "rel/e.vmdk");
  EXPECT_EQ(*ResolveExtentPath("/images/d.vmdk", "/other/e.vmdk"),
            "/other/e.vmdk");
  EXPECT_EQ(*ResolveExtentPath("", "/other/e.vmdk"), "/other/e.vmdk");
  ExpectError(ResolveExtentPath("", "e.vmdk"), EINVAL,
              "Cannot use relative extent paths with VMDK descriptor file ''");
}

TEST(Generate, MatchesQemuByteForByte) {
  DescriptorSpec s;
  s.cid = 0x23879da9;
  s.extents.push_back({int64_t{1} << 30, "/some/dir/a.vmdk"});
  s.size_bytes = int64_t{1} << 30;
  auto text = GenerateDescriptor(s);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, kQemuDesc);
}

TEST(Generate, FlatSplitLsilogicBacking) {
  DescriptorSpec s;
  s.cid = 0x55402e78;
  s.parent_cid = 0xabc;
  s.parent_file_name_hint = "base.vmdk";
  s.subformat = Subformat::kTwoGbMaxExtentFlat;
  s.adapter = AdapterType::kLsilogic;
  s.size_bytes = int64_t{5} << 30;
  s.extents = {{int64_t{2} << 30, "t-f001.vmdk"},
               {int64_t{2} << 30, "t-f002.vmdk"},
               {(int64_t{1} << 30) + 1, "t-f003.vmdk"}};
  s.tools_version = std::nullopt;
  s.hw_version = "6";
  auto text = GenerateDescriptor(s);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text,
            "# Disk DescriptorFile\n"
            "version=1\n"
            "CID=55402e78\n"
            "parentCID=abc\n"
            "createType=\"twoGbMaxExtentFlat\"\n"
            "parentFileNameHint=\"base.vmdk\"\n"
            "# Extent description\n"
            "RW 4194304 FLAT \"t-f001.vmdk\" 0\n"
            "RW 4194304 FLAT \"t-f002.vmdk\" 0\n"
            "RW 2097153 FLAT \"t-f003.vmdk\" 0\n"
            "\n"
            "# The Disk Data Base\n"
            "#DDB\n"
            "\n"
            "ddb.virtualHWVersion = \"6\"\n"
            "ddb.geometry.cylinders = \"652\"\n"
            "ddb.geometry.heads = \"255\"\n"
            "ddb.geometry.sectors = \"63\"\n"
            "ddb.adapterType = \"lsilogic\"\n");
}

TEST(Generate, RoundTripThroughParser) {
  DescriptorSpec s{};
  s.cid = 0xdeadbeef;
  s.parent_cid = 0x1234;
  s.parent_file_name_hint.emplace("../base.vmdk");
  s.subformat = Subformat::kTwoGbMaxExtentSparse;
  s.size_bytes = 3LL << 30;
  s.extents = {{2LL << 30, "x-s001.vmdk"}, {1LL << 30, "x-s002.vmdk"}};
  s.adapter = AdapterType::kLegacyEsx;
  auto text = GenerateDescriptor(s);
  ASSERT_TRUE(text);
  auto d = ParseDescriptor(*text);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->cid, s.cid);
  EXPECT_EQ(d->parent_cid, s.parent_cid);
  ASSERT_TRUE(d->parent_file_name_hint.has_value());
  EXPECT_EQ(*d->parent_file_name_hint, "../base.vmdk");
  EXPECT_EQ(d->create_type, "twoGbMaxExtentSparse");
  EXPECT_TRUE(CheckDescriptorFileCreateType(d->create_type));
  ASSERT_EQ(d->extents.size(), 2u);
  EXPECT_EQ(d->extents[1].filename, "x-s002.vmdk");
  EXPECT_EQ(d->total_sectors * 512, static_cast<uint64_t>(s.size_bytes));
  ASSERT_EQ(d->ddb.size(), 6u);
  EXPECT_EQ(d->ddb[4].second, "legacyESX");
}

TEST(Generate, RejectsBreakingValues) {
  DescriptorSpec s;
  s.extents.push_back({512, "a\"b.vmdk"});
  ExpectError(GenerateDescriptor(s), EINVAL, "Invalid extent for descriptor");
  s.extents = {{512, "ok.vmdk"}};
  s.parent_file_name_hint = "evil\"\nRW 1 FLAT \"/etc/passwd\" 0";
  ExpectError(GenerateDescriptor(s), EINVAL, "Invalid backing file name");
  s.parent_file_name_hint.reset();
  s.hw_version = "4\"\n";
  ExpectError(GenerateDescriptor(s), EINVAL,
              "Invalid character in descriptor value");
  s.hw_version = "4";
  s.size_bytes = -1;
  ExpectError(GenerateDescriptor(s), EINVAL, "Invalid image size");
}

TEST(Generate, OptionsAndGeometry) {
  EXPECT_EQ(*ParseSubformat("streamOptimized"), Subformat::kStreamOptimized);
  ExpectError(ParseSubformat("bogus"), EINVAL, "Invalid parameter 'bogus'");
  EXPECT_EQ(*ParseAdapterType("legacyESX"), AdapterType::kLegacyEsx);
  EXPECT_EQ(*ParseAdapterType("buslogic"), AdapterType::kBuslogic);
  ExpectError(ParseAdapterType("scsi"), EINVAL, "Invalid parameter 'scsi'");
  EXPECT_EQ(*ResolveHwVersion(false, std::nullopt), "4");
  EXPECT_EQ(*ResolveHwVersion(true, std::nullopt), "6");
  EXPECT_EQ(*ResolveHwVersion(false, "7"), "7");
  ExpectError(ResolveHwVersion(true, "7"), EINVAL,
              "compat6 cannot be enabled with hwversion set");
  Geometry g = ComputeGeometry(int64_t{1} << 30, AdapterType::kIde);
  EXPECT_EQ(g.cylinders, 2080);
  EXPECT_EQ(g.heads, 16u);
  EXPECT_EQ(g.sectors, 63u);
  g = ComputeGeometry(int64_t{5} << 30, AdapterType::kBuslogic);
  EXPECT_EQ(g.cylinders, 652);
  EXPECT_EQ(g.heads, 255u);
  // Not capped (QEMU writes the plain quotient).
  g = ComputeGeometry(int64_t{1} << 50, AdapterType::kIde);
  EXPECT_EQ(g.cylinders, (int64_t{1} << 50) / (63 * 16 * 512));
}

TEST(SetCid, RewritesOnlyThatLine) {
  auto t = SetCid(kQemuDesc, CidField::kCid, 0x1);
  ASSERT_TRUE(t);
  std::string want = kQemuDesc;
  want.replace(want.find("CID=23879da9"), 12, "CID=1");
  EXPECT_EQ(*t, want);
  t = SetCid(kQemuDesc, CidField::kParentCid, 0xfffffffe);
  ASSERT_TRUE(t);
  want = kQemuDesc;
  want.replace(want.find("parentCID=ffffffff"), 18, "parentCID=fffffffe");
  EXPECT_EQ(*t, want);
  auto d = ParseDescriptor(*t);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->cid, 0x23879da9u);
  EXPECT_EQ(d->parent_cid, 0xfffffffeu);
}

TEST(SetCid, KeepsCrLfAndHandlesSpaces) {
  auto t = SetCid("a=1\r\n CID = 5\r\nparentCID=1\r\n", CidField::kCid, 0xab);
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, "a=1\r\nCID=ab\r\nparentCID=1\r\n");
  t = SetCid("CID=5", CidField::kCid, 0xab);  // no trailing newline
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, "CID=ab");
  ExpectError(SetCid("parentCID=1\n", CidField::kCid, 1), EINVAL,
              "Descriptor has no CID line");
  ExpectError(SetCid("CID=1\n", CidField::kParentCid, 1), EINVAL,
              "Descriptor has no parentCID line");
  ExpectError(SetCid(std::string(kMaxDescriptorBytes + 1, 'x'), CidField::kCid,
                     1),
              EFBIG, "Descriptor too big: 1048576 bytes");
}

TEST(SetCid, LargeDescriptorIsNotTruncated) {
  // QEMU before 8.2 cut descriptors larger than 10 KiB when writing the CID.
  std::string text = kQemuDesc;
  int i = 0;
  while (text.size() < 64 * 1024)
    text += "ddb.extra" + std::to_string(i++) + " = \"" +
            std::string(100, 'v') + "\"\n";
  text += "RW 1 ZERO\n";  // content at the very end must survive
  auto t = SetCid(text, CidField::kCid, 0xcafe);
  ASSERT_TRUE(t);
  std::string want = text;
  want.replace(want.find("CID=23879da9"), 12, "CID=cafe");
  EXPECT_EQ(*t, want);
  EXPECT_GT(t->size(), 64u * 1024);
  auto d = ParseDescriptor(*t);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->cid, 0xcafeu);
  EXPECT_EQ(d->extents.size(), 2u);
  EXPECT_EQ(d->ddb.size(), 6u + static_cast<size_t>(i));
}

TEST(DescriptorFileBytes, WholeSectorsLikeQemu) {
  // qemu-io's first write turns a 356-byte descriptor file into one sector:
  // the text, then zeros.
  const std::string old = kQemuDesc;
  ASSERT_LT(old.size(), 511u);
  auto t = SetCid(old, CidField::kCid, 0x12345678);
  ASSERT_TRUE(t);
  std::string want = *t;
  want.resize(512, '\0');
  EXPECT_EQ(DescriptorFileBytes(old, *t, true), want);
  EXPECT_EQ(DescriptorFileBytes(old, *t, false), want);
  // 540 bytes: two sectors.
  const std::string big = old + std::string(540 - old.size() - 1, '#') + "\n";
  std::string want_big = big;
  want_big.resize(1024, '\0');
  EXPECT_EQ(DescriptorFileBytes(big, big, true), want_big);
  // Padded already: the size stays.
  EXPECT_EQ(DescriptorFileBytes(want, *t, true), want);
}

TEST(DescriptorFileBytes, ShorterTextKeepsOrZeroesTheOldTail) {
  // A shorter CID: QEMU leaves the old text's last bytes after the NUL.
  const std::string old = "CID=12345678\nparentCID=ffffffff\n";
  auto t = SetCid(old, CidField::kCid, 0xabc);
  ASSERT_TRUE(t);
  std::string kept = *t + '\0' + old.substr(t->size() + 1);
  kept.resize(512, '\0');
  EXPECT_EQ(DescriptorFileBytes(old, *t, true), kept);
  std::string zeroed = *t;
  zeroed.resize(512, '\0');
  EXPECT_EQ(DescriptorFileBytes(old, *t, false), zeroed);
}

TEST(DescriptorFileBytes, TextFillingTheSectorKeepsItsLastByte) {
  // QEMU would overwrite byte 511 with its NUL; coblk takes one more sector.
  const std::string old(512, 'x');
  const std::string out = DescriptorFileBytes(old, old, true);
  ASSERT_EQ(out.size(), 1024u);
  EXPECT_EQ(out.substr(0, 512), old);
  EXPECT_EQ(out.substr(512), std::string(512, '\0'));
}

}  // namespace
}  // namespace coblk::vmdk
