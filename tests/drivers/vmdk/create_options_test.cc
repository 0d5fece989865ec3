// vmdk create options end to end: the -o help listing, QEMU's error
// wording for bad combinations, and the generated files compared with
// qemu-img's for the same options (CID lines excepted; sparse extents byte
// for byte).
#include <gtest/gtest.h>

#include <filesystem>

#include "block/block_driver.h"
#include "tests/drivers/vmdk/vmdk_write_util.h"

namespace coblk::vmdk::test {
namespace {

class CreateOptionsTest : public VmdkWriteTest {
 protected:
  ScratchDir dir_;
};

TEST_F(CreateOptionsTest, HelpListsQemuOptions) {
  const BlockDriver* drv = FindFormatDriver("vmdk");
  ASSERT_NE(drv, nullptr);
  std::vector<std::string> names;
  for (const auto& o : drv->create_options()) names.push_back(o.name);
  const std::vector<std::string> want = {"adapter_type", "backing_file", "backing_fmt",
                                         "compat6",      "hwversion",    "size",
                                         "subformat",    "toolsversion", "zeroed_grain"};
  for (const auto& w : want)
    EXPECT_NE(std::find(names.begin(), names.end(), w), names.end()) << w;
  std::string out;
  ASSERT_EQ(Sh(std::string(COBLK_BIN_DIR) + "/coblk-img create -f vmdk -o help", &out), 0);
  for (const auto& w : want) EXPECT_NE(out.find(w), std::string::npos) << w << "\n" << out;
  if (HaveQemu()) {
    std::string q;
    Sh("qemu-img create -f vmdk -o help", &q);
    for (const auto& w : want) EXPECT_NE(q.find(w), std::string::npos) << w;
  }
}

TEST_F(CreateOptionsTest, ErrorsLikeQemu) {
  const std::string base = dir_ / "base.raw";
  ASSERT_TRUE(WriteFile(base, Bytes(1 << 20, 0)));
  const std::string vbase = dir_ / "base.vmdk";
  ASSERT_TRUE(Create(vbase, "size=1M"));
  struct Bad {
    std::string opts;
    std::string msg;
  } bad[] = {
      {"size=1M,adapter_type=foo", "invalid parameter value: foo"},
      {"size=1M,subformat=foo", "invalid parameter value: foo"},
      {"size=1M,subformat=monolithicFlat,zeroed_grain=on", "Flat image can't enable zeroed grain"},
      {"size=1M,subformat=twoGbMaxExtentFlat,zeroed_grain=on",
       "Flat image can't enable zeroed grain"},
      {"size=1M,subformat=monolithicFlat,backing_file=" + vbase + ",backing_fmt=vmdk",
       "Flat image can't have backing file"},
      {"size=1M,compat6=on,hwversion=6", "compat6 cannot be enabled with hwversion set"},
      {"size=1M,backing_file=" + base + ",backing_fmt=raw", "backing_file must be a vmdk image"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.opts);
    const std::string img = dir_ / "bad.vmdk";
    Status st = Create(img, b.opts);
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message().find(b.msg), std::string::npos) << st.error().ToString();
    if (HaveQemu()) {
      std::string q, sz = b.opts.substr(5, b.opts.find(',') == std::string::npos
                                               ? std::string::npos
                                               : b.opts.find(',') - 5);
      std::string rest = b.opts.find(',') == std::string::npos ? "" : b.opts.substr(b.opts.find(',') + 1);
      ShOut("qemu-img create -f vmdk " + (rest.empty() ? "" : "-o " + rest + " ") + img + " " + sz +
             "",
         &q);
      EXPECT_NE(q.find(b.msg), std::string::npos) << "qemu-img says: " << q;
    }
  }
}

// A name the descriptor cannot hold (a quote would end the extent line's
// file name early) is refused before any file is made: no half-made image
// that no tool opens is left behind, for any subformat.
TEST_F(CreateOptionsTest, UnrepresentableNameLeavesNoFiles) {
  for (const char* sub : {"monolithicSparse", "streamOptimized", "monolithicFlat",
                          "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"}) {
    SCOPED_TRACE(sub);
    const std::string sub_dir = dir_ / sub;
    std::filesystem::create_directory(sub_dir);
    Status st = Create(sub_dir + "/a\"b.vmdk", std::string("size=1M,subformat=") + sub);
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message().find("Invalid extent for descriptor"), std::string::npos)
        << st.error().ToString();
    EXPECT_TRUE(std::filesystem::is_empty(sub_dir));
  }
}

// Options-based create is qemu-img create's path (vmdk_co_create_opts),
// which rounds the size up to whole sectors; only QEMU's blockdev-create
// path refuses such a size.
TEST_F(CreateOptionsTest, SizeRoundedUpToSectors) {
  const std::string img = dir_ / "odd.vmdk";
  ASSERT_TRUE(Create(img, "size=1000"));
  auto node = OpenVmdk(img);
  ASSERT_TRUE(node) << node.error().ToString();
  EXPECT_EQ((*node)->size(), 1024);
}

struct Combo {
  std::string name, opts, size;
};

// Blanks the embedded descriptor area (compared as text, without the
// random CID whose width varies) so the rest compares byte for byte.
void MaskDescriptor(Bytes& b) {
  if (b.size() >= 21 * 512) std::fill(b.begin() + 512, b.begin() + 21 * 512, 0);
}

