// Driver registry, plugins and opening node graphs from options.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "block/block_driver.h"
#include "block/block_graph.h"
#include "block/plugin.h"
#include "tests/block/block_test_util.h"
#include "tests/coroutine/test_loop.h"

namespace coblk::test {
namespace {

class DummyDriver : public BlockDriver {
 public:
  explicit DummyDriver(std::string name) : name_(std::move(name)) {}
  std::string_view format_name() const override { return name_; }
  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext&) const override {
    co_return MakeError(EIO, "unused");
  }

 private:
  std::string name_;
};

class GraphTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    std::vector<uint8_t> fmt(16384, 0x11);
    std::memcpy(fmt.data(), "TESTFMT!", 8);
    Disks()["fmt"] = fmt;
    Disks()["plain"] = std::vector<uint8_t>(16384, 0x22);
  }
  void TearDown() override { Disks().clear(); }
};

TEST(RegistryTest, RejectsDuplicatesAndFindsDrivers) {
  Status s = RegisterBlockDriver(std::make_unique<DummyDriver>("testmem"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EEXIST);
  EXPECT_TRUE(RegisterBlockDriver(std::make_unique<DummyDriver>("dummy-unique")));
  EXPECT_NE(FindFormatDriver("dummy-unique"), nullptr);
  EXPECT_EQ(FindFormatDriver("no-such-format"), nullptr);
  EXPECT_NE(FindProtocolDriver("testproto"), nullptr);
  EXPECT_EQ(FindProtocolDriver("testmem"), nullptr);
  EXPECT_GE(AllBlockDrivers().size(), 4u);
}

TEST(RegistryTest, ProbePicksHighestScore) {
  uint8_t magic[16] = {};
  std::memcpy(magic, "TESTFMT!", 8);
  const BlockDriver* d = ProbeFormat(magic, "x");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->format_name(), "testfmt");
  uint8_t junk[16] = {1, 2, 3};
  const BlockDriver* fallback = ProbeFormat(junk, "x");
  EXPECT_EQ(fallback, FindFormatDriver("raw"));  // nullptr without a raw driver
}

TEST_F(GraphTest, DefaultCreateIsUnsupported) {
  Options opts;
  Status s = sync_wait(loop(), CreateImage(loop(), "testmem", "x.img", opts));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), ENOTSUP);
  EXPECT_EQ(s.error().message(), "Driver 'testmem' does not support image creation");
  s = sync_wait(loop(), CreateImage(loop(), "nope", "x.img", opts));
  EXPECT_EQ(s.error().message(), "Unknown file format 'nope'");
}

TEST(PluginTest, LoadsDriverPlugin) {
  Status bad = LoadDriverPlugin("/nonexistent/plugin.so");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("/nonexistent/plugin.so"), std::string::npos);
  ASSERT_TRUE(LoadDriverPlugin(COBLK_TEST_PLUGIN)) << COBLK_TEST_PLUGIN;
  const BlockDriver* d = FindFormatDriver("testplugin");
  ASSERT_NE(d, nullptr);
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop);
  (*loop)->make_current();
  auto n = OpenNode(**loop, "driver=testplugin,size=4096");
  ASSERT_TRUE(n) << n.error().ToString();
  uint8_t buf[16];
  ASSERT_TRUE(sync_wait(**loop, (*n)->pread(0, buf, sizeof buf)));
  EXPECT_EQ(buf[0], 0x5A);
  EXPECT_EQ((*n)->driver(), d);
  EXPECT_EQ(DriverOrigin(d), COBLK_TEST_PLUGIN);
  EXPECT_EQ(DriverOrigin(FindFormatDriver("raw")), "built-in");
  // Loading the same file again (by another route) is not a duplicate.
  EXPECT_TRUE(LoadDriverPlugin(COBLK_TEST_PLUGIN));
  auto v = ReadPluginAbiVersion(COBLK_TEST_PLUGIN);
  ASSERT_TRUE(v) << v.error().ToString();
  EXPECT_EQ(*v, kPluginAbiVersion);
}

