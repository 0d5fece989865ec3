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

Task<Status> BlockBackend::account(BlockStats::Op& op, int64_t bytes, Task<Status> request) {
  const auto start = std::chrono::steady_clock::now();
  Status s = co_await std::move(request);
  if (!s) {
    op.errors++;
    co_return s;
  }
  const auto ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            std::chrono::steady_clock::now() - start)
                                            .count());
  op.ops++;
  op.bytes += static_cast<uint64_t>(bytes);
  op.total_latency_ns += ns;
  op.max_latency_ns = std::max(op.max_latency_ns, ns);
  co_return s;
}

// ---- Coroutine API ----

Task<Status> BlockBackend::co_preadv(int64_t offset, int64_t bytes, IoVector& qiov,
                                     uint32_t flags) {
  return account(stats_.read, bytes, root_->preadv(offset, bytes, qiov, flags));
}

Task<Status> BlockBackend::co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov,
                                      uint32_t flags) {
  return account(stats_.write, bytes, root_->pwritev(offset, bytes, qiov, flags));
}

Task<Status> BlockBackend::co_read(int64_t offset, void* buf, int64_t bytes) {
  return account(stats_.read, bytes, root_->pread(offset, buf, bytes));
}

Task<Status> BlockBackend::co_write(int64_t offset, const void* buf, int64_t bytes,
                                    uint32_t flags) {
  return account(stats_.write, bytes, root_->pwrite(offset, buf, bytes, flags));
}

Task<Status> BlockBackend::co_write_compressed(int64_t offset, const void* buf, int64_t bytes) {
  if (bytes < 0) co_return MakeError(EIO, "bytes(" + std::to_string(bytes) + ") is negative");
  IoVector qiov(const_cast<void*>(buf), static_cast<size_t>(bytes));
  co_return co_await account(stats_.write, bytes, root_->pwritev_compressed(offset, bytes, qiov));
}

Task<Status> BlockBackend::co_write_zeroes(int64_t offset, int64_t bytes, uint32_t flags) {
  return account(stats_.zero, bytes, root_->pwrite_zeroes(offset, bytes, flags));
}

Task<Status> BlockBackend::co_discard(int64_t offset, int64_t bytes) {
  return account(stats_.discard, bytes, root_->pdiscard(offset, bytes));
}

Task<Status> BlockBackend::co_flush() { return account(stats_.flush, 0, root_->flush()); }

Task<Status> BlockBackend::co_truncate(int64_t size) {
  return root_->truncate(size, /*exact=*/false, PreallocMode::kOff);
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
