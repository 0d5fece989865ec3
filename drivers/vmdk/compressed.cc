#include "drivers/vmdk/compressed.h"

#include <zlib.h>

#include <algorithm>
#include <cinttypes>
#include <limits>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/layout.h"
#include "drivers/vmdk/strfmt.h"

namespace coblk::vmdk {

Result<size_t> DecompressGrain(std::span<const uint8_t> raw, bool has_marker,
                               std::span<uint8_t> out, size_t min_output) {
  if (out.empty() || out.size() > kMaxClusterSectors * kSectorSize)
    return MakeError(EINVAL, "Invalid grain size");
  std::span<const uint8_t> data = raw;
  if (has_marker) {
    auto marker = GrainMarker::Decode(raw);
    if (!marker) return std::unexpected(marker.error());
    data = raw.subspan(GrainMarker::kGrainHeaderSize);
    if (marker->size == 0)
      return MakeError(EINVAL, "Invalid compressed grain marker: size 0");
    if (marker->size > data.size())
      return MakeError(EINVAL,
                       StrFormat("Invalid compressed grain marker: size %" PRIu32
                                 " exceeds the %zu bytes read",
                                 marker->size, data.size()));
    data = data.first(marker->size);
  } else {
    // QEMU hands zlib a whole grain of input; a stream ends on its own.
    data = data.first(std::min<size_t>(data.size(), 2 * out.size()));
    if (data.empty()) return MakeError(EINVAL, "Empty compressed grain");
  }

  z_stream zs{};
  if (inflateInit(&zs) != Z_OK)
    return MakeError(ENOMEM, "Could not initialise zlib");
  // Sizes are <= 2 GiB (grain <= 1 GiB), so they fit zlib's uInt.
  zs.next_in = const_cast<Bytef*>(data.data());
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&zs, Z_FINISH);
  const size_t produced = out.size() - zs.avail_out;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    if (rc == Z_BUF_ERROR && zs.avail_out == 0)
      return MakeError(EINVAL, "Compressed grain inflates beyond the grain size");
    return MakeError(EINVAL, "Invalid compressed grain data");
  }
  if (produced < min_output)
    return MakeError(EINVAL,
                     StrFormat("Compressed grain too short: %zu of %zu bytes",
                               produced, min_output));
  return produced;
}

Result<std::vector<uint8_t>> DecompressGrain(std::span<const uint8_t> raw,
                                             bool has_marker,
                                             uint64_t grain_bytes) {
  if (grain_bytes == 0 || grain_bytes > kMaxClusterSectors * kSectorSize)
    return MakeError(EINVAL, "Invalid grain size");
  std::vector<uint8_t> out(grain_bytes);
  auto n = DecompressGrain(raw, has_marker, out, out.size());
  if (!n) return std::unexpected(n.error());
  return out;
}

Result<std::vector<uint8_t>> CompressGrain(std::span<const uint8_t> data,
                                           uint64_t lba) {
  if (data.empty() || data.size() > kMaxClusterSectors * kSectorSize)
    return MakeError(EINVAL, "Invalid grain size");
  // Like QEMU: zlib format, default level, output bounded by 2 grains.
  uLongf bound = compressBound(static_cast<uLong>(data.size()));
  std::vector<uint8_t> out(GrainMarker::kGrainHeaderSize + bound);
  uLongf len = bound;
  int rc = compress(out.data() + GrainMarker::kGrainHeaderSize, &len,
                    data.data(), static_cast<uLong>(data.size()));
  if (rc != Z_OK || len == 0 || len > 2 * data.size() ||
      len > std::numeric_limits<uint32_t>::max()) {
    return MakeError(EINVAL, "Could not compress grain");
  }
  StoreLe64(out, 0, lba);
  StoreLe32(out, 8, static_cast<uint32_t>(len));
  const size_t used = GrainMarker::kGrainHeaderSize + len;
  const size_t padded = (used + kSectorSize - 1) / kSectorSize * kSectorSize;
  out.resize(padded, 0);
  std::fill(out.begin() + used, out.end(), 0);
  return out;
}

Sector EncodeMetadataMarker(MarkerType type, uint64_t sectors) {
  Sector s{};
  StoreLe64(s, 0, sectors);
  StoreLe32(s, 8, 0);
  StoreLe32(s, 12, static_cast<uint32_t>(type));
  return s;
}

Sector EncodeEosMarker() { return Sector{}; }

std::vector<uint8_t> EncodeFooter(const Vmdk4Header& header) {
  std::vector<uint8_t> out;
  out.reserve(kFooterBytes);
  auto append = [&](const Sector& s) { out.insert(out.end(), s.begin(), s.end()); };
  append(EncodeMetadataMarker(MarkerType::kFooter, 1));
  append(header.Encode());
  append(EncodeEosMarker());
  return out;
}

}  // namespace coblk::vmdk
