// streamOptimized (deflate-compressed) grains and metadata markers.
//
// A compressed grain on disk is either raw zlib data (no markers) or a
// 12-byte marker {lba u64, size u32} followed by `size` bytes of zlib data,
// padded to a sector. Metadata markers are 512-byte blocks {sectors u64,
// size u32 = 0, type u32, zeros} that precede a GT, a GD or the footer, and
// the end-of-stream marker is all zeros.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "drivers/vmdk/format.h"
#include "util/status.h"

namespace coblk::vmdk {

// How much to read at a compressed grain's offset: QEMU reads two grains
// in case marker + compressed data exceed one grain.
inline uint64_t CompressedReadBytes(uint64_t grain_bytes) {
  return grain_bytes * 2;
}

// Inflates the grain in `raw` (the bytes read at the grain offset; may be
// short at EOF) into `out`, whose size is the grain size. With markers the
// marker's size must be non-zero and fit in `raw`; without markers the
// stream is bounded by min(raw.size(), 2 * grain). Inflated data larger than
// `out` or smaller than `min_output` is an error (QEMU: the requested range
// must lie inside the inflated data). Returns the inflated length.
Result<size_t> DecompressGrain(std::span<const uint8_t> raw, bool has_marker,
                               std::span<uint8_t> out, size_t min_output);

// Convenience: inflate exactly one whole grain of `grain_bytes`.
Result<std::vector<uint8_t>> DecompressGrain(std::span<const uint8_t> raw,
                                             bool has_marker,
                                             uint64_t grain_bytes);

// Deflates `data` (at most one grain) and returns marker + zlib stream,
// zero-padded to a whole sector, ready to append at a sector boundary.
// `lba` is the guest sector of the grain's start.
Result<std::vector<uint8_t>> CompressGrain(std::span<const uint8_t> data,
                                           uint64_t lba);

// A 512-byte metadata marker (GT / GD / FOOTER), `sectors` = size of the
// metadata that follows it.
Sector EncodeMetadataMarker(MarkerType type, uint64_t sectors);
// The all-zero end-of-stream marker.
Sector EncodeEosMarker();
// What a streamOptimized file ends with (kFooterBytes): footer marker,
// header copy (with the real gd_offset), EOS marker. ValidateFooter accepts it.
std::vector<uint8_t> EncodeFooter(const Vmdk4Header& header);

}  // namespace coblk::vmdk
