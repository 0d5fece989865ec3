// Shared by the block job and copy-on-read tests: a guest-like workload of
// 32 coroutines with a byte model, qemu-img helpers, a scratch directory.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "block/block_backend.h"
#include "coroutine/sleep.h"
#include "coroutine/spawn.h"
#include "coroutine/sync_wait.h"
#include "tests/scratch_dir.h"
#include "tests/shell.h"

namespace coblk::jobtest {

// Runs a shell command; its stdout and stderr go to *out (tests/shell.h).
inline int Sh(const std::string& cmd, std::string* out = nullptr) {
  return testing_util::Sh(cmd, out, testing_util::Stderr::kMerged);
}
using testing_util::HaveQemu;

// A backend opened from key=value options; nullptr (and a test failure)
// if they do not parse or open.
inline std::unique_ptr<BlockBackend> OpenBackend(EventLoop& loop, const std::string& opts) {
  auto o = Options::Parse(opts);
  EXPECT_TRUE(o) << o.error().ToString();
  if (!o) return nullptr;
  auto blk = BlockBackend::Open(loop, "", std::move(*o));
  EXPECT_TRUE(blk) << opts << ": " << blk.error().ToString();
  return blk ? std::move(*blk) : nullptr;
}

using Scratch = testing_util::ScratchDir;  // tests/scratch_dir.h

// The guest: `workers` coroutines doing 4 KiB reads and writes at random
// blocks. Worker w owns the blocks b with b % workers == w, so the model of
// every block is exact although 32 requests are in flight; a 64 KiB cluster
// holds blocks of 16 workers, so requests of different workers still meet
// in every cluster (copy-ups, grain allocations, dirty chunks). A read is
// checked against the model; a write puts the block index and a sequence
// number in the block's first 16 bytes and a fill byte in the rest.
class Guest {
 public:
  static constexpr int64_t kBlock = 4096;

  Guest(BlockBackend& blk, std::vector<uint8_t> initial, int workers = 32)
      : blk_(blk), model_(std::move(initial)), workers_(workers) {}

  // Runs until stop() and at least min_ops operations per worker.
  Task<void> worker(int w, int min_ops) {
    std::mt19937_64 rng(static_cast<uint64_t>(w) * 7919 + 13);
    const int64_t blocks = static_cast<int64_t>(model_.size()) / kBlock;
    const int64_t mine = (blocks - w + workers_ - 1) / workers_;
    std::vector<uint8_t> buf(kBlock);
    for (int i = 0; i < min_ops || !stop_; ++i) {
      const int64_t b = w + workers_ * static_cast<int64_t>(rng() % static_cast<uint64_t>(mine));
      const int64_t off = b * kBlock;
      uint8_t* m = model_.data() + off;
      if (rng() % 2) {
        const uint64_t seq = ++seq_;
        std::memset(buf.data(), static_cast<int>(seq % 251 + 1), kBlock);
        std::memcpy(buf.data(), &b, 8);
        std::memcpy(buf.data() + 8, &seq, 8);
        Status s = co_await blk_.co_write(off, buf.data(), kBlock);
        if (!s) {
          ++errors_;
          last_error_ = s.error().ToString();
        } else {
          std::memcpy(m, buf.data(), kBlock);
          ++writes_;
        }
      } else {
        Status s = co_await blk_.co_read(off, buf.data(), kBlock);
        if (!s) {
          ++errors_;
          last_error_ = s.error().ToString();
        } else if (std::memcmp(buf.data(), m, kBlock) != 0) {
          ++mismatches_;
        }
        ++reads_;
      }
      if (i % 8 == 0) co_await co_yield_now();
    }
  }

  std::vector<JoinHandle<void>> start(EventLoop& loop, int min_ops) {
    std::vector<JoinHandle<void>> h;
    for (int w = 0; w < workers_; ++w) h.push_back(spawn(loop, worker(w, min_ops)));
    return h;
  }
  void stop() { stop_ = true; }

  // Reads the whole disk through the backend and compares with the model.
  Task<bool> verify_all() {
    std::vector<uint8_t> buf(1 << 20);
    for (int64_t off = 0; off < static_cast<int64_t>(model_.size());
         off += static_cast<int64_t>(buf.size())) {
      Status s = co_await blk_.co_read(off, buf.data(), static_cast<int64_t>(buf.size()));
      if (!s) {
        last_error_ = s.error().ToString();
        co_return false;
      }
      if (std::memcmp(buf.data(), model_.data() + off, buf.size()) != 0) co_return false;
    }
    co_return true;
  }

  bool write_model(const std::string& path) const {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(model_.data()), static_cast<std::streamsize>(model_.size()));
    return static_cast<bool>(f);
  }

  std::vector<uint8_t>& model() { return model_; }
  uint64_t errors() const { return errors_; }
  uint64_t mismatches() const { return mismatches_; }
  uint64_t writes() const { return writes_; }
  uint64_t reads() const { return reads_; }
  const std::string& last_error() const { return last_error_; }

 private:
  BlockBackend& blk_;
  std::vector<uint8_t> model_;
  int workers_;
  bool stop_ = false;
  uint64_t seq_ = 0;
  uint64_t errors_ = 0, mismatches_ = 0, writes_ = 0, reads_ = 0;
  std::string last_error_;
};

}  // namespace coblk::jobtest
