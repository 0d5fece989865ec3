#include "drivers/vmdk/compressed.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>

#include "drivers/vmdk/layout.h"

namespace coblk::vmdk {
namespace {

constexpr size_t kGrain = 65536;

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i / 7 + (rng() & 3));
  return v;
}

template <typename T>
void ExpectError(const Result<T>& r, int errnum, const std::string& msg) {
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errnum(), errnum);
  EXPECT_EQ(r.error().message(), msg);
}

TEST(Compressed, RoundTripWithMarker) {
  auto data = Pattern(kGrain, 1);
  auto enc = CompressGrain(data, 0x80);
  ASSERT_TRUE(enc);
  EXPECT_EQ(enc->size() % 512, 0u);
  auto m = GrainMarker::Decode(*enc);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->lba, 0x80u);
  EXPECT_GT(m->size, 0u);
  EXPECT_LE(12 + m->size, enc->size());
  for (size_t i = 12 + m->size; i < enc->size(); ++i) ASSERT_EQ((*enc)[i], 0);
  // Reads return two grains' worth; trailing bytes must not matter.
  std::vector<uint8_t> raw = *enc;
  raw.resize(CompressedReadBytes(kGrain), 0xee);
  auto dec = DecompressGrain(raw, true, kGrain);
  ASSERT_TRUE(dec) << dec.error().message();
  EXPECT_EQ(*dec, data);
}

TEST(Compressed, NoMarker) {
  auto data = Pattern(kGrain, 2);
  uLongf len = compressBound(kGrain);
  std::vector<uint8_t> z(len);
  ASSERT_EQ(compress(z.data(), &len, data.data(), kGrain), Z_OK);
  z.resize(len);
  z.resize(kGrain, 0);  // followed by whatever is in the file
  auto dec = DecompressGrain(z, false, kGrain);
  ASSERT_TRUE(dec);
  EXPECT_EQ(*dec, data);
  ExpectError(DecompressGrain(std::span<const uint8_t>(), false, kGrain), EINVAL,
              "Empty compressed grain");
}

TEST(Compressed, IncompressibleDataStillFits) {
  std::vector<uint8_t> data(kGrain);
  std::mt19937 rng(3);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  auto enc = CompressGrain(data, 0);
  ASSERT_TRUE(enc);
  EXPECT_LE(enc->size(), CompressedReadBytes(kGrain));
  auto dec = DecompressGrain(*enc, true, kGrain);
  ASSERT_TRUE(dec);
  EXPECT_EQ(*dec, data);
}

TEST(Compressed, MarkerErrors) {
  auto enc = *CompressGrain(Pattern(kGrain, 4), 0);
  ExpectError(DecompressGrain(std::span(enc).first(11), true, kGrain), EINVAL,
              "grain marker truncated: need 12 bytes, have 11");
  auto zero = enc;
  zero[8] = zero[9] = zero[10] = zero[11] = 0;
  ExpectError(DecompressGrain(zero, true, kGrain), EINVAL,
              "Invalid compressed grain marker: size 0");
  auto big = enc;
  big[8] = 0xff; big[9] = 0xff; big[10] = 0xff; big[11] = 0x7f;
  ExpectError(DecompressGrain(big, true, kGrain), EINVAL,
              "Invalid compressed grain marker: size 2147483647 exceeds the " +
                  std::to_string(enc.size() - 12) + " bytes read");
}

TEST(Compressed, BadData) {
  auto enc = *CompressGrain(Pattern(kGrain, 5), 0);
  auto bad = enc;
  bad[12] ^= 0xff;  // zlib header
  ExpectError(DecompressGrain(bad, true, kGrain), EINVAL,
              "Invalid compressed grain data");
  // Truncated stream: marker size cut short.
  auto m = *GrainMarker::Decode(enc);
  auto cut = enc;
  uint32_t half = m.size / 2;
  for (int i = 0; i < 4; ++i) cut[8 + i] = static_cast<uint8_t>(half >> (8 * i));
  ExpectError(DecompressGrain(cut, true, kGrain), EINVAL,
              "Invalid compressed grain data");
}

TEST(Compressed, OutputSizeMismatch) {
  // A grain that inflates to more than one grain (decompression bomb).
  auto two = *CompressGrain(Pattern(2 * kGrain, 6), 0);
  ExpectError(DecompressGrain(two, true, kGrain), EINVAL,
              "Compressed grain inflates beyond the grain size");
  // A short grain: error for a whole-grain read, fine for a smaller range.
  auto half = *CompressGrain(Pattern(kGrain / 2, 7), 0);
  ExpectError(DecompressGrain(half, true, kGrain), EINVAL,
              "Compressed grain too short: 32768 of 65536 bytes");
  std::vector<uint8_t> out(kGrain);
  auto n = DecompressGrain(half, true, out, 4096);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, kGrain / 2);
}

TEST(Compressed, InvalidSizes) {
  ExpectError(DecompressGrain(std::vector<uint8_t>(100), true, 0), EINVAL,
              "Invalid grain size");
  ExpectError(DecompressGrain(std::vector<uint8_t>(100), true,
                              (kMaxClusterSectors + 1) * 512),
              EINVAL, "Invalid grain size");
  ExpectError(CompressGrain({}, 0), EINVAL, "Invalid grain size");
}

TEST(Markers, MetadataAndFooter) {
  Sector gt = EncodeMetadataMarker(MarkerType::kGrainTable, 4);
  auto m = GrainMarker::Decode(gt);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->is_metadata());
  EXPECT_EQ(m->lba, 4u);
  EXPECT_EQ(m->type, 1u);
  Sector gd = EncodeMetadataMarker(MarkerType::kGrainDirectory, 1);
  EXPECT_EQ(gd[12], 2);
  Sector eos = EncodeEosMarker();
  EXPECT_EQ(eos, Sector{});
  Vmdk4Header h;
  h.version = 3;
  h.capacity = 128;
  h.gd_offset = 77;
  auto footer = EncodeFooter(h);
  ASSERT_EQ(footer.size(), kFooterBytes);
  EXPECT_EQ(footer[0], 1);   // footer marker: 1 sector follows
  EXPECT_EQ(footer[12], 3);  // type FOOTER
  auto back = ValidateFooter(footer);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, h);
}

}  // namespace
}  // namespace coblk::vmdk
