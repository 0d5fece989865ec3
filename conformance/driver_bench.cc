// coblk-driver-bench: Google Benchmark figures a format author points at
// their driver (built in or a plugin), with the conformance kit's flags:
//
//   coblk-driver-bench [--plugin FILE] --driver NAME [-o CREATE_OPTS]
//                      [--open-options O] [--size BYTES] [--dir DIR]
//                      [--benchmark_* flags]
//
//   Lookup          block_status of one random 4 KiB range of a fully
//                   written image: the driver's metadata lookup, no data I/O
//   RandRead4K/QD   4 KiB random reads, QD 1 and 32 (that many coroutines
//                   each issuing reads back to back)
//   RandWrite4K/QD  4 KiB random overwrites of allocated data, QD 1 and 32
//
// The image (default 256 MiB) is created in --dir (default: current
// directory), written in full once, and opened with the default cache
// mode (O_DIRECT where the filesystem allows it).
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "block/block_graph.h"
#include "conformance/kit.h"
#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "io/aligned_buffer.h"
#include "io/event_loop.h"

namespace coblk::conformance {
namespace {

struct Bench {
  std::unique_ptr<EventLoop> loop;
  std::shared_ptr<BlockNode> node;
  std::string dir;
};

Bench* g_bench = nullptr;

std::string Setup(Bench& b) {
  const KitConfig& c = Config();
  auto loop = EventLoop::Create();
  if (!loop) return loop.error().ToString();
  b.loop = std::move(*loop);
  b.loop->make_current();
  std::string tmpl = c.dir + "/coblk-bench-XXXXXX";
  if (!mkdtemp(tmpl.data())) return "cannot create a directory in " + c.dir;
  b.dir = std::filesystem::absolute(tmpl).string();
  const std::string image = b.dir + "/image";
  const BlockDriver* d = FindFormatDriver(c.driver);
  const bool format = d->protocol_name().empty() && !d->is_filter();
  std::string open = "driver=" + c.driver;
  if (d->protocol_name().empty()) {
    auto opts = Options::Parse(format ? c.create_options : std::string());
    if (!opts) return opts.error().ToString();
    opts->set_default("size", std::to_string(c.size));
    Status s = sync_wait(*b.loop, CreateImage(*b.loop, format ? c.driver : "raw", image, *opts));
    if (!s) return "create: " + s.error().ToString();
    open += ",file.driver=file,file.filename=" + image;
  } else {
    open += ",size=" + std::to_string(c.size);
  }
  if (!c.open_options.empty()) open += "," + c.open_options;
  auto opts = Options::Parse(open);
  if (!opts) return opts.error().ToString();
  BlockGraph graph(*b.loop);
  auto node = sync_wait(*b.loop, graph.open(std::move(*opts), OpenFlags{}));
  if (!node) return "open: " + node.error().ToString();
  b.node = std::move(*node);
  // Write everything once, so reads and lookups meet allocated data.
  AlignedBuffer buf(1 << 20, 4096);
  std::memset(buf.data(), 0x5a, buf.size());
  for (int64_t off = 0; off < b.node->size(); off += static_cast<int64_t>(buf.size())) {
    const int64_t len = std::min<int64_t>(buf.size(), b.node->size() - off);
    Status s = sync_wait(*b.loop, b.node->pwrite(off, buf.data(), len));
    if (!s) return "fill: " + s.error().ToString();
  }
  Status s = sync_wait(*b.loop, b.node->flush());
  if (!s) return "flush: " + s.error().ToString();
  return "";
}

// One coroutine of a QD-N run: `ops` random 4 KiB requests back to back.
Task<Status> Worker(BlockNode* node, bool write, int ops, uint64_t seed) {
  std::mt19937_64 rng(seed);
  AlignedBuffer buf(4096, 4096);
  std::memset(buf.data(), 0xa5, buf.size());
  const int64_t blocks = node->size() / 4096;
  for (int i = 0; i < ops; ++i) {
    const int64_t off = static_cast<int64_t>(rng() % static_cast<uint64_t>(blocks)) * 4096;
    Status s;  // (never co_await inside ?: with GCC 12)
    if (write) {
      s = co_await node->pwrite(off, buf.data(), 4096);
    } else {
      s = co_await node->pread(off, buf.data(), 4096);
    }
    if (!s) co_return s;
  }
  co_return OkStatus();
}

void RandomIo(benchmark::State& state, bool write) {
  const int qd = static_cast<int>(state.range(0));
  constexpr int kOpsPerWorker = 64;
  uint64_t seed = 1;
  for (auto _ : state) {
    std::vector<Task<Status>> workers;
    for (int w = 0; w < qd; ++w) workers.push_back(Worker(g_bench->node.get(), write, kOpsPerWorker, seed++));
    for (const Status& s : sync_wait(*g_bench->loop, when_all(std::move(workers)))) {
      if (!s) {
        state.SkipWithError(s.error().ToString().c_str());
        return;
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * qd * kOpsPerWorker);
  state.SetBytesProcessed(state.iterations() * qd * kOpsPerWorker * 4096);
}

void BM_RandRead4K(benchmark::State& state) { RandomIo(state, false); }
void BM_RandWrite4K(benchmark::State& state) { RandomIo(state, true); }

void BM_Lookup(benchmark::State& state) {
  std::mt19937_64 rng(7);
  BlockNode* node = g_bench->node.get();
  const int64_t blocks = node->size() / 4096;
  for (auto _ : state) {
    const int64_t off = static_cast<int64_t>(rng() % static_cast<uint64_t>(blocks)) * 4096;
    auto st = sync_wait(*g_bench->loop, node->block_status(false, off, 4096));
    if (!st) {
      state.SkipWithError(st.error().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(st->map);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_Lookup);
BENCHMARK(BM_RandRead4K)->Arg(1)->Arg(32)->ArgName("QD")->UseRealTime();
BENCHMARK(BM_RandWrite4K)->Arg(1)->Arg(32)->ArgName("QD")->UseRealTime();

}  // namespace
}  // namespace coblk::conformance

int main(int argc, char** argv) {
  using namespace coblk::conformance;
  benchmark::Initialize(&argc, argv);
  Config().size = 256 << 20;
  const std::string err = ParseKitArgs(argc, argv);
  if (err == "help" || !err.empty()) {
    if (err != "help") std::fprintf(stderr, "coblk-driver-bench: %s\n", err.c_str());
    std::fprintf(err == "help" ? stdout : stderr, "%s", KitUsage().c_str());
    return err == "help" ? 0 : 2;
  }
  Bench b;
  g_bench = &b;
  const std::string setup = Setup(b);
  int rc = 0;
  if (!setup.empty()) {
    std::fprintf(stderr, "coblk-driver-bench: %s\n", setup.c_str());
    rc = 1;
  } else {
    benchmark::RunSpecifiedBenchmarks();
    coblk::sync_wait(*b.loop, b.node->close());
  }
  b.node.reset();
  if (!b.dir.empty()) std::filesystem::remove_all(b.dir);
  benchmark::Shutdown();
  return rc;
}
