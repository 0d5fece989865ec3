// Open-time validation: turns a decoded (hostile) header into a checked
// SparseLayout whose every size and offset is safe to allocate and read.
//
// Performs every check QEMU does in vmdk_open_vmdk4 / vmdk_open_vmfs_sparse /
// vmdk_open_se_sparse / vmdk_add_extent, with QEMU's messages, plus:
//   * granularity must be a non-zero power of two <= 0x200000 sectors
//     (QEMU divides by zero for a VMDK3 granularity of 0);
//   * capacity * 512 must fit in int64;
//   * the grain directory (and redundant GD) must lie inside the file and
//     not overlap the header sector.
// Limits (QEMU's): GTEs per GT <= 512 for VMDK4 (VMDK3 and seSparse use a
// fixed 4096); GD entries <= 32 Mi (so a GD is <= 128 MiB / 256 MiB for
// seSparse); grain <= 0x200000 sectors (1 GiB).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "drivers/vmdk/format.h"
#include "util/status.h"

namespace coblk::vmdk {

inline constexpr uint32_t kMaxL2Size = 512;                // VMDK4 GTEs/GT
inline constexpr uint32_t kVmdk3L2Size = 4096;             // fixed by format
inline constexpr uint64_t kMaxL1Size = 32 * 1024 * 1024;   // GD entries
inline constexpr uint64_t kMaxClusterSectors = 0x200000;   // 1 GiB grains
// QEMU reads descriptors of at most 1 MiB - 1 bytes.
inline constexpr uint64_t kMaxDescriptorBytes = (1u << 20) - 1;
// QEMU reads an embedded descriptor as 20 sectors at byte 0x200.
inline constexpr uint64_t kEmbeddedDescriptorOffset = 0x200;
inline constexpr uint64_t kEmbeddedDescriptorBytes = 20 * kSectorSize;
// streamOptimized footer: footer marker + header sector + EOS marker.
inline constexpr uint64_t kFooterBytes = 3 * kSectorSize;

enum class ExtentFormat { kVmdk3, kVmdk4, kSeSparse };

struct SparseLayout {
  ExtentFormat format = ExtentFormat::kVmdk4;
  uint32_t version = 0;
  uint64_t sectors = 0;            // extent capacity in guest sectors
  uint64_t cluster_sectors = 0;    // grain size in sectors (power of two)
  uint32_t l1_size = 0;            // grain directory entries
  uint32_t l2_size = 0;            // entries per grain table
  uint32_t entry_size = 4;         // bytes per GD/GT entry (8 for seSparse)
  uint64_t l1_entry_sectors = 0;   // guest sectors covered by one GT
  uint64_t l1_table_offset = 0;    // bytes
  uint64_t l1_backup_offset = 0;   // bytes; 0 = no redundant GD
  uint64_t grain_start_sector = 0; // VMDK4 header grain_offset
  uint64_t next_cluster_sector = 0;  // append point: file end rounded to grain
  bool compressed = false;
  bool has_marker = false;
  bool has_zero_grain = false;
  bool gd_at_end = false;          // header said GD_AT_END; footer was used
  // GD_AT_END without a valid footer (a stream cut before its end), opened
  // for check only: there is no directory (l1_table_offset and
  // l1_backup_offset are 0 and never read), every grain reads as
  // unallocated, writes are refused; check -r all rebuilds the tail.
  bool footer_lost = false;
  // seSparse only, all in sectors.
  uint64_t sesparse_l2_tables_offset = 0;
  uint64_t sesparse_l2_tables_sectors = 0;
  uint64_t sesparse_clusters_offset = 0;
  uint64_t sesparse_clusters_sectors = 0;

  uint64_t cluster_bytes() const { return cluster_sectors * kSectorSize; }
  uint64_t l1_table_bytes() const { return uint64_t{l1_size} * entry_size; }
  uint64_t l2_table_bytes() const { return uint64_t{l2_size} * entry_size; }
};

// --- VMDK4 ------------------------------------------------------------------

// capacity == 0 with a desc_offset: the sparse file only wraps a descriptor
// file (QEMU then parses it as a descriptor file). Returns its byte offset.
std::optional<uint64_t> WrappedDescriptorOffset(const Vmdk4Header& h);

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};
// Where to read the descriptor text of a VMDK4 file (clipped to the file):
// the wrapped descriptor (<= kMaxDescriptorBytes) or the embedded one.
Result<ByteRange> Vmdk4DescriptorRange(const Vmdk4Header& h,
                                       uint64_t file_size);

inline bool NeedsFooter(const Vmdk4Header& h) { return h.gd_offset == kGdAtEnd; }
// Byte offset of the 1536-byte footer (QEMU: file sectors * 512 - 1536).
Result<uint64_t> FooterOffset(uint64_t file_size);
// Checks footer marker, header magic and EOS marker ("Invalid footer") and
// returns the header copy in the footer, which takes precedence.
Result<Vmdk4Header> ValidateFooter(std::span<const uint8_t> footer);

// `header` is the one at offset 0; `footer_header` must be given (from
// ValidateFooter) when NeedsFooter(header).
// footer_lost: a GD_AT_END header without a valid footer gives a layout
// with footer_lost set (see SparseLayout) instead of "Invalid footer".
Result<SparseLayout> LayoutFromVmdk4(
    const Vmdk4Header& header, const std::optional<Vmdk4Header>& footer_header,
    uint64_t file_size, bool read_write, bool footer_lost = false);

// --- VMDK3 (vmfsSparse, COWD) -----------------------------------------------
Result<SparseLayout> LayoutFromVmdk3(const Vmdk3Header& h, uint64_t file_size);

// --- seSparse ----------------------------------------------------------------
// QEMU's strict checks: magic, version 2.1, grain size 8, GT size 64, no
// flags, zero reserved fields and padding.
Status CheckSeSparseConstHeader(const SeSparseConstHeader& h);
// Byte offset of the volatile header, checked to lie inside the file.
Result<uint64_t> SeSparseVolatileHeaderOffset(const SeSparseConstHeader& h,
                                              uint64_t file_size);
Status CheckSeSparseVolatileHeader(const SeSparseVolatileHeader& h);
// Expects a header that passed CheckSeSparseConstHeader (re-checked anyway).
Result<SparseLayout> LayoutFromSeSparse(const SeSparseConstHeader& h,
                                        uint64_t file_size);

// --- lookups -----------------------------------------------------------------
struct GrainLocation {
  uint32_t l1_index = 0;
  uint32_t l2_index = 0;
  uint64_t offset_in_cluster = 0;  // bytes
};
// Splits an extent-relative byte offset into GD/GT indices. Error (EIO) if
// the GD does not cover it (QEMU: l1_index >= l1_size).
Result<GrainLocation> LocateGrain(const SparseLayout& l, uint64_t offset);

}  // namespace coblk::vmdk
