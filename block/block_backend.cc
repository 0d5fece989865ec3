#include "block/block_backend.h"

#include <cstdio>

#include "coroutine/spawn.h"
#include "coroutine/sync_wait.h"

namespace coblk {

namespace {

Task<void> RunWithCallback(Task<Status> request, BlockBackend::Callback cb) {
  Status s = co_await std::move(request);
  cb(std::move(s));
}

}  // namespace

Result<std::unique_ptr<BlockBackend>> BlockBackend::Open(EventLoop& loop,
                                                         const std::string& filename,
                                                         Options options, OpenFlags flags) {
  return sync_wait(loop, co_open(loop, filename, std::move(options), flags));
}

Task<Result<std::unique_ptr<BlockBackend>>> BlockBackend::co_open(EventLoop& loop,
                                                                  const std::string& filename,
                                                                  Options options,
                                                                  OpenFlags flags) {
  if (!filename.empty()) options.set("filename", filename);
  BlockGraph graph(loop);
  Result<std::shared_ptr<BlockNode>> node = co_await graph.open(std::move(options), flags);
  // Like qemu-img, warnings go to stderr even when the open succeeds.
  for (const std::string& w : graph.warnings()) std::fprintf(stderr, "%s\n", w.c_str());
  if (!node) co_return std::unexpected(node.error());
  co_return std::make_unique<BlockBackend>(loop, std::move(*node));
}

BlockBackend::BlockBackend(EventLoop& loop, std::shared_ptr<BlockNode> root)
    : loop_(loop), root_(std::move(root)) {}

BlockBackend::~BlockBackend() {
  if (closed_) return;
  if (loop_.in_iteration()) {
    // The blocking close would re-enter the running loop.
    std::fprintf(stderr,
                 "coblk: BlockBackend destroyed from code running on its event loop without "
                 "being closed; co_await co_close() before destroying it there\n");
    std::abort();
  }
  (void)close();
}

BlockStats::Op* BlockBackend::stats_for(Op op) {
  switch (op) {
    case Op::kRead: return &stats_.read;
    case Op::kWrite:
    case Op::kWriteCompressed: return &stats_.write;
    case Op::kZero: return &stats_.zero;
    case Op::kDiscard: return &stats_.discard;
    case Op::kFlush: return &stats_.flush;
    case Op::kTruncate: return nullptr;
  }
  return nullptr;
}

Task<Status> BlockBackend::request(Op op, int64_t offset, int64_t bytes, IoVector* qiov,
                                   uint32_t flags) {
  // The gate (see the header): wait while drained, and behind requests
  // that are already waiting, so that they pass in issue order.
  if (quiesce_ > 0 || queued_ > 0) {
    ++queued_;
    do {
      co_await gate_.wait();
    } while (quiesce_ > 0);
    --queued_;
    gate_.notify_all();  // later arrivals queued behind this one
  }
  ++in_flight_;
  const auto start = std::chrono::steady_clock::now();
  BlockNode& n = *root_;
  Status s;
  switch (op) {
    case Op::kRead: s = co_await n.preadv(offset, bytes, *qiov, flags); break;
    case Op::kWrite: s = co_await n.pwritev(offset, bytes, *qiov, flags); break;
    case Op::kWriteCompressed: s = co_await n.pwritev_compressed(offset, bytes, *qiov); break;
    case Op::kZero: s = co_await n.pwrite_zeroes(offset, bytes, flags); break;
    case Op::kDiscard: s = co_await n.pdiscard(offset, bytes); break;
    case Op::kFlush: s = co_await n.flush(); break;
    case Op::kTruncate: s = co_await n.truncate(offset, false, PreallocMode::kOff); break;
  }
  if (write_observer_ && (op == Op::kWrite || op == Op::kWriteCompressed || op == Op::kZero ||
                          op == Op::kDiscard)) {
    write_observer_(offset, bytes);
  }
  if (BlockStats::Op* st = stats_for(op)) {
    if (!s) {
      st->errors++;
    } else {
      const auto ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::steady_clock::now() - start)
                                                .count());
      st->ops++;
      st->bytes += static_cast<uint64_t>(bytes);
      st->total_latency_ns += ns;
      st->max_latency_ns = std::max(st->max_latency_ns, ns);
    }
  }
  if (--in_flight_ == 0 && quiesce_ > 0) idle_.notify_all();
  co_return s;
}

