// Hostile images at scale (part of the malformed-image corpus, run under
// ASan+UBSan by scripts/test.sh): files that are small or few, but whose
// headers, hints or extent lines ask for unbounded work. Each case's file is
// generated here. The rule they check: opening, reading, mapping or checking
// costs what the file holds and the request asks, never what a header or a
// hint claims; a chain is confined as a whole, never loops, never runs deep.
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#if defined(__SANITIZE_ADDRESS__)
// From the ASan runtime (its header is not installed with GCC 12 here).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

#include "drivers/vmdk/vmdk_open.h"
#include "tests/drivers/vmdk/vmdk_image_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr uint64_t kSize = 1 << 20;  // 16 grains of 64 KiB
constexpr uint32_t kCid = 0x1a2b3c4d;

// A descriptor file over one FLAT extent, naming `hint` as its parent (no
// hint line when empty). Every layer has the same CID, so any layer is a
// valid parent of any other.
std::string FlatLayer(const std::string& hint, const std::string& flat = "flat.img") {
  std::string d = SimpleDescriptor("monolithicFlat", {"RW 2048 FLAT \"" + flat + "\" 0"}, kCid,
                                   hint.empty() ? kNoParentCid : kCid);
  if (!hint.empty()) {
    const size_t at = d.find("createType");
    d.insert(at, "parentFileNameHint=\"" + hint + "\"\n");
  }
  return d;
}

// A monolithicSparse layer (one file) with no grains allocated, so every
// read goes to its parent; or, with a seed, grain 0 holds data.
Bytes SparseLayer(const std::string& hint, uint8_t seed = 0) {
  std::vector<GrainSpec> grains;
  if (seed) grains.push_back({0, GrainKind::kData, seed});
  BuiltImage img = BuildVmdk4(kSize, false, false, grains);
  if (hint.empty()) return img.file;
  const uint64_t at = LoadLe64(img.file, 28) * 512;  // desc_offset
  std::string text(reinterpret_cast<const char*>(img.file.data() + at));
  const std::string no_parent = "parentCID=ffffffff\n";
  const size_t p = text.find(no_parent);
  EXPECT_NE(p, std::string::npos);
  text.replace(p, no_parent.size(),
               "parentCID=1a2b3c4d\nparentFileNameHint=\"" + hint + "\"\n");
  std::copy(text.begin(), text.end(), img.file.begin() + static_cast<std::ptrdiff_t>(at));
  return img.file;
}

// Writes `data` at `at` in `path` (created if missing), leaving holes.
void WriteAt(const std::string& path, uint64_t at, std::span<const uint8_t> data) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  if (!f) f.open(path, std::ios::binary | std::ios::out | std::ios::trunc);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(f.good()) << path;
}

// A monolithicSparse file of `capacity` sectors (64 KiB grains, 512 GTEs per
// table) with one allocated grain, grain 0 (pattern seed 5); every other
// directory entry is 0. For 2^40 sectors: 2^24 directory entries (64 MiB,
// a hole in the file), one table, one grain: about 64 MiB, mostly sparse.
void WriteHugeSparse(const std::string& path, uint64_t capacity) {
  Vmdk4Header h;
  h.version = 1;
  h.flags = kFlagNlDetect;
  h.capacity = capacity;
  h.granularity = 128;
  h.num_gtes_per_gt = 512;
  h.desc_offset = 1;
  h.desc_size = 20;
  h.gd_offset = 21;
  const uint64_t l1_size = (capacity + 65535) / 65536;
  const uint64_t gd_sectors = (l1_size * 4 + 511) / 512;
  const uint64_t gt_sector = h.gd_offset + gd_sectors;
  const uint64_t grain_sector = (gt_sector + 4 + 127) / 128 * 128;
  h.grain_offset = grain_sector;
  std::remove(path.c_str());
  const Sector hs = h.Encode();
  WriteAt(path, 0, hs);
  const std::string desc =
      "# Disk DescriptorFile\nversion=1\nCID=1a2b3c4d\nparentCID=ffffffff\n"
      "createType=\"monolithicSparse\"\n\n# Extent description\nRW " +
      std::to_string(capacity) + " SPARSE \"huge.vmdk\"\n";
  WriteAt(path, 512, {reinterpret_cast<const uint8_t*>(desc.data()), desc.size()});
  Bytes entry(4);
  StoreLe32(entry, 0, static_cast<uint32_t>(gt_sector));
  WriteAt(path, h.gd_offset * 512, entry);
  StoreLe32(entry, 0, static_cast<uint32_t>(grain_sector));
  WriteAt(path, gt_sector * 512, entry);
  WriteAt(path, grain_sector * 512, testing_util::Pattern(65536, 5));
  // The directory's tail: make the file cover it even if empty.
  if (truncate(path.c_str(), static_cast<off_t>((grain_sector + 128) * 512)) != 0)
    ADD_FAILURE() << "truncate " << path;
}

