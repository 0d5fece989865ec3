// Driver plugins load into the tools through COBLK_PLUGINS and take the
// same path as built-in drivers (examples/plugins/xor_format.cc).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <cstdio>
#include <string>

#include "tests/io/temp_file.h"
#include "tests/tools/tool_runner.h"

namespace coblk::testing {
namespace {

const std::string kPlugin = COBLK_BIN_DIR "/../lib/coblk-plugin-xor.so";

// Sets COBLK_PLUGINS for the tools this test runs.
class PluginEnv {
 public:
  explicit PluginEnv(const std::string& value) { setenv("COBLK_PLUGINS", value.c_str(), 1); }
  ~PluginEnv() { unsetenv("COBLK_PLUGINS"); }
};

TEST(PluginTest, XorFormatPluginRoundTripsThroughCoblkIo) {
  TempFile f(1 << 20);
  PluginEnv env(kPlugin);
  RunResult r = RunTool(CoblkIo(), {"--image-opts", "-c", "write -P 0x11 4096 4096", "-c",
                                    "read -P 0x11 4096 4096",
                                    "driver=xor,key=90,file.filename=" + f.path()});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  // On disk the bytes are stored XOR-ed with the key: 0x11 ^ 90 = 0x4b.
  std::ifstream in(f.path(), std::ios::binary);
  in.seekg(4096);
  char c = 0;
  in.read(&c, 1);
  EXPECT_EQ(static_cast<unsigned char>(c), 0x4bu);
}

TEST(PluginTest, MissingPluginIsAnError) {
  PluginEnv env("/nonexistent/plugin.so");
  RunResult r = RunTool(CoblkImg(), {"--help"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("plugin.so"), std::string::npos) << r.err;
}

TEST(PluginTest, PluginFlagOnBothTools) {
  TempFile f(1 << 20);
  RunResult r = RunTool(CoblkIo(), {"--plugin", kPlugin, "--image-opts", "-c",
                                    "write -P 0x22 0 4096",
                                    "driver=xor,key=1,file.filename=" + f.path()});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  r = RunTool(CoblkImg(), {"--plugin", kPlugin, "info", "--image-opts",
                           "driver=xor,key=1,file.filename=" + f.path()});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("file format: xor"), std::string::npos) << r.out;
  r = RunTool(CoblkIo(), {"--plugin", "/nonexistent/x.so", "-c", "read 0 1", f.path()});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("/nonexistent/x.so"), std::string::npos) << r.err;
}

TEST(PluginTest, PluginPathDirectory) {
  TempFile f(1 << 20);
  char dir[] = "/tmp/coblk-plugins-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string link = std::string(dir) + "/xor.so";
  ASSERT_EQ(symlink(kPlugin.c_str(), link.c_str()), 0);
  setenv("COBLK_PLUGIN_PATH", (std::string("/nonexistent:") + dir).c_str(), 1);
  RunResult r = RunTool(CoblkIo(), {"--image-opts", "-c", "read -P 0x5a 0 512",
                                    "driver=xor,key=90,file.filename=" + f.path()});
  unsetenv("COBLK_PLUGIN_PATH");
  unlink(link.c_str());
  rmdir(dir);
  EXPECT_EQ(r.status, 0) << r.out << r.err;  // zeros XOR 90 read as 0x5a
}

TEST(PluginTest, ListDriversShowsKindOriginAndCreateOptions) {
  RunResult r = RunTool(CoblkImg(), {"--plugin=" + kPlugin, "--list-drivers"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto line_of = [&](const std::string& name) {
    const size_t at = r.out.find("\n" + name + " ");
    if (at == std::string::npos) return std::string();
    return r.out.substr(at + 1, r.out.find('\n', at + 1) - at - 1);
  };
  EXPECT_NE(line_of("vmdk").find("format"), std::string::npos) << r.out;
  EXPECT_NE(line_of("vmdk").find("built-in"), std::string::npos) << r.out;
  EXPECT_NE(line_of("file").find("protocol"), std::string::npos) << r.out;
  EXPECT_NE(line_of("blkdebug").find("filter"), std::string::npos) << r.out;
  EXPECT_NE(line_of("xor").find("coblk-plugin-xor.so"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    subformat"), std::string::npos) << r.out;  // vmdk's create options
}

const std::string kSparsePlugin = COBLK_BIN_DIR "/../lib/coblk-plugin-sparse.so";

// An image that names itself as its backing file: opening it read-only
// recursed without end (a hang, then running out of descriptors).
TEST(PluginTest, SelfBackedImageIsRefusedNotALoop) {
  // create opens the backing file first (as qemu-img), so the loop is made
  // by creating over another image and renaming onto it.
  TempFile f(0), other(0);
  RunResult r = RunTool(CoblkImg(), {"--plugin", kSparsePlugin, "create", "-q", "-f", "exsparse",
                                     f.path(), "1M"});
  ASSERT_EQ(r.status, 0) << r.err;
  r = RunTool(CoblkImg(), {"--plugin", kSparsePlugin, "create", "-q", "-f", "exsparse", "-b",
                           f.path(), "-F", "exsparse", other.path(), "1M"});
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(std::rename(other.path().c_str(), f.path().c_str()), 0);
  r = RunTool(CoblkIo(), {"--plugin", kSparsePlugin, "-r", "-c", "read 0 4k", f.path()});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("Backing chain is longer than 64 images"), std::string::npos) << r.err;
}

TEST(PluginTest, UnknownFormatWithoutPlugin) {
  TempFile f(1 << 20);
  RunResult r = RunTool(CoblkIo(), {"--image-opts", "-c", "read 0 512",
                                    "driver=xor,file.filename=" + f.path()});
  EXPECT_NE(r.status, 0);
  EXPECT_NE((r.out + r.err).find("Unknown driver 'xor'"), std::string::npos) << r.out << r.err;
}

}  // namespace
}  // namespace coblk::testing
