// The "null-co" protocol driver (QEMU's null-co): a device of a given size
// that stores nothing. Reads complete without touching the host, writes are
// discarded. Used to measure the block layer's own per-request cost.
//
// Options (QEMU's names and defaults):
//   size         virtual size in bytes (default 1 GiB)
//   latency-ns   completion delay per request, via the loop's timers (default 0)
//   read-zeroes  on: reads fill the buffer with zeroes; off (default, as in
//                QEMU): reads leave the buffer untouched
//   filename     accepted and ignored ("null-co://")
#include <chrono>
#include <memory>
#include <string>

#include "block/block_driver.h"
#include "block/block_node.h"
#include "coroutine/sleep.h"

namespace coblk::null_proto {

class NullNode final : public BlockNode {
 public:
  NullNode(const BlockDriver* driver, EventLoop& loop, int64_t latency_ns, bool read_zeroes)
      : BlockNode(driver, loop), latency_ns_(latency_ns), read_zeroes_(read_zeroes) {}

  bool has_zero_init() override { return read_zeroes_; }
  int64_t allocated_file_size() override { return 0; }

 protected:
  Task<Status> co_preadv(int64_t, int64_t bytes, IoVector& qiov, uint32_t) override {
    if (read_zeroes_) qiov.memset(0, 0, static_cast<size_t>(bytes));
    co_await Latency();
    co_return OkStatus();
  }

  Task<Status> co_pwritev(int64_t, int64_t, IoVector&, uint32_t) override {
    co_await Latency();
    co_return OkStatus();
  }

  Task<Status> co_pwrite_zeroes(int64_t, int64_t, uint32_t) override {
    co_await Latency();
    co_return OkStatus();
  }

  Task<Status> co_pdiscard(int64_t, int64_t) override {
    co_await Latency();
    co_return OkStatus();
  }

  Task<Status> co_flush() override {
    co_await Latency();
    co_return OkStatus();
  }

  Task<Result<BlockStatus>> co_block_status(bool, int64_t offset, int64_t bytes) override {
    uint32_t status = kStatusOffsetValid;
    if (read_zeroes_) status |= kStatusZero;
    co_return BlockStatus{status, bytes, offset, this};
  }

 private:
  Task<void> Latency() {
    if (latency_ns_ > 0) co_await co_sleep(std::chrono::nanoseconds(latency_ns_));
  }

  int64_t latency_ns_;
  bool read_zeroes_;
};

class NullDriver final : public BlockDriver {
 public:
  std::string_view format_name() const override { return "null-co"; }
  std::string_view protocol_name() const override { return "null-co"; }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    ctx.options.take_string("filename");
    auto size = ctx.options.get_size("size", uint64_t{1} << 30);
    if (!size) co_return std::unexpected(size.error());
    if (*size > static_cast<uint64_t>(INT64_MAX))
      co_return MakeError(EINVAL, "null-co: size is too large");
    auto latency = ctx.options.get_int("latency-ns", 0);
    if (!latency) co_return std::unexpected(latency.error());
    if (*latency < 0) co_return MakeError(EINVAL, "latency-ns is invalid");
    auto zeroes = ctx.options.get_bool("read-zeroes", false);
    if (!zeroes) co_return std::unexpected(zeroes.error());
    auto node = std::make_shared<NullNode>(this, ctx.loop, *latency, *zeroes);
    node->set_size(static_cast<int64_t>(*size));
    node->set_read_only(ctx.read_only);
    node->set_filename("null-co://");
    node->refresh_limits();
    co_return std::shared_ptr<BlockNode>(std::move(node));
  }
};

COBLK_REGISTER_BLOCK_DRIVER(NullDriver)

}  // namespace coblk::null_proto
