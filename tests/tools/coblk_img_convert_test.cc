// coblk-img convert against qemu-img: every conversion is checked with
// `qemu-img compare` (against the source and against qemu-img convert's own
// output for the same command), `qemu-img check` on VMDK outputs, and
// `qemu-img map` for the same allocation. Inputs are small sparse images.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <filesystem>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "tests/tools/tool_runner.h"

namespace coblk::testing {
namespace {

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * 1024;

// A scratch directory (multi-file VMDK subformats create extent files).
using TempDir = testing_util::ScratchDir;  // tests/scratch_dir.h

RunResult Img(const std::vector<std::string>& args) { return RunTool(CoblkImg(), args); }
RunResult Qemu(const std::vector<std::string>& args) { return RunTool("qemu-img", args); }

void WriteAt(int fd, int64_t offset, const std::vector<uint8_t>& data) {
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), offset), static_cast<ssize_t>(data.size()));
}

std::vector<uint8_t> Pattern(int64_t len, uint8_t byte) {
  return std::vector<uint8_t>(static_cast<size_t>(len), byte);
}

std::vector<uint8_t> Random(int64_t len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(static_cast<size_t>(len));
  for (auto& b : v) b = static_cast<uint8_t>(rng() & 0x0f);  // compressible, not zero-free
  return v;
}

// A 5 MiB sparse raw image: data runs with short and long zero runs inside
// them, unaligned pieces, a hole-backed zero area and data in the last KiB.
void MakeSource(const std::string& path) {
  const int64_t size = 5 * kMiB;
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, size), 0);
  WriteAt(fd, 0, Random(300 * kKiB, 1));
  WriteAt(fd, 100 * kKiB, Pattern(8 * kKiB, 0));    // 8 KiB of zeroes inside data
  WriteAt(fd, 200 * kKiB, Pattern(1 * kKiB, 0));    // 1 KiB of zeroes inside data
  WriteAt(fd, 1 * kMiB + 512, Pattern(1 * kKiB, 0x22));
  WriteAt(fd, 1500 * kKiB, Random(70 * kKiB, 2));
  WriteAt(fd, 3 * kMiB, Random(1 * kMiB, 3));
  WriteAt(fd, 3300 * kKiB, Pattern(64 * kKiB, 0));  // allocated zeroes
  WriteAt(fd, size - kKiB, Pattern(kKiB, 0x55));
  ::close(fd);
}

// qemu-img map --output=json without host offsets, neighbours with the
// same flags merged: the allocation shape ("start+length:present/zero/data").
std::string MapShape(const std::string& path, const std::string& fmt) {
  RunResult r = Qemu({"map", "--output=json", "-f", fmt, path});
  EXPECT_EQ(r.status, 0) << r.err;
  std::string shape;
  int64_t start = 0, length = 0;
  std::string flags;
  auto flush = [&] {
    if (length) shape += std::to_string(start) + "+" + std::to_string(length) + ":" + flags + " ";
  };
  for (const auto& e : nlohmann::json::parse(r.out)) {
    std::string f = std::to_string(e["depth"].get<int>()) + (e["present"].get<bool>() ? "p" : "-") +
                    (e["zero"].get<bool>() ? "z" : "-") + (e["data"].get<bool>() ? "d" : "-");
    if (f == flags && start + length == e["start"].get<int64_t>()) {
      length += e["length"].get<int64_t>();
      continue;
    }
    flush();
    start = e["start"].get<int64_t>();
    length = e["length"].get<int64_t>();
    flags = f;
  }
  flush();
  return shape;
}

void ExpectSame(const std::string& a, const std::string& fa, const std::string& b,
                const std::string& fb) {
  RunResult r = Qemu({"compare", "-f", fa, "-F", fb, a, b});
  EXPECT_EQ(r.status, 0) << a << " vs " << b << ": " << r.out << r.err;
}

void ExpectCheckClean(const std::string& path) {
  RunResult r = Qemu({"check", "-f", "vmdk", path});
  EXPECT_EQ(r.status, 0) << path << ": " << r.out << r.err;
}

class ConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveProgram("qemu-img")) GTEST_SKIP() << "qemu-img not installed";
    ASSERT_FALSE(dir_.path().empty());
    src_ = dir_ / "src.raw";
    MakeSource(src_);
  }

  // Runs `convert <args> <inputs> out` with coblk-img (into c-<out>) and
  // qemu-img (into q-<out>); both must succeed. Returns the two paths.
  std::pair<std::string, std::string> Both(const std::vector<std::string>& args,
                                           const std::vector<std::string>& inputs,
                                           const std::string& out) {
    std::pair<std::string, std::string> paths{dir_ / ("c-" + out), dir_ / ("q-" + out)};
    std::vector<std::string> a = {"convert"};
    a.insert(a.end(), args.begin(), args.end());
    a.insert(a.end(), inputs.begin(), inputs.end());
    std::vector<std::string> c = a, q = a;
    c.push_back(paths.first);
    q.push_back(paths.second);
    RunResult rc = Img(c);
    EXPECT_EQ(rc.status, 0) << rc.err;
    EXPECT_EQ(rc.out, "");
    RunResult rq = Qemu(q);
    EXPECT_EQ(rq.status, 0) << rq.err;
    return paths;
  }

  TempDir dir_;
  std::string src_;
};

TEST_F(ConvertTest, RawToEveryVmdkSubformat) {
  for (const char* sub : {"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
                          "twoGbMaxExtentFlat", "streamOptimized"}) {
    SCOPED_TRACE(sub);
    auto [c, q] = Both({"-O", "vmdk", "-o", std::string("subformat=") + sub}, {src_},
                       std::string(sub) + ".vmdk");
    ExpectSame(src_, "raw", c, "vmdk");
    ExpectSame(c, "vmdk", q, "vmdk");
    ExpectCheckClean(c);
    EXPECT_EQ(MapShape(c, "vmdk"), MapShape(q, "vmdk"));
  }
}

