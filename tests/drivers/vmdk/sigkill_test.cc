// SIGKILL at random moments (issue 15): coblk-io during allocating writes
// (batches of concurrent aio_write, each followed by aio_flush) and
// coblk-img convert -O vmdk -o subformat=streamOptimized. Afterwards
// qemu-img check finds no corruption (leaks are allowed and counted),
// coblk-img check finds nothing but redundant tables lagging the primary,
// every write acknowledged before a completed flush reads back, and the
// image accepts new writes. Then coblk's repair (-r all) makes both checks
// clean, keeps every flushed write (and for a killed stream convert
// salvages grains written after the last tail), and a second repair
// changes nothing (issue 13).
//
// COBLK_KILL_ROUNDS=N runs N kills per case instead of the CI's few.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "tests/drivers/vmdk/vmdk_write_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kGrain = 65536;

int Rounds(int fallback) {
  const char* v = std::getenv("COBLK_KILL_ROUNDS");
  return v && *v ? std::atoi(v) : fallback;
}

// Starts `cmd` (through sh -c "exec ...", so the pid is the command's),
// stdout and stderr to out_file, kills it with SIGKILL after `delay`.
// Returns the exit status if it finished first, -SIGKILL if killed.
int RunAndKill(const std::string& cmd, const std::string& out_file,
               std::chrono::microseconds delay) {
  // Everything is prepared before fork(): the child only execs (the test
  // process has threads, so the child may not allocate).
  // stdbuf: line-buffered stdout, so lines printed before the kill are in
  // the file. ASan must tolerate stdbuf's preload.
  const std::string full = "exec stdbuf -oL " + cmd + " >" + out_file + " 2>&1";
  // No output of an earlier run may remain if the kill comes before the
  // shell opens the file.
  std::remove(out_file.c_str());
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (!std::string_view(*e).starts_with("ASAN_OPTIONS=")) env.emplace_back(*e);
  env.emplace_back("ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0");
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execle("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr), envp.data());
    _exit(127);
  }
  const auto until = std::chrono::steady_clock::now() + delay;
  int status = 0;
  while (std::chrono::steady_clock::now() < until) {
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

class SigkillTest : public VmdkWriteTest {
 protected:
  // qemu-img check: no corruption (exit 0, or 3 = leaks only); adds the
  // number of leaked clusters it reports to *leaks.
  void ExpectNoCorruption(const std::string& img, int64_t* leaks) {
    std::string out;
    const int rc = ShOut("qemu-img check -f vmdk " + img, &out);
    EXPECT_TRUE(rc == 0 || rc == 3) << "qemu-img check exit " << rc << ":\n" << out;
    std::smatch m;
    if (std::regex_search(out, m, std::regex("([0-9]+) leaked clusters"))) *leaks += std::stoll(m[1]);
    ExpectOnlyRedundantLag(img, &lagging_);
  }

  int64_t lagging_ = 0;

  std::string bin_ = COBLK_BIN_DIR;
};

// Batch b: 8 concurrent allocating writes, each 64 KiB at an unaligned
// offset, then aio_flush and flush, then a 512-byte read at offset b * 512 whose
// output line says the flush before it completed.
struct KillWorkload {
  static constexpr int kBatches = 16, kPerBatch = 8;
  static int64_t Offset(int idx) { return int64_t{idx} * 2 * kGrain + (idx % 7) * 512; }
  static uint8_t Pattern(int idx) { return static_cast<uint8_t>(1 + idx % 250); }
  static std::string Script() {
    std::string s;
    for (int b = 0; b < kBatches; ++b) {
      for (int k = 0; k < kPerBatch; ++k) {
        const int idx = b * kPerBatch + k;
        s += " -c 'aio_write -P " + std::to_string(Pattern(idx)) + " " + std::to_string(Offset(idx)) +
             " " + std::to_string(kGrain) + "'";
      }
      // aio_flush only drains (as in qemu-io); flush makes them durable.
      s += " -c aio_flush -c flush -c 'read " + std::to_string(b * 512) + " 512'";
    }
    return s;
  }
  // Batches whose flush completed, from coblk-io's output.
  static int FlushedBatches(const std::string& out) {
    int n = 0;
    while (out.find("read 512/512 bytes at offset " + std::to_string(n * 512) + "\n") != std::string::npos) ++n;
    return n;
  }
};

TEST_F(SigkillTest, KillDuringAllocatingWrites) {
  SKIP_WITHOUT_QEMU();
  ASSERT_EQ(Sh("stdbuf --version"), 0) << "stdbuf (coreutils) is needed";
  struct Case {
    const char* subformat;
    const char* cache;
  };
  const Case cases[] = {{"monolithicSparse", "none"}, {"monolithicSparse", "writeback"},
                        {"streamOptimized", "none"}, {"streamOptimized", "directsync"}};
  const int rounds = Rounds(2);
  std::mt19937 rng(15);
  int64_t leaks = 0, kills = 0, flushed_total = 0, repaired_leaks = 0, repaired_corruptions = 0;
  for (const Case& c : cases) {
    ScratchDir dir;
    const std::string pristine = dir / "p.vmdk", img = dir / "a.vmdk", out = dir / "out.txt";
    ASSERT_TRUE(Create(pristine, std::string("subformat=") + c.subformat + ",size=64M"));
    // How long the whole workload takes, to kill inside it.
    std::filesystem::copy_file(pristine, img, std::filesystem::copy_options::overwrite_existing);
    const std::string cmd = bin_ + "/coblk-io -t " + c.cache + KillWorkload::Script() + " " + img;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(RunAndKill(cmd, out, std::chrono::seconds(120)), 0) << ReadText(out);
    const auto full = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - t0);
    for (int r = 0; r < rounds; ++r) {
      SCOPED_TRACE(std::string(c.subformat) + " cache=" + c.cache + " round " + std::to_string(r));
      std::filesystem::copy_file(pristine, img, std::filesystem::copy_options::overwrite_existing);
      const auto delay = std::chrono::microseconds(full.count() * (5 + rng() % 90) / 100);
      const int rc = RunAndKill(cmd, out, delay);
      kills += rc == -SIGKILL;
      const int flushed = KillWorkload::FlushedBatches(ReadText(out));
      flushed_total += flushed;
      ExpectNoCorruption(img, &leaks);
      auto verify = [&] {
        auto n = OpenVmdk(img);
        ASSERT_TRUE(n) << n.error().ToString();
        for (int idx = 0; idx < flushed * KillWorkload::kPerBatch; ++idx) {
          auto got = ReadRange(**n, KillWorkload::Offset(idx), kGrain);
          ASSERT_TRUE(got) << got.error().ToString();
          ASSERT_TRUE(std::all_of(got->begin(), got->end(),
                                  [&](uint8_t b) { return b == KillWorkload::Pattern(idx); }))
              << "flushed write " << idx << " (batch " << idx / KillWorkload::kPerBatch
              << ") did not survive the kill";
        }
        Close(*n);
      };
      verify();
      {
        const CheckResult fixed = ExpectRepairCleans(img);
        repaired_leaks += fixed.leaks_fixed;
        repaired_corruptions += fixed.corruptions_fixed;
        verify();
      }
      // New writes are accepted (at a grain no workload write touched).
      {
        auto n = OpenRw(img);
        ASSERT_TRUE(n) << n.error().ToString();
        ASSERT_TRUE(Apply(**n, {WriteOp::kData, 62 * kMiB_ + 512, 8192, 0xee}));
        Close(*n);
        auto ro = OpenVmdk(img);
        ASSERT_TRUE(ro);
        auto got = ReadRange(**ro, 62 * kMiB_ + 512, 8192);
        ASSERT_TRUE(got);
        EXPECT_TRUE(std::all_of(got->begin(), got->end(), [](uint8_t b) { return b == 0xee; }));
        Close(*ro);
        ExpectNoCorruption(img, &leaks);
      }
    }
  }
  std::printf("allocating writes: %lld kills, %lld flushed batches verified, %lld leaked clusters "
              "(qemu-img), %lld redundant entries lagging; repair fixed %lld leaked grains and %lld "
              "corruptions\n",
              static_cast<long long>(kills), static_cast<long long>(flushed_total),
              static_cast<long long>(leaks), static_cast<long long>(lagging_),
              static_cast<long long>(repaired_leaks), static_cast<long long>(repaired_corruptions));
}

TEST_F(SigkillTest, KillDuringConvertToStreamOptimized) {
  SKIP_WITHOUT_QEMU();
  ASSERT_EQ(Sh("stdbuf --version"), 0) << "stdbuf (coreutils) is needed";
  ScratchDir dir;
  const std::string src = dir / "src.raw", img = dir / "s.vmdk", out = dir / "out.txt";
  // 24 MiB: grains of random bytes (slow to deflate), patterns and zeros.
  constexpr int64_t kSize = 24 * kMiB_;
  {
    Bytes data(kSize, 0);
    std::mt19937 rng(7);
    for (int64_t g = 0; g < kSize / kGrain; ++g) {
      uint8_t* p = data.data() + g * kGrain;
      if (g % 5 == 4) continue;  // zero grain
      if (g % 2)
        for (int64_t i = 0; i < kGrain; ++i) p[i] = static_cast<uint8_t>(rng());
      else
        std::memset(p, static_cast<int>(g % 251), kGrain);
    }
    ASSERT_TRUE(WriteFile(src, data));
  }
  const Bytes source = ReadFile(src);
  const std::string cmd = bin_ + "/coblk-img convert -O vmdk -o subformat=streamOptimized " + src + " " + img;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(RunAndKill(cmd, out, std::chrono::seconds(120)), 0) << ReadText(out);
  const auto full = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - t0);
  std::string cmp;
  ASSERT_EQ(ShOut("qemu-img compare " + src + " " + img, &cmp), 0) << cmp;

  const int rounds = Rounds(3);
  std::mt19937 rng(16);
  int64_t leaks = 0, kills = 0, in_create = 0, grains_seen = 0, salvaged = 0, grains_after_repair = 0;
  for (int r = 0; r < rounds; ++r) {
    SCOPED_TRACE("round " + std::to_string(r));
    std::filesystem::remove(img);
    const auto delay = std::chrono::microseconds(full.count() * (3 + rng() % 95) / 100);
    const int rc = RunAndKill(cmd, out, delay);
    kills += rc == -SIGKILL;
    ASSERT_TRUE(rc == 0 || rc == -SIGKILL) << ReadText(out);
    // Killed before create finished writing the empty image: not a
    // session of writes yet, nothing to check.
    const Bytes f = ReadFile(img);
    if (f.size() < 512 || f[0] != 'K' || f[1] != 'D' || f[2] != 'M' || f[3] != 'V') {
      ++in_create;
      continue;
    }
    ExpectNoCorruption(img, &leaks);
    auto n = OpenVmdk(img);
    ASSERT_TRUE(n) << n.error().ToString();
    // Every grain holds the source's data or reads as zeros (not written yet).
    int64_t free_grain = -1;
    for (int64_t g = 0; g < kSize / kGrain; ++g) {
      auto got = ReadRange(**n, g * kGrain, kGrain);
      ASSERT_TRUE(got) << got.error().ToString();
      const bool same = std::equal(got->begin(), got->end(), source.begin() + g * kGrain);
      const bool zero = std::all_of(got->begin(), got->end(), [](uint8_t b) { return b == 0; });
      ASSERT_TRUE(same || zero) << "grain " << g << " holds neither its data nor zeros";
      grains_seen += same && !zero;
      auto st = GetStatus(**n, g * kGrain, kGrain);
      if (st && !(st->status & kStatusAllocated)) free_grain = g;
    }
    Close(*n);
    // Repair salvages grains written after the last tail: afterwards
    // every grain still holds its data or zeros, and none is lost.
    {
      const CheckResult fixed = ExpectRepairCleans(img);
      salvaged += fixed.leaks_fixed;
      auto after = OpenVmdk(img);
      ASSERT_TRUE(after) << after.error().ToString();
      free_grain = -1;
      for (int64_t g = 0; g < kSize / kGrain; ++g) {
        auto got = ReadRange(**after, g * kGrain, kGrain);
        ASSERT_TRUE(got) << got.error().ToString();
        const bool same = std::equal(got->begin(), got->end(), source.begin() + g * kGrain);
        const bool zero = std::all_of(got->begin(), got->end(), [](uint8_t b) { return b == 0; });
        ASSERT_TRUE(same || zero) << "after repair, grain " << g << " holds neither its data nor zeros";
        grains_after_repair += same && !zero;
        auto st = GetStatus(**after, g * kGrain, kGrain);
        if (st && !(st->status & kStatusAllocated)) free_grain = g;
      }
      Close(*after);
    }
    if (rc == 0) {
      EXPECT_EQ(ShOut("qemu-img compare " + src + " " + img, &cmp), 0) << cmp;
      continue;
    }
    // The image accepts new writes (a stream grain is written once: take
    // one still unallocated).
    if (free_grain >= 0) {
      auto w = OpenRw(img);
      ASSERT_TRUE(w) << w.error().ToString();
      ASSERT_TRUE(Apply(**w, {WriteOp::kData, free_grain * kGrain, kGrain, 0xdd}));
      Close(*w);
      ExpectNoCorruption(img, &leaks);
      auto ro = OpenVmdk(img);
      ASSERT_TRUE(ro);
      auto got = ReadRange(**ro, free_grain * kGrain, kGrain);
      ASSERT_TRUE(got);
      EXPECT_TRUE(std::all_of(got->begin(), got->end(), [](uint8_t b) { return b == 0xdd; }));
      Close(*ro);
    }
  }
  std::printf("convert: %d rounds, %lld kills (%lld before the image existed), %lld grains "
              "found intact, %lld leaked clusters; repair salvaged %lld grains (%lld intact after)\n",
              rounds, static_cast<long long>(kills), static_cast<long long>(in_create),
              static_cast<long long>(grains_seen), static_cast<long long>(leaks),
              static_cast<long long>(salvaged), static_cast<long long>(grains_after_repair));
  EXPECT_GE(grains_after_repair, grains_seen);
}

}  // namespace
}  // namespace coblk::vmdk::test
