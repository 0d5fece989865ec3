#include "drivers/vmdk/format.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "drivers/vmdk/bytes.h"

namespace coblk::vmdk {

namespace {

std::string TooShort(const char* what, size_t need, size_t have) {
  return std::string(what) + " truncated: need " + std::to_string(need) +
         " bytes, have " + std::to_string(have);
}

bool AllZero(std::span<const uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t c) { return c == 0; });
}

// Byte offsets of the VMDK4 fields (the C struct is packed, magic first).
enum : size_t {
  k4Version = 4, k4Flags = 8, k4Capacity = 12, k4Granularity = 20,
  k4DescOffset = 28, k4DescSize = 36, k4NumGtes = 44, k4RgdOffset = 48,
  k4GdOffset = 56, k4GrainOffset = 64, k4Filler = 72, k4CheckBytes = 73,
  k4Compress = 77,
};

}  // namespace

Result<Vmdk3Header> Vmdk3Header::Decode(std::span<const uint8_t> b) {
  if (b.size() < kEncodedSize)
    return MakeError(EINVAL, TooShort("VMDK3 header", kEncodedSize, b.size()));
  if (LoadBe32(b, 0) != kVmdk3Magic)
    return MakeError(EINVAL, "Image not in VMDK format");
  Vmdk3Header h;
  uint32_t* fields[] = {&h.version,      &h.flags,       &h.disk_sectors,
                        &h.granularity,  &h.l1dir_offset, &h.l1dir_size,
                        &h.file_sectors, &h.cylinders,   &h.heads,
                        &h.sectors_per_track};
  size_t off = 4;
  for (uint32_t* f : fields) {
    *f = LoadLe32(b, off);
    off += 4;
  }
  return h;
}

Sector Vmdk3Header::Encode() const {
  Sector s{};
  StoreBe32(s, 0, kVmdk3Magic);
  const uint32_t fields[] = {version,      flags,       disk_sectors,
                             granularity,  l1dir_offset, l1dir_size,
                             file_sectors, cylinders,   heads,
                             sectors_per_track};
  size_t off = 4;
  for (uint32_t f : fields) {
    StoreLe32(s, off, f);
    off += 4;
  }
  return s;
}

Result<Vmdk4Header> Vmdk4Header::Decode(std::span<const uint8_t> b) {
  if (b.size() < kEncodedSize)
    return MakeError(EINVAL, TooShort("VMDK4 header", kEncodedSize, b.size()));
  if (LoadBe32(b, 0) != kVmdk4Magic)
    return MakeError(EINVAL, "Image not in VMDK format");
  Vmdk4Header h;
  h.version = LoadLe32(b, k4Version);
  h.flags = LoadLe32(b, k4Flags);
  h.capacity = LoadLe64(b, k4Capacity);
  h.granularity = LoadLe64(b, k4Granularity);
  h.desc_offset = LoadLe64(b, k4DescOffset);
  h.desc_size = LoadLe64(b, k4DescSize);
  h.num_gtes_per_gt = LoadLe32(b, k4NumGtes);
  h.rgd_offset = LoadLe64(b, k4RgdOffset);
  h.gd_offset = LoadLe64(b, k4GdOffset);
  h.grain_offset = LoadLe64(b, k4GrainOffset);
  h.filler = b[k4Filler];
  for (size_t i = 0; i < 4; ++i) h.check_bytes[i] = b[k4CheckBytes + i];
  h.compress_algorithm = LoadLe16(b, k4Compress);
  return h;
}

Sector Vmdk4Header::Encode() const {
  Sector s{};
  StoreBe32(s, 0, kVmdk4Magic);
  StoreLe32(s, k4Version, version);
  StoreLe32(s, k4Flags, flags);
  StoreLe64(s, k4Capacity, capacity);
  StoreLe64(s, k4Granularity, granularity);
  StoreLe64(s, k4DescOffset, desc_offset);
  StoreLe64(s, k4DescSize, desc_size);
  StoreLe32(s, k4NumGtes, num_gtes_per_gt);
  StoreLe64(s, k4RgdOffset, rgd_offset);
  StoreLe64(s, k4GdOffset, gd_offset);
  StoreLe64(s, k4GrainOffset, grain_offset);
  s[k4Filler] = filler;
  for (size_t i = 0; i < 4; ++i) s[k4CheckBytes + i] = check_bytes[i];
  StoreLe16(s, k4Compress, compress_algorithm);
  return s;
}

