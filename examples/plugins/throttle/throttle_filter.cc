// "exthrottle": an example filter plugin — a node that passes every request
// to its "file" child, no faster than a bytes/s and an operations/s limit.
// The template for a filter: what it forwards, what it adds, and how it
// stays invisible to block_status and to the image's size.
//
//   coblk-io --plugin coblk-plugin-throttle.so --image-opts -c "read 0 1M"
//       driver=exthrottle,bps=10M,iops=100,file.filename=disk.img
//   (stack it over a format: driver=vmdk,file.driver=exthrottle,file.bps=...,
//    file.file.filename=disk.vmdk)
//
// Options: bps (bytes per second, 0 = no limit), iops (operations per
// second, 0 = no limit). Reads, writes, zero writes and discards count;
// flushes pass straight through.
//
// The limiter is a virtual clock (a leaky bucket without burst): each
// request is admitted at max(now, next_) and moves next_ on by its cost,
// max(bytes / bps, 1 / iops). Admitted requests then run concurrently, so
// queue depth still helps. Everything runs on the node's EventLoop thread,
// so next_ needs no lock.
#include <algorithm>
#include <chrono>
#include <memory>

#include "block/plugin.h"
#include "coroutine/sleep.h"

namespace {

using Clock = std::chrono::steady_clock;
using coblk::IoVector;
using coblk::Status;
using coblk::Task;

class ThrottleNode final : public coblk::BlockNode {
 public:
  ThrottleNode(const coblk::BlockDriver* d, coblk::EventLoop& loop, uint64_t bps, uint64_t iops)
      : BlockNode(d, loop), bps_(bps), iops_(iops) {}

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    co_await Admit(bytes);
    co_return co_await file()->preadv(offset, bytes, qiov, flags);
  }
  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    co_await Admit(bytes);
    co_return co_await file()->pwritev(offset, bytes, qiov, flags);
  }
  Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) override {
    co_await Admit(bytes);
    co_return co_await file()->pwrite_zeroes(offset, bytes, flags);
  }
  Task<Status> co_pdiscard(int64_t offset, int64_t bytes) override {
    co_await Admit(bytes);
    co_return co_await file()->pdiscard(offset, bytes);
  }
  Task<Status> co_flush() override { co_return co_await file()->flush(); }
  Task<Status> co_truncate(int64_t size, bool exact, coblk::PreallocMode prealloc) override {
    COBLK_CO_RETURN_IF_ERROR(co_await file()->truncate(size, exact, prealloc));
    set_size(file()->size());
    co_return coblk::OkStatus();
  }
  // Pass-through: the generic layer asks the file child at the same offset,
  // so allocation, zero ranges and the backing chain look as if the filter
  // were not there.
  Task<coblk::Result<coblk::BlockStatus>> co_block_status(bool, int64_t offset,
                                                          int64_t bytes) override {
    co_return coblk::BlockStatus{coblk::kStatusRaw | coblk::kStatusOffsetValid, bytes, offset,
                                 file()};
  }

 private:
  Task<void> Admit(int64_t bytes) {
    if (!bps_ && !iops_) co_return;
    std::chrono::nanoseconds cost{0};
    if (bps_) cost = std::max(cost, std::chrono::nanoseconds(bytes * 1'000'000'000LL /
                                                             static_cast<int64_t>(bps_)));
    if (iops_) cost = std::max(cost, std::chrono::nanoseconds(1'000'000'000LL /
                                                              static_cast<int64_t>(iops_)));
    const Clock::time_point now = Clock::now();
    const Clock::time_point start = std::max(now, next_);
    next_ = start + cost;
    if (start > now) co_await coblk::co_sleep(start - now);
  }

  uint64_t bps_;
  uint64_t iops_;
  Clock::time_point next_{};  // when the next request may start
};

class ThrottleDriver final : public coblk::BlockDriver {
 public:
  std::string_view format_name() const override { return "exthrottle"; }
  bool is_filter() const override { return true; }

  Task<coblk::Result<std::shared_ptr<coblk::BlockNode>>> open(
      coblk::OpenContext& ctx) const override {
    auto bps = ctx.options.get_size("bps", 0);
    if (!bps) co_return std::unexpected(bps.error());
    auto iops = ctx.options.get_size("iops", 0);
    if (!iops) co_return std::unexpected(iops.error());
    if (*bps > (uint64_t{1} << 50) || *iops > 100'000'000)
      co_return coblk::MakeError(EINVAL, "exthrottle: bps or iops out of range");
    auto file = co_await ctx.open_child("file", coblk::ChildRole::kFile);
    if (!file) co_return std::unexpected(file.error());
    auto node = std::make_shared<ThrottleNode>(this, ctx.loop, *bps, *iops);
    node->attach_file(*file, ctx.read_only);  // child, size, filename
    node->refresh_limits();
    co_return std::shared_ptr<coblk::BlockNode>(std::move(node));
  }
};

}  // namespace

COBLK_PLUGIN_DRIVERS(ThrottleDriver)
