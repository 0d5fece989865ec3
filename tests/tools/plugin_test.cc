// Driver plugins load into the tools through COBLK_PLUGINS and take the
// same path as built-in drivers (examples/plugins/xor_format.cc).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
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

TEST(PluginTest, UnknownFormatWithoutPlugin) {
  TempFile f(1 << 20);
  RunResult r = RunTool(CoblkIo(), {"--image-opts", "-c", "read 0 512",
                                    "driver=xor,file.filename=" + f.path()});
  EXPECT_NE(r.status, 0);
  EXPECT_NE((r.out + r.err).find("Unknown driver 'xor'"), std::string::npos) << r.out << r.err;
}

}  // namespace
}  // namespace coblk::testing
