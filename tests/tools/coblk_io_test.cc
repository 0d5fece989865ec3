// coblk-io end to end: runs the binary on temporary raw images and checks
// its output against qemu-io's formats (and against qemu-io itself).
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>

#include "tests/tools/tool_runner.h"

namespace coblk::testing {
namespace {

constexpr size_t kMiB = 1 << 20;

RunResult Io(const std::vector<std::string>& args) { return RunTool(CoblkIo(), args); }

// Builds "-f raw -c c1 -c c2 ... file".
std::vector<std::string> Cmds(const std::string& file, std::initializer_list<std::string> cmds,
                              std::vector<std::string> pre = {"-f", "raw"}) {
  std::vector<std::string> args = std::move(pre);
  for (const std::string& c : cmds) {
    args.push_back("-c");
    args.push_back(c);
  }
  args.push_back(file);
  return args;
}

// "64 KiB, 1 ops; 00.00 sec (x MiB/sec and y ops/sec)"
bool IsStatsLine(const std::string& l) {
  static const std::regex re(
      R"(^[0-9.]+ (bytes|KiB|MiB|GiB), 1 ops; (\d\d\.\d\d sec|\d+:\d\d:\d\d\.\d\d) \([0-9.]+ (bytes|KiB|MiB|GiB|TiB)/sec and [0-9.]+ ops/sec\)$)");
  return std::regex_match(l, re);
}

std::vector<std::string> WithoutStats(const std::string& out) {
  std::vector<std::string> kept;
  for (const std::string& l : Lines(out)) {
    if (!IsStatsLine(l)) kept.push_back(l);
  }
  return kept;
}

TEST(CoblkIoTest, WriteReadWithPatternAndHexDump) {
  TempFile img(kMiB);
  RunResult r = Io(Cmds(img.path(), {"write -P 0xab 0 64k", "read -P 0xab 0 64k",
                                     "write -P 0x41 64k 16", "read -v 65530 24"}));
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> l = Lines(r.out);
  ASSERT_EQ(l.size(), 10u) << r.out;
  EXPECT_EQ(l[0], "wrote 65536/65536 bytes at offset 0");
  EXPECT_TRUE(IsStatsLine(l[1])) << l[1];
  EXPECT_TRUE(l[1].starts_with("64 KiB, 1 ops; ")) << l[1];
  EXPECT_EQ(l[2], "read 65536/65536 bytes at offset 0");
  EXPECT_EQ(l[4], "wrote 16/16 bytes at offset 65536");
  EXPECT_EQ(l[6], "0000fffa:  ab ab ab ab ab ab 41 41 41 41 41 41 41 41 41 41  ......AAAAAAAAAA");
  EXPECT_EQ(l[7], "0001000a:  41 41 41 41 41 41 00 00  AAAAAA..");
  EXPECT_EQ(l[8], "read 24/24 bytes at offset 65530");
  EXPECT_TRUE(l[9].starts_with("24 bytes, 1 ops; ")) << l[9];
}

TEST(CoblkIoTest, PatternMismatchFailsWithQemuMessage) {
  TempFile img(kMiB);
  RunResult r = Io(Cmds(img.path(), {"read -P 0x11 0 512"}));
  EXPECT_EQ(r.status, 1);
  std::vector<std::string> l = Lines(r.out);
  ASSERT_GE(l.size(), 2u) << r.out;
  EXPECT_EQ(l[0], "Pattern verification failed at offset 0, 512 bytes");
  EXPECT_EQ(l[1], "read 512/512 bytes at offset 0");
}

TEST(CoblkIoTest, QuietAndMachineFormat) {
  TempFile img(kMiB);
  RunResult r = Io(Cmds(img.path(), {"write -q 0 4k", "read -q -P 0xcd 0 4k", "read -C 0 4k"}));
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> l = Lines(r.out);
  ASSERT_EQ(l.size(), 1u) << r.out;
  EXPECT_TRUE(std::regex_match(l[0], std::regex(R"(^4096,1,0:00:\d\d\.\d\d,[0-9.]+,[0-9.]+$)")))
      << l[0];
}

TEST(CoblkIoTest, WriteZeroesThenMapAndAlloc) {
  TempFile img(kMiB);
  RunResult r = Io(Cmds(img.path(), {"write -q -P 1 0 64k", "write -q -z -u 64k 64k",
                                     "read -q -P 0 64k 64k", "map", "alloc 0 1M", "alloc 4k",
                                     "alloc 2M", "length"}));
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  // raw reports everything allocated, exactly like qemu-io on raw.
  EXPECT_EQ(r.out,
            "1 MiB (0x100000) bytes     allocated at offset 0 bytes (0x0)\n"
            "1048576/1048576 bytes allocated at offset 0 bytes\n"
            "512/512 bytes allocated at offset 4 KiB\n"
            "0/0 bytes allocated at offset 2 MiB\n"
            "1 MiB\n");
}

TEST(CoblkIoTest, OutOfBoundsReadFails) {
  TempFile img(kMiB);
  RunResult r = Io(Cmds(img.path(), {"read 1M 512", "read -q 0 512"}));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "read failed: Input/output error\n");
}

TEST(CoblkIoTest, MissingFileFailsToOpen) {
  RunResult r = Io({"-c", "read 0 1", COBLK_BIN_DIR "/no-such-image.raw"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("can't open device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
}

TEST(CoblkIoTest, UsageErrorsFail) {
  TempFile img(kMiB);
  EXPECT_EQ(Io(Cmds(img.path(), {"read 0"})).status, 1);
  RunResult r = Io(Cmds(img.path(), {"bogus"}));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "command \"bogus\" not found\n");
  r = Io(Cmds(img.path(), {"read abc 1"}));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- abc\n");
  r = Io(Cmds(img.path(), {"read 0 2G"}));
  EXPECT_EQ(r.out, "length cannot exceed 2147483136, given 2G\n");
  r = Io(Cmds(img.path(), {"write -z -P 1 0 1"}));
  EXPECT_EQ(r.status, 1);
  r = Io(Cmds(img.path(), {"write 0 1"}, {"-f", "raw", "-r"}));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("read-only"), std::string::npos) << r.err;
}

TEST(CoblkIoTest, AioRequestsRunAndFlush) {
  TempFile img(kMiB);
  RunResult r = Io(Cmds(img.path(), {"aio_write -P 5 0 4k", "aio_write -P 6 4k 2k 2k",
                                     "aio_flush", "read -q -P 5 0 4k", "read -q -P 6 4k 4k",
                                     "aio_read -P 6 4k 4k", "aio_read 1M 512"}));
  EXPECT_EQ(r.status, 0) << r.err;  // aio failures do not change the status, as in qemu-io
  std::vector<std::string> l = WithoutStats(r.out);
  ASSERT_EQ(l.size(), 4u) << r.out;
  // Concurrent requests complete in any order: compare each pair sorted.
  std::sort(l.begin(), l.begin() + 2);
  std::sort(l.begin() + 2, l.end());
  EXPECT_EQ(l[0], "wrote 4096/4096 bytes at offset 0");
  EXPECT_EQ(l[1], "wrote 4096/4096 bytes at offset 4096");
  EXPECT_EQ(l[2], "read 4096/4096 bytes at offset 4096");
  EXPECT_EQ(l[3], "readv failed: Input/output error");
}

TEST(CoblkIoTest, NullCoWithImageOpts) {
  RunResult r = Io({"--image-opts", "-c", "length", "-c", "read -v 0 16", "-c", "info",
                    "driver=null-co,size=1M,read-zeroes=on"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> l = Lines(r.out);
  ASSERT_GE(l.size(), 5u) << r.out;
  EXPECT_EQ(l[0], "1 MiB");
  EXPECT_EQ(l[1], "00000000:  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................");
  EXPECT_EQ(l[2], "read 16/16 bytes at offset 0");
  EXPECT_EQ(l[4], "format name: null-co");
}

TEST(CoblkIoTest, OpenCloseAndCacheModes) {
  TempFile img(kMiB);
  RunResult r = Io({"-c", "open -f raw -t writeback " + img.path(), "-c", "write -q 0 4k", "-c",
                    "close", "-c", "open -r -n -i native -f raw " + img.path(), "-c",
                    "read -q -P 0xcd 0 4k", "-c", "info"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "format name: raw\ncluster size: 0 bytes\nvm state offset: 0 bytes\n");
  r = Io(Cmds(img.path(), {"read -q 0 1"}, {"-f", "raw", "-i", "threads", "-t", "directsync"}));
  EXPECT_EQ(r.status, 0) << r.err;
  r = Io(Cmds(img.path(), {"read -q 0 1"}, {"-f", "raw", "-t", "bogus"}));
  EXPECT_EQ(r.status, 1);
  r = Io({"-c", "length"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "no file open, try 'help open'\n");
}

TEST(CoblkIoTest, ProbeWarningOnStderr) {
  TempFile img(kMiB);
  RunResult r = Io({"-c", "read -q 0 1", img.path()});
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.err.starts_with("WARNING: Image format was not specified for '" + img.path() +
                                "' and probing guessed raw.\n"))
      << r.err;
}

// The same commands through qemu-io and coblk-io print the same lines
// (timings aside) and exit the same way.
TEST(CoblkIoTest, MatchesQemuIo) {
  if (!HaveProgram("qemu-io")) GTEST_SKIP() << "qemu-io not installed";
  const std::initializer_list<std::string> cmds = {
      "write -P 0x41 0 16", "write -P 0x20 16 16", "read -v 0 48",   "read -P 0x41 0 16",
      "write -z 4k 4k",     "read -P 0 4k 4k",     "read -P 7 0 512", "map",
      "alloc 0 64k",        "alloc 3M",            "length",          "info",
      "read 1M 1",          "discard 8k 4k",       "read -C 0 0",     "write 0 0",
      "read 1 511",         "aio_write -P 9 8k 512", "aio_flush",     "read -P 9 8k 512"};
  TempFile a(kMiB), b(kMiB);
  RunResult ours = RunTool(CoblkIo(), Cmds(a.path(), cmds));
  RunResult theirs = RunTool("qemu-io", Cmds(b.path(), cmds));
  EXPECT_EQ(ours.status, theirs.status);
  std::vector<std::string> lo = WithoutStats(ours.out), lt = WithoutStats(theirs.out);
  // -C lines carry timings too: compare their first field only.
  for (auto* v : {&lo, &lt}) {
    for (std::string& l : *v) {
      if (l.starts_with("0,1,")) l = "0,1,<time>";
    }
  }
  EXPECT_EQ(lo, lt) << "coblk-io:\n" << ours.out << "\nqemu-io:\n" << theirs.out;
}

}  // namespace
}  // namespace coblk::testing
