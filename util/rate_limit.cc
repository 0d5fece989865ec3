#include "util/rate_limit.h"

#include <algorithm>

namespace coblk {

RateLimit::RateLimit(uint64_t bytes_per_second, std::chrono::nanoseconds slice) : slice_(slice) {
  set_speed(bytes_per_second);
}

void RateLimit::set_speed(uint64_t bytes_per_second) {
  // Quota per slice, at least one byte so that a tiny rate still limits.
  const long double per_slice = static_cast<long double>(bytes_per_second) *
                                static_cast<long double>(slice_.count()) / 1e9L;
  quota_ = bytes_per_second ? std::max<uint64_t>(1, static_cast<uint64_t>(per_slice)) : 0;
}

std::chrono::nanoseconds RateLimit::wait_time(Clock::time_point now) const {
  if (!quota_ || dispatched_ < quota_ || slice_end_ <= now) return std::chrono::nanoseconds(0);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(slice_end_ - now);
}

void RateLimit::account(uint64_t bytes, Clock::time_point now) {
  if (!quota_) return;
  if (slice_end_ <= now) {
    // The last (possibly stretched) slice is over: a fresh one.
    slice_start_ = now;
    slice_end_ = now + slice_;
    dispatched_ = 0;
  }
  dispatched_ += bytes;
  if (dispatched_ < quota_) return;
  // Over quota: the slice lasts as many slices as its bytes are worth.
  const long double slices = static_cast<long double>(dispatched_) / static_cast<long double>(quota_);
  slice_end_ = slice_start_ + std::chrono::nanoseconds(static_cast<int64_t>(
                                  slices * static_cast<long double>(slice_.count())));
}

}  // namespace coblk
