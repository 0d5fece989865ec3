// The nbd protocol driver against real servers: nbdkit's memory plugin and
// qemu-nbd exporting raw and VMDK images, read-write and read-only.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "block/block_backend.h"
#include "coroutine/when_all.h"
#include "tests/drivers/driver_test_util.h"
#include "tests/drivers/nbd/nbd_server_util.h"
#include "tests/tools/tool_runner.h"

namespace coblk {
namespace {

using testing::RunTool;
using testing_nbd::NbdServer;
using testing_nbd::TempDir;
using testing_util::Pattern;

class NbdClientTest : public testing_util::DriverTest {
 protected:
  void SetUp() override {
    DriverTest::SetUp();
    ASSERT_FALSE(dir_.path().empty());
  }

  void StartMemory(const std::string& size = "64M") {
    ASSERT_TRUE(server_.Start({"nbdkit", "-f", "--exit-with-parent", "-U", dir_ / "sock",
                               "memory", size},
                              dir_ / "sock"));
  }
  void StartQemuNbd(const std::string& format, const std::string& image, bool read_only,
                    const std::string& export_name = {}) {
    std::vector<std::string> argv = {"qemu-nbd", "-k", dir_ / "sock", "-f", format, "-t",
                                     "-e", "8", "--cache=writeback"};
    if (read_only) argv.push_back("-r");
    if (!export_name.empty()) {
      argv.push_back("-x");
      argv.push_back(export_name);
    }
    argv.push_back(image);
    ASSERT_TRUE(server_.Start(argv, dir_ / "sock"));
  }

  // Writes 32 non-overlapping chunks concurrently, each with its own pattern.
  Task<std::vector<Status>> ConcurrentWrites(BlockNode& n, int64_t base, size_t chunk,
                                             std::vector<std::vector<uint8_t>>& data) {
    std::vector<Task<Status>> tasks;
    for (size_t i = 0; i < data.size(); ++i)
      tasks.push_back(n.pwrite(base + static_cast<int64_t>(i * chunk), data[i].data(),
                               static_cast<int64_t>(chunk)));
    co_return co_await when_all(std::move(tasks));
  }

  TempDir dir_;
  NbdServer server_;
};

TEST_F(NbdClientTest, NbdkitMemoryReadWriteZeroTrimStatus) {
  StartMemory();
  auto node = MustOpen("driver=nbd,filename=" + server_.uri());
  ASSERT_TRUE(node);
  EXPECT_EQ(node->size(), 64 << 20);
  EXPECT_FALSE(node->read_only());
  EXPECT_EQ(node->filename(), server_.uri());

  auto p = Pattern(1 << 20, 3);
  ASSERT_TRUE(Write(*node, 4096, p));
  auto r = Read(*node, 4096, p.size());
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, p);
  // Unaligned, odd-sized I/O passes straight through (alignment 1).
  std::vector<uint8_t> odd = {1, 2, 3, 4, 5, 6, 7};
  ASSERT_TRUE(Write(*node, 12345, odd));
  auto ro = Read(*node, 12345, odd.size());
  ASSERT_TRUE(ro);
  EXPECT_EQ(*ro, odd);
  ASSERT_TRUE(sync_wait(loop(), node->flush()));

  // nbdkit memory reports holes and zeroes through base:allocation.
  auto st = GetStatus(*node, 32 << 20, 1 << 20);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusZero);
  EXPECT_FALSE(st->status & kStatusData);
  st = GetStatus(*node, 4096, 4096);
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->status & kStatusData);

  // write_zeroes (with and without unmap) and trim reach the server.
  ASSERT_TRUE(sync_wait(loop(), node->pwrite_zeroes(4096, 65536, 0)));
  ASSERT_TRUE(sync_wait(loop(), node->pwrite_zeroes(4096 + 65536, 65536, kReqMayUnmap)));
  r = Read(*node, 4096, 131072, 0xee);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, std::vector<uint8_t>(131072, 0));
  ASSERT_TRUE(sync_wait(loop(), node->pdiscard(1 << 20, 1 << 20)));
  st = GetStatus(*node, 1 << 20, 1 << 20);
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->status & kStatusData);
  // FUA writes are accepted (nbdkit memory offers FUA).
  ASSERT_TRUE(Write(*node, 0, Pattern(4096, 9), kReqFua));
  r = Read(*node, 0, 4096);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, Pattern(4096, 9));
}