TEST_F(ConvertTest, CompressedIntoSparseAndStreamOptimized) {
  for (const char* sub : {"monolithicSparse", "twoGbMaxExtentSparse", "streamOptimized"}) {
    SCOPED_TRACE(sub);
    for (const char* m : {"1", "8", "16"}) {
      std::vector<std::string> args = {"-c", "-m", m, "-O", "vmdk", "-o",
                                       std::string("subformat=") + sub};
      if (std::string(m) == "16") args.push_back("-W");  // out-of-order writes
      auto [c, q] = Both(args, {src_}, std::string(sub) + m + ".vmdk");
      ExpectSame(src_, "raw", c, "vmdk");
      ExpectSame(c, "vmdk", q, "vmdk");
      ExpectCheckClean(c);
      EXPECT_EQ(MapShape(c, "vmdk"), MapShape(q, "vmdk"));
    }
  }
  // A flat extent has no clusters to compress.
  RunResult r = Img({"convert", "-c", "-O", "vmdk", "-o", "subformat=monolithicFlat", src_,
                     dir_ / "flat-c.vmdk"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "coblk-img: invalid cluster size\n");
}

TEST_F(ConvertTest, VmdkToRawIsByteIdenticalToQemuImg) {
  for (const char* sub : {"monolithicSparse", "streamOptimized", "monolithicFlat"}) {
    SCOPED_TRACE(sub);
    const std::string vmdk = dir_ / (std::string("in-") + sub + ".vmdk");
    ASSERT_EQ(Qemu({"convert", "-O", "vmdk", "-o", std::string("subformat=") + sub, src_, vmdk})
                  .status,
              0);
    for (const char* sparse : {"4k", "0"}) {
      auto [c, q] = Both({"-O", "raw", "-S", sparse}, {vmdk}, std::string(sub) + sparse + ".raw");
      EXPECT_EQ(ReadAll(c), ReadAll(q));
      EXPECT_EQ(ReadAll(c), ReadAll(src_));
      EXPECT_EQ(MapShape(c, "raw"), MapShape(q, "raw"));
    }
  }
}

TEST_F(ConvertTest, VmdkToVmdk) {
  const std::string sparse = dir_ / "in-sparse.vmdk", stream = dir_ / "in-stream.vmdk";
  ASSERT_EQ(Qemu({"convert", "-O", "vmdk", src_, sparse}).status, 0);
  ASSERT_EQ(Qemu({"convert", "-O", "vmdk", "-o", "subformat=streamOptimized", src_, stream})
                .status,
            0);
  struct Case {
    std::string in;
    std::vector<std::string> args;
  };
  const std::vector<Case> cases = {
      {sparse, {"-O", "vmdk", "-o", "subformat=streamOptimized"}},
      {stream, {"-O", "vmdk"}},
      {stream, {"-O", "vmdk", "-o", "subformat=streamOptimized"}},
      {sparse, {"-O", "vmdk", "-o", "subformat=twoGbMaxExtentFlat"}},
  };
  int i = 0;
  for (const Case& k : cases) {
    SCOPED_TRACE(i);
    auto [c, q] = Both(k.args, {k.in}, "v2v" + std::to_string(i++) + ".vmdk");
    ExpectSame(k.in, "vmdk", c, "vmdk");
    ExpectSame(c, "vmdk", q, "vmdk");
    ExpectCheckClean(c);
    EXPECT_EQ(MapShape(c, "vmdk"), MapShape(q, "vmdk"));
  }
}

TEST_F(ConvertTest, SparseSizeAndParallelism) {
  // -S 0 allocates everything; other sizes decide which zero runs stay holes.
  for (const char* sparse : {"0", "512", "4k", "64k"}) {
    for (std::vector<std::string> par :
         {std::vector<std::string>{"-m", "1"}, {"-m", "8"}, {"-m", "16", "-W"}}) {
      SCOPED_TRACE(std::string(sparse) + " " + par[1]);
      std::vector<std::string> args = {"-O", "vmdk", "-S", sparse};
      args.insert(args.end(), par.begin(), par.end());
      auto [c, q] = Both(args, {src_}, std::string("s") + sparse + "m" + par[1] + ".vmdk");
      ExpectSame(src_, "raw", c, "vmdk");
      ExpectCheckClean(c);
      EXPECT_EQ(MapShape(c, "vmdk"), MapShape(q, "vmdk"));
      if (std::string(sparse) == "0") {
        EXPECT_EQ(MapShape(c, "vmdk"), "0+5242880:0p-d ");
      }
    }
  }
  // Raw output: holes where qemu-img leaves them.
  auto [c, q] = Both({"-O", "raw"}, {src_}, "default.raw");
  EXPECT_EQ(MapShape(c, "raw"), MapShape(q, "raw"));
  auto [c0, q0] = Both({"-O", "raw", "-S", "0"}, {src_}, "full.raw");
  EXPECT_EQ(MapShape(c0, "raw"), MapShape(q0, "raw"));
  EXPECT_EQ(ReadAll(c0), ReadAll(src_));
}

TEST_F(ConvertTest, ProgressOutputMatchesQemuImg) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"-p", "-O", "vmdk"}, {"-p", "-O", "raw", "-S", "0"},
        {"-p", "-c", "-O", "vmdk", "-o", "subformat=streamOptimized"}}) {
    std::vector<std::string> c = {"convert"}, q = {"convert"};
    c.insert(c.end(), args.begin(), args.end());
    q.insert(q.end(), args.begin(), args.end());
    c.insert(c.end(), {src_, dir_ / "p-c.img"});
    q.insert(q.end(), {src_, dir_ / "p-q.img"});
    RunResult rc = Img(c), rq = Qemu(q);
    ASSERT_EQ(rc.status, 0) << rc.err;
    EXPECT_TRUE(rc.out.starts_with("    (0.00/100%)\r")) << rc.out;
    EXPECT_TRUE(rc.out.ends_with("    (100.00/100%)\r\n")) << rc.out;
    EXPECT_EQ(rc.out, rq.out);
    std::filesystem::remove(dir_ / "p-c.img");
    std::filesystem::remove(dir_ / "p-q.img");
  }
  RunResult r = Img({"convert", "-p", "-q", "-O", "raw", src_, dir_ / "quiet.raw"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
}

// QEMU's vmdk answers block status one grain at a time, so qemu-img convert
// advances its progress a grain at a time over a sparse VMDK source, where
// coblk's vmdk answers whole runs: the printed figures must still be the same.
TEST_F(ConvertTest, ProgressFromVmdkSourcesMatchesQemuImg) {
  const std::string sparse = dir_ / "ps.vmdk", split = dir_ / "psplit.vmdk",
                    flat = dir_ / "pflat.vmdk", stream = dir_ / "pstream.vmdk",
                    top = dir_ / "ptop.vmdk", over_flat = dir_ / "pover.vmdk";
  ASSERT_EQ(Qemu({"convert", "-O", "vmdk", src_, sparse}).status, 0);
  ASSERT_EQ(Qemu({"convert", "-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", src_, split})
                .status,
            0);
  ASSERT_EQ(Qemu({"convert", "-O", "vmdk", "-o", "subformat=monolithicFlat", src_, flat}).status,
            0);
  ASSERT_EQ(Qemu({"convert", "-O", "vmdk", "-o", "subformat=streamOptimized", src_, stream})
                .status,
            0);
  // A chain: the top's grains, some beside the base's data, some inside it.
  ASSERT_EQ(Qemu({"create", "-q", "-f", "vmdk", "-b", sparse, "-F", "vmdk", top}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-c", "write -P 0x34 1M 64k", "-c", "write -P 0x35 2M 192k",
                                "-c", "write -z 3M 128k", top})
                .status,
            0);
  // Over a flat base whose data runs (runs of its file) start and end
  // inside grains.
  ASSERT_EQ(Qemu({"create", "-q", "-f", "vmdk", "-b", flat, "-F", "vmdk", over_flat}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-c", "write -P 0x36 1536k 64k", over_flat}).status, 0);
  struct Case {
    std::vector<std::string> in;
    std::vector<std::string> args;
  };
  const std::vector<Case> cases = {
      {{sparse}, {"-O", "raw"}},
      {{sparse}, {"-O", "vmdk"}},
      {{sparse}, {"-O", "raw", "-S", "0"}},
      {{sparse}, {"-O", "vmdk", "-m", "1"}},
      {{sparse}, {"-O", "vmdk", "-o", "subformat=streamOptimized"}},
      {{split}, {"-O", "vmdk"}},
      {{flat}, {"-O", "raw"}},
      {{stream}, {"-O", "vmdk"}},
      {{top}, {"-O", "raw"}},
      {{top}, {"-O", "vmdk", "-B", sparse, "-F", "vmdk"}},
      {{over_flat}, {"-O", "raw"}},
      {{over_flat}, {"-O", "vmdk", "-S", "0"}},
      {{src_, sparse, flat}, {"-O", "vmdk"}},  // concatenated
  };
  int i = 0;
  for (const Case& k : cases) {
    SCOPED_TRACE(std::to_string(i) + ": " + k.in[0] + " " + k.args[1]);
    std::vector<std::string> c = {"convert", "-p"}, q = {"convert", "-p"};
    c.insert(c.end(), k.args.begin(), k.args.end());
    q.insert(q.end(), k.args.begin(), k.args.end());
    const std::string out_c = dir_ / ("pc" + std::to_string(i)),
                      out_q = dir_ / ("pq" + std::to_string(i));
    c.insert(c.end(), k.in.begin(), k.in.end());
    q.insert(q.end(), k.in.begin(), k.in.end());
    c.push_back(out_c);
    q.push_back(out_q);
    RunResult rc = Img(c), rq = Qemu(q);
    ASSERT_EQ(rc.status, 0) << rc.err;
    ASSERT_EQ(rq.status, 0) << rq.err;
    EXPECT_EQ(rc.out, rq.out);
    ++i;
  }
}

TEST_F(ConvertTest, MultipleInputsConcatenate) {
  const std::string second = dir_ / "second.raw";
  {
    // 1000.5 KiB: not a multiple of the cluster size.
    int fd = ::open(second.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 1000 * kKiB + 512), 0);
    WriteAt(fd, 10 * kKiB, Random(20 * kKiB, 4));
    WriteAt(fd, 1000 * kKiB, Pattern(512, 0x66));
    ::close(fd);
  }
  int n = 0;
  for (std::vector<std::string> args :
       {std::vector<std::string>{"-O", "vmdk"}, {"-O", "raw"},
        {"-O", "vmdk", "-o", "subformat=streamOptimized"}, {"-W", "-O", "vmdk", "-c"}}) {
    SCOPED_TRACE(n);
    const std::string fmt = args[1] == "raw" ? "raw" : "vmdk";
    auto [c, q] = Both(args, {src_, second, src_}, "multi" + std::to_string(n++));
    RunResult info = Img({"info", "--output=json", "-f", fmt, c});
    EXPECT_NE(info.out.find("\"virtual-size\": " + std::to_string(10 * kMiB + 1000 * kKiB + 512)),
              std::string::npos)
        << info.out;
    ExpectSame(c, fmt, q, fmt);
    if (fmt == "vmdk") ExpectCheckClean(c);
  }
}

TEST_F(ConvertTest, NoCreateIntoExistingTarget) {
  for (const char* fmt : {"vmdk", "raw"}) {
    SCOPED_TRACE(fmt);
    const std::string c = dir_ / (std::string("n-c.") + fmt), q = dir_ / (std::string("n-q.") + fmt);
    for (const std::string& t : {c, q}) {
      ASSERT_EQ(Qemu({"create", "-q", "-f", fmt, t, "8M"}).status, 0);
      // Old data everywhere: zero ranges of the source must overwrite it.
      ASSERT_EQ(RunTool("qemu-io", {"-f", fmt, "-c", "write -P 0x77 0 8M", t}).status, 0);
    }
    RunResult r = Img({"convert", "-n", "-O", fmt, src_, c});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(Qemu({"convert", "-n", "-O", fmt, src_, q}).status, 0);
    ExpectSame(c, fmt, q, fmt);
    if (std::string(fmt) == "vmdk") ExpectCheckClean(c);
    // The first 5 MiB now equal the source.
    RunResult cmp = Qemu({"compare", "-f", "raw", "-F", fmt, src_, c});
    EXPECT_EQ(cmp.status, 1);  // sizes differ: the target's tail still holds 0x77
    EXPECT_NE(cmp.out.find("Content mismatch at offset 5242880!"), std::string::npos) << cmp.out;
  }
  const std::string small = dir_ / "small.raw";
  ASSERT_EQ(Qemu({"create", "-q", "-f", "raw", small, "1M"}).status, 0);
  RunResult r = Img({"convert", "-n", src_, small});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "coblk-img: output file is smaller than input file\n");
}

