// Interop, write side. coblk creates (CreateImage or `coblk-img create`)
// and writes every subformat (x zeroed_grain, with compat6 and the adapter
// types spread over the cases); qemu-img check is clean, qemu-img compare
// against a raw file with the same writes says identical, qemu-img info
// agrees on size and create type, qemu-io reads the patterns and vmdkinfo
// opens the image. The other way: images qemu-img made and qemu-io wrote,
// then written by coblk, still check clean and compare equal.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/drivers/vmdk/vmdk_write_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kGrain = 65536;

// Aligned, unaligned and grain-straddling writes, zero writes, overwrites;
// across the 2 GiB extent split for > 2 GiB disks.
std::vector<WriteOp> SparseWrites(int64_t size) {
  std::vector<WriteOp> w = {
      {WriteOp::kData, 0, 512, 0x11},
      {WriteOp::kData, 1000, 70000, 0x22},       // unaligned, grains 0-1
      {WriteOp::kData, 131071, 2, 0x33},         // straddles grains 1-2
      {WriteOp::kData, 200000, 300000, 0x44},
      {WriteOp::kZero, 300000, 131072, 0},       // unaligned zero write
      {WriteOp::kZero, kMiB_, 3 * kGrain, 0},    // whole grains
      {WriteOp::kData, kMiB_ + kGrain + 100, 300, 0x45},  // into a zeroed grain
      {WriteOp::kData, 4096, 8192, 0x99},        // overwrite of allocated data
      {WriteOp::kData, size / 2 + 12345, 65536, 0x55},
      {WriteOp::kData, size - 4097, 4097, 0x66},  // up to the end
  };
  if (size > 2 * kGiB_) {
    w.push_back({WriteOp::kData, 2 * kGiB_ - 1000, 3000, 0x77});  // across the split
    w.push_back({WriteOp::kZero, 2 * kGiB_ + kGrain, kGrain, 0});
    w.push_back({WriteOp::kData, 2 * kGiB_ + 12 * kMiB_ + 5, 100000, 0x78});
    w.push_back({WriteOp::kZero, 2 * kGiB_ - kGrain, 2 * kGrain, 0});  // zeroes across it
  }
  return w;
}

// streamOptimized: every grain is written once (no overwrites), some writes
// compressed explicitly, zero writes fall back to compressed zero data.
std::vector<WriteOp> StreamWrites(int64_t size) {
  const int64_t mid = size / 2 / kGrain * kGrain;
  return {
      {WriteOp::kData, 5 * kGrain, 512, 0x11},
      {WriteOp::kCompressed, 2 * kGrain, kGrain, 0x22},
      {WriteOp::kData, 12 * kGrain + 1000, 70000, 0x23},  // straddles 12-13
      {WriteOp::kZero, 16 * kGrain, 2 * kGrain, 0},
      {WriteOp::kCompressed, 20 * kGrain, 3 * kGrain, 0x33},
      {WriteOp::kData, 0, 4096, 0x44},                     // backwards in the stream
      {WriteOp::kData, mid + 777, 1234, 0x55},
      {WriteOp::kData, size - 4097, 4097, 0x66},
  };
}

struct Case {
  std::string subformat;
  bool zeroed_grain;
  bool compat6;
  std::string adapter;
  int64_t size;
  bool via_tool;  // coblk-img create instead of CreateImage
};

std::string Name(const ::testing::TestParamInfo<Case>& i) {
  return i.param.subformat + (i.param.zeroed_grain ? "_zg" : "") + (i.param.compat6 ? "_c6" : "") +
         "_" + i.param.adapter + (i.param.via_tool ? "_tool" : "");
}
// Readable GetParam() in test listings (gtest would dump the bytes).
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.subformat << " zeroed_grain=" << c.zeroed_grain << " compat6=" << c.compat6
      << " adapter=" << c.adapter << " size=" << c.size << (c.via_tool ? " via coblk-img" : "");
}

const int64_t kBig = 2 * kGiB_ + 16 * kMiB_ + 1536;  // > 2 GiB, not grain aligned
const int64_t kSmall = 64 * kMiB_ + 512;

