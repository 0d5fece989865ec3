// coblk-img end to end: create, info, map, check and bench, compared with
// qemu-img's formats (and with qemu-img itself where it is installed).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "tests/tools/tool_runner.h"

namespace coblk::testing {
namespace {

constexpr size_t kMiB = 1 << 20;

RunResult Img(const std::vector<std::string>& args) { return RunTool(CoblkImg(), args); }

TEST(CoblkImgTest, CreateRawThenInfoHuman) {
  TempFile img;
  RunResult r = Img({"create", "-f", "raw", img.path(), "1M"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("Formatting '" + img.path() + "', fmt=raw size=1048576"))
      << r.out;
  r = Img({"info", "-f", "raw", img.path()});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> l = Lines(r.out);
  ASSERT_EQ(l.size(), 4u) << r.out;
  EXPECT_EQ(l[0], "image: " + img.path());
  EXPECT_EQ(l[1], "file format: raw");
  EXPECT_EQ(l[2], "virtual size: 1 MiB (1048576 bytes)");
  EXPECT_TRUE(l[3].starts_with("disk size: ")) << l[3];
}

TEST(CoblkImgTest, InfoJsonKeysInQemuOrder) {
  TempFile img(kMiB);
  RunResult r = Img({"info", "--output=json", img.path()});
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(r.out);
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"virtual-size", "filename", "format", "actual-size",
                                            "dirty-flag"}));
  EXPECT_EQ(j["virtual-size"], 1048576);
  EXPECT_EQ(j["filename"], img.path());
  EXPECT_EQ(j["format"], "raw");
  EXPECT_FALSE(j["dirty-flag"].get<bool>());
  EXPECT_TRUE(r.out.starts_with("{\n    \"virtual-size\": 1048576,\n")) << r.out;
}

