// Embedding example: how an emulator uses coblk as its disk layer.
//
// The emulator owns an EventLoop on its I/O thread. Guest requests go in
// through the callback API (aio_read/aio_write/aio_flush); completions are
// delivered on the loop, where the emulator would raise the virtual
// device's interrupt. Here 32 requests stand in for a guest's queue.
//
// Usage: coblk-example-embed IMAGE   (e.g. a VMDK made by coblk-img create)
#include <cstdio>
#include <cstring>
#include <vector>

#include "block/block_backend.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
    return 2;
  }
  auto loop = coblk::EventLoop::Create();
  if (!loop) return std::fprintf(stderr, "%s\n", loop.error().ToString().c_str()), 1;
  // Options work like QEMU's -drive: here O_DIRECT on the image file.
  coblk::Options options;
  options.set("file.cache.direct", "on");
  auto disk = coblk::BlockBackend::Open(**loop, argv[1], options);
  if (!disk) return std::fprintf(stderr, "%s\n", disk.error().ToString().c_str()), 1;
  coblk::BlockBackend& blk = **disk;

  constexpr int kQueueDepth = 32;
  constexpr int64_t kBlock = 4096;
  std::vector<std::vector<char>> buffers(kQueueDepth, std::vector<char>(kBlock));
  int pending = 0, failures = 0;
  auto done = [&](coblk::Status s) {
    if (!s) ++failures, std::fprintf(stderr, "I/O error: %s\n", s.error().ToString().c_str());
    --pending;
  };

  // A burst of guest writes, all in flight together.
  for (int i = 0; i < kQueueDepth; ++i) {
    std::memset(buffers[i].data(), 'a' + i % 26, kBlock);
    ++pending;
    blk.aio_write(i * 64 * kBlock, buffers[i].data(), kBlock, done);
  }
  while (pending > 0) (*loop)->run_once(true);  // the emulator's I/O thread
  ++pending;
  blk.aio_flush(done);
  while (pending > 0) (*loop)->run_once(true);

  // Read them back and check.
  for (int i = 0; i < kQueueDepth; ++i) {
    std::memset(buffers[i].data(), 0, kBlock);
    ++pending;
    blk.aio_read(i * 64 * kBlock, buffers[i].data(), kBlock, done);
  }
  while (pending > 0) (*loop)->run_once(true);
  for (int i = 0; i < kQueueDepth; ++i)
    if (buffers[i][0] != 'a' + i % 26 || buffers[i][kBlock - 1] != 'a' + i % 26) ++failures;

  const coblk::BlockStats& st = blk.stats();
  std::printf("writes: %llu ops, %llu bytes; reads: %llu ops, %llu bytes; flushes: %llu\n",
              (unsigned long long)st.write.ops, (unsigned long long)st.write.bytes,
              (unsigned long long)st.read.ops, (unsigned long long)st.read.bytes,
              (unsigned long long)st.flush.ops);
  if (st.read.ops)
    std::printf("mean read latency: %.1f us\n", st.read.total_latency_ns / 1e3 / st.read.ops);
  if (auto s = blk.close(); !s) return std::fprintf(stderr, "%s\n", s.error().ToString().c_str()), 1;
  std::printf("%s\n", failures ? "FAILED" : "OK");
  return failures ? 1 : 0;
}