TEST_F(CreateOptionsTest, FilesMatchQemuImg) {
  if (!HaveQemu()) GTEST_SKIP() << "qemu-img not installed";
  ScratchDir qd;
  const std::vector<Combo> combos = {
      {"defaults", "", "100M"},
      {"lsilogic_compat6", "adapter_type=lsilogic,compat6=on", "100M"},
      {"buslogic_hw7_tools", "adapter_type=buslogic,hwversion=7,toolsversion=1234", "1G"},
      {"legacyESX_flat", "adapter_type=legacyESX,subformat=monolithicFlat", "10M"},
      {"split_sparse_zg", "subformat=twoGbMaxExtentSparse,zeroed_grain=on", "5G"},
      {"split_flat", "subformat=twoGbMaxExtentFlat,adapter_type=ide", "3G"},
      {"stream", "subformat=streamOptimized,hwversion=4", "77M"},
      {"odd_size_zg", "zeroed_grain=on,toolsversion=", "1025K"},
  };
  for (const Combo& c : combos) {
    SCOPED_TRACE(c.name);
    const std::string mine = dir_ / (c.name + ".vmdk"), theirs = qd / (c.name + ".vmdk");
    Status st = Create(mine, "size=" + c.size + (c.opts.empty() ? "" : "," + c.opts));
    ASSERT_TRUE(st) << st.error().ToString();
    ASSERT_EQ(Sh("qemu-img create -f vmdk " + (c.opts.empty() ? "" : "-o " + c.opts + " ") +
                 theirs + " " + c.size),
              0);
    std::string a = Descriptor(mine), b = Descriptor(theirs);
    auto strip = [](std::string d) {
      std::string out;
      size_t p = 0;
      while (p < d.size()) {
        size_t nl = d.find('\n', p);
        if (nl == std::string::npos) nl = d.size();
        std::string line = d.substr(p, nl - p);
        if (line.rfind("CID=", 0) != 0) out += line + "\n";
        p = nl + 1;
      }
      return out;
    };
    EXPECT_EQ(strip(a), strip(b));
    // Defaults and geometry facts spelled out.
    const bool ide = c.opts.find("adapter_type") == std::string::npos ||
                     c.opts.find("adapter_type=ide") != std::string::npos;
    EXPECT_EQ(DescValue(a, "ddb.geometry.heads"), ide ? "16" : "255");
    if (c.opts.find("toolsversion") == std::string::npos) {
      EXPECT_EQ(DescValue(a, "ddb.toolsVersion"), "2147483647");
    }
    if (c.opts.find("compat6") != std::string::npos) {
      EXPECT_EQ(DescValue(a, "ddb.virtualHWVersion"), "6");
    }
    if (c.opts.find("hwversion=7") != std::string::npos) {
      EXPECT_EQ(DescValue(a, "ddb.virtualHWVersion"), "7");
    }
    if (c.opts.find("toolsversion=1234") != std::string::npos) {
      EXPECT_EQ(DescValue(a, "ddb.toolsVersion"), "1234");
    }
    // Sparse extents made by the same plan are identical byte for byte
    // (streamOptimized differs on purpose: coblk writes the stream layout).
    if (c.name == "defaults" || c.name == "lsilogic_compat6" || c.name == "odd_size_zg") {
      Bytes x = ReadFile(mine), y = ReadFile(theirs);
      MaskDescriptor(x);
      MaskDescriptor(y);
      EXPECT_EQ(x.size(), y.size());
      EXPECT_TRUE(x == y);
    }
    if (c.name == "split_sparse_zg") {
      for (const char* ext : {"-s001.vmdk", "-s003.vmdk"}) {
        Bytes x = ReadFile(dir_ / (c.name + ext)), y = ReadFile(qd / (c.name + ext));
        EXPECT_EQ(x.size(), y.size()) << ext;
        EXPECT_TRUE(x == y) << ext;
      }
    }
    std::string info;
    EXPECT_EQ(Sh("qemu-img check -f vmdk " + mine), 0);
  }
}

TEST_F(CreateOptionsTest, BackingFileDescriptorMatchesQemu) {
  if (!HaveQemu()) GTEST_SKIP() << "qemu-img not installed";
  const std::string base = dir_ / "base.vmdk";
  ASSERT_TRUE(Create(base, "size=10M"));
  const std::string mine = dir_ / "mine.vmdk", theirs = dir_ / "theirs.vmdk";
  Status st = Create(mine, "size=10M,backing_file=base.vmdk,backing_fmt=vmdk");
  ASSERT_TRUE(st) << st.error().ToString();
  ASSERT_EQ(Sh("cd " + dir_.path() + " && qemu-img create -f vmdk -b base.vmdk -F vmdk " + theirs), 0);
  const std::string a = Descriptor(mine), b = Descriptor(theirs);
  EXPECT_EQ(DescValue(a, "parentCID"), DescValue(b, "parentCID"));
  EXPECT_EQ(DescValue(a, "parentCID"), DescValue(Descriptor(base), "CID"));
  EXPECT_EQ(DescValue(a, "parentFileNameHint"), DescValue(b, "parentFileNameHint"));
  EXPECT_EQ(DescValue(a, "createType"), "monolithicSparse");
  std::string out;
  EXPECT_EQ(Sh("qemu-img info -f vmdk " + mine, &out), 0);
  EXPECT_NE(out.find("backing file: base.vmdk"), std::string::npos) << out;
}

}  // namespace
}  // namespace coblk::vmdk::test