TEST(CoblkImgTest, CreateHelpAndErrors) {
  RunResult r = Img({"create", "-f", "raw", "-o", "help"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("Supported raw options:\n")) << r.out;
  EXPECT_NE(r.out.find("\n  size=<size>            - Virtual disk size\n"), std::string::npos)
      << r.out;
  TempFile img;
  r = Img({"create", "-f", "raw", img.path()});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "coblk-img: " + img.path() + ": Image creation needs a size parameter\n");
  r = Img({"create", "-f", "nosuchfmt", img.path(), "1M"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "coblk-img: " + img.path() + ": Unknown file format 'nosuchfmt'\n");
  r = Img({"create", "-f", "raw", img.path(), "1Q"});
  EXPECT_EQ(r.status, 1);
  r = Img({"create", "-f", "raw", "-b", "base.img", img.path(), "1M"});
  EXPECT_EQ(r.err, "coblk-img: " + img.path() +
                       ": Backing file not supported for file format 'raw'\n");
  r = Img({"create", "-f", "raw", "-o", "size=2M", img.path()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(Img({"info", "--output=json", "-f", "raw", img.path()}).out.find("2097152") !=
                std::string::npos,
            true);
}

TEST(CoblkImgTest, MissingFileAndCheckUnsupported) {
  RunResult r = Img({"info", COBLK_BIN_DIR "/no-such-image.raw"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(r.err.starts_with("coblk-img: Could not open '")) << r.err;
  TempFile img(kMiB);
  r = Img({"check", "-f", "raw", img.path()});
  EXPECT_EQ(r.status, 63);
  EXPECT_EQ(r.err, "coblk-img: This image format does not support checks\n");
  r = Img({"nosuchcommand"});
  EXPECT_EQ(r.status, 1);
}

TEST(CoblkImgTest, MapJsonAfterZeroWrites) {
  TempFile img(kMiB);
  RunResult w = RunTool(CoblkIo(), {"-f", "raw", "-c", "write -q -P 1 0 64k", "-c",
                                "write -q -P 2 128k 4k", img.path()});
  ASSERT_EQ(w.status, 0) << w.err;
  RunResult r = Img({"map", "--output=json", "-f", "raw", img.path()});
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  int64_t end = 0;
  for (const auto& e : j) {
    EXPECT_EQ(e["start"].get<int64_t>(), end);
    end += e["length"].get<int64_t>();
    EXPECT_EQ(e["depth"], 0);
    EXPECT_TRUE(e["present"].get<bool>());
  }
  EXPECT_EQ(end, 1 << 20);
  EXPECT_TRUE(j[0]["data"].get<bool>());
  EXPECT_EQ(j[0]["offset"], 0);
  EXPECT_TRUE(r.out.starts_with("[{ \"start\": 0, \"length\": ")) << r.out;
  r = Img({"map", "-f", "raw", img.path()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("Offset          Length          Mapped to       File\n"
                                "0               0x10000         0               " +
                                img.path() + "\n"))
      << r.out;
}

TEST(CoblkImgTest, MatchesQemuImgMapAndInfo) {
  if (!HaveProgram("qemu-img")) GTEST_SKIP() << "qemu-img not installed";
  TempFile img(4 * kMiB);
  RunResult w = RunTool(CoblkIo(), {"-f", "raw", "-c", "write -q -P 1 0 64k", "-c",
                                "write -q -P 2 1M 12k", "-c", "write -q -z 1028k 4k", "-c",
                                "write -q -P 3 3M 1M", img.path()});
  ASSERT_EQ(w.status, 0) << w.err;
  for (const char* output : {"--output=json", "--output=human"}) {
    RunResult ours = Img({"map", output, "-f", "raw", img.path()});
    RunResult theirs = RunTool("qemu-img", {"map", output, "-f", "raw", img.path()});
    EXPECT_EQ(ours.status, theirs.status);
    EXPECT_EQ(ours.out, theirs.out) << output;
  }
  for (const char* output : {"--output=json", "--output=human"}) {
    RunResult ours = Img({"info", output, "-f", "raw", img.path()});
    RunResult theirs = RunTool("qemu-img", {"info", output, "-f", "raw", img.path()});
    EXPECT_EQ(ours.out, theirs.out) << output;
  }
}

const std::regex kRunCompleted(R"(Run completed in \d+\.\d\d\d seconds\.\n$)");

TEST(CoblkImgTest, BenchReadWriteOnRaw) {
  TempFile img(kMiB);
  RunResult r = Img({"bench", "-c", "2000", "-d", "8", "-f", "raw", img.path()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("Sending 2000 read requests, 4096 bytes each, 8 in parallel "
                                "(starting at offset 0, step size 4096)\n"))
      << r.out;
  EXPECT_TRUE(std::regex_search(r.out, kRunCompleted)) << r.out;

  r = Img({"bench", "-w", "-c", "300", "-d", "4", "-s", "512", "-S", "8k", "-o", "4k",
           "--pattern=7", "--flush-interval=16", "-t", "none", "-f", "raw", img.path()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("Sending 300 write requests, 512 bytes each, 4 in parallel "
                                "(starting at offset 4096, step size 8192)\n"
                                "Sending flush every 16 requests\n"))
      << r.out;
  // The pattern reached the image at offset + k * step.
  RunResult v = RunTool(CoblkIo(), {"-f", "raw", "-c", "read -q -P 7 4k 512", "-c",
                                "read -q -P 7 12k 512", "-c", "read -q -P 0 4608 3584",
                                img.path()});
  EXPECT_EQ(v.status, 0) << v.out;

  r = Img({"bench", "-w", "-c", "100", "-d", "4", "--flush-interval=4", "--no-drain", "-q",
           "-r", "-f", "raw", img.path()});
  ASSERT_EQ(r.status, 0) << r.err;
  // -q is accepted and, as in qemu-img 7.2, changes nothing printed.
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex(R"(Sending 100 write requests, 4096 bytes each, 4 in parallel \(starting at )"
                        R"(offset 0, step size 4096\)\nSending flush every 4 requests\n)"
                        R"(Run completed in \d+\.\d\d\d seconds\.\n)")))
      << r.out;
}

TEST(CoblkImgTest, BenchOnNullCo) {
  RunResult r = Img({"bench", "-c", "20000", "-d", "64", "--image-opts",
                     "driver=null-co,size=64M"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, kRunCompleted)) << r.out;
  r = Img({"bench", "-w", "-r", "-c", "5000", "-d", "32", "--image-opts",
           "driver=null-co,size=64M,latency-ns=1000"});
  ASSERT_EQ(r.status, 0) << r.err;
}

TEST(CoblkImgTest, BenchErrors) {
  TempFile img(kMiB);
  RunResult r = Img({"bench", "--flush-interval=8", "-f", "raw", img.path()});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "coblk-img: --flush-interval is only available in write tests\n");
  r = Img({"bench", "-w", "--flush-interval=8", "-f", "raw", img.path()});
  EXPECT_EQ(r.err, "coblk-img: Flush interval can't be smaller than depth\n");
  r = Img({"bench", "--pattern=300", "-f", "raw", img.path()});
  EXPECT_EQ(r.err, "coblk-img: Invalid pattern byte specified\n");
  // A request past the end fails like qemu-img's "Failed request".
  r = Img({"bench", "-c", "1", "-o", "1020k", "-s", "8k", "-f", "raw", img.path()});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "coblk-img: Failed request: Input/output error\n");
}

}  // namespace
}  // namespace coblk::testing