// Both refused plugins abort in a static initialiser: reaching the EXPECTs
// at all shows nothing of them ran.
TEST(PluginTest, RefusesOtherAbiVersionBeforeLoading) {
  Status s = LoadDriverPlugin(COBLK_TEST_PLUGIN_ABI99);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(),
            std::string("Driver plugin '") + COBLK_TEST_PLUGIN_ABI99 +
                "' was built for coblk plugin ABI 99, but this coblk has plugin ABI " +
                std::to_string(kPluginAbiVersion) + "; rebuild the plugin against this coblk");
  auto v = ReadPluginAbiVersion(COBLK_TEST_PLUGIN_ABI99);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 99u);
}

TEST(PluginTest, RefusesUnversionedPluginBeforeLoading) {
  Status s = LoadDriverPlugin(COBLK_TEST_PLUGIN_UNVERSIONED);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("declares no coblk plugin ABI version"), std::string::npos)
      << s.error().message();
  EXPECT_NE(s.error().message().find("this coblk has plugin ABI " +
                                     std::to_string(kPluginAbiVersion)),
            std::string::npos);
}

// Hostile plugin files: errors, never a crash or a dlopen.
TEST(PluginTest, RefusesMalformedFiles) {
  char dir_tmpl[] = "/tmp/coblk-plugin-XXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  const std::string dir = dir_tmpl;
  auto write_file = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string p = dir + "/" + name;
    FILE* f = fopen(p.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    fwrite(bytes.data(), 1, bytes.size(), f);
    fclose(f);
    return p;
  };
  // Copy the good plugin and corrupt its section table offset / count.
  std::vector<uint8_t> good;
  {
    FILE* f = fopen(COBLK_TEST_PLUGIN, "rb");
    ASSERT_NE(f, nullptr);
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) good.insert(good.end(), buf, buf + n);
    fclose(f);
  }
  const std::string not_elf = write_file("text.so", {'h', 'e', 'l', 'l', 'o'});
  Status s = LoadDriverPlugin(not_elf);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("is not an ELF shared object"), std::string::npos);
  std::vector<uint8_t> bad = good;
  for (int i = 0; i < 8; ++i) bad[0x28 + i] = 0xff;  // e_shoff far past the end
  s = LoadDriverPlugin(write_file("shoff.so", bad));
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("malformed ELF section table"), std::string::npos);
  bad = good;
  bad.resize(bad.size() / 2);  // section table cut off
  s = LoadDriverPlugin(write_file("short.so", bad));
  ASSERT_FALSE(s);
  // Every single-byte corruption of the ELF header: an error or a clean load.
  for (size_t i = 0; i < 64; ++i) {
    bad = good;
    bad[i] ^= 0xff;
    (void)ReadPluginAbiVersion(write_file("flip.so", bad));
  }
  std::filesystem::remove_all(dir);
}

TEST(PluginTest, LoadsDirectoriesFromPluginPath) {
  char dir_tmpl[] = "/tmp/coblk-plugin-XXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  const std::string dir = dir_tmpl;
  // A symlink: the same file as COBLK_TEST_PLUGIN, which another test may
  // have loaded already (loading it again is then a no-op).
  std::filesystem::create_symlink(COBLK_TEST_PLUGIN, dir + "/a-test.so");
  std::filesystem::copy_file(COBLK_TEST_PLUGIN_ABI99, dir + "/b-old.so");
  std::filesystem::copy_file(COBLK_TEST_PLUGIN_ABI99, dir + "/ignored.txt");
  // A directory with a refused plugin fails naming it; the missing
  // directory is skipped.
  setenv("COBLK_PLUGIN_PATH", ("/nonexistent-dir:" + dir).c_str(), 1);
  Status s = LoadDriverPluginsFromEnvironment();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find(dir + "/b-old.so"), std::string::npos) << s.error().message();
  std::filesystem::remove(dir + "/b-old.so");
  EXPECT_TRUE(LoadDriverPluginsFromEnvironment());
  unsetenv("COBLK_PLUGIN_PATH");
  std::filesystem::remove_all(dir);
}