TEST_F(ConvertTest, BackingFileForTarget) {
  const std::string base = dir_ / "base.vmdk", top = dir_ / "top.vmdk";
  ASSERT_EQ(Qemu({"convert", "-O", "vmdk", src_, base}).status, 0);
  ASSERT_EQ(Qemu({"create", "-q", "-f", "vmdk", "-b", base, "-F", "vmdk", top}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-c", "write -P 0x34 1M 64k", "-c", "write -z 3M 128k", top})
                .status,
            0);
  auto [c, q] = Both({"-O", "vmdk", "-B", base, "-F", "vmdk"}, {top}, "cow.vmdk");
  ExpectSame(top, "vmdk", c, "vmdk");
  ExpectCheckClean(c);
  EXPECT_EQ(MapShape(c, "vmdk"), MapShape(q, "vmdk"));
  auto [cf, qf] = Both({"-O", "raw"}, {top}, "flattened.raw");
  EXPECT_EQ(ReadAll(cf), ReadAll(qf));
}

// Error messages and exit codes as qemu-img 7.2's (program name aside).
TEST_F(ConvertTest, ErrorsMatchQemuImg) {
  const std::vector<std::vector<std::string>> cases = {
      {"-m", "0"}, {"-m", "17"}, {"-m", "x"}, {"-S", "100"}, {"-S", "-1"}, {"-S", "32M"},
      {"-O", "nosuch"}, {"-c", "-O", "raw"}, {"-n", "-o", "subformat=x"}, {"-t", "bogus"},
      {"-T", "bogus"}, {"-B", "b.vmdk"}, {"-O", "vmdk", "-B", "b.vmdk"}, {"-f", "nosuch"},
      {"-x"}, {"-O", "vmdk", "-o", "bogus=1"}, {"-O", "vmdk", "-o", "subformat=bad"},
      {"--target-is-zero"}, {"-O", "vmdk", "-B", "b.vmdk", "-F", "vmdk", src_},
      // Copy offloading, rate limit, internal snapshots, bitmaps.
      {"-C", "-c", "-O", "vmdk"}, {"-C", "-S", "4k"}, {"-C", "-S", "0"}, {"-r", "abc"},
      {"-r", "-1"}, {"-r"}, {"-l", "snap"}, {"-l", "snapshot.id=1"}, {"--bitmaps"},
      {"--bitmaps", src_},
  };
  for (const auto& args : cases) {
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    SCOPED_TRACE(joined);
    const std::string out = dir_ / "err.img";
    std::vector<std::string> c = {"convert"};
    c.insert(c.end(), args.begin(), args.end());
    c.insert(c.end(), {src_, out});
    std::filesystem::remove(out);
    RunResult rc = Img(c);
    std::filesystem::remove(out);
    RunResult rq = Qemu(c);
    std::filesystem::remove(out);
    EXPECT_EQ(rc.status, rq.status);
    EXPECT_EQ(std::regex_replace(rc.err, std::regex("coblk-img"), "qemu-img"), rq.err);
  }
  RunResult r = Img({"convert", src_});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "coblk-img: Must specify image file name\n");
}

