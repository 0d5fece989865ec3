// A parallel walk over an image's byte range, shared by commit and rebase
// (and any tool that copies what block status finds).
//
// plan(offset) looks at the range starting at `offset` (block status) and
// returns its extent and whether it needs work; it runs serialised, in
// offset order, so it may keep walk state. work(extent, buffer) does the
// I/O for one extent of at most kCopyChunk bytes; up to `workers` run at
// once. The walk stops at the first error (the remaining workers finish
// their current extent first) and returns it.
//
// With a rate limit, a worker waits for its turn (see util/rate_limit.h)
// before each extent's work() and accounts its bytes (QEMU's job speed).
//
// Threading: everything runs on the calling loop's thread; plan and work
// are awaited there, never concurrently with themselves for plan.
#pragma once

#include <cstdint>
#include <functional>

#include "coroutine/task.h"
#include "io/aligned_buffer.h"
#include "io/event_loop.h"
#include "util/rate_limit.h"
#include "util/status.h"

namespace coblk::tools {

inline constexpr int64_t kCopyChunk = int64_t{1} << 20;

struct CopyExtent {
  int64_t offset = 0;
  int64_t bytes = 0;   // > 0
  bool work = false;   // whether work() must see it
  uint32_t kind = 0;   // plan's own tag for work (e.g. data vs zeroes)
};

struct CopyLoop {
  std::function<Task<Result<CopyExtent>>(int64_t offset)> plan;
  std::function<Task<Status>(const CopyExtent& extent, AlignedBuffer& buffer)> work;
  // Called in no particular order as extents finish (bytes done).
  std::function<void(int64_t bytes)> done;
  int workers = 8;
  RateLimit* rate_limit = nullptr;  // optional; outlives run()

  Task<Status> run(int64_t size);
};

}  // namespace coblk::tools