TEST_F(GraphTest, UnknownDriverAndMissingInput) {
  auto n = OpenNode(loop(), "driver=nope");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().errnum(), EINVAL);
  EXPECT_EQ(n.error().message(), "Unknown driver 'nope'");
  n = OpenNode(loop(), "node-name=x");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().message(), "Must specify either driver or filename");
  n = OpenNode(loop(), "driver=testfmt");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().message(), "A block device must be specified for \"file\"");
}

TEST_F(GraphTest, OpensFormatOverProtocol) {
  auto n = OpenNode(loop(), "driver=testfmt,file.driver=testproto,file.filename=fmt");
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ((*n)->driver()->format_name(), "testfmt");
  ASSERT_NE((*n)->file(), nullptr);
  EXPECT_EQ((*n)->file()->driver()->format_name(), "testproto");
  EXPECT_EQ((*n)->size(), 16384);
  EXPECT_EQ((*n)->node_name().rfind("#block", 0), 0u);
  EXPECT_NE((*n)->node_name(), (*n)->file()->node_name());
  EXPECT_EQ((*n)->file()->filename(), "fmt");
}

// "file=x" names the child's file just as "file.filename=y" does: both at
// once is an error naming the keys (QEMU refuses it too).
TEST_F(GraphTest, FileAndFileFilenameTogetherAreRejected) {
  Disks()["fmt-a"] = std::vector<uint8_t>(4096, 0);
  Disks()["fmt-b"] = std::vector<uint8_t>(4096, 0);
  auto n = OpenNode(loop(), "driver=testfmt,file=testproto:fmt-a,file.filename=testproto:fmt-b");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().errnum(), EINVAL);
  EXPECT_NE(n.error().message().find("'file.filename'"), std::string::npos) << n.error().message();
  auto one = OpenNode(loop(), "driver=testfmt,file=testproto:fmt-a");
  ASSERT_TRUE(one) << one.error().ToString();
  sync_wait(loop(), (*one)->close());
  Disks().erase("fmt-a");
  Disks().erase("fmt-b");
}

TEST_F(GraphTest, FilenameWithProtocolPrefix) {
  auto n = OpenNode(loop(), "driver=testfmt,filename=testproto:plain,node-name=top");
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ((*n)->node_name(), "top");
  EXPECT_EQ((*n)->file()->driver()->format_name(), "testproto");
  EXPECT_EQ((*n)->filename(), "testproto:plain");
  uint8_t b = 0;
  ASSERT_TRUE(sync_wait(loop(), (*n)->pread(5, &b, 1)));
  EXPECT_EQ(b, 0x22);
}

TEST_F(GraphTest, ProbesFormat) {
  BlockGraph graph(loop());
  auto n = OpenNode(loop(), "filename=testproto:fmt", {}, &graph);
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ((*n)->driver()->format_name(), "testfmt");
  EXPECT_EQ((*n)->file()->driver()->format_name(), "testproto");
  EXPECT_TRUE(graph.warnings().empty());
}

TEST_F(GraphTest, ProbeGuessingRawWarns) {
  if (!FindFormatDriver("raw")) GTEST_SKIP() << "no raw driver linked";
  BlockGraph graph(loop());
  auto n = OpenNode(loop(), "filename=testproto:plain", {}, &graph);
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ((*n)->driver()->format_name(), "raw");
  ASSERT_EQ(graph.warnings().size(), 1u);
  EXPECT_EQ(graph.warnings()[0],
            "WARNING: Image format was not specified for 'testproto:plain' and probing "
            "guessed raw.\n"
            "         Automatically detecting the format is dangerous for raw images, write "
            "operations on block 0 will be restricted.\n"
            "         Specify the 'raw' format explicitly to remove the restrictions.");
  BlockGraph ro_graph(loop());
  OpenFlags ro;
  ro.read_only = true;
  n = OpenNode(loop(), "filename=testproto:plain", ro, &ro_graph);
  ASSERT_TRUE(n);
  EXPECT_TRUE(ro_graph.warnings().empty());  // qemu-img info does not warn
}