// -C (accepted; copied without offloading, as qemu-img does where the
// storage has none) and -r (bytes per second): the same image as qemu-img's.
// As in qemu-img, a chunk (2 MiB) is paid for after it is copied: 4 MiB of
// data at 2 MiB/s take at least 1 s, 1 MiB goes at once.
TEST_F(ConvertTest, CopyOffloadAndRateLimit) {
  auto [c, q] = Both({"-C", "-O", "raw"}, {src_}, "offload.raw");
  EXPECT_EQ(Qemu({"compare", "-q", c, q}).status, 0);
  const std::string data = dir_ / "data.raw";
  ASSERT_EQ(testing_util::Sh("head -c 4M /dev/urandom > " + data + " && truncate -s 8M " + data),
            0);
  for (const char* fmt : {"raw", "vmdk"}) {
    SCOPED_TRACE(fmt);
    const std::string out = dir_ / (std::string("limited.") + fmt);
    const auto t0 = std::chrono::steady_clock::now();
    RunResult r = Img({"convert", "-r", "2M", "-O", fmt, data, out});
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_GE(seconds, 0.95);
    EXPECT_EQ(Qemu({"compare", "-q", out, data}).status, 0);
  }
  auto [lc, lq] = Both({"-r", "0", "-O", "vmdk"}, {data}, "unlimited.vmdk");  // 0: no limit
  EXPECT_EQ(Qemu({"compare", "-q", lc, lq}).status, 0);
}

