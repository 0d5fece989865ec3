// AioEngine 4 KiB random reads on an O_DIRECT file at queue depth 1 and 32.
//
// The file is COBLK_BENCH_FILE (default bench-1g.img in the working
// directory); bench/aio_vs_fio.sh creates it filled with data and runs fio on
// the same file for comparison. Reads of holes never reach the disk, so the
// file must really be written, not sparse.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>

#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "io/aio_engine.h"
#include "io/aligned_buffer.h"
#include "io/event_loop.h"

namespace coblk {
namespace {

std::string BenchFile() {
  const char* f = std::getenv("COBLK_BENCH_FILE");
  return f ? f : "bench-1g.img";
}

// One worker of a queue-depth-N run: reads until the shared budget is spent.
Task<Status> reader(AioEngine& engine, int fd, uint64_t blocks, int64_t& budget,
                    uint32_t seed) {
  AlignedBuffer buf(4096);
  IoVector qiov = buf.iov();
  std::mt19937_64 rng(seed);
  while (budget > 0) {
    --budget;
    uint64_t off = (rng() % blocks) * 4096;
    COBLK_CO_RETURN_IF_ERROR(co_await engine.preadv(fd, qiov, off));
  }
  co_return OkStatus();
}

void BM_AioRandRead4k(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  int fd = open(BenchFile().c_str(), O_RDONLY | O_DIRECT);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < (1 << 20)) {
    state.SkipWithError(("cannot open " + BenchFile() + " (run bench/aio_vs_fio.sh)").c_str());
    return;
  }
  auto loop = EventLoop::Create().value();
  auto engine = AioEngine::Create(*loop, 128).value();
  const uint64_t blocks = static_cast<uint64_t>(st.st_size) / 4096;
  const int64_t per_iteration = 20000;
  uint32_t seed = 1;
  for (auto _ : state) {
    int64_t budget = per_iteration;
    std::vector<Task<Status>> workers;
    for (int i = 0; i < depth; ++i) workers.push_back(reader(*engine, fd, blocks, budget, seed++));
    for (auto& s : sync_wait(*loop, when_all(std::move(workers))))
      if (!s) state.SkipWithError(s.error().ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * per_iteration);
  state.counters["IOPS"] = benchmark::Counter(static_cast<double>(state.iterations() * per_iteration),
                                              benchmark::Counter::kIsRate);
  state.counters["submits_per_io"] =
      static_cast<double>(engine->stats().submit_calls) / static_cast<double>(engine->stats().requests);
  close(fd);
}
BENCHMARK(BM_AioRandRead4k)->Arg(1)->Arg(32)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace coblk

BENCHMARK_MAIN();
