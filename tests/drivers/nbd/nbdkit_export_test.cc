// coblk images exported by nbdkit-coblk-plugin.so, used by QEMU's clients
// (qemu-io, qemu-img) and by coblk's own nbd driver, side by side with
// qemu-nbd exporting a copy of the same image.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "coroutine/when_all.h"
#include "tests/drivers/driver_test_util.h"
#include "tests/drivers/nbd/nbd_server_util.h"
#include "tests/tools/tool_runner.h"

namespace coblk {
namespace {

using testing::RunResult;
using testing::RunTool;
using testing_nbd::NbdServer;
using testing_nbd::TempDir;
using testing_util::Pattern;

// Under ASan the plugin needs the sanitizer runtime loaded first into the
// (uninstrumented) nbdkit process.
std::vector<std::string> PluginEnv() {
#ifdef COBLK_SANITIZE
  auto lib = [](const char* name) {
    RunResult r = RunTool("g++", {"-print-file-name=" + std::string(name)});
    std::string p = r.out;
    while (!p.empty() && (p.back() == '\n' || p.back() == ' ')) p.pop_back();
    return p;
  };
  return {"LD_PRELOAD=" + lib("libasan.so") + ":" + lib("libubsan.so"),
          // nbdkit's own allocations are not ours to judge.
          "ASAN_OPTIONS=detect_leaks=0"};
#else
  return {};
#endif
}

class NbdkitExportTest : public testing_util::DriverTest {
 protected:
  void SetUp() override {
    DriverTest::SetUp();
    ASSERT_FALSE(dir_.path().empty());
  }

  // Exports an image through the coblk plugin on dir_/coblk.sock.
  void ExportCoblk(NbdServer& s, const std::vector<std::string>& params) {
    std::vector<std::string> argv = {"nbdkit", "-f", "--exit-with-parent", "-U",
                                     dir_ / "coblk.sock", testing_nbd::NbdkitPlugin()};
    argv.insert(argv.end(), params.begin(), params.end());
    ASSERT_TRUE(s.Start(argv, dir_ / "coblk.sock", PluginEnv()));
  }
  void ExportQemu(NbdServer& s, const std::string& image) {
    ASSERT_TRUE(s.Start({"qemu-nbd", "-k", dir_ / "qemu.sock", "-f", "vmdk", "-t", "-e", "8",
                         image},
                        dir_ / "qemu.sock"));
  }
  std::string QemuIo(const std::string& uri, const std::vector<std::string>& cmds) {
    std::vector<std::string> args = {"-f", "raw"};
    for (const std::string& c : cmds) {
      args.push_back("-c");
      args.push_back(c);
    }
    args.push_back(uri);
    RunResult r = RunTool("qemu-io", args);
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_EQ(r.out.find("failed"), std::string::npos) << r.out;
    return r.out;
  }

  Task<std::vector<Status>> ConcurrentWrites(BlockNode& n, size_t chunk,
                                             std::vector<std::vector<uint8_t>>& data) {
    std::vector<Task<Status>> tasks;
    for (size_t i = 0; i < data.size(); ++i)
      tasks.push_back(n.pwrite(static_cast<int64_t>(i * chunk), data[i].data(),
                               static_cast<int64_t>(chunk)));
    co_return co_await when_all(std::move(tasks));
  }