std::vector<Case> Cases() {
  return {
      {"monolithicSparse", false, false, "ide", kSmall, false},
      {"monolithicSparse", true, true, "lsilogic", kSmall, true},
      {"monolithicFlat", false, true, "buslogic", kSmall, false},
      {"twoGbMaxExtentSparse", false, false, "legacyESX", kBig, true},
      {"twoGbMaxExtentSparse", true, false, "ide", kBig, false},
      {"twoGbMaxExtentFlat", false, false, "lsilogic", kBig, true},
      {"streamOptimized", false, false, "buslogic", kSmall, false},
      {"streamOptimized", true, true, "legacyESX", kSmall, true},
  };
}

class InteropWrite : public VmdkWriteTest, public ::testing::WithParamInterface<Case> {};

TEST_P(InteropWrite, CoblkWritesQemuReads) {
  SKIP_WITHOUT_QEMU();
  const Case& c = GetParam();
  ScratchDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string img = dir / "img.vmdk", raw = dir / "ref.raw";
  std::string opts = "size=" + std::to_string(c.size) + ",subformat=" + c.subformat +
                     ",adapter_type=" + c.adapter;
  if (c.zeroed_grain) opts += ",zeroed_grain=on";
  if (c.compat6) opts += ",compat6=on";
  if (c.via_tool) {
    std::string out;
    ASSERT_EQ(ShOut(std::string(COBLK_BIN_DIR) + "/coblk-img create -f vmdk -o " +
                     opts.substr(opts.find(',') + 1) + " " + img + " " + std::to_string(c.size) +
                     "",
                 &out),
              0)
        << out;
  } else {
    Status st = Create(img, opts);
    ASSERT_TRUE(st) << st.error().ToString();
  }
  const bool stream = c.subformat == "streamOptimized";
  const auto writes = stream ? StreamWrites(c.size) : SparseWrites(c.size);
  Shadow shadow;
  {
    auto node = OpenRw(img);
    ASSERT_TRUE(node) << node.error().ToString();
    ASSERT_EQ((*node)->size(), c.size);
    for (const WriteOp& w : writes) {
      Status st = Apply(**node, w, &shadow);
      ASSERT_TRUE(st) << QemuIoCommand(w) << ": " << st.error().ToString();
    }
    ExpectContent(**node, shadow);
    Close(*node);
  }
  // coblk reads its own image back after reopening.
  {
    auto node = OpenVmdk(img);
    ASSERT_TRUE(node) << node.error().ToString();
    ExpectContent(**node, shadow);
    Close(*node);
  }
  ExpectCoblkCheckClean(img);
  ExpectQemuCheckClean(img);

  ASSERT_EQ(Sh("qemu-img create -f raw " + raw + " " + std::to_string(c.size)), 0);
  ASSERT_EQ(Sh("qemu-io -f raw" + QemuIoRawArgs(writes) + " " + raw), 0);
  std::string out;
  EXPECT_EQ(ShOut("qemu-img compare -f vmdk -F raw " + img + " " + raw, &out), 0) << out;

  std::string info;
  ASSERT_EQ(Sh("qemu-img info -f vmdk --output=json " + img, &info), 0);
  auto j = nlohmann::json::parse(info);
  EXPECT_EQ(j["virtual-size"].get<int64_t>(), c.size);
  EXPECT_EQ(j["format-specific"]["data"]["create-type"].get<std::string>(), c.subformat);

  out.clear();
  ShOut("qemu-io -r -f vmdk" + QemuIoVerifyArgs(shadow, writes) + " " + img, &out);
  EXPECT_EQ(out.find("Pattern verification failed"), std::string::npos) << out;
  EXPECT_EQ(out.find("error"), std::string::npos) << out;

  if (Sh("vmdkinfo -V") == 0 || Sh("which vmdkinfo") == 0) {
    out.clear();
    EXPECT_EQ(ShOut("vmdkinfo " + img, &out), 0) << out;
  }
}

INSTANTIATE_TEST_SUITE_P(CoblkImages, InteropWrite, ::testing::ValuesIn(Cases()), Name);

// qemu-img creates, qemu-io writes, coblk overwrites, allocates and zeroes.
struct ReverseCase {
  std::string subformat;
  bool zeroed_grain;
  int64_t size;
};
void PrintTo(const ReverseCase& c, std::ostream* os) {
  *os << c.subformat << " zeroed_grain=" << c.zeroed_grain << " size=" << c.size;
}

class InteropWriteReverse : public VmdkWriteTest,
                            public ::testing::WithParamInterface<ReverseCase> {};

