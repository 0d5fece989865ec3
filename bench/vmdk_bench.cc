// VMDK micro benchmarks: grain lookup with the grain table cached (target
// < 20 ns), grain lookup with a cache miss (a grain-table load from the
// file, cache of one table, two tables alternating), and inflating one
// compressed 64 KiB grain.
//
// The image is a 1 GiB monolithicSparse extent laid out like qemu-img's
// (64 KiB grains, 512 GTEs per table, 32 tables), every grain allocated,
// written to build/bin/vmdk-bench.vmdk.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "block/block_graph.h"
#include "coroutine/sync_wait.h"
#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/create.h"
#include "drivers/vmdk/vmdk_node.h"
#include "io/event_loop.h"

namespace coblk::vmdk {
namespace {

constexpr int64_t kImageBytes = int64_t{1} << 30;
constexpr uint64_t kGrain = 65536;
constexpr uint64_t kTableSpan = kGrain * 512;  // guest bytes per grain table

std::string ImagePath() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string dir = n > 0 ? std::string(exe, static_cast<size_t>(n)) : std::string("./x");
  return dir.substr(0, dir.rfind('/')) + "/vmdk-bench.vmdk";
}

// Metadata only: grain data is never read by the lookup benchmarks.
const std::string& MakeImage() {
  static const std::string path = [] {
    auto plan = PlanSparseExtent(kImageBytes, false, false).value();
    const Vmdk4Header& h = plan.header;
    std::vector<uint8_t> f(plan.file_bytes(), 0);
    auto hs = h.Encode();
    std::copy(hs.begin(), hs.end(), f.begin());
    DescriptorSpec spec;
    spec.extents.push_back({kImageBytes, "vmdk-bench.vmdk"});
    spec.size_bytes = kImageBytes;
    std::string d = GenerateDescriptor(spec).value();
    std::copy(d.begin(), d.end(), f.begin() + static_cast<std::ptrdiff_t>(h.desc_offset * 512));
    for (bool redundant : {false, true}) {
      auto gd = BuildGrainDirectory(plan, redundant);
      const uint64_t base = redundant ? h.rgd_offset : h.gd_offset;
      std::copy(gd.begin(), gd.end(), f.begin() + static_cast<std::ptrdiff_t>(base * 512));
      const uint64_t grains = static_cast<uint64_t>(kImageBytes) / kGrain;
      for (uint64_t g = 0; g < grains; ++g) {
        const uint64_t at = (base + plan.gd_sectors + (g / 512) * plan.gt_sectors) * 512 + (g % 512) * 4;
        StoreLe32(f, at, static_cast<uint32_t>(h.grain_offset + g * 128));
      }
    }
    std::string p = ImagePath();
    std::ofstream(p, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
    // A sparse tail so the file is as long as a fully allocated image.
    if (truncate(p.c_str(), static_cast<off_t>(plan.file_bytes() + kImageBytes)) != 0) std::abort();
    return p;
  }();
  return path;
}

struct OpenImage {
  std::unique_ptr<EventLoop> loop = EventLoop::Create().value();
  std::shared_ptr<BlockNode> node;
  Extent* extent = nullptr;

  explicit OpenImage(const std::string& extra) {
    BlockGraph graph(*loop);
    auto opts = Options::Parse("driver=vmdk,file.filename=" + MakeImage() + extra).value();
    node = sync_wait(*loop, graph.open(std::move(opts), OpenFlags{.read_only = true})).value();
    extent = dynamic_cast<VmdkNode&>(*node).extents().at(0).get();
  }
  ~OpenImage() { sync_wait(*loop, node->close()); }
};

void BM_GrainLookupCached(benchmark::State& state) {
  OpenImage img("");
  // Warm every table (32 tables * 2 KiB: well inside the default cache).
  for (uint64_t off = 0; off < static_cast<uint64_t>(kImageBytes); off += kTableSpan)
    (void)sync_wait(*img.loop, img.extent->lookup(off));
  std::vector<uint64_t> offsets(4096);
  std::mt19937_64 rng(1);
  for (auto& o : offsets) o = rng() % static_cast<uint64_t>(kImageBytes);
  size_t i = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    GrainMapping m;
    Status err;
    if (!img.extent->try_lookup(offsets[i++ & 4095], &m, &err)) state.SkipWithError("cache miss");
    sum += m.grain_offset;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GrainLookupCached);

// The coroutine path (Extent::lookup) on a hit: what a request pays.
Task<uint64_t> LookupMany(Extent* e, const std::vector<uint64_t>& offsets, int64_t n) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    auto m = co_await e->lookup(offsets[static_cast<size_t>(i) & 4095]);
    sum += m ? m->grain_offset : 0;
  }
  co_return sum;
}

void BM_GrainLookupCachedCoroutine(benchmark::State& state) {
  OpenImage img("");
  for (uint64_t off = 0; off < static_cast<uint64_t>(kImageBytes); off += kTableSpan)
    (void)sync_wait(*img.loop, img.extent->lookup(off));
  std::vector<uint64_t> offsets(4096);
  std::mt19937_64 rng(2);
  for (auto& o : offsets) o = rng() % static_cast<uint64_t>(kImageBytes);
  const int64_t batch = 10000;
  for (auto _ : state) benchmark::DoNotOptimize(sync_wait(*img.loop, LookupMany(img.extent, offsets, batch)));
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_GrainLookupCachedCoroutine);

// Cache of one table, two tables alternating: every lookup loads a table.
// Arg 1: O_DIRECT (cache=none, the default), 0: page cache.
void BM_GrainLookupMiss(benchmark::State& state) {
  OpenImage img(std::string(",l2-cache-size=2048") +
                (state.range(0) ? "" : ",file.cache.direct=off"));
  uint64_t i = 0, sum = 0;
  for (auto _ : state) {
    const uint64_t off = (i++ & 1) * kTableSpan * 7 + 4096;
    auto m = sync_wait(*img.loop, img.extent->lookup(off));
    if (!m) state.SkipWithError(m.error().ToString().c_str());
    sum += m->grain_offset;
  }
  benchmark::DoNotOptimize(sum);
  state.counters["loads"] = static_cast<double>(img.extent->cache()->loads());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GrainLookupMiss)->Arg(1)->Arg(0);

// Inflate one 64 KiB grain (marker + zlib), like a streamOptimized read.
// Arg: 0 = text-like compressible data, 1 = half random (2:1-ish).
void BM_DecompressGrain64K(benchmark::State& state) {
  std::vector<uint8_t> data(kGrain);
  std::mt19937_64 rng(3);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = state.range(0) && (i / 64) % 2 ? static_cast<uint8_t>(rng())
                                             : static_cast<uint8_t>("coblk vmdk grain "[i % 17]);
  const std::vector<uint8_t> raw = CompressGrain(data, 0).value();
  std::vector<uint8_t> out(kGrain);
  for (auto _ : state) {
    auto n = DecompressGrain(raw, true, out, out.size());
    if (!n) state.SkipWithError("inflate failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["compressed_bytes"] = static_cast<double>(raw.size());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(kGrain));
}
BENCHMARK(BM_DecompressGrain64K)->Arg(0)->Arg(1);

}  // namespace
}  // namespace coblk::vmdk

BENCHMARK_MAIN();