// A streamOptimized file (markers, no footer) of one grain of `grain_sectors`
// whose compressed data inflates to `data` (at most a grain): with 1 GiB
// grains and a few KiB of data, the 3.5 KiB file.
Bytes StreamGrainImage(uint64_t grain_sectors, const Bytes& data) {
  Vmdk4Header h;
  h.version = 1;
  h.flags = kFlagNlDetect | kFlagCompress | kFlagMarker;
  h.compress_algorithm = kCompressionDeflate;
  h.capacity = grain_sectors;
  h.granularity = grain_sectors;
  h.num_gtes_per_gt = 512;
  h.desc_offset = 1;
  h.desc_size = 1;
  h.gd_offset = 2;
  h.grain_offset = 7;
  Bytes f(7 * 512, 0);
  Put(f, 0, h.Encode());
  const std::string desc =
      "# Disk DescriptorFile\nversion=1\nCID=1a2b3c4d\nparentCID=ffffffff\n"
      "createType=\"streamOptimized\"\n";
  Put(f, 512, {reinterpret_cast<const uint8_t*>(desc.data()), desc.size()});
  StoreLe32(f, 2 * 512, 3);  // GD entry 0 -> GT at sector 3
  StoreLe32(f, 3 * 512, 7);  // GT entry 0 -> grain at sector 7
  Put(f, 7 * 512, CompressGrain(data, 0).value());
  return f;
}

// Runs a tool with a hang guard (the old code ran for hours): true if it
// finished in time with exit status 0; its stdout in *out.
bool RunTool(const std::string& args, std::string* out) {
  return Sh("timeout 60 " + std::string(COBLK_BIN_DIR) + "/" + args, out) == 0;
}

// Heap bytes this process holds (the sanitizer's allocator when built
// with ASan, glibc's otherwise).
size_t HeapInUse() {
#if defined(__SANITIZE_ADDRESS__)
  return __sanitizer_get_current_allocated_bytes();
#else
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#endif
}

#define SKIP_WITHOUT_TOOLS()                                                         \
  if (access((std::string(COBLK_BIN_DIR) + "/coblk-img").c_str(), X_OK) != 0 ||      \
      access((std::string(COBLK_BIN_DIR) + "/coblk-io").c_str(), X_OK) != 0)         \
  GTEST_SKIP() << "coblk-img/coblk-io not built"

class HostileTest : public VmdkImageTest {
 protected:
  void ExpectOpenError(const std::string& path, const std::string& what,
                       const std::string& extra = "", bool read_only = true) {
    auto node = OpenVmdk(path, extra, read_only);
    ASSERT_FALSE(node) << "opened, expected: " << what;
    EXPECT_NE(node.error().message().find(what), std::string::npos)
        << "want '" << what << "', got: " << node.error().ToString();
  }

  // block_status over the whole disk, asking for the rest each time as
  // coblk-img map does; fails if it takes more than max_calls calls.
  Result<std::vector<MapEntry>> MapInCalls(BlockNode& n, int max_calls) {
    return Map(n, INT64_MAX, static_cast<size_t>(max_calls));
  }

  ScratchDir dir_;
};

// ---- 1. confine-extents=on covers the whole backing chain ----

