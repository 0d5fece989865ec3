// The in-memory grain directory (SparseDirectory) and the grain-table
// cache's index hold memory in proportion to what is allocated or cached,
// not to the directory size a header declares, and still answer exactly
// like a flat array / a map.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/grain_directory.h"
#include "drivers/vmdk/grain_table_cache.h"

namespace coblk::vmdk {
namespace {

// A 2^24-entry directory (a 2^40-sector image with 64 KiB grains) with one
// table: one page in memory, and the scan skips the rest in page steps.
TEST(SparseDirectoryTest, MostlyEmptyDirectoryStoresOnlyItsTables) {
  constexpr uint32_t kEntries = uint32_t{1} << 24;
  SparseDirectory<uint32_t> d(kEntries);
  std::vector<uint8_t> chunk(1 << 20, 0);
  StoreLe32(chunk, 0, 1234);  // entry 0 of the first chunk
  const uint32_t per_chunk = static_cast<uint32_t>(chunk.size() / 4);
  for (uint32_t first = 0; first < kEntries; first += per_chunk) {
    d.load_le(first, chunk);
    StoreLe32(chunk, 0, 0);
  }
  EXPECT_EQ(d.stored_pages(), 1u);
  EXPECT_EQ(d[0], 1234u);
  EXPECT_EQ(d[1], 0u);
  EXPECT_EQ(d[kEntries - 1], 0u);
  EXPECT_EQ(d.next_nonzero(0), 0u);
  EXPECT_EQ(d.next_nonzero(1), kEntries);
  d.set(kEntries - 1, 7);
  EXPECT_EQ(d.stored_pages(), 2u);
  EXPECT_EQ(d.next_nonzero(1), kEntries - 1);
  d.set(5'000'000, 0);  // a zero never stores a page
  EXPECT_EQ(d.stored_pages(), 2u);
}

// Random contents, loads at unaligned offsets and sets, against a flat
// array: every entry, every next_nonzero answer, for both entry widths.
template <typename T>
void CompareWithFlatArray(uint32_t seed) {
  std::mt19937 rng(seed);
  const uint32_t size = 3 * SparseDirectory<T>::kPageEntries + 123;
  SparseDirectory<T> d(size);
  std::vector<T> model(size, 0);
  for (int round = 0; round < 50; ++round) {
    const uint32_t first = rng() % size;
    const uint32_t n = 1 + rng() % std::min<uint32_t>(size - first, 2500);
    std::vector<uint8_t> bytes(size_t{n} * sizeof(T), 0);
    for (uint32_t k = 0; k < n; ++k) {
      // Mostly zeros, so that some pages stay absent.
      const T v = rng() % 8 == 0 ? static_cast<T>((uint64_t{rng()} << 32) | rng()) : T{0};
      StoreLe(bytes, size_t{k} * sizeof(T), sizeof(T), v);
      model[first + k] = v;
    }
    d.load_le(first, bytes);
    const uint32_t at = rng() % size;
    const T v = rng() % 2 ? T{0} : static_cast<T>(rng() | 1);
    d.set(at, v);
    model[at] = v;
  }
  for (uint32_t i = 0; i < size; ++i) ASSERT_EQ(d[i], model[i]) << i;
  for (uint32_t i = 0; i <= size; ++i) {
    uint32_t want = i;
    while (want < size && model[want] == 0) ++want;
    ASSERT_EQ(d.next_nonzero(i), want) << i;
  }
  // Shrinking drops entries; growing again brings zeros, not old values.
  d.resize(size - 100);
  d.resize(size);
  for (uint32_t i = size - 100; i < size; ++i) ASSERT_EQ(d[i], T{0}) << i;
}

TEST(SparseDirectoryTest, MatchesAFlatArray32) {
  for (uint32_t seed = 1; seed <= 5; ++seed) CompareWithFlatArray<uint32_t>(seed);
}

TEST(SparseDirectoryTest, MatchesAFlatArray64) {
  for (uint32_t seed = 1; seed <= 5; ++seed) CompareWithFlatArray<uint64_t>(seed);
}

// The cache's directory-index -> slot map: a cache of 37 tables over a
// 2^25-entry directory, tables installed at random (clustered and spread
// indices, so probe runs form, wrap and are cut by evictions). Every table
// the cache returns is the one asked for, and exactly `capacity` of the
// installed tables are found.
TEST(GrainTableCacheIndexTest, InstallAndEvictKeepEveryLookupRight) {
  constexpr uint32_t kEntries = uint32_t{1} << 25;
  constexpr uint32_t kCapacity = 37;
  GrainTableCache cache(kEntries, 512, kCapacity);
  ASSERT_EQ(cache.capacity(), kCapacity);
  std::mt19937 rng(42);
  std::vector<uint32_t> installed;
  for (int i = 0; i < 20000; ++i) {
    const uint32_t index = rng() % 4 ? rng() % 300 : rng() % kEntries;
    uint8_t* t = cache.install(index);
    ASSERT_NE(t, nullptr);
    StoreLe32(std::span<uint8_t>(t, 512), 0, index);
    installed.push_back(index);
    ASSERT_LE(cache.cached(), kCapacity);
    if (i % 997 == 0 || i == 19999) {
      std::map<uint32_t, bool> distinct;
      for (uint32_t k : installed) distinct[k] = true;
      uint32_t found = 0;
      for (const auto& [k, unused] : distinct) {
        if (const uint8_t* got = cache.lookup(k)) {
          ASSERT_EQ(LoadLe32(std::span<const uint8_t>(got, 512), 0), k);
          ++found;
        }
      }
      EXPECT_EQ(found, std::min<uint32_t>(kCapacity, static_cast<uint32_t>(distinct.size())));
      EXPECT_EQ(found, cache.cached());
      // The table installed last is always there.
      EXPECT_NE(cache.lookup(index), nullptr);
    }
  }
}

}  // namespace
}  // namespace coblk::vmdk