  TempDir dir_;
};

TEST_F(NbdkitExportTest, PluginIsParallel) {
  auto nbdkit = [](std::vector<std::string> args) {
    std::vector<std::string> env = PluginEnv();
    env.push_back("nbdkit");
    args.insert(args.begin(), env.begin(), env.end());
    return RunTool("env", args);
  };
  RunResult r = nbdkit({"--dump-plugin", testing_nbd::NbdkitPlugin()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("thread_model=parallel"), std::string::npos) << r.out;
#ifdef COBLK_SANITIZE
  // nbdkit with the ASan runtime preloaded deadlocks in glibc's exit path
  // (p11-kit's destructor waits on the locale lock) when it exits with an
  // error: the release run covers the bad-image report.
  return;
#endif
  // A bad image is reported before nbdkit starts serving.
  r = nbdkit({"-f", "-U", dir_ / "x.sock", testing_nbd::NbdkitPlugin(),
              "image=" + (dir_ / "nosuch.vmdk")});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("nosuch.vmdk"), std::string::npos) << r.err;
}

// scripts/nbd-export.sh: one command exports an image (here in the
// background), qemu-img and coblk-img read it, kill stops it.
TEST_F(NbdkitExportTest, ExportScript) {
  const std::string a = dir_ / "a.vmdk";
  ASSERT_EQ(RunTool(testing::CoblkImg(), {"create", "-f", "vmdk", a, "8M"}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-f", "vmdk", "-c", "write -P 0x5e 1M 64k", a}).status, 0);
  // The background server is not our child: the guard stops it even when
  // the test fails before its kill below. The script gets a time limit, so
  // a hang fails the test (and the guard cleans up) long before ctest's.
  const std::string sock = dir_ / "e.sock";
  testing_nbd::DaemonGuard guard(sock);
  std::vector<std::string> args = {"120", "env"};
  for (const std::string& e : PluginEnv()) args.push_back(e);
  for (const std::string& x : {std::string(COBLK_SOURCE_DIR "/scripts/nbd-export.sh"),
                               std::string("-b"), std::string("-r"), std::string("-P"),
                               testing_nbd::NbdkitPlugin(), std::string("-s"), sock, a})
    args.push_back(x);
  RunResult r = RunTool("timeout", args);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const std::string uri = "nbd+unix:///?socket=" + sock;
  EXPECT_NE(r.out.find(uri), std::string::npos) << r.out;
  const size_t p = r.out.find("pid ");
  ASSERT_NE(p, std::string::npos) << r.out;
  const pid_t pid = static_cast<pid_t>(std::stol(r.out.substr(p + 4)));
  ASSERT_GT(pid, 0);
  RunResult io = RunTool("qemu-io", {"-r", "-f", "raw", "-c", "read -P 0x5e 1M 64k", uri});
  EXPECT_EQ(io.status, 0) << io.out << io.err;
  EXPECT_EQ(io.out.find("Pattern verification failed"), std::string::npos) << io.out;
  RunResult info = RunTool(testing::CoblkImg(), {"info", "-f", "raw", uri});
  EXPECT_NE(info.out.find("8 MiB"), std::string::npos) << info.out << info.err;
  // Read-only export: qemu-io cannot write.
  io = RunTool("qemu-io", {"-f", "raw", "-c", "write 0 4k", uri});
  EXPECT_NE(io.status, 0);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  for (int i = 0; i < 500 && !testing_nbd::ProcessGone(pid); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(testing_nbd::ProcessGone(pid)) << "the export did not stop";
  EXPECT_EQ(guard.Stop(), 0u) << "something still listened on " << sock;
}

// The same workload through coblk's export and through qemu-nbd's export of a
// copy: data written by qemu-io and by coblk reads back on the other side,
// the exports compare equal, their maps are equal, and both images check clean.
TEST_F(NbdkitExportTest, QemuClientsAgainstCoblkExport) {
  const std::string a = dir_ / "a.vmdk", b = dir_ / "b.vmdk";
  ASSERT_EQ(RunTool(testing::CoblkImg(), {"create", "-f", "vmdk", a, "64M"}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-f", "vmdk", "-c", "write -P 0x71 3M 192k", a}).status, 0);
  std::filesystem::copy_file(a, b);
  NbdServer coblk, qemu;
  ExportCoblk(coblk, {"image=" + a});
  ExportQemu(qemu, b);
  const std::vector<std::string> workload = {
      "write -P 0x61 0 64k", "write -P 0x62 1M 4k", "write -P 0x63 10M 1M",
      "write -z 3M 64k",     "write -P 0x64 40M 512", "flush", "discard 20M 1M",
      "read -P 0x71 3200k 64k", "read -P 0x63 10M 1M"};
  QemuIo(coblk.uri(), workload);
  QemuIo(qemu.uri(), workload);

  // coblk's nbd client writes into both; qemu-io reads it back.
  for (NbdServer* s : {&coblk, &qemu}) {
    auto node = MustOpen("driver=nbd,filename=" + s->uri());
    ASSERT_TRUE(node);
    ASSERT_TRUE(Write(*node, 50 << 20, std::vector<uint8_t>(300000, 0x65)));
    auto r = Read(*node, 0, 65536);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, std::vector<uint8_t>(65536, 0x61));
    Close(node);
  }
  QemuIo(coblk.uri(), {"read -P 0x65 50M 300000"});

  RunResult cmp = RunTool("qemu-img", {"compare", "-f", "raw", "-F", "raw", coblk.uri(),
                                       qemu.uri()});
  EXPECT_EQ(cmp.status, 0) << cmp.out << cmp.err;
  RunResult cmap = RunTool("qemu-img", {"map", "--output=json", "-f", "raw", coblk.uri()});
  RunResult qmap = RunTool("qemu-img", {"map", "--output=json", "-f", "raw", qemu.uri()});
  ASSERT_EQ(cmap.status, 0) << cmap.err;
  EXPECT_EQ(cmap.out, qmap.out);
  EXPECT_NE(cmap.out.find("\"data\": false"), std::string::npos) << cmap.out;
  // coblk-img map of the remote export agrees with qemu-img's.
  RunResult ccmap = RunTool(testing::CoblkImg(), {"map", "--output=json", "-f", "raw", coblk.uri()});
  EXPECT_EQ(ccmap.out, cmap.out);
  coblk.Stop();
  qemu.Stop();
  RunResult check = RunTool("qemu-img", {"check", "-f", "vmdk", a});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  cmp = RunTool("qemu-img", {"compare", "-f", "vmdk", "-F", "vmdk", a, b});
  EXPECT_EQ(cmp.status, 0) << cmp.out;
}

// QD 32 of non-overlapping writes through the export (nbdkit's worker
// threads handing them to coblk's loop), verified byte for byte in the image.
TEST_F(NbdkitExportTest, Qd32WritesThroughExportByteForByte) {
  const std::string a = dir_ / "a.vmdk";
  ASSERT_EQ(RunTool(testing::CoblkImg(), {"create", "-f", "vmdk", a, "16M"}).status, 0);
  NbdServer coblk;
  ExportCoblk(coblk, {"image=" + a});
  constexpr size_t kChunk = 65536 * 3 + 4096;  // crosses grain boundaries
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 32; ++i) data.push_back(Pattern(kChunk, static_cast<uint8_t>(i + 1)));
  auto node = MustOpen("driver=nbd,filename=" + coblk.uri());
  ASSERT_TRUE(node);
  for (auto& s : sync_wait(loop(), ConcurrentWrites(*node, kChunk, data)))
    ASSERT_TRUE(s) << s.error().ToString();
  Close(node);
  coblk.Stop();
  ASSERT_EQ(RunTool("qemu-img", {"check", "-f", "vmdk", a}).status, 0);
  auto local = MustOpen("driver=vmdk,file.filename=" + a, true);
  ASSERT_TRUE(local);
  auto r = Read(*local, 0, kChunk * 32);
  ASSERT_TRUE(r);
  for (size_t i = 0; i < 32; ++i) {
    ASSERT_TRUE(std::equal(data[i].begin(), data[i].end(), r->begin() + i * kChunk))
        << "chunk " << i;
  }
}

// coblk-img convert from a remote export into a local streamOptimized VMDK,
// and from that back onto a remote export.
TEST_F(NbdkitExportTest, ConvertRemoteToStreamOptimizedAndBack) {
  const std::string src = dir_ / "src.vmdk", stream = dir_ / "stream.vmdk";
  ASSERT_EQ(RunTool("qemu-img", {"create", "-f", "vmdk", src, "32M"}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-f", "vmdk", "-c", "write -P 0x12 0 1M", "-c",
                                "write -P 0x34 17M 3M", src})
                .status,
            0);
  NbdServer coblk;
  ExportCoblk(coblk, {"image=" + src, "readonly=true"});
  RunResult conv = RunTool(testing::CoblkImg(), {"convert", "-f", "raw", "-O", "vmdk", "-o",
                                                 "subformat=streamOptimized", coblk.uri(), stream});
  ASSERT_EQ(conv.status, 0) << conv.err;
  RunResult cmp = RunTool("qemu-img", {"compare", "-f", "raw", "-F", "vmdk", coblk.uri(), stream});
  EXPECT_EQ(cmp.status, 0) << cmp.out << cmp.err;
  EXPECT_NE(RunTool("qemu-img", {"info", stream}).out.find("streamOptimized"), std::string::npos);
  coblk.Stop();

  // Back: onto a fresh VMDK exported by coblk (-n: the target exists; it
  // reads as zeroes, so only data is written).
  const std::string back = dir_ / "back.vmdk";
  ASSERT_EQ(RunTool(testing::CoblkImg(), {"create", "-f", "vmdk", back, "32M"}).status, 0);
  ExportCoblk(coblk, {"image=" + back});
  conv = RunTool(testing::CoblkImg(), {"convert", "-n", "--target-is-zero", "-f", "vmdk", "-O",
                                       "raw", stream, coblk.uri()});
  ASSERT_EQ(conv.status, 0) << conv.err;
  cmp = RunTool("qemu-img", {"compare", "-f", "vmdk", "-F", "raw", stream, coblk.uri()});
  EXPECT_EQ(cmp.status, 0) << cmp.out << cmp.err;
  coblk.Stop();
  EXPECT_EQ(RunTool("qemu-img", {"check", "-f", "vmdk", back}).status, 0);
  cmp = RunTool("qemu-img", {"compare", "-f", "vmdk", "-F", "vmdk", src, back});
  EXPECT_EQ(cmp.status, 0) << cmp.out;
}

// kill -9 of the exporting nbdkit under a QD32 allocating workload: the
// client's requests fail cleanly (no hang); after a restart the image checks
// clean and everything acknowledged before the last successful flush reads back.
TEST_F(NbdkitExportTest, ServerKilledMidWorkloadKeepsFlushedData) {
  const std::string a = dir_ / "a.vmdk";
  ASSERT_EQ(RunTool(testing::CoblkImg(), {"create", "-f", "vmdk", a, "256M"}).status, 0);
  NbdServer coblk;
  ExportCoblk(coblk, {"image=" + a});
  auto node = MustOpen("driver=nbd,filename=" + coblk.uri());
  ASSERT_TRUE(node);

  // Each worker writes its own 64 KiB slots with a per-(worker, slot) pattern.
  constexpr int kWorkers = 32;
  constexpr int64_t kSlot = 65536;
  constexpr int kSlotsPerWorker = 128;  // 32 * 128 * 64 KiB = 256 MiB
  std::vector<int> acked(kWorkers, 0);    // slots acknowledged so far
  std::vector<int> flushed(kWorkers, 0);  // slots acknowledged before the last good flush
  int done = 0, failed = 0;
  auto slot_offset = [](int w, int k) { return (static_cast<int64_t>(k) * kWorkers + w) * kSlot; };
  auto worker = [&](int w) -> Task<void> {
    for (int k = 0; k < kSlotsPerWorker; ++k) {
      std::vector<uint8_t> buf = Pattern(kSlot, static_cast<uint8_t>(w * 7 + k));
      Status s = co_await node->pwrite(slot_offset(w, k), buf.data(), kSlot);
      if (!s) {
        ++failed;
        break;
      }
      acked[w] = k + 1;
      if (k % 8 == 7) {
        std::vector<int> snapshot = acked;
        if (!(co_await node->flush())) {
          ++failed;
          break;
        }
        for (int i = 0; i < kWorkers; ++i) flushed[i] = std::max(flushed[i], snapshot[i]);
      }
    }
    ++done;
  };
  std::vector<JoinHandle<void>> handles;
  for (int w = 0; w < kWorkers; ++w) handles.push_back(spawn(loop(), worker(w)));
  // Kill once some flushes have completed but well before the end.
  const auto start = std::chrono::steady_clock::now();
  auto total_flushed = [&] {
    int n = 0;
    for (int f : flushed) n += f;
    return n;
  };
  while (total_flushed() < kWorkers * 16 && done < kWorkers &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(30))
    loop().run_once(true);
  ASSERT_GE(total_flushed(), kWorkers * 16) << "the workload made no progress";
  ASSERT_LT(done, kWorkers) << "the workload finished before the kill";
  coblk.Kill();
  const auto killed = std::chrono::steady_clock::now();
  while (done < kWorkers && std::chrono::steady_clock::now() - killed < std::chrono::seconds(20))
    loop().run_once(true);
  ASSERT_EQ(done, kWorkers) << "client requests hung after the server was killed";
  EXPECT_GT(failed, 0);
  EXPECT_FALSE(sync_wait(loop(), node->flush()));
  Close(node);

  // Restart: every slot acknowledged before a successful flush is there.
  ExportCoblk(coblk, {"image=" + a});
  node = MustOpen("driver=nbd,filename=" + coblk.uri(), true);
  ASSERT_TRUE(node);
  int verified = 0;
  for (int w = 0; w < kWorkers; ++w) {
    for (int k = 0; k < flushed[w]; ++k) {
      auto r = Read(*node, slot_offset(w, k), kSlot);
      ASSERT_TRUE(r);
      ASSERT_EQ(*r, Pattern(kSlot, static_cast<uint8_t>(w * 7 + k))) << w << "/" << k;
      ++verified;
    }
  }
  EXPECT_GE(verified, kWorkers * 16);
  Close(node);
  coblk.Stop();
  RunResult check = RunTool("qemu-img", {"check", "-f", "vmdk", a});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
}

}  // namespace
}  // namespace coblk