TEST_F(HostileTest, ConfinementCoversTheBackingChain) {
  const std::string sub = dir_ / "sub";
  ASSERT_EQ(mkdir(sub.c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(sub + "/flat.img", Bytes(kSize, 1)));
  ASSERT_TRUE(WriteFile(dir_ / "flat.img", Bytes(kSize, 2)));
  ASSERT_TRUE(WriteFile(dir_ / "outside.vmdk", FlatLayer("")));
  ASSERT_EQ(symlink((dir_ / "outside.vmdk").c_str(), (sub + "/link.vmdk").c_str()), 0);
  // A parent inside the directory whose own extent lies outside it.
  ASSERT_TRUE(WriteFile(sub + "/leaky.vmdk", FlatLayer("", "../flat.img")));
  // A parent inside whose own parent lies outside.
  ASSERT_TRUE(WriteFile(sub + "/middle.vmdk", FlatLayer("../outside.vmdk")));
  ASSERT_TRUE(WriteFile(sub + "/good.vmdk", FlatLayer("")));
  const std::string child = sub + "/child.vmdk";
  const std::string on = ",confine-extents=on";
  struct Case {
    std::string hint, message;
  } cases[] = {
      {"/etc/passwd", "relative to the descriptor"},
      {dir_ / "outside.vmdk", "relative to the descriptor"},
      {"../outside.vmdk", "must not leave"},
      {"x/../../outside.vmdk", "must not leave"},
      {"link.vmdk", "outside the descriptor's directory"},
      {"json:{}", "json:"},
      {"nbd:localhost:10809", "protocol"},
      {"leaky.vmdk", "must not leave"},
      {"middle.vmdk", "must not leave"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.hint);
    ASSERT_TRUE(WriteFile(child, FlatLayer(c.hint)));
    ExpectOpenError(child, c.message, on);
  }
  // Inside the directory the chain opens confined, and reads through it.
  ASSERT_TRUE(WriteFile(child, FlatLayer("good.vmdk")));
  auto node = OpenVmdk(child, on);
  ASSERT_TRUE(node) << node.error().ToString();
  ASSERT_NE((*node)->backing(), nullptr);
  // Without confinement, the image's choice stands (QEMU's behaviour).
  for (const char* hint : {"../outside.vmdk", "leaky.vmdk", "middle.vmdk"}) {
    SCOPED_TRACE(hint);
    ASSERT_TRUE(WriteFile(child, FlatLayer(hint)));
    EXPECT_TRUE(OpenVmdk(child)) << hint;
  }
}

// The confined parent's data is what reads of unallocated grains return.
TEST_F(HostileTest, ConfinedChainReadsFromInside) {
  ASSERT_TRUE(WriteFile(dir_ / "base.vmdk", SparseLayer("", 7)));
  ASSERT_TRUE(WriteFile(dir_ / "top.vmdk", SparseLayer("base.vmdk")));
  auto node = OpenVmdk(dir_ / "top.vmdk", ",confine-extents=on");
  ASSERT_TRUE(node) << node.error().ToString();
  auto got = Read(**node, 0, 4096);
  ASSERT_TRUE(got) << got.error().ToString();
  Bytes want = testing_util::Pattern(65536, 7);
  want.resize(4096);
  EXPECT_TRUE(*got == want);
}

// ---- 2. backing loops are found at open, by file identity ----

TEST_F(HostileTest, BackingLoopsFailAtOpen) {
  ASSERT_TRUE(WriteFile(dir_ / "flat.img", Bytes(kSize, 3)));
  const std::string a = dir_ / "a.vmdk", b = dir_ / "b.vmdk", c = dir_ / "c.vmdk";
  // Self loop.
  ASSERT_TRUE(WriteFile(a, FlatLayer("a.vmdk")));
  ExpectOpenError(a, "Backing file loop: '" + a + "' -> '" + a + "'");
  ExpectOpenError(a, "Backing file loop", "", /*read_only=*/false);
  // A -> B -> A, from either end.
  ASSERT_TRUE(WriteFile(a, FlatLayer("b.vmdk")));
  ASSERT_TRUE(WriteFile(b, FlatLayer("a.vmdk")));
  ExpectOpenError(a, "'" + a + "' -> '" + b + "' -> '" + a + "'");
  ExpectOpenError(b, "'" + b + "' -> '" + a + "' -> '" + b + "'");
  // A -> B -> C -> B, with sparse layers.
  ASSERT_TRUE(WriteFile(a, SparseLayer("b.vmdk")));
  ASSERT_TRUE(WriteFile(b, SparseLayer("c.vmdk")));
  ASSERT_TRUE(WriteFile(c, SparseLayer("b.vmdk")));
  ExpectOpenError(a, "-> '" + c + "' -> '" + b + "'");
  // By identity, not by name: a hard link and a symlink to A.
  ASSERT_EQ(link(a.c_str(), (dir_ / "hard.vmdk").c_str()), 0);
  ASSERT_EQ(symlink(a.c_str(), (dir_ / "sym.vmdk").c_str()), 0);
  ASSERT_TRUE(WriteFile(b, FlatLayer("./sym.vmdk")));  // a.vmdk (via hard.vmdk) -> b -> sym
  ExpectOpenError(dir_ / "hard.vmdk", "(the same file as '" + (dir_ / "hard.vmdk") + "')");
  // A chain that merely shares an extent file with its parent is no loop.
  ASSERT_TRUE(WriteFile(b, FlatLayer("")));
  ASSERT_TRUE(WriteFile(a, FlatLayer("b.vmdk")));
  EXPECT_TRUE(OpenVmdk(a));
}

// ---- 3. map and check cost what the image holds, not its virtual size ----

// 8 EiB of ZERO extent: one block_status call, and the tools finish.
TEST_F(HostileTest, HugeZeroExtent) {
  const std::string desc = dir_ / "zero.vmdk";
  ASSERT_TRUE(WriteFile(desc, SimpleDescriptor("monolithicFlat", {"RW 18014398507384832 ZERO"})));
  auto node = OpenVmdk(desc);
  ASSERT_TRUE(node) << node.error().ToString();
  const int64_t size = (*node)->size();
  EXPECT_EQ(size, INT64_MAX & ~((int64_t{1} << 30) - 1));
  auto map = MapInCalls(**node, 1);
  ASSERT_TRUE(map) << map.error().ToString();
  EXPECT_EQ(map->size(), 1u);
  SKIP_WITHOUT_TOOLS();
  std::string out;
  ASSERT_TRUE(RunTool("coblk-img map --output=json " + desc, &out)) << out;
  EXPECT_NE(out.find("\"length\": " + std::to_string(size) + ", \"depth\": 0, \"present\": true, "
                     "\"zero\": true, \"data\": false"),
            std::string::npos)
      << out;
  ASSERT_TRUE(RunTool("coblk-img check " + desc, &out)) << out;
}

// 2^40 sectors (512 TiB), one allocated grain: a handful of block_status
// calls, and check visits one table.
TEST_F(HostileTest, HugeSparseExtentWithOneGrain) {
  const std::string img = dir_ / "huge.vmdk";
  WriteHugeSparse(img, uint64_t{1} << 40);
  auto node = OpenVmdk(img);
  ASSERT_TRUE(node) << node.error().ToString();
  auto map = MapInCalls(**node, 4);
  ASSERT_TRUE(map) << map.error().ToString();
  ASSERT_EQ(map->size(), 2u);
  EXPECT_TRUE((*map)[0].data);
  EXPECT_EQ((*map)[0].length, 65536);
  EXPECT_FALSE((*map)[1].present);
  EXPECT_EQ((*map)[1].length, (int64_t{1} << 49) - 65536);
  auto check = sync_wait(loop(), (*node)->check(false));
  ASSERT_TRUE(check) << check.error().ToString();
  EXPECT_EQ(check->corruptions, 0);
  EXPECT_EQ(check->allocated_clusters, 1);
  EXPECT_EQ(check->total_clusters, int64_t{1} << 33);
  auto got = Read(**node, 0, 512);
  ASSERT_TRUE(got);
  EXPECT_TRUE(std::equal(got->begin(), got->end(), testing_util::Pattern(65536, 5).begin()));
  SKIP_WITHOUT_TOOLS();
  std::string out;
  ASSERT_TRUE(RunTool("coblk-img check " + img, &out)) << out;
  EXPECT_NE(out.find("No errors were found on the image."), std::string::npos) << out;
  ASSERT_TRUE(RunTool("coblk-img map --output=json " + img, &out)) << out;
  EXPECT_NE(out.find("\"start\": 0, \"length\": 65536, \"depth\": 0, \"present\": true, "
                     "\"zero\": false, \"data\": true"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\"start\": 65536, \"length\": " +
                     std::to_string((int64_t{1} << 49) - 65536) +
                     ", \"depth\": 0, \"present\": false, \"zero\": true, \"data\": false"),
            std::string::npos)
      << out;
}

// The same image's 64 MiB grain directory is all zeros but one entry: it
// is a hole in the file. The open node holds only the non-zero entries
// and the tables it loaded, far below the directory's own size, after
// open, map, check and a read (it held 192 MiB: 8 bytes per entry plus a
// 4-byte cache index per entry). Peak RSS of the tools on this file is
// measured by bench/hostile_vs_qemu.sh.
TEST_F(HostileTest, HugeSparseExtentHoldsLessThanItsDirectory) {
  const std::string img = dir_ / "huge.vmdk";
  WriteHugeSparse(img, uint64_t{1} << 40);
  constexpr int64_t kDirectoryBytes = int64_t{64} << 20;
  const size_t before = HeapInUse();
  auto held = [&] { return static_cast<int64_t>(HeapInUse()) - static_cast<int64_t>(before); };
  auto node = OpenVmdk(img);
  ASSERT_TRUE(node) << node.error().ToString();
  EXPECT_LT(held(), kDirectoryBytes / 16) << "after open";
  auto map = MapInCalls(**node, 4);
  ASSERT_TRUE(map) << map.error().ToString();
  auto check = sync_wait(loop(), (*node)->check(false));
  ASSERT_TRUE(check) << check.error().ToString();
  auto got = Read(**node, 0, 512);
  ASSERT_TRUE(got);
  EXPECT_LT(held(), kDirectoryBytes / 16) << "after map, check and read";
}

// Runs of unallocated, zeroed and contiguous grains inside allocated tables
// are one answer each, and the map still matches grain by grain.
TEST_F(HostileTest, RunsInsideTablesMatchTheGrains) {
  std::vector<GrainSpec> grains;
  for (uint64_t g : {0, 1, 2, 5, 6}) grains.push_back({g, GrainKind::kData, static_cast<uint8_t>(g + 1)});
  for (uint64_t g : {8, 9, 10}) grains.push_back({g, GrainKind::kZero});
  BuiltImage img = BuildVmdk4(kSize, false, true, grains);
  ASSERT_TRUE(WriteFile(dir_ / "runs.vmdk", img.file));
  auto node = OpenVmdk(dir_ / "runs.vmdk");
  ASSERT_TRUE(node) << node.error().ToString();
  auto fast = MapInCalls(**node, 6);
  ASSERT_TRUE(fast) << fast.error().ToString();
  auto slow = Map(**node);
  ASSERT_TRUE(slow);
  EXPECT_EQ(*fast, *slow);
  // Grains 0-2 are contiguous in the file, as are 5-6: data, 3-4 hole,
  // data, 7 hole, 8-10 zero, 11-15 hole.
  ASSERT_EQ(fast->size(), 6u);
  EXPECT_EQ((*fast)[0].length, 3 * 65536);
  EXPECT_EQ((*fast)[4].length, 3 * 65536);
  EXPECT_TRUE((*fast)[4].zero);
}

// ---- 4. many extent lines: one open per file, binary-searched lookup ----

// `lines` extent lines of one sector each. FLAT lines name one file at
// offsets i % 8 (sector i of the disk reads sector i % 8 of `flat`);
// with zero_every = k, every k-th line is a ZERO line instead.
std::string ManyLines(size_t lines, size_t zero_every = 0, const std::string& flat = "flat.raw") {
  std::vector<std::string> l;
  l.reserve(lines);
  for (size_t i = 0; i < lines; ++i)
    l.push_back(zero_every && i % zero_every == 0
                    ? "RW 1 ZERO"
                    : "RW 1 FLAT \"" + flat + "\" " + std::to_string(i % 8));
  return SimpleDescriptor("monolithicFlat", l);
}

// The most one-sector FLAT lines a descriptor can have: QEMU and coblk read
// at most 1 MiB - 1 of it, and `RW 1 FLAT "f" 0` is 16 bytes a line.
constexpr size_t kMaxFlatLines = 65000;

// Heap an open holds per extent: a flat or ZERO extent is 40 bytes (48
// with malloc's header) plus its pointer in the node's table, 56 in all.
// Before issue 10 item 4 it was about 730 bytes (all the sparse state),
// and 1.9 KiB before that.
constexpr int64_t kMaxHeldPerExtent = 72;

TEST_F(HostileTest, ManyExtentLinesShareOneFile) {
  Bytes flat(8 * 512);
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<uint8_t>(i / 512 + 1);
  ASSERT_TRUE(WriteFile(dir_ / "flat.raw", flat));
  ASSERT_TRUE(WriteFile(dir_ / "many.vmdk", ManyLines(4000, 3)));
  auto node = OpenVmdk(dir_ / "many.vmdk");
  ASSERT_TRUE(node) << node.error().ToString();
  EXPECT_EQ((*node)->size(), 4000 * 512);
  // One child for the descriptor, one for flat.raw (not one per line).
  EXPECT_EQ((*node)->children().size(), 2u);
  for (int64_t sector : {0, 1, 2, 3, 1999, 2000, 3998, 3999}) {
    SCOPED_TRACE(sector);
    auto got = Read(**node, sector * 512, 512);
    ASSERT_TRUE(got);
    const uint8_t want = sector % 3 == 0 ? 0 : static_cast<uint8_t>(sector % 8 + 1);
    EXPECT_EQ((*got)[0], want);
    EXPECT_EQ((*got)[511], want);
  }
  // A read across many extents.
  auto all = Read(**node, 0, 4000 * 512);
  ASSERT_TRUE(all);
  for (size_t sector = 0; sector < 4000; ++sector)
    ASSERT_EQ((*all)[sector * 512], sector % 3 == 0 ? 0 : sector % 8 + 1) << sector;
  // Per-extent options still open that extent's file on its own.
  auto own = OpenVmdk(dir_ / "many.vmdk", ",extents.1.cache.direct=off");
  ASSERT_TRUE(own) << own.error().ToString();
  EXPECT_EQ((*own)->children().size(), 3u);
}

// 1,000 SPARSE lines naming one 2 GiB sparse file with a grain in each of
// its 64 grain tables: mapping it loads every table of every extent. The
// extents share one cache budget (kExtentsCacheBudget, 64 MiB), so the heap
// stays near that; with 4 MiB per extent it grew by 1,000 x 128 KiB.
TEST_F(HostileTest, ManySparseLinesShareOneCacheBudget) {
  constexpr size_t kLines = 1000;
  // (Made with qemu-io: the image builder would hold the 2 GiB of content.)
  if (!testing_util::HaveQemu()) GTEST_SKIP() << "qemu-img/qemu-io not installed";
  std::string make = "cd " + dir_.path() + " && qemu-img create -q -f vmdk s.vmdk 2G && qemu-io";
  for (int t = 0; t < 64; ++t) make += " -c 'write -q -P 7 " + std::to_string(t * 32) + "M 512'";
  ASSERT_EQ(testing_util::Sh(make + " s.vmdk"), 0) << make;
  std::vector<std::string> lines(kLines, "RW 4194304 SPARSE \"s.vmdk\"");
  ASSERT_TRUE(WriteFile(dir_ / "many-sparse.vmdk", SimpleDescriptor("twoGbMaxExtentSparse", lines)));
  const size_t before = HeapInUse();
  auto node = OpenVmdk(dir_ / "many-sparse.vmdk", ",cache.direct=off");
  ASSERT_TRUE(node) << node.error().ToString();
  auto map = MapInCalls(**node, 1000000);
  ASSERT_TRUE(map) << map.error().ToString();
  EXPECT_EQ(std::count_if(map->begin(), map->end(), [](const MapEntry& e) { return e.data; }),
            static_cast<long>(kLines * 64));
  const int64_t held = static_cast<int64_t>(HeapInUse()) - static_cast<int64_t>(before);
  EXPECT_LT(held, int64_t{100} << 20) << held / int64_t{kLines} << " bytes per extent";
}

// 100,000 ZERO lines open (each extent small: no per-extent allocations
// beyond the extent itself) and map as one zero range.
TEST_F(HostileTest, HundredThousandZeroLines) {
  ASSERT_TRUE(WriteFile(dir_ / "zeros.vmdk", ManyLines(100000, 1)));
  const size_t before = HeapInUse();
  auto node = OpenVmdk(dir_ / "zeros.vmdk");
  ASSERT_TRUE(node) << node.error().ToString();
  // A ZERO extent holds no sparse state (and no copy of its line).
  const int64_t held = static_cast<int64_t>(HeapInUse()) - static_cast<int64_t>(before);
  EXPECT_LT(held, 100000 * kMaxHeldPerExtent) << held / 100000 << " bytes per extent";
  EXPECT_EQ((*node)->size(), 100000 * 512);
  auto map = MapInCalls(**node, 100000);
  ASSERT_TRUE(map) << map.error().ToString();
  ASSERT_EQ(map->size(), 1u);
  EXPECT_TRUE((*map)[0].zero);
  auto got = Read(**node, 99999 * 512, 512);
  ASSERT_TRUE(got);
  EXPECT_EQ(std::count(got->begin(), got->end(), 0), 512);
}

// As many FLAT lines as a descriptor holds, all naming one file: one open
// of it, and each extent as small as a ZERO one (no sparse state, no copy
// of its line or its file name).
TEST_F(HostileTest, MaxFlatLinesOfOneFile) {
  Bytes flat(8 * 512);
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<uint8_t>(i / 512 + 1);
  ASSERT_TRUE(WriteFile(dir_ / "f", flat));
  ASSERT_TRUE(WriteFile(dir_ / "flats.vmdk", ManyLines(kMaxFlatLines, 0, "f")));
  const size_t before = HeapInUse();
  auto node = OpenVmdk(dir_ / "flats.vmdk");
  ASSERT_TRUE(node) << node.error().ToString();
  const int64_t held = static_cast<int64_t>(HeapInUse()) - static_cast<int64_t>(before);
  EXPECT_LT(held, static_cast<int64_t>(kMaxFlatLines) * kMaxHeldPerExtent)
      << held / static_cast<int64_t>(kMaxFlatLines) << " bytes per extent";
  EXPECT_EQ((*node)->size(), static_cast<int64_t>(kMaxFlatLines) * 512);
  EXPECT_EQ((*node)->children().size(), 2u);  // the descriptor and f
  for (int64_t sector : {int64_t{0}, int64_t{7}, int64_t{kMaxFlatLines} - 1}) {
    auto got = Read(**node, sector * 512, 512);
    ASSERT_TRUE(got);
    EXPECT_EQ((*got)[0], sector % 8 + 1) << sector;
  }
}

// ---- 5. check stores a bounded number of findings ----

TEST_F(HostileTest, CheckCapsItsFindings) {
  // 64 MiB: 1024 grains in 2 tables; every entry of table 0 (primary and
  // redundant) points past the end of the file: 512 findings.
  BuiltImage img = BuildVmdk4(64 << 20, false, true, {{600, GrainKind::kData, 1}});
  for (size_t field : {56u, 48u}) {
    const uint64_t gd = LoadLe64(img.file, field) * 512;
    const uint64_t gt = uint64_t{LoadLe32(img.file, gd)} * 512;
    for (uint64_t j = 0; j < 512; ++j) StoreLe32(img.file, gt + j * 4, 0x7fffff00);
  }
  ASSERT_TRUE(WriteFile(dir_ / "bad.vmdk", img.file));
  auto node = OpenVmdk(dir_ / "bad.vmdk");
  ASSERT_TRUE(node) << node.error().ToString();
  auto check = sync_wait(loop(), (*node)->check(false));
  ASSERT_TRUE(check);
  EXPECT_EQ(check->corruptions, 512);
  EXPECT_EQ(check->allocated_clusters, 1);
  ASSERT_EQ(check->messages.size(), 101u);
  EXPECT_EQ(check->messages.back(), "... and 412 more");
  EXPECT_EQ(check->messages[0].find("ERROR: grain-table entry for sector 0 points after EOF"), 0u)
      << check->messages[0];
}

// The grain directory of a VMDK3 or seSparse file must cover its disk.
TEST_F(HostileTest, DirectoryMustCoverTheDisk) {
  // The file: 1 KiB of VMDK3, one directory entry, 2^32-1 sectors.
  BuiltImage v3 = BuildVmdk3(2048, {});
  v3.file.resize(1024);
  StoreLe32(v3.file, 12, 0xffffffff);  // disk_sectors
  StoreLe32(v3.file, 20, 1);           // l1dir_offset: sector 1, one entry
  StoreLe32(v3.file, 28, 2);           // file_sectors
  ASSERT_TRUE(WriteFile(dir_ / "v3.vmdk", v3.file));
  ExpectOpenError(dir_ / "v3.vmdk", "Grain directory too small");
  // One sector more than one entry covers (4096 grains of 16 sectors).
  v3 = BuildVmdk3(2048, {{0, GrainKind::kData, 1}});
  StoreLe32(v3.file, 12, 4096 * 16 + 1);
  ASSERT_TRUE(WriteFile(dir_ / "v3.vmdk", v3.file));
  ExpectOpenError(dir_ / "v3.vmdk", "Grain directory too small");
  StoreLe32(v3.file, 12, 4096 * 16);
  ASSERT_TRUE(WriteFile(dir_ / "v3.vmdk", v3.file));
  EXPECT_TRUE(OpenVmdk(dir_ / "v3.vmdk"));
  // seSparse: one GD sector (64 entries of 16 MiB = 1 GiB) for 2 GiB.
  BuiltImage se = BuildSeSparse(2048, {{0, GrainKind::kData, 1}});
  StoreLe64(se.file, 16, uint64_t{4} << 20);  // capacity, sectors
  ASSERT_TRUE(WriteFile(dir_ / "se.vmdk", se.file));
  ExpectOpenError(dir_ / "se.vmdk", "Grain directory too small");
  StoreLe64(se.file, 16, uint64_t{2} << 20);
  ASSERT_TRUE(WriteFile(dir_ / "se.vmdk", se.file));
  EXPECT_TRUE(OpenVmdk(dir_ / "se.vmdk"));
  SKIP_WITHOUT_TOOLS();
  std::string out;
  StoreLe32(v3.file, 12, 0xffffffff);
  ASSERT_TRUE(WriteFile(dir_ / "v3.vmdk", v3.file));
  EXPECT_FALSE(RunTool("coblk-img check " + (dir_ / "v3.vmdk"), &out));
}

// ---- 6. compressed reads inflate only the requested range ----

// The file: 1 GiB grains, a few KiB on disk. A 512-byte read must
// not allocate the grain: run the tool under a 512 MiB address-space limit
// (not in sanitizer builds, whose shadow memory needs far more).
TEST_F(HostileTest, CompressedReadOfAHugeGrainIsBounded) {
  Bytes data(4096);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 13 + 1);
  const Bytes file = StreamGrainImage(0x200000, data);
  EXPECT_LT(file.size(), 8192u);
  const std::string img = dir_ / "bigrain.vmdk";
  ASSERT_TRUE(WriteFile(img, file));
  auto node = OpenVmdk(img);
  ASSERT_TRUE(node) << node.error().ToString();
  EXPECT_EQ((*node)->size(), int64_t{1} << 30);
  auto got = Read(**node, 512, 1024);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_TRUE(std::equal(got->begin(), got->end(), data.begin() + 512));
  // Past the inflated data: QEMU's error (the range must lie inside it).
  auto past = Read(**node, 8192, 512);
  ASSERT_FALSE(past);
  EXPECT_NE(past.error().message().find("too short"), std::string::npos) << past.error().ToString();
  // A grain declared larger than QEMU's 1 GiB limit is refused.
  Bytes over = file;
  StoreLe64(over, 20, 0x400000);  // granularity
  StoreLe64(over, 12, 0x400000);  // capacity
  ASSERT_TRUE(WriteFile(dir_ / "over.vmdk", over));
  EXPECT_FALSE(OpenVmdk(dir_ / "over.vmdk"));
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "address-space limit not usable with ASan";
#else
  SKIP_WITHOUT_TOOLS();
  std::string out;
  EXPECT_EQ(Sh("ulimit -v 524288; timeout 60 " + std::string(COBLK_BIN_DIR) +
                   "/coblk-io -r -c 'read 0 512' " + img,
               &out),
            0)
      << out;
  EXPECT_NE(out.find("read 512/512 bytes at offset 0"), std::string::npos) << out;
#endif
}

