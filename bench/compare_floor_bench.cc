// The floor under any compare of two files held in the page cache: both
// files mapped (no copy at all) and compared with memcmp, on 1 and 2
// threads. No tool that reads through a buffer can beat it; qemu-img and
// coblk-img both copy every byte out of the cache first.
//
// The files are COBLK_FLOOR_A and COBLK_FLOOR_B (same size; the benchmark
// is skipped without them). bench/commit_compare_vs_qemu.sh sets them to
// its fully written 1 GiB raw pair, read into the page cache first.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kWindow = size_t{16} << 20;  // mapped at a time, per file

struct MappedPair {
  int a = -1, b = -1;
  size_t size = 0;
  MappedPair() {
    const char* pa = std::getenv("COBLK_FLOOR_A");
    const char* pb = std::getenv("COBLK_FLOOR_B");
    if (!pa || !pb) return;
    a = open(pa, O_RDONLY | O_CLOEXEC);
    b = open(pb, O_RDONLY | O_CLOEXEC);
    struct stat sa, sb;
    if (a < 0 || b < 0 || fstat(a, &sa) != 0 || fstat(b, &sb) != 0 || sa.st_size != sb.st_size) {
      size = 0;
      return;
    }
    size = static_cast<size_t>(sa.st_size);
  }
  ~MappedPair() {
    if (a >= 0) close(a);
    if (b >= 0) close(b);
  }
  // Compares [lo, hi) window by window; false on a difference or failure.
  bool Equal(size_t lo, size_t hi) const {
    for (size_t off = lo; off < hi; off += kWindow) {
      const size_t len = std::min(kWindow, hi - off);
      void* ma = mmap(nullptr, len, PROT_READ, MAP_SHARED | MAP_POPULATE, a, static_cast<off_t>(off));
      void* mb = mmap(nullptr, len, PROT_READ, MAP_SHARED | MAP_POPULATE, b, static_cast<off_t>(off));
      const bool ok = ma != MAP_FAILED && mb != MAP_FAILED && std::memcmp(ma, mb, len) == 0;
      if (ma != MAP_FAILED) munmap(ma, len);
      if (mb != MAP_FAILED) munmap(mb, len);
      if (!ok) return false;
    }
    return true;
  }
};

void BM_MappedCompare(benchmark::State& state) {
  static const MappedPair pair;
  if (pair.size == 0) {
    state.SkipWithError("set COBLK_FLOOR_A and COBLK_FLOOR_B to two files of one size");
    return;
  }
  const size_t threads = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    std::atomic<bool> equal{true};
    std::vector<std::thread> workers;
    // Split at window boundaries, so every mapping stays page aligned.
    const size_t windows = (pair.size + kWindow - 1) / kWindow;
    for (size_t t = 0; t < threads; ++t) {
      const size_t lo = std::min(pair.size, windows * t / threads * kWindow);
      const size_t hi = std::min(pair.size, windows * (t + 1) / threads * kWindow);
      workers.emplace_back([&, lo, hi] {
        if (!pair.Equal(lo, hi)) equal = false;
      });
    }
    for (std::thread& w : workers) w.join();
    if (!equal) state.SkipWithError("the files differ");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * pair.size * 2));
}
BENCHMARK(BM_MappedCompare)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
