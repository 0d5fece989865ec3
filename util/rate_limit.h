// Byte-rate limiting in time slices, as QEMU's ratelimit does for its block
// jobs and `qemu-img convert -r`. Within a slice (100 ms) up to
// rate * slice bytes may be dispatched; bytes beyond that stretch the slice
// in proportion, and nothing more is dispatched until it ends. So the
// long-run rate is the one set however large each dispatch is, and as in
// QEMU a copier pays for a chunk after dispatching it: the first chunk goes
// at once, the next waits for the time the first one is worth.
//
//   for (;;) {  // each chunk, in any number of workers
//     while (auto w = limit.wait_time(); w.count() > 0) co_await co_sleep(w);
//     limit.account(chunk_bytes);
//     ... copy the chunk ...
//   }
//
// (Re-check after sleeping: other workers may have dispatched meanwhile.)
// Not thread-safe: one owner (a tool's or job's event loop thread).
#pragma once

#include <chrono>
#include <cstdint>

namespace coblk {

class RateLimit {
 public:
  using Clock = std::chrono::steady_clock;

  // bytes_per_second 0: no limit (wait_time() is always zero).
  explicit RateLimit(uint64_t bytes_per_second = 0,
                     std::chrono::nanoseconds slice = std::chrono::milliseconds(100));

  void set_speed(uint64_t bytes_per_second);
  bool enabled() const { return quota_ > 0; }
  // How long to wait at `now` before dispatching more.
  std::chrono::nanoseconds wait_time(Clock::time_point now = Clock::now()) const;
  // Records `bytes` dispatched at `now`.
  void account(uint64_t bytes, Clock::time_point now = Clock::now());

 private:
  std::chrono::nanoseconds slice_;
  uint64_t quota_ = 0;  // bytes per slice
  uint64_t dispatched_ = 0;
  Clock::time_point slice_start_{};
  Clock::time_point slice_end_{};
};

}  // namespace coblk