// Ranges anywhere in a 1 MiB grain of incompressible data: the input spans
// several read pieces and the skipped output several windows.
TEST_F(HostileTest, CompressedRangesMatchTheGrain) {
  Bytes data(1 << 20);
  uint32_t x = 12345;
  for (auto& b : data) {
    x = x * 1103515245 + 12345;
    b = static_cast<uint8_t>(x >> 24);
  }
  ASSERT_TRUE(WriteFile(dir_ / "mib.vmdk", StreamGrainImage(2048, data)));
  auto node = OpenVmdk(dir_ / "mib.vmdk");
  ASSERT_TRUE(node) << node.error().ToString();
  for (auto [off, len] : std::vector<std::pair<int64_t, size_t>>{
           {0, 512}, {65536 - 512, 1024}, {200 * 1024, 4096}, {700 * 1024, 300 * 1024},
           {(1 << 20) - 512, 512}, {0, 1 << 20}}) {
    SCOPED_TRACE(off);
    auto got = Read(**node, off, len);
    ASSERT_TRUE(got) << got.error().ToString();
    EXPECT_TRUE(std::equal(got->begin(), got->end(), data.begin() + off));
  }
}

// ---- 7. deep chains: opened iteratively, bounded by kMaxBackingDepth ----

// Layers l0 (top) .. l<n-1>: all empty except the bottom, which has grain 0.
void WriteChain(const ScratchDir& dir, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const std::string hint = i + 1 < n ? "l" + std::to_string(i + 1) + ".vmdk" : "";
    ASSERT_TRUE(WriteFile(dir / ("l" + std::to_string(i) + ".vmdk"),
                          SparseLayer(hint, i + 1 < n ? 0 : 9)));
  }
}

