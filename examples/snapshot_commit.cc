// Snapshot and commit while the guest writes: an emulator-style program.
//
// The emulator's I/O thread runs the EventLoop; the "guest" keeps 32
// requests in flight through the callback API the whole time. Meanwhile:
//   1. a snapshot puts a new overlay (snap.vmdk) on top of the running disk:
//      guest writes go there from then on, the disk image stays as it was;
//   2. a commit merges the overlay back into the disk image and switches
//      the guest back to it (an active commit);
// and at the end every block is read back and checked against what the
// guest wrote.
//
// Usage: coblk-example-snapshot_commit DIR   (creates DIR/disk.vmdk, DIR/snap.vmdk)
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "block/block_backend.h"
#include "block/block_job.h"
#include "coroutine/sync_wait.h"

namespace {

constexpr int64_t kDiskSize = 32 << 20;
constexpr int64_t kBlock = 4096;
constexpr int kQueueDepth = 32;

// The guest: kQueueDepth slots, each rewriting random blocks it owns (block
// b belongs to slot b % kQueueDepth), with the expected content of every
// block kept in `model`.
struct Guest {
  coblk::BlockBackend& disk;
  std::vector<uint8_t> model = std::vector<uint8_t>(kDiskSize, 0);
  std::vector<std::vector<uint8_t>> buffers =
      std::vector<std::vector<uint8_t>>(kQueueDepth, std::vector<uint8_t>(kBlock));
  std::mt19937 rng{42};
  uint64_t completed = 0, failed = 0;
  int in_flight = 0;
  bool stopping = false;

  void issue(int slot) {
    const int64_t blocks_per_slot = kDiskSize / kBlock / kQueueDepth;
    const int64_t block = slot + kQueueDepth * static_cast<int64_t>(rng() % blocks_per_slot);
    std::vector<uint8_t>& buf = buffers[static_cast<size_t>(slot)];
    std::memset(buf.data(), static_cast<int>(rng() % 255 + 1), kBlock);
    ++in_flight;
    disk.aio_write(block * kBlock, buf.data(), kBlock, [this, slot, block](coblk::Status s) {
      --in_flight;
      if (!s) {
        ++failed;
        std::fprintf(stderr, "guest write failed: %s\n", s.error().ToString().c_str());
      } else {
        std::memcpy(&model[static_cast<size_t>(block * kBlock)],
                    buffers[static_cast<size_t>(slot)].data(), kBlock);
        ++completed;
      }
      if (!stopping) issue(slot);  // the slot's next request
    });
  }
  void start() {
    for (int i = 0; i < kQueueDepth; ++i) issue(i);
  }
};

// Runs the loop (the emulator's I/O thread) until the job ends, with the
// guest's requests completing and being reissued meanwhile.
coblk::Status RunJob(coblk::EventLoop& loop, coblk::Result<std::shared_ptr<coblk::BlockJob>> job) {
  if (!job) return std::unexpected(job.error());
  while (!(*job)->done()) loop.run_once(true);
  std::printf("%s: %lld/%lld bytes\n", (*job)->type().c_str(),
              static_cast<long long>((*job)->progress_current()),
              static_cast<long long>((*job)->progress_total()));
  return (*job)->status();
}

int Fail(const char* what, const coblk::Error& e) {
  std::fprintf(stderr, "%s: %s\n", what, e.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string disk_path = std::string(argv[1]) + "/disk.vmdk";
  const std::string snap_path = std::string(argv[1]) + "/snap.vmdk";
  auto loop = coblk::EventLoop::Create();
  if (!loop) return Fail("event loop", loop.error());
  coblk::Options create;
  create.set("size", std::to_string(kDiskSize));
  if (coblk::Status s = coblk::sync_wait(**loop, coblk::CreateImage(**loop, "vmdk", disk_path, create));
      !s)
    return Fail("create", s.error());
  auto disk = coblk::BlockBackend::Open(**loop, disk_path, {});
  if (!disk) return Fail("open", disk.error());

  Guest guest{**disk};
  guest.start();
  while (guest.completed < 2000) (*loop)->run_once(true);

  // 1. Snapshot: from here on the guest writes into snap.vmdk.
  if (coblk::Status s = RunJob(**loop, coblk::StartSnapshotJob(**disk, {.overlay = snap_path})); !s)
    return Fail("snapshot", s.error());
  const uint64_t at_snapshot = guest.completed;
  while (guest.completed < at_snapshot + 4000) (*loop)->run_once(true);

  // 2. Commit the overlay back into disk.vmdk (still open read-write: it
  //    was the running disk) and switch the guest back to it.
  if (coblk::Status s = RunJob(**loop, coblk::StartCommitJob(**disk, {})); !s)
    return Fail("commit", s.error());
  const uint64_t at_commit = guest.completed;
  while (guest.completed < at_commit + 2000) (*loop)->run_once(true);

  guest.stopping = true;
  while (guest.in_flight > 0) (*loop)->run_once(true);

  // Every block reads back as the guest last wrote it, from disk.vmdk.
  std::vector<uint8_t> got(kDiskSize);
  if (coblk::Status s = (*disk)->read(0, got.data(), kDiskSize); !s) return Fail("read", s.error());
  const bool same = got == guest.model;
  std::printf("guest writes: %llu (%llu failed); disk is now %s; data %s\n",
              static_cast<unsigned long long>(guest.completed),
              static_cast<unsigned long long>(guest.failed), (*disk)->node().filename().c_str(),
              same ? "verified" : "MISMATCH");
  if (coblk::Status s = (*disk)->close(); !s) return Fail("close", s.error());
  return same && guest.failed == 0 && (*disk)->node().filename() == disk_path ? 0 : 1;
}