TEST_F(NbdClientTest, Qd32NonOverlappingWritesByteForByte) {
  StartMemory();
  auto node = MustOpen("driver=nbd,filename=" + server_.uri());
  ASSERT_TRUE(node);
  constexpr size_t kChunk = 65536 + 512;  // not a power of two: exercises offsets
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < 32; ++i) data.push_back(Pattern(kChunk, static_cast<uint8_t>(i)));
  auto results = sync_wait(loop(), ConcurrentWrites(*node, 1000, kChunk, data));
  for (auto& s : results) ASSERT_TRUE(s) << s.error().ToString();
  Close(node);
  // A new connection sees every byte.
  auto again = MustOpen("driver=nbd,filename=" + server_.uri());
  ASSERT_TRUE(again);
  auto r = Read(*again, 1000, kChunk * 32);
  ASSERT_TRUE(r);
  for (size_t i = 0; i < 32; ++i) {
    ASSERT_TRUE(std::equal(data[i].begin(), data[i].end(), r->begin() + i * kChunk))
        << "chunk " << i;
  }
}

TEST_F(NbdClientTest, QemuNbdRawReadWriteAndOptionForm) {
  TempDir images;
  const std::string img = images / "disk.raw";
  ASSERT_EQ(RunTool("qemu-img", {"create", "-f", "raw", img, "8M"}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-f", "raw", "-c", "write -P 0x5a 1M 64k", img}).status, 0);
  StartQemuNbd("raw", img, false, "disk");
  auto node = MustOpen("driver=nbd,server.type=unix,server.path=" + server_.socket() +
                       ",export=disk");
  ASSERT_TRUE(node);
  EXPECT_EQ(node->size(), 8 << 20);
  auto r = Read(*node, 1 << 20, 65536);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, std::vector<uint8_t>(65536, 0x5a));
  auto p = Pattern(200000, 7);
  ASSERT_TRUE(Write(*node, 3 << 20, p));
  ASSERT_TRUE(sync_wait(loop(), node->flush()));
  Close(node);
  server_.Stop();
  EXPECT_EQ(testing_util::ReadHostFile(img, 3 << 20, p.size()), p);
  // A wrong export name is refused by the server.
  StartQemuNbd("raw", img, false, "disk");
  auto bad = Open("driver=nbd,server.type=unix,server.path=" + server_.socket() +
                  ",export=nosuch");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("Failed to connect"), std::string::npos)
      << bad.error().message();
}

TEST_F(NbdClientTest, QemuNbdReadOnlyExport) {
  TempDir images;
  const std::string img = images / "disk.raw";
  ASSERT_EQ(RunTool("qemu-img", {"create", "-f", "raw", img, "4M"}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-f", "raw", "-c", "write -P 0x11 0 4k", img}).status, 0);
  StartQemuNbd("raw", img, true);
  auto rw = Open("driver=nbd,filename=" + server_.uri());
  ASSERT_FALSE(rw);
  EXPECT_EQ(rw.error().message(), "NBD export is read-only");
  auto node = MustOpen("driver=nbd,filename=" + server_.uri(), /*read_only=*/true);
  ASSERT_TRUE(node);
  EXPECT_TRUE(node->read_only());
  auto r = Read(*node, 0, 4096);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, std::vector<uint8_t>(4096, 0x11));
  EXPECT_FALSE(Write(*node, 0, Pattern(4096, 1)));
}

// A VMDK exported by qemu-nbd: coblk reads what qemu-io wrote, writes what
// qemu-io then reads, and `coblk-img map` of the export equals `qemu-img map`.
TEST_F(NbdClientTest, QemuNbdVmdkDataAndMap) {
  TempDir images;
  const std::string img = images / "disk.vmdk";
  ASSERT_EQ(RunTool("qemu-img", {"create", "-f", "vmdk", img, "16M"}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-f", "vmdk", "-c", "write -P 0x21 64k 128k", "-c",
                                "write -P 0x22 5M 4k", "-c", "write -z 6M 1M", img})
                .status,
            0);
  StartQemuNbd("vmdk", img, false);
  auto node = MustOpen("driver=raw,file.driver=nbd,file.filename=" + server_.uri());
  ASSERT_TRUE(node);
  auto r = Read(*node, 65536, 131072);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, std::vector<uint8_t>(131072, 0x21));
  ASSERT_TRUE(Write(*node, 9 << 20, std::vector<uint8_t>(8192, 0x33)));
  Close(node);

  auto qmap = RunTool("qemu-img", {"map", "--output=json", "-f", "raw", server_.uri()});
  ASSERT_EQ(qmap.status, 0) << qmap.err;
  auto cmap = RunTool(testing::CoblkImg(), {"map", "--output=json", "-f", "raw", server_.uri()});
  ASSERT_EQ(cmap.status, 0) << cmap.err;
  EXPECT_EQ(cmap.out, qmap.out);
  EXPECT_NE(qmap.out.find("\"data\": false"), std::string::npos) << qmap.out;
  server_.Stop();
  auto q = RunTool("qemu-io", {"-f", "vmdk", "-c", "read -P 0x33 9M 8k", img});
  EXPECT_EQ(q.status, 0) << q.out;
  EXPECT_EQ(q.out.find("Pattern verification failed"), std::string::npos) << q.out;
  EXPECT_EQ(RunTool("qemu-img", {"check", "-f", "vmdk", img}).status, 0);
}