Task<Status> BlockBackend::request_buf(Op op, int64_t offset, void* buf, int64_t bytes,
                                       uint32_t flags) {
  if (bytes < 0) {
    if (BlockStats::Op* st = stats_for(op)) st->errors++;
    co_return MakeError(EIO, "bytes(" + std::to_string(bytes) + ") is negative");
  }
  IoVector qiov(buf, static_cast<size_t>(bytes));
  co_return co_await request(op, offset, bytes, &qiov, flags);
}

Task<void> BlockBackend::co_drain_begin() {
  ++quiesce_;
  while (in_flight_ > 0) co_await idle_.wait();
}

void BlockBackend::drain_end() {
  if (quiesce_ > 0 && --quiesce_ == 0) gate_.notify_all();
}

void BlockBackend::replace_root(std::shared_ptr<BlockNode> root) {
  if (!drained() || !root) {
    std::fprintf(stderr, "coblk: BlockBackend::replace_root called while not drained\n");
    std::abort();
  }
  root_ = std::move(root);
}

// ---- Coroutine API ----

Task<Status> BlockBackend::co_preadv(int64_t offset, int64_t bytes, IoVector& qiov,
                                     uint32_t flags) {
  return request(Op::kRead, offset, bytes, &qiov, flags);
}

Task<Status> BlockBackend::co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov,
                                      uint32_t flags) {
  return request(Op::kWrite, offset, bytes, &qiov, flags);
}

Task<Status> BlockBackend::co_read(int64_t offset, void* buf, int64_t bytes) {
  return request_buf(Op::kRead, offset, buf, bytes, 0);
}

Task<Status> BlockBackend::co_write(int64_t offset, const void* buf, int64_t bytes,
                                    uint32_t flags) {
  return request_buf(Op::kWrite, offset, const_cast<void*>(buf), bytes, flags);
}

Task<Status> BlockBackend::co_write_compressed(int64_t offset, const void* buf, int64_t bytes) {
  return request_buf(Op::kWriteCompressed, offset, const_cast<void*>(buf), bytes, 0);
}

Task<Status> BlockBackend::co_write_zeroes(int64_t offset, int64_t bytes, uint32_t flags) {
  return request(Op::kZero, offset, bytes, nullptr, flags);
}

Task<Status> BlockBackend::co_discard(int64_t offset, int64_t bytes) {
  return request(Op::kDiscard, offset, bytes, nullptr, 0);
}

Task<Status> BlockBackend::co_flush() { return request(Op::kFlush, 0, 0, nullptr, 0); }

Task<Status> BlockBackend::co_truncate(int64_t size) {
  return request(Op::kTruncate, size, 0, nullptr, 0);
}

Task<Status> BlockBackend::co_close() {
  if (closed_) co_return OkStatus();
  closed_ = true;
  // close() flushes the graph once and reports the first error of any step.
  co_return co_await root_->close();
}

// ---- Blocking API ----

Status BlockBackend::read(int64_t offset, void* buf, int64_t bytes) {
  return sync_wait(loop_, co_read(offset, buf, bytes));
}

Status BlockBackend::write(int64_t offset, const void* buf, int64_t bytes, uint32_t flags) {
  return sync_wait(loop_, co_write(offset, buf, bytes, flags));
}

Status BlockBackend::write_zeroes(int64_t offset, int64_t bytes, uint32_t flags) {
  return sync_wait(loop_, co_write_zeroes(offset, bytes, flags));
}

Status BlockBackend::discard(int64_t offset, int64_t bytes) {
  return sync_wait(loop_, co_discard(offset, bytes));
}

Status BlockBackend::flush() { return sync_wait(loop_, co_flush()); }

Status BlockBackend::truncate(int64_t size) { return sync_wait(loop_, co_truncate(size)); }

Status BlockBackend::close() {
  if (closed_) return OkStatus();
  return sync_wait(loop_, co_close());
}

// ---- Callback API ----

void BlockBackend::aio_read(int64_t offset, void* buf, int64_t bytes, Callback cb) {
  spawn(loop_, RunWithCallback(co_read(offset, buf, bytes), std::move(cb)));
}

void BlockBackend::aio_write(int64_t offset, const void* buf, int64_t bytes, Callback cb) {
  spawn(loop_, RunWithCallback(co_write(offset, buf, bytes), std::move(cb)));
}

void BlockBackend::aio_flush(Callback cb) {
  spawn(loop_, RunWithCallback(co_flush(), std::move(cb)));
}

}  // namespace coblk