TEST_P(InteropWriteReverse, QemuImageWrittenByCoblk) {
  SKIP_WITHOUT_QEMU();
  const ReverseCase& c = GetParam();
  ScratchDir dir;
  const std::string img = dir / "img.vmdk", raw = dir / "ref.raw";
  const bool stream = c.subformat == "streamOptimized";
  std::string o = "subformat=" + c.subformat + (c.zeroed_grain ? ",zeroed_grain=on" : "");
  ASSERT_EQ(Sh("qemu-img create -f vmdk -o " + o + " " + img + " " + std::to_string(c.size)), 0);
  std::vector<WriteOp> qemu_writes, coblk_writes;
  if (stream) {
    qemu_writes = {{WriteOp::kCompressed, 0, kGrain, 0x21},
                   {WriteOp::kCompressed, 8 * kGrain, 2 * kGrain, 0x22}};
    coblk_writes = {{WriteOp::kData, 3 * kGrain + 5, 1000, 0x31},
                    {WriteOp::kCompressed, 30 * kGrain, kGrain, 0x32},
                    {WriteOp::kZero, 40 * kGrain, kGrain, 0}};
  } else {
    qemu_writes = {{WriteOp::kData, 0, 3 * kGrain, 0x21},
                   {WriteOp::kData, 20 * kMiB_ + 999, 5000, 0x22},
                   {WriteOp::kZero, 30 * kMiB_, 2 * kGrain, 0}};
    coblk_writes = {{WriteOp::kData, 1000, 2000, 0x31},                // overwrite
                    {WriteOp::kData, kGrain * 2 + 65000, 1000, 0x32},  // over + new grain
                    {WriteOp::kData, 40 * kMiB_ + 3, 200000, 0x33},    // new allocations
                    {WriteOp::kZero, 20 * kMiB_, kGrain, 0},           // zero allocated grain
                    {WriteOp::kZero, 50 * kMiB_ + 512, 3 * kGrain, 0},
                    {WriteOp::kData, 30 * kMiB_ + 4096, 512, 0x34}};   // into qemu's zeroes
  }
  std::string qargs;
  for (const auto& w : qemu_writes) qargs += " -c '" + QemuIoCommand(w) + "'";
  ASSERT_EQ(Sh("qemu-io -f vmdk" + qargs + " " + img), 0);
  Shadow shadow;
  for (const auto& w : qemu_writes) shadow.Apply(w);
  {
    auto node = OpenRw(img);
    ASSERT_TRUE(node) << node.error().ToString();
    for (const WriteOp& w : coblk_writes) {
      Status st = Apply(**node, w, &shadow);
      ASSERT_TRUE(st) << QemuIoCommand(w) << ": " << st.error().ToString();
    }
    ExpectContent(**node, shadow);
    Close(*node);
  }
  ExpectQemuCheckClean(img);
  ExpectCoblkCheckClean(img);
  std::vector<WriteOp> all = qemu_writes;
  all.insert(all.end(), coblk_writes.begin(), coblk_writes.end());
  ASSERT_EQ(Sh("qemu-img create -f raw " + raw + " " + std::to_string(c.size)), 0);
  ASSERT_EQ(Sh("qemu-io -f raw" + QemuIoRawArgs(all) + " " + raw), 0);
  std::string out;
  EXPECT_EQ(ShOut("qemu-img compare -f vmdk -F raw " + img + " " + raw, &out), 0) << out;
}

INSTANTIATE_TEST_SUITE_P(
    QemuImages, InteropWriteReverse,
    ::testing::Values(ReverseCase{"monolithicSparse", false, 64 * kMiB_},
                      ReverseCase{"monolithicSparse", true, 64 * kMiB_},
                      ReverseCase{"monolithicFlat", false, 64 * kMiB_},
                      ReverseCase{"twoGbMaxExtentSparse", true, 64 * kMiB_},
                      ReverseCase{"twoGbMaxExtentFlat", false, 64 * kMiB_},
                      ReverseCase{"streamOptimized", false, 64 * kMiB_}),
    [](const ::testing::TestParamInfo<ReverseCase>& i) {
      return i.param.subformat + (i.param.zeroed_grain ? "_zg" : "");
    });

}  // namespace
}  // namespace coblk::vmdk::test
