#include "io/io_vector.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace coblk {
namespace {

TEST(IoVectorTest, AppendMergesContiguousRanges) {
  char buf[16];
  IoVector v;
  v.append(buf, 4);
  v.append(buf + 4, 4);
  EXPECT_EQ(v.count(), 1);
  EXPECT_EQ(v.size(), 8u);
  char other[4];
  v.append(other, 4);
  EXPECT_EQ(v.count(), 2);
  v.append(other, 0);
  EXPECT_EQ(v.count(), 2);
}

TEST(IoVectorTest, SliceCopyAndMemsetAcrossEntries) {
  char a[4] = {}, b[4] = {}, c[4] = {};
  IoVector v;
  v.append(a, 4);
  v.append(b, 4);
  v.append(c, 4);
  EXPECT_EQ(v.copy_from(2, "hello world", 9), 9u);
  EXPECT_EQ(std::string(a + 2, 2), "he");
  EXPECT_EQ(std::string(b, 4), "llo ");
  EXPECT_EQ(std::string(c, 3), "wor");
  char out[12];
  EXPECT_EQ(v.slice(3, 5).copy_to(0, out, 100), 5u);  // clipped to the slice
  EXPECT_EQ(std::string(out, 5), "ello ");
  v.memset(1, '-', 10);
  EXPECT_EQ(a[0], 0);
  EXPECT_EQ(c[2], '-');
  EXPECT_EQ(c[3], 0);  // byte 11 is past the memset range
  EXPECT_FALSE(v.is_zero(0, 12));
  v.memset(0, 0, 12);
  EXPECT_TRUE(v.is_zero(0, 12));
}

TEST(IoVectorTest, CopyBetweenVectors) {
  char src1[3] = {'a', 'b', 'c'}, src2[3] = {'d', 'e', 'f'};
  char dst[6] = {};
  IoVector s;
  s.append(src1, 3);
  s.append(src2, 3);
  IoVector d(dst, 6);
  EXPECT_EQ(d.copy_from(1, s, 2, 4), 4u);
  EXPECT_EQ(std::string(dst + 1, 4), "cdef");
}

TEST(IoVectorTest, Alignment) {
  alignas(4096) static char buf[8192];
  IoVector v(buf, 4096);
  EXPECT_TRUE(v.is_aligned(512));
  v.append(buf + 4096 + 1, 512);
  EXPECT_FALSE(v.is_aligned(512));
}

}  // namespace
}  // namespace coblk