TEST_F(ConvertTest, OptionHelp) {
  RunResult c = Img({"convert", "-O", "vmdk", "-o", "help"});
  EXPECT_EQ(c.status, 0);
  EXPECT_TRUE(c.out.starts_with("Supported vmdk options:\n")) << c.out;
  EXPECT_NE(c.out.find("  subformat=<str>"), std::string::npos);
}

// The "Formatting" line of create: size first, then the driver's options in
// QEMU's order, defaults only where QEMU's create options declare one.
TEST(CoblkImgCreateTest, FormattingLineMatchesQemuImg) {
  if (!HaveProgram("qemu-img")) GTEST_SKIP() << "qemu-img not installed";
  TempDir dir;
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"vmdk", {}},
      {"vmdk", {"-o", "adapter_type=ide"}},
      {"vmdk", {"-o", "subformat=streamOptimized,zeroed_grain=on"}},
      {"vmdk", {"-o", "toolsversion=1,compat6=on"}},
      {"vmdk", {"-o", "zeroed_grain=off,toolsversion=2,subformat=monolithicSparse,"
                      "adapter_type=ide,hwversion=4,compat6=off"}},
      {"raw", {}},
      {"raw", {"-o", "preallocation=off"}},
      {"raw", {"-o", "preallocation=falloc"}},
  };
  for (const auto& [fmt, opts] : cases) {
    std::vector<std::string> args = {"create", "-f", fmt};
    args.insert(args.end(), opts.begin(), opts.end());
    args.insert(args.end(), {dir / ("x." + fmt), "1M"});
    SCOPED_TRACE(fmt + (opts.empty() ? "" : " " + opts[1]));
    RunResult c = Img(args);
    ASSERT_EQ(c.status, 0) << c.err;
    std::filesystem::remove(dir / ("x." + fmt));
    RunResult q = Qemu(args);
    ASSERT_EQ(q.status, 0) << q.err;
    std::filesystem::remove(dir / ("x." + fmt));
    EXPECT_EQ(c.out, q.out);
  }
}

}  // namespace
}  // namespace coblk::testing
