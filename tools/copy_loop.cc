#include "tools/copy_loop.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "coroutine/co_mutex.h"
#include "coroutine/sleep.h"
#include "coroutine/spawn.h"

namespace coblk::tools {

namespace {

// State shared by the workers of one run (lives in run()'s frame, which
// outlives every worker: run() joins them all).
struct Walk {
  CopyLoop* loop;
  int64_t size;
  int64_t cursor = 0;       // next offset plan() has not looked at
  CopyExtent pending;       // a planned extent not yet handed out
  bool have_pending = false;
  Status error;             // the first error; stops the walk
  CoMutex plan_lock;        // plan() runs one call at a time, in order
};

// The next piece of work (at most kCopyChunk), or bytes == 0 at the end.
Task<Result<CopyExtent>> NextPiece(Walk& w) {
  auto guard = co_await w.plan_lock.scoped_lock();
  while (w.error) {
    if (!w.have_pending) {
      if (w.cursor >= w.size) co_return CopyExtent{};
      Result<CopyExtent> e = co_await w.loop->plan(w.cursor);
      if (!e) co_return std::unexpected(e.error());
      if (e->bytes <= 0 || e->offset != w.cursor) {
        co_return MakeError(EIO, "copy walk made no progress at offset " + std::to_string(w.cursor));
      }
      e->bytes = std::min(e->bytes, w.size - w.cursor);
      w.cursor += e->bytes;
      if (!e->work) {
        if (w.loop->done) w.loop->done(e->bytes);
        continue;
      }
      w.pending = *e;
      w.have_pending = true;
    }
    CopyExtent piece = w.pending;
    piece.bytes = std::min(piece.bytes, kCopyChunk);
    w.pending.offset += piece.bytes;
    w.pending.bytes -= piece.bytes;
    if (w.pending.bytes == 0) w.have_pending = false;
    co_return piece;
  }
  co_return CopyExtent{};
}

Task<void> Worker(Walk& w) {
  AlignedBuffer buffer(static_cast<size_t>(kCopyChunk));
  while (w.error) {
    Result<CopyExtent> piece = co_await NextPiece(w);
    if (!piece) {
      if (w.error) w.error = std::unexpected(piece.error());
      co_return;
    }
    if (piece->bytes == 0) co_return;
    if (RateLimit* limit = w.loop->rate_limit) {
      while (limit->wait_time().count() > 0) co_await co_sleep(limit->wait_time());
      limit->account(static_cast<uint64_t>(piece->bytes));
    }
    Status s = co_await w.loop->work(*piece, buffer);
    if (!s) {
      if (w.error) w.error = std::unexpected(s.error());
      co_return;
    }
    if (w.loop->done) w.loop->done(piece->bytes);
  }
}

}  // namespace

Task<Status> CopyLoop::run(int64_t size) {
  Walk w{this, size};
  std::vector<JoinHandle<void>> workers_running;
  for (int i = 0; i < std::max(1, workers); ++i) workers_running.push_back(spawn_now(Worker(w)));
  for (auto& h : workers_running) co_await h.join();
  co_return w.error;
}

}  // namespace coblk::tools