// A format on top of a remote export: the VMDK file itself is exported raw
// and coblk's vmdk driver reads it through json:{"file":{"driver":"nbd"}}.
TEST_F(NbdClientTest, VmdkFormatOverNbdProtocol) {
  TempDir images;
  const std::string img = images / "disk.vmdk";
  ASSERT_EQ(RunTool("qemu-img", {"create", "-f", "vmdk", img, "8M"}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-f", "vmdk", "-c", "write -P 0x44 1M 64k", img}).status, 0);
  StartQemuNbd("raw", img, false);
  const std::string json = "json:{\"driver\":\"vmdk\",\"file\":{\"driver\":\"nbd\","
                           "\"server\":{\"type\":\"unix\",\"path\":\"" +
                           server_.socket() + "\"}}}";
  // Overwriting an allocated grain works; allocating one would grow the
  // file, which a fixed-size export cannot (qemu-io fails the same way).
  auto io = RunTool(testing::CoblkIo(),
                    {"-c", "read -P 0x44 1M 64k", "-c", "write -P 0x55 1028k 4k", json});
  EXPECT_EQ(io.status, 0) << io.out << io.err;
  EXPECT_EQ(io.out.find("Pattern verification failed"), std::string::npos) << io.out;
  io = RunTool(testing::CoblkIo(), {"-c", "write -P 0x55 4M 4k", json});
  EXPECT_EQ(io.status, 1) << io.out << io.err;
  EXPECT_NE(io.out.find("write failed"), std::string::npos) << io.out;
  server_.Stop();
  auto q = RunTool("qemu-io", {"-f", "vmdk", "-c", "read -P 0x55 1028k 4k", img});
  EXPECT_EQ(q.out.find("Pattern verification failed"), std::string::npos) << q.out;
  EXPECT_EQ(RunTool("qemu-img", {"check", "-f", "vmdk", img}).status, 0);
}

// Kill the server with 32 requests in flight: every request fails with an
// error, none hangs, and later requests fail at once.
TEST_F(NbdClientTest, ServerKilledMidWorkloadFailsCleanly) {
  StartMemory("256M");
  const std::string uri = server_.uri();
  auto node = MustOpen("driver=nbd,filename=" + uri);
  ASSERT_TRUE(node);
  std::vector<std::vector<uint8_t>> bufs(32, std::vector<uint8_t>(1 << 20));
  int done = 0, failed = 0;
  bool stop = false;
  std::string r0;
  auto worker = [&](size_t i) -> Task<void> {
    for (int64_t k = 0; !stop; ++k) {
      Status s = co_await node->pwrite(static_cast<int64_t>(((i * 7 + k) % 256) << 20),
                                       bufs[i].data(), 1 << 20);
      if (!s) {
        ++failed;
        r0 = s.error().message();
        EXPECT_NE(s.error().message().find("NBD write failed"), std::string::npos)
            << s.error().message();
        break;
      }
    }
    ++done;
  };
  std::vector<JoinHandle<void>> handles;
  for (size_t i = 0; i < 32; ++i) handles.push_back(spawn(loop(), worker(i)));
  // Let the workload get going, then kill -9 the server under it.
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(300))
    loop().run_once(false);
  server_.Kill();
  const auto killed = std::chrono::steady_clock::now();
  while (done < 32 && std::chrono::steady_clock::now() - killed < std::chrono::seconds(20))
    loop().run_once(true);
  ASSERT_EQ(done, 32) << "requests hung after the server died";
  // The error says what happened to the connection, not just the errno.
  EXPECT_NE(r0.find("(connection to '" + uri + "' lost"), std::string::npos) << r0;
  EXPECT_EQ(failed, 32);
  auto r = Read(*node, 0, 4096);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("NBD read failed"), std::string::npos)
      << r.error().message();
}

