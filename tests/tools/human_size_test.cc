#include "tools/human_size.h"

#include <gtest/gtest.h>

namespace coblk::tools {
namespace {

TEST(HumanSizeTest, IoSizeStringMatchesQemuIoCvtstr) {
  EXPECT_EQ(IoSizeString(0), "0 bytes");
  EXPECT_EQ(IoSizeString(512), "512 bytes");
  EXPECT_EQ(IoSizeString(65536), "64 KiB");
  EXPECT_EQ(IoSizeString(1536), "1.500 KiB");
  EXPECT_EQ(IoSizeString(1048576), "1 MiB");
  EXPECT_EQ(IoSizeString(4.041330), "4.041330 bytes");
  EXPECT_EQ(IoSizeString(3.0 * (1ull << 30)), "3 GiB");
}

TEST(HumanSizeTest, ImgSizeStringMatchesQemuSizeToStr) {
  EXPECT_EQ(ImgSizeString(0), "0 B");
  EXPECT_EQ(ImgSizeString(135168), "132 KiB");
  EXPECT_EQ(ImgSizeString(1ull << 30), "1 GiB");
  EXPECT_EQ(ImgSizeString(3ull << 29), "1.5 GiB");
  EXPECT_EQ(ImgSizeString(1023), "0.999 KiB");
  EXPECT_EQ(ImgSizeString(999), "999 B");
}

TEST(HumanSizeTest, ParseIoNumber) {
  EXPECT_EQ(ParseIoNumber("64k").value(), 65536);
  EXPECT_EQ(ParseIoNumber("1M").value(), 1048576);
  EXPECT_EQ(ParseIoNumber("0x10").value(), 16);
  EXPECT_EQ(ParseIoNumber("4096").value(), 4096);
  EXPECT_FALSE(ParseIoNumber("abc"));
  EXPECT_FALSE(ParseIoNumber("-1"));
  EXPECT_EQ(ParseIoNumber("abc").error().message(),
            "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- abc");
}

}  // namespace
}  // namespace coblk::tools
