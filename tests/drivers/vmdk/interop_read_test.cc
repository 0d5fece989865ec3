// Interop, read side: images made by qemu-img / qemu-io (every subformat,
// zeroed_grain on/off, small, odd-sized and > 2 GiB sparse) read by coblk
// byte for byte like `qemu-img convert -O raw`, and coblk's block-status
// walk equals `qemu-img map --output=json`. Plus backing chains and the
// parent-CID check. Skipped when qemu-img is not installed.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/drivers/vmdk/vmdk_image_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kGiB = int64_t{1} << 30;

std::vector<MapEntry> ParseQemuMap(const std::string& text) {
  std::vector<MapEntry> out;
  auto j = nlohmann::json::parse(text);
  for (const auto& e : j) {
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
  return Merge(out);  // depth is not compared: re-merge without it
}

struct QWrite {
  bool zero;
  int64_t offset, length;
  int pattern;
};

// Scattered, unaligned and grain-straddling writes, plus zero writes.
std::vector<QWrite> WritesFor(int64_t size) {
  std::vector<QWrite> w = {
      {false, 0, 512, 0x11},
      {false, 1000, 70000, 0x22},                 // unaligned, across grains 0-1
      {false, 131071, 2, 0x33},                   // straddles a grain boundary
      {false, 200000, 300000, 0x44},
      {true, 300000, 131072, 0},                  // unaligned zero write
      {true, kMiB, 196608, 0},                    // whole grains zeroed
      {false, size / 2 + 12345, 65536, 0x55},
      {false, size - 4097, 4097, 0x66},           // up to the end
  };
  if (size > 2 * kGiB) {
    w.push_back({false, 2 * kGiB - 1000, 3000, 0x77});  // across the 2 GiB split
    w.push_back({true, 2 * kGiB + 65536, 65536, 0});
    w.push_back({false, 2 * kGiB + 12 * kMiB + 5, 100000, 0x78});
  }
  return w;
}

std::string QemuIoArgs(const std::vector<QWrite>& ws) {
  std::string a;
  for (const QWrite& w : ws) {
    a += w.zero ? " -c 'write -z " : " -c 'write -P " + std::to_string(w.pattern) + " ";
    a += std::to_string(w.offset) + " " + std::to_string(w.length) + "'";
  }
  return a;
}

struct InteropCase {
  std::string subformat;
  bool zeroed_grain;
  int64_t size;
};

// Readable GetParam() in test listings (gtest would dump the bytes).
void PrintTo(const InteropCase& c, std::ostream* os) {
  *os << c.subformat << " zeroed_grain=" << c.zeroed_grain << " size=" << c.size;
}

std::string Name(const ::testing::TestParamInfo<InteropCase>& i) {
  return i.param.subformat + (i.param.zeroed_grain ? "_zg" : "") + "_" +
         std::to_string(i.param.size / 512);
}

class InteropRead : public VmdkImageTest, public ::testing::WithParamInterface<InteropCase> {};

TEST_P(InteropRead, ContentAndMapMatchQemu) {
  SKIP_WITHOUT_QEMU();
  const InteropCase& c = GetParam();
  ScratchDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string img = dir / "img.vmdk", raw = dir / "ref.raw";
  const std::string size = std::to_string(c.size);
  const auto writes = WritesFor(c.size);
  const std::string zg = c.zeroed_grain ? ",zeroed_grain=on" : "";
  if (c.subformat == "streamOptimized") {
    // Build the data in a raw file, then convert (streamOptimized is
    // append-only; qemu-img convert is how such images are made).
    const std::string src = dir / "src.raw";
    ASSERT_EQ(Sh("qemu-img create -f raw " + src + " " + size), 0);
    ASSERT_EQ(Sh("qemu-io -f raw" + QemuIoArgs(writes) + " " + src), 0);
    ASSERT_EQ(Sh("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized" + zg + " " +
                  src + " " + img),
              0);
  } else {
    ASSERT_EQ(Sh("qemu-img create -f vmdk -o subformat=" + c.subformat + zg + " " + img + " " +
                  size),
              0);
    ASSERT_EQ(Sh("qemu-io -f vmdk" + QemuIoArgs(writes) + " " + img), 0);
  }
  ASSERT_EQ(Sh("qemu-img convert -f vmdk -O raw " + img + " " + raw), 0);
  std::string map_json;
  ASSERT_EQ(Sh("qemu-img map -f vmdk --output=json " + img, &map_json), 0);
  const auto qemu_map = ParseQemuMap(map_json);

  auto node = OpenVmdk(img);
  ASSERT_TRUE(node) << node.error().ToString();
  ASSERT_EQ((*node)->size(), c.size);

  // Block status.
  auto map = Map(**node);
  ASSERT_TRUE(map) << map.error().ToString();
  EXPECT_EQ(*map, qemu_map);

  // Content: everything for small images; for the big one every written
  // range (with margins), every allocated data range outside flat extents,
  // and samples.
  std::vector<std::pair<int64_t, int64_t>> ranges;
  if (c.size <= 64 * kMiB) {
    ranges.push_back({0, c.size});
  } else {
    for (const QWrite& w : writes) {
      const int64_t a = std::max<int64_t>(0, w.offset - 70000);
      const int64_t b = std::min(c.size, w.offset + w.length + 70000);
      ranges.push_back({a, b - a});
    }
    for (const MapEntry& e : qemu_map)
      if (e.data && !e.zero && e.length <= 16 * kMiB) ranges.push_back({e.start, e.length});
    for (int64_t off = 777; off < c.size; off += 256 * kMiB)
      ranges.push_back({off, std::min<int64_t>(65536, c.size - off)});
  }
  for (auto [off, len] : ranges) {
    auto got = ReadRange(**node, off, len);
    ASSERT_TRUE(got) << "offset " << off << ": " << got.error().ToString();
    auto want = testing_util::ReadHostFile(raw, off, static_cast<size_t>(len));
    ASSERT_TRUE(*got == want) << "content differs in [" << off << ", +" << len << ")";
  }
}

std::vector<InteropCase> Cases() {
  std::vector<InteropCase> v;
  for (const char* f : {"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
                        "twoGbMaxExtentFlat", "streamOptimized"}) {
    const bool flat = std::string(f).find("Flat") != std::string::npos;
    for (bool zg : {false, true}) {
      if (zg && flat) continue;  // "Flat image can't enable zeroed grain"
      for (int64_t size : {10 * kMiB, 33 * kMiB + 1536, 3 * kGiB}) v.push_back({f, zg, size});
    }
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(QemuImages, InteropRead, ::testing::ValuesIn(Cases()), Name);

// ---------------------------------------------------------------------------
// Backing chains.

class InteropBacking : public VmdkImageTest {
 protected:
  void MakeChain(const ScratchDir& dir) {
    base_ = dir / "base.vmdk";
    overlay_ = dir / "overlay.vmdk";
    ASSERT_EQ(Sh("qemu-img create -f vmdk " + base_ + " 8M"), 0);
    ASSERT_EQ(Sh("qemu-io -f vmdk -c 'write -P 0xb1 0 1M' -c 'write -P 0xb2 3000000 200000' "
                  "-c 'write -P 0xb3 7M 1M' " + base_),
              0);
    ASSERT_EQ(Sh("cd " + dir.path() +
                  " && qemu-img create -f vmdk -b base.vmdk -F vmdk overlay.vmdk"),
              0);
    ASSERT_EQ(Sh("qemu-io -f vmdk -c 'write -P 0x0c 65536 1000' -c 'write -P 0x0d 3100000 "
                  "70000' -c 'write -z 7340032 65536' " + overlay_),
              0);
  }
  std::string base_, overlay_;
};

TEST_F(InteropBacking, ReadsThroughOverlayLikeQemu) {
  SKIP_WITHOUT_QEMU();
  ScratchDir dir;
  MakeChain(dir);
  const std::string raw = dir / "ref.raw";
  ASSERT_EQ(Sh("qemu-img convert -f vmdk -O raw " + overlay_ + " " + raw), 0);
  std::string map_json;
  ASSERT_EQ(Sh("qemu-img map -f vmdk --output=json " + overlay_, &map_json), 0);

  auto node = OpenVmdk(overlay_);
  ASSERT_TRUE(node) << node.error().ToString();
  ASSERT_NE((*node)->backing(), nullptr);
  auto got = ReadRange(**node, 0, (*node)->size());
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_TRUE(*got == ReadFile(raw));
  auto map = Map(**node);
  ASSERT_TRUE(map) << map.error().ToString();
  EXPECT_EQ(*map, ParseQemuMap(map_json));
}

TEST_F(InteropBacking, ParentCidMismatchIsAReadError) {
  SKIP_WITHOUT_QEMU();
  ScratchDir dir;
  MakeChain(dir);
  // Rewrite the parentCID in the overlay's embedded descriptor.
  Bytes f = ReadFile(overlay_);
  std::string text(f.begin(), f.end());
  const size_t at = text.find("parentCID=");
  ASSERT_NE(at, std::string::npos);
  const size_t v = at + 10;
  f[v] = f[v] == '1' ? '2' : '1';
  ASSERT_TRUE(WriteFile(overlay_, f));
  // QEMU refuses to read through the broken link as well.
  EXPECT_NE(Sh("qemu-io -r -f vmdk -c 'read 3000000 4096' " + overlay_), 0);

  auto node = OpenVmdk(overlay_);
  ASSERT_TRUE(node) << node.error().ToString();
  // Allocated in the overlay: fine. Unallocated: must not silently read the base.
  EXPECT_TRUE(Read(**node, 65536, 1000));
  auto r = Read(**node, 3000000, 4096);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("Parent CID of '" + overlay_ +
                                     "' does not match the CID of its backing file '" + base_ +
                                     "' (parentCID="),
            std::string::npos)
      << r.error().ToString();
}

}  // namespace
}  // namespace coblk::vmdk::test