TEST_F(HostileTest, DeepChainAtTheLimitOpensReadsAndMaps) {
  WriteChain(dir_, kMaxBackingDepth + 1);  // top + kMaxBackingDepth backing files
  auto node = OpenVmdk(dir_ / "l0.vmdk");
  ASSERT_TRUE(node) << node.error().ToString();
  size_t depth = 0;
  for (BlockNode* n = (*node)->backing(); n; n = n->backing()) ++depth;
  EXPECT_EQ(depth, kMaxBackingDepth);
  // An unallocated read descends through every layer to the bottom.
  auto got = Read(**node, 0, 4096);
  ASSERT_TRUE(got) << got.error().ToString();
  Bytes want = testing_util::Pattern(65536, 9);
  want.resize(4096);
  EXPECT_TRUE(*got == want);
  auto map = Map(**node);
  ASSERT_TRUE(map) << map.error().ToString();
  ASSERT_FALSE(map->empty());
  EXPECT_TRUE((*map)[0].data);
}

TEST_F(HostileTest, ChainBeyondTheLimitIsAnError) {
  WriteChain(dir_, kMaxBackingDepth + 2);
  ExpectOpenError(dir_ / "l0.vmdk", "is too deep: more than " + std::to_string(kMaxBackingDepth));
}

// Not a check: with COBLK_HOSTILE_OUT=<dir>, writes the hostile
// files there (for timing the tools on them, before and after), one
// generator each, as the tests above use them.
TEST_F(HostileTest, WriteCorpusForMeasurement) {
  const char* out = std::getenv("COBLK_HOSTILE_OUT");
  if (!out) GTEST_SKIP() << "set COBLK_HOSTILE_OUT=<dir> to write the files";
  const std::string d = out;
  auto sub = [&](const std::string& name) {
    mkdir((d + "/" + name).c_str(), 0755);
    return d + "/" + name + "/";
  };
  // 1: a confined child whose parent hint leaves the directory.
  std::string p = sub("confine");
  mkdir((p + "in").c_str(), 0755);
  ASSERT_TRUE(WriteFile(p + "flat.img", Bytes(kSize, 2)));
  ASSERT_TRUE(WriteFile(p + "outside.vmdk", FlatLayer("")));
  ASSERT_TRUE(WriteFile(p + "in/flat.img", Bytes(kSize, 1)));
  ASSERT_TRUE(WriteFile(p + "in/child.vmdk", SparseLayer("../outside.vmdk")));
  // 2: self loop and A -> B -> A.
  p = sub("loop");
  ASSERT_TRUE(WriteFile(p + "flat.img", Bytes(kSize, 3)));
  ASSERT_TRUE(WriteFile(p + "self.vmdk", SparseLayer("self.vmdk")));
  ASSERT_TRUE(WriteFile(p + "a.vmdk", SparseLayer("b.vmdk")));
  ASSERT_TRUE(WriteFile(p + "b.vmdk", SparseLayer("a.vmdk")));
  // 3: 8 EiB ZERO extent; 2^40-sector sparse image with one grain.
  p = sub("huge");
  ASSERT_TRUE(WriteFile(p + "zero8e.vmdk",
                        SimpleDescriptor("monolithicFlat", {"RW 18014398507384832 ZERO"})));
  WriteHugeSparse(p + "huge.vmdk", uint64_t{1} << 40);
  // 4: many extent lines.
  p = sub("many");
  ASSERT_TRUE(WriteFile(p + "flat.raw", Bytes(8 * 512, 1)));
  ASSERT_TRUE(WriteFile(p + "flat4k.vmdk", ManyLines(4000)));
  ASSERT_TRUE(WriteFile(p + "flat40k.vmdk", ManyLines(40000)));
  ASSERT_TRUE(WriteFile(p + "zero100k.vmdk", ManyLines(100000, 1)));
  ASSERT_TRUE(WriteFile(p + "f", Bytes(8 * 512, 1)));
  ASSERT_TRUE(WriteFile(p + "flat65k.vmdk", ManyLines(kMaxFlatLines, 0, "f")));
  // 5: 1 KiB VMDK3, one directory entry, 2^32-1 sectors.
  p = sub("vmdk3");
  BuiltImage v3 = BuildVmdk3(2048, {});
  v3.file.resize(1024);
  StoreLe32(v3.file, 12, 0xffffffff);
  StoreLe32(v3.file, 20, 1);
  StoreLe32(v3.file, 28, 2);
  ASSERT_TRUE(WriteFile(p + "v3.vmdk", v3.file));
  // 6: streamOptimized, 1 GiB grains, 4 KiB of data.
  p = sub("stream");
  ASSERT_TRUE(WriteFile(p + "bigrain.vmdk", StreamGrainImage(0x200000, Bytes(4096, 7))));
  // 7: a 2,000-level chain.
  p = sub("deep");
  for (size_t i = 0; i < 2000; ++i) {
    const std::string hint = i + 1 < 2000 ? "l" + std::to_string(i + 1) + ".vmdk" : "";
    ASSERT_TRUE(WriteFile(p + "l" + std::to_string(i) + ".vmdk", SparseLayer(hint, i + 1 < 2000 ? 0 : 9)));
  }
}

}  // namespace
}  // namespace coblk::vmdk::test
