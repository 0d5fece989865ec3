// Hostile images at scale (part of the malformed-image corpus, run under
// ASan+UBSan by scripts/test.sh): files that are small or few, but whose
// headers, hints or extent lines ask for unbounded work. Each case's file is
// generated here. The rule they check: opening, reading, mapping or checking
// costs what the file holds and the request asks, never what a header or a
// hint claims; a chain is confined as a whole, never loops, never runs deep.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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

class HostileTest : public VmdkImageTest {
 protected:
  void ExpectOpenError(const std::string& path, const std::string& what,
                       const std::string& extra = "", bool read_only = true) {
    auto node = OpenVmdk(path, extra, read_only);
    ASSERT_FALSE(node) << "opened, expected: " << what;
    EXPECT_NE(node.error().message().find(what), std::string::npos)
        << "want '" << what << "', got: " << node.error().ToString();
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

}  // namespace
}  // namespace coblk::vmdk::test
