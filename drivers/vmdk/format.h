// On-disk layouts of VMDK sparse extents (VMDK3 "COWD", VMDK4 "KDMV",
// ESXi seSparse) and their byte-exact decoders/encoders.
//
// Decode() only checks that the bytes are there and the magic matches; the
// semantic open-time checks live in layout.h.  Encode() produces exactly the
// bytes QEMU's vmdk_init_extent() writes, so images are qemu-img compatible.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "util/status.h"

namespace coblk::vmdk {

inline constexpr uint64_t kSectorSize = 512;

// Magics, read big-endian from the first 4 bytes ("COWD" / "KDMV").
inline constexpr uint32_t kVmdk3Magic = 0x434f5744;  // 'C''O''W''D'
inline constexpr uint32_t kVmdk4Magic = 0x4b444d56;  // 'K''D''M''V'

// VMDK4 header flags.
inline constexpr uint32_t kFlagNlDetect = 1u << 0;
inline constexpr uint32_t kFlagRgd = 1u << 1;        // redundant GD present
inline constexpr uint32_t kFlagZeroGrain = 1u << 2;  // GTE value 1 = zeroed
inline constexpr uint32_t kFlagCompress = 1u << 16;
inline constexpr uint32_t kFlagMarker = 1u << 17;

inline constexpr uint16_t kCompressionDeflate = 1;
// gd_offset value meaning "read the real header from the footer".
inline constexpr uint64_t kGdAtEnd = 0xffffffffffffffffULL;
// Sparse extents address grains with 32-bit sector numbers.
inline constexpr uint64_t kExtentMaxSectors = 1ULL << 32;
inline constexpr uint32_t kGteZeroed = 1;

// streamOptimized marker types (type field of a size==0 marker).
enum class MarkerType : uint32_t {
  kEndOfStream = 0,
  kGrainTable = 1,
  kGrainDirectory = 2,
  kFooter = 3,
};

inline constexpr uint64_t kSeSparseConstMagic = 0xcafebabeULL;
inline constexpr uint64_t kSeSparseVolatileMagic = 0xcafecafeULL;
inline constexpr uint64_t kSeSparseVersion = 0x0000000200000001ULL;  // 2.1

// The 4 check bytes "\n \r\n" detect text-mode line-ending mangling.
inline constexpr std::array<uint8_t, 4> kCheckBytes = {0x0a, 0x20, 0x0d, 0x0a};

using Sector = std::array<uint8_t, kSectorSize>;

// VMDK3 (vmfsSparse, "COWD") header: 4-byte magic + 40 bytes of fields.
struct Vmdk3Header {
  static constexpr size_t kEncodedSize = 4 + 40;
  uint32_t version = 0;
  uint32_t flags = 0;
  uint32_t disk_sectors = 0;
  uint32_t granularity = 0;   // sectors per grain
  uint32_t l1dir_offset = 0;  // sectors
  uint32_t l1dir_size = 0;    // GD entries
  uint32_t file_sectors = 0;
  uint32_t cylinders = 0;
  uint32_t heads = 0;
  uint32_t sectors_per_track = 0;

  // `bytes` starts at the magic (file offset 0).
  static Result<Vmdk3Header> Decode(std::span<const uint8_t> bytes);
  Sector Encode() const;
};

// VMDK4 ("KDMV") header: 4-byte magic + 75 packed bytes of fields.
struct Vmdk4Header {
  static constexpr size_t kEncodedSize = 4 + 75;
  uint32_t version = 0;
  uint32_t flags = 0;
  uint64_t capacity = 0;     // sectors
  uint64_t granularity = 0;  // sectors per grain
  uint64_t desc_offset = 0;  // sectors
  uint64_t desc_size = 0;    // sectors
  uint32_t num_gtes_per_gt = 0;
  uint64_t rgd_offset = 0;    // sectors
  uint64_t gd_offset = 0;     // sectors, or kGdAtEnd
  uint64_t grain_offset = 0;  // sectors
  uint8_t filler = 0;
  std::array<uint8_t, 4> check_bytes{};
  uint16_t compress_algorithm = 0;

  // `bytes` starts at the magic (file offset 0, or footer offset + 512).
  static Result<Vmdk4Header> Decode(std::span<const uint8_t> bytes);
  // Full 512-byte header sector: magic, fields, zero padding.
  Sector Encode() const;

  bool operator==(const Vmdk4Header&) const = default;
};

// seSparse constant header (sector 0). Offsets and sizes are in sectors.
struct SeSparseConstHeader {
  uint64_t magic = 0;
  uint64_t version = 0;
  uint64_t capacity = 0;
  uint64_t grain_size = 0;
  uint64_t grain_table_size = 0;
  uint64_t flags = 0;
  uint64_t reserved1 = 0, reserved2 = 0, reserved3 = 0, reserved4 = 0;
  uint64_t volatile_header_offset = 0, volatile_header_size = 0;
  uint64_t journal_header_offset = 0, journal_header_size = 0;
  uint64_t journal_offset = 0, journal_size = 0;
  uint64_t grain_dir_offset = 0, grain_dir_size = 0;
  uint64_t grain_tables_offset = 0, grain_tables_size = 0;
  uint64_t free_bitmap_offset = 0, free_bitmap_size = 0;
  uint64_t backmap_offset = 0, backmap_size = 0;
  uint64_t grains_offset = 0, grains_size = 0;
  bool pad_is_zero = true;  // the 304 trailing bytes

  static constexpr size_t kEncodedSize = 512;
  // Decodes without validating (see layout.h CheckSeSparseConstHeader).
  static Result<SeSparseConstHeader> Decode(std::span<const uint8_t> bytes);
  Sector Encode() const;  // for tests and tools; pad written as zeros
};

struct SeSparseVolatileHeader {
  uint64_t magic = 0;
  uint64_t free_gt_number = 0;
  uint64_t next_txn_seq_number = 0;
  uint64_t replay_journal = 0;
  bool pad_is_zero = true;  // the 480 trailing bytes

  static constexpr size_t kEncodedSize = 512;
  static Result<SeSparseVolatileHeader> Decode(std::span<const uint8_t> bytes);
  Sector Encode() const;
};

// The 12-byte prefix of every streamOptimized marker. A grain marker has
// size > 0 (compressed bytes that follow); a metadata marker has size == 0
// and a 4-byte type at offset 12, in a 512-byte block.
struct GrainMarker {
  static constexpr size_t kGrainHeaderSize = 12;  // lba + size
  static constexpr size_t kMetadataHeaderSize = 16;  // + type
  uint64_t lba = 0;   // grain: guest sector; metadata: sectors that follow
  uint32_t size = 0;  // compressed bytes; 0 for metadata markers
  uint32_t type = 0;  // only meaningful when size == 0

  // Needs 12 bytes; reads the type too when size == 0 and 16 bytes exist.
  static Result<GrainMarker> Decode(std::span<const uint8_t> bytes);
  bool is_metadata() const { return size == 0; }
};

// QEMU's vmdk_probe(): 100 for a VMDK3/VMDK4 magic or for a text file whose
// first non-comment, non-blank line is "version=1|2|3"; else 0.
int ProbeScore(std::span<const uint8_t> first_bytes);

}  // namespace coblk::vmdk
