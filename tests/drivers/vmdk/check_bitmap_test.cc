// CheckBitmap (the check's sector bitmaps) against a plain model: random
// set / clear / any / find / end_of_set over sizes that span several
// summary pages (4 KiB of words each) and end mid-word, plus growth.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "drivers/vmdk/vmdk_check.h"

namespace coblk::vmdk::test {
namespace {

struct Model {
  std::vector<bool> bits;
  bool any(uint64_t b, uint64_t e) const {
    for (uint64_t i = b; i < std::min<uint64_t>(e, bits.size()); ++i)
      if (bits[i]) return true;
    return false;
  }
  void set(uint64_t b, uint64_t e, bool v) {
    for (uint64_t i = b; i < std::min<uint64_t>(e, bits.size()); ++i) bits[i] = v;
  }
  uint64_t find(uint64_t from, bool v) const {
    for (uint64_t i = from; i < bits.size(); ++i)
      if (bits[i] == v) return i;
    return bits.size();
  }
  uint64_t end_of_set() const {
    for (uint64_t i = bits.size(); i-- > 0;)
      if (bits[i]) return i + 1;
    return 0;
  }
};

void ExpectSame(const CheckBitmap& b, const Model& m, std::mt19937_64& rng) {
  ASSERT_EQ(b.size(), m.bits.size());
  EXPECT_EQ(b.end_of_set(), m.end_of_set());
  for (uint64_t w = 0; w < (m.bits.size() + 63) / 64 + 2; ++w) {
    uint64_t want = 0;
    for (uint64_t i = 0; i < 64 && w * 64 + i < m.bits.size(); ++i)
      if (m.bits[w * 64 + i]) want |= uint64_t{1} << i;
    ASSERT_EQ(b.word(w), want) << "word " << w;
  }
  // The model answers by walking bits: fewer queries in the sanitizer build.
#ifdef COBLK_SANITIZE
  constexpr int kQueries = 40;
#else
  constexpr int kQueries = 200;
#endif
  for (int k = 0; k < kQueries; ++k) {
    const uint64_t from = rng() % (m.bits.size() + 10);
    const uint64_t to = from + rng() % 70000;
    ASSERT_EQ(b.any(from, to), m.any(from, to)) << from << ".." << to;
    ASSERT_EQ(b.find(from, true), m.find(from, true)) << from;
    ASSERT_EQ(b.find(from, false), m.find(from, false)) << from;
    ASSERT_EQ(b.test(from), from < m.bits.size() && m.bits[from]);
  }
}

TEST(CheckBitmapTest, MatchesModel) {
  std::mt19937_64 rng(13);
  // Mid-word ends; one and several summary pages (32768 bits each); sizes
  // on both sides of the huge-page threshold (2^21 bits = 256 KiB).
  for (uint64_t size : {uint64_t{0}, uint64_t{1}, uint64_t{63}, uint64_t{64}, uint64_t{1000}, uint64_t{32768},
                        uint64_t{100003}, uint64_t{(1 << 21) + 77}}) {
    SCOPED_TRACE(size);
    CheckBitmap b;
    ASSERT_TRUE(b.init(size));
    Model m;
    m.bits.assign(size, false);
    ExpectSame(b, m, rng);
    for (int round = 0; round < 6; ++round) {
      for (int k = 0; k < 40; ++k) {
        const uint64_t from = size ? rng() % size : 0;
        const uint64_t len = rng() % (k % 4 == 0 ? 100000 : 300);
        const bool value = rng() % 3 != 0;
        if (value) b.set(from, from + len);
        else b.clear(from, from + len);
        m.set(from, from + len, value);
      }
      ExpectSame(b, m, rng);
    }
    // Growth keeps the bits and adds clear ones, across a page boundary.
    const uint64_t bigger = size + 40000;
    ASSERT_TRUE(b.grow(bigger));
    m.bits.resize(bigger, false);
    ExpectSame(b, m, rng);
    b.set(bigger - 5, bigger);
    m.set(bigger - 5, bigger, true);
    ExpectSame(b, m, rng);
  }
}

// A sparse bitmap over a large range: queries over untouched parts answer
// without touching them (a huge range costs no memory) and stay exact.
TEST(CheckBitmapTest, SparseHugeRange) {
  CheckBitmap b;
  const uint64_t size = uint64_t{1} << 36;  // 8 GiB of bitmap, never touched
  ASSERT_TRUE(b.init(size));
  b.set(5, 9);
  b.set(size - 3, size + 100);  // clipped
  b.set(uint64_t{1} << 35, (uint64_t{1} << 35) + 1);
  EXPECT_TRUE(b.any(0, 6));
  EXPECT_FALSE(b.any(9, uint64_t{1} << 35));
  EXPECT_EQ(b.find(9, true), uint64_t{1} << 35);
  EXPECT_EQ(b.find((uint64_t{1} << 35) + 1, true), size - 3);
  EXPECT_EQ(b.find(5, false), 9u);
  EXPECT_EQ(b.end_of_set(), size);
  b.clear(0, size);
  EXPECT_EQ(b.end_of_set(), 0u);
  EXPECT_EQ(b.find(0, true), size);
}

}  // namespace
}  // namespace coblk::vmdk::test
