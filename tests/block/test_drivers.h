// Drivers that exist only in the block layer tests (registered by
// test_drivers.cc):
//  * testmem   — an in-memory format node with configurable limits that
//                records every request the generic layer lets through and
//                flags any that break its limits; optional backing file.
//  * testproto — an in-memory protocol ("testproto:name") over Disks().
//  * testfmt   — a pass-through format over a "file" child, probed by the
//                magic "TESTFMT!".
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "block/block_driver.h"
#include "block/block_node.h"

namespace coblk::test {

struct Req {
  char op;  // 'r'ead, 'w'rite, 'z'eroes, 'd'iscard, 'f'lush
  int64_t offset;
  int64_t bytes;
  uint32_t flags;
};

class TestMemNode : public BlockNode {
 public:
  TestMemNode(const BlockDriver* d, EventLoop& loop) : BlockNode(d, loop) {}

  // Configuration (from options).
  uint32_t align = 1;
  uint32_t mem_align = 1;
  uint32_t zero_align = 0;
  uint64_t max_transfer = 0;
  bool zeroes = true;
  bool discard = false;
  std::chrono::microseconds delay{0};

  // State the tests inspect.
  std::vector<uint8_t> data;
  std::vector<bool> allocated;
  std::vector<Req> reqs;
  bool violation = false;  // a request reached the driver breaking the limits
  bool closed = false;
  int in_flight = 0;
  int max_in_flight = 0;

  size_t count(char op) const;
  void fill(int64_t offset, int64_t bytes, uint8_t byte);

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override;
  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override;
  Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) override;
  Task<Status> co_pdiscard(int64_t offset, int64_t bytes) override;
  Task<Result<BlockStatus>> co_block_status(bool want_zero, int64_t offset,
                                            int64_t bytes) override;
  Task<Status> co_flush() override;
  BlockLimits driver_limits() override;
  Task<Status> co_close() override;

 private:
  void record(char op, int64_t offset, int64_t bytes, uint32_t flags, const IoVector* qiov);
  Task<void> enter();
  void leave() { in_flight--; }
  Task<Status> read_unallocated(int64_t pos, int64_t end, int64_t offset, IoVector& qiov);
};

// In-memory disks of the testproto protocol, by name.
std::map<std::string, std::vector<uint8_t>>& Disks();
// How many testproto nodes have been closed.
int& ProtoCloseCount();
// What testproto nodes did: "flush" (started), "flushed", "close". Options
// flush_delay_us, flush_errno and close_errno shape those steps.
std::vector<std::string>& ProtoLog();

}  // namespace coblk::test
