// RateLimit: the quota of a slice is dispatched without waiting; a chunk
// that goes over makes the next one wait for the time it is worth; the
// long-run rate is the one set; 0 is no limit.
#include "util/rate_limit.h"

#include <gtest/gtest.h>

namespace coblk {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(RateLimitTest, ZeroIsNoLimit) {
  RateLimit r(0);
  EXPECT_FALSE(r.enabled());
  r.account(uint64_t{1} << 40);
  EXPECT_EQ(r.wait_time(), nanoseconds(0));
}

TEST(RateLimitTest, QuotaOfASlicePassesThenTheNextChunkWaits) {
  // 1 MB/s in 100 ms slices: 100,000 bytes per slice.
  RateLimit r(1000000);
  const auto t0 = RateLimit::Clock::now();
  EXPECT_EQ(r.wait_time(t0), nanoseconds(0));
  r.account(60000, t0);
  EXPECT_EQ(r.wait_time(t0 + milliseconds(10)), nanoseconds(0));
  r.account(30000, t0 + milliseconds(10));
  EXPECT_EQ(r.wait_time(t0 + milliseconds(20)), nanoseconds(0));
  // 150,000 bytes in this slice: it stretches to 150 ms from its start.
  r.account(60000, t0 + milliseconds(20));
  EXPECT_EQ(r.wait_time(t0 + milliseconds(20)), milliseconds(130));
  EXPECT_EQ(r.wait_time(t0 + milliseconds(100)), milliseconds(50));
  // Then a fresh slice.
  EXPECT_EQ(r.wait_time(t0 + milliseconds(150)), nanoseconds(0));
  r.account(50000, t0 + milliseconds(151));
  EXPECT_EQ(r.wait_time(t0 + milliseconds(152)), nanoseconds(0));
}

TEST(RateLimitTest, FirstChunkGoesAtOnceTheSecondWaitsForIt) {
  // As qemu-img convert -r 2M: a 2 MiB chunk, then the next one 1 s later.
  RateLimit r(2 << 20);
  const auto t0 = RateLimit::Clock::now();
  EXPECT_EQ(r.wait_time(t0), nanoseconds(0));
  r.account(2 << 20, t0);
  const nanoseconds w = r.wait_time(t0);
  EXPECT_GT(w, milliseconds(999));
  EXPECT_LT(w, milliseconds(1001));
}

TEST(RateLimitTest, LongRunRateIsTheOneSetWhateverTheChunkSize) {
  // 10 MB at 2 MB/s in chunks of several sizes, by two workers that each
  // wait as told and re-check: about 5 s of simulated time, less the last
  // chunk (paid for after it is dispatched).
  for (uint64_t chunk : {uint64_t{4096}, uint64_t{1} << 20, uint64_t{8} << 20}) {
    RateLimit r(2000000);
    const auto start = RateLimit::Clock::time_point{} + std::chrono::hours(1);
    auto now = start;
    uint64_t moved = 0;
    while (moved < 10000000) {
      for (nanoseconds w; (w = r.wait_time(now)).count() > 0;) now += w;
      r.account(chunk, now);
      moved += chunk;
    }
    const double seconds = std::chrono::duration<double>(now - start).count();
    const double expected = static_cast<double>(moved - chunk) / 2e6;
    EXPECT_GT(seconds, expected - 0.11) << chunk;
    EXPECT_LT(seconds, expected + 0.11) << chunk;
  }
}

TEST(RateLimitTest, SetSpeedChangesTheQuota) {
  RateLimit r(0);
  r.set_speed(10000);  // 1,000 bytes per slice
  EXPECT_TRUE(r.enabled());
  const auto t0 = RateLimit::Clock::now();
  r.account(999, t0);
  EXPECT_EQ(r.wait_time(t0), nanoseconds(0));
  r.account(1001, t0);
  EXPECT_EQ(r.wait_time(t0), milliseconds(200));
  r.set_speed(0);
  EXPECT_EQ(r.wait_time(t0), nanoseconds(0));
}

}  // namespace
}  // namespace coblk