TEST_F(NbdClientTest, ConnectErrorsAndBadOptions) {
  auto r = Open("driver=nbd,filename=nbd+unix:///?socket=" + (dir_ / "nosuch"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("Failed to connect to"), std::string::npos)
      << r.error().message();
  r = Open("driver=nbd,server.type=unix,server.path=" + (dir_ / "nosuch"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("Failed to connect to"), std::string::npos);
  r = Open("driver=nbd,server.type=pipe,server.path=x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("Invalid server.type"), std::string::npos);
  r = Open("driver=nbd,server.type=unix");
  ASSERT_FALSE(r);
  r = Open("driver=nbd");
  ASSERT_FALSE(r);
  r = Open("driver=nbd,filename=nbd+unix:///?socket=/x,server.type=unix,server.path=/x");
  ASSERT_FALSE(r);
  r = Open("driver=nbd,filename=nbd+unix:///?socket=/x,bogus=1");
  ASSERT_FALSE(r);
  r = Open("driver=nbd,filename=nbd:nosuchhost");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("expected nbd:HOST:PORT"), std::string::npos)
      << r.error().message();
}

// TCP: nbd://, nbd+tcp://, nbd:HOST:PORT and server.type=inet reach the
// same nbdkit memory export on 127.0.0.1 (a free port is found by trying).
TEST_F(NbdClientTest, TcpNamesAndOptionForm) {
  std::string port;
  for (int attempt = 0; attempt < 10 && port.empty(); ++attempt) {
    const std::string p = std::to_string(20000 + (getpid() * 7 + attempt * 101) % 30000);
    if (server_.StartWithPidFile({"nbdkit", "-f", "--exit-with-parent", "-i", "127.0.0.1", "-p",
                                  p, "-P", dir_ / "pid", "memory", "4M"},
                                 dir_ / "pid"))
      port = p;
  }
  ASSERT_FALSE(port.empty()) << "nbdkit could not listen on any port tried";
  auto node = MustOpen("driver=nbd,filename=nbd://127.0.0.1:" + port + "/");
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(*node, 8192, Pattern(4096, 5)));
  Close(node);
  for (const std::string& opts :
       {"driver=nbd,filename=nbd+tcp://127.0.0.1:" + port + "/",
        "driver=nbd,filename=nbd:127.0.0.1:" + port,
        "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=" + port}) {
    auto n = MustOpen(opts);
    ASSERT_TRUE(n) << opts;
    auto r = Read(*n, 8192, 4096);
    ASSERT_TRUE(r) << opts;
    EXPECT_EQ(*r, Pattern(4096, 5)) << opts;
    Close(n);
  }
}

TEST_F(NbdClientTest, LegacyNameAndProbedFormat) {
  TempDir images;
  const std::string img = images / "disk.raw";
  ASSERT_EQ(RunTool("qemu-img", {"create", "-f", "raw", img, "1M"}).status, 0);
  ASSERT_EQ(RunTool("qemu-io", {"-f", "raw", "-c", "write -P 0x66 0 4k", img}).status, 0);
  StartQemuNbd("raw", img, true, "x");
  // "nbd:unix:PATH:exportname=E", opened the way tools open a filename.
  auto node = MustOpen("filename=nbd:unix:" + server_.socket() + ":exportname=x", true);
  ASSERT_TRUE(node);
  auto r = Read(*node, 0, 4096);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, std::vector<uint8_t>(4096, 0x66));
}

}  // namespace
}  // namespace coblk