TEST_F(GraphTest, JsonFilename) {
  Options o;
  o.set("filename",
        R"(json:{"driver":"testfmt","file":{"driver":"testproto","filename":"fmt"}})");
  auto n = sync_wait(loop(), BlockGraph(loop()).open(o, {}));
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ((*n)->driver()->format_name(), "testfmt");
  EXPECT_EQ((*n)->file()->driver()->format_name(), "testproto");
  BlockGraph g(loop());
  auto bad = sync_wait(loop(), g.open_file("json:{nope", "", {}));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "Could not parse the JSON options");
}

TEST_F(GraphTest, UnconsumedOptionsAreErrors) {
  auto n = OpenNode(loop(), "driver=testfmt,filename=testproto:fmt,foo=bar");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().errnum(), EINVAL);
  EXPECT_EQ(n.error().message(), "Block format 'testfmt' does not support the option 'foo'");
  n = OpenNode(loop(), "driver=testfmt,file.driver=testproto,file.filename=fmt,file.zzz=1");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().message(), "Block protocol 'testproto' does not support the option 'zzz'");
  n = OpenNode(loop(), "driver=testmem,backing.driver=testmem,backing.bogus=1");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().message(), "Block format 'testmem' does not support the option 'bogus'");
  n = OpenNode(loop(), "driver=testmem,size=12q");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().message(), "Parameter 'size' expects a non-negative number below 2^64");
  // Generic options are accepted everywhere and inherited.
  n = OpenNode(loop(), "driver=testmem,cache.direct=on,read-only=on");
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_TRUE((*n)->read_only());
}

TEST_F(GraphTest, ReadOnlyPropagatesAndLimitsMerge) {
  OpenFlags ro;
  ro.read_only = true;
  auto n = OpenNode(loop(), "driver=testfmt,file.driver=testproto,file.filename=fmt,file.align=4096",
                    ro);
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_TRUE((*n)->read_only());
  EXPECT_TRUE((*n)->file()->read_only());
  EXPECT_EQ((*n)->limits().request_alignment, 4096u);

  // Writable: an unaligned write on the format node is padded before the
  // protocol (which rejects unaligned writes) sees it.
  auto w = OpenNode(loop(), "driver=testfmt,file.driver=testproto,file.filename=fmt,file.align=4096");
  ASSERT_TRUE(w);
  uint8_t b = 0x77;
  ASSERT_TRUE(sync_wait(loop(), (*w)->pwrite(4097, &b, 1)));
  EXPECT_EQ(Disks()["fmt"][4097], 0x77);
  EXPECT_EQ(Disks()["fmt"][4096], 0x11);
}

TEST_F(GraphTest, NoBackingFlagAndEmptyBacking) {
  OpenFlags nb;
  nb.no_backing = true;
  auto n = OpenNode(loop(), "driver=testmem,backing.driver=testmem", nb);
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ((*n)->backing(), nullptr);
  n = OpenNode(loop(), "driver=testmem,backing=");
  ASSERT_TRUE(n) << n.error().ToString();
  EXPECT_EQ((*n)->backing(), nullptr);
}

TEST_F(GraphTest, ClosingRootClosesChildren) {
  int before = ProtoCloseCount();
  auto n = OpenNode(loop(), "driver=testfmt,file.driver=testproto,file.filename=fmt");
  ASSERT_TRUE(n);
  sync_wait(loop(), (*n)->close());
  EXPECT_EQ(ProtoCloseCount(), before + 1);
  sync_wait(loop(), (*n)->close());
  EXPECT_EQ(ProtoCloseCount(), before + 1);
}

TEST_F(GraphTest, FailedOpenClosesChildren) {
  int before = ProtoCloseCount();
  auto n = OpenNode(loop(), "driver=testfmt,file.driver=testproto,file.filename=fmt,x=1");
  ASSERT_FALSE(n);
  EXPECT_EQ(ProtoCloseCount(), before + 1);
}

}  // namespace
}  // namespace coblk::test