namespace {
// The 26 u64 fields of the seSparse const header, in on-disk order.
template <typename H>
auto SeConstFields(H& h) {
  return std::array{&h.magic, &h.version, &h.capacity, &h.grain_size,
                    &h.grain_table_size, &h.flags, &h.reserved1, &h.reserved2,
                    &h.reserved3, &h.reserved4, &h.volatile_header_offset,
                    &h.volatile_header_size, &h.journal_header_offset,
                    &h.journal_header_size, &h.journal_offset, &h.journal_size,
                    &h.grain_dir_offset, &h.grain_dir_size,
                    &h.grain_tables_offset, &h.grain_tables_size,
                    &h.free_bitmap_offset, &h.free_bitmap_size,
                    &h.backmap_offset, &h.backmap_size, &h.grains_offset,
                    &h.grains_size};
}
constexpr size_t kSeConstFieldBytes = 26 * 8;  // then 304 bytes of padding
constexpr size_t kSeVolatileFieldBytes = 4 * 8;  // then 480 bytes of padding
}  // namespace

Result<SeSparseConstHeader> SeSparseConstHeader::Decode(
    std::span<const uint8_t> b) {
  if (b.size() < kEncodedSize)
    return MakeError(EINVAL,
                     TooShort("seSparse const header", kEncodedSize, b.size()));
  SeSparseConstHeader h;
  size_t off = 0;
  for (uint64_t* f : SeConstFields(h)) {
    *f = LoadLe64(b, off);
    off += 8;
  }
  h.pad_is_zero = AllZero(b.subspan(kSeConstFieldBytes,
                                    kEncodedSize - kSeConstFieldBytes));
  return h;
}

Sector SeSparseConstHeader::Encode() const {
  Sector s{};
  SeSparseConstHeader copy = *this;
  size_t off = 0;
  for (uint64_t* f : SeConstFields(copy)) {
    StoreLe64(s, off, *f);
    off += 8;
  }
  return s;
}

Result<SeSparseVolatileHeader> SeSparseVolatileHeader::Decode(
    std::span<const uint8_t> b) {
  if (b.size() < kEncodedSize)
    return MakeError(EINVAL, TooShort("seSparse volatile header",
                                      kEncodedSize, b.size()));
  SeSparseVolatileHeader h;
  h.magic = LoadLe64(b, 0);
  h.free_gt_number = LoadLe64(b, 8);
  h.next_txn_seq_number = LoadLe64(b, 16);
  h.replay_journal = LoadLe64(b, 24);
  h.pad_is_zero = AllZero(b.subspan(kSeVolatileFieldBytes,
                                    kEncodedSize - kSeVolatileFieldBytes));
  return h;
}

Sector SeSparseVolatileHeader::Encode() const {
  Sector s{};
  StoreLe64(s, 0, magic);
  StoreLe64(s, 8, free_gt_number);
  StoreLe64(s, 16, next_txn_seq_number);
  StoreLe64(s, 24, replay_journal);
  return s;
}

Result<GrainMarker> GrainMarker::Decode(std::span<const uint8_t> b) {
  if (b.size() < kGrainHeaderSize)
    return MakeError(EINVAL,
                     TooShort("grain marker", kGrainHeaderSize, b.size()));
  GrainMarker m;
  m.lba = LoadLe64(b, 0);
  m.size = LoadLe32(b, 8);
  if (m.size == 0) {
    if (b.size() < kMetadataHeaderSize)
      return MakeError(EINVAL, TooShort("metadata marker",
                                        kMetadataHeaderSize, b.size()));
    m.type = LoadLe32(b, 12);
  }
  return m;
}

int ProbeScore(std::span<const uint8_t> buf) {
  if (buf.size() < 4) return 0;
  const uint32_t magic = LoadBe32(buf, 0);
  if (magic == kVmdk3Magic || magic == kVmdk4Magic) return 100;

  // Descriptor file: skip '#' comment lines and lines of spaces; the first
  // other line must be exactly "version=N" (N = 1..3) with \n or \r\n.
  const size_t end = buf.size();
  size_t p = 0;
  auto starts_with = [&](std::string_view s) {
    return end - p >= s.size() &&
           std::memcmp(buf.data() + p, s.data(), s.size()) == 0;
  };
  while (p < end) {
    if (buf[p] == '#') {
      while (p < end && buf[p] != '\n') ++p;
      ++p;  // may step past end; the loop condition stops us
      continue;
    }
    if (buf[p] == ' ') {
      while (p < end && buf[p] == ' ') ++p;
      if (p < end && buf[p] == '\r') ++p;
      if (p == end || buf[p] != '\n') return 0;
      ++p;
      continue;
    }
    for (const char* v : {"version=1\n", "version=2\n", "version=3\n",
                          "version=1\r\n", "version=2\r\n", "version=3\r\n"}) {
      if (starts_with(v)) return 100;
    }
    return 0;
  }
  return 0;
}

}  // namespace coblk::vmdk
