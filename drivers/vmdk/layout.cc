#include "drivers/vmdk/layout.h"

#include <algorithm>
#include <cinttypes>
#include <limits>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/strfmt.h"

namespace coblk::vmdk {

namespace {

constexpr uint64_t kMaxCapacitySectors =
    static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / kSectorSize;

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

uint64_t FileSectors(uint64_t file_size) {
  // QEMU rounds the file length up to whole sectors.
  return file_size / kSectorSize + (file_size % kSectorSize != 0);
}

Status CheckClusterSectors(uint64_t cluster_sectors) {
  if (cluster_sectors > kMaxClusterSectors) {
    // 0x200000 * 512 bytes = 1 GiB for one grain is unrealistic.
    return MakeError(EFBIG, "Invalid granularity, image may be corrupt");
  }
  if (!IsPowerOfTwo(cluster_sectors))
    return MakeError(EINVAL, "Invalid granularity, image may be corrupt");
  return OkStatus();
}

Status CheckL1Size(uint64_t l1_size) {
  // QEMU: 32 Mi entries cover 8 TB at the smallest grain/GT sizes.
  if (l1_size > kMaxL1Size) return MakeError(EFBIG, "L1 size too big");
  return OkStatus();
}

Status CheckCapacity(uint64_t sectors) {
  if (sectors > kMaxCapacitySectors)
    return MakeError(EFBIG, StrFormat("Extent capacity too big: %" PRIu64
                                      " sectors", sectors));
  return OkStatus();
}

// A table of `bytes` bytes at byte offset `offset` (given in `units` of
// `unit_bytes`) must lie inside the file and after the header sector.
Result<uint64_t> CheckTable(const char* what, uint64_t offset_units,
                            uint64_t unit_bytes, uint64_t bytes,
                            uint64_t file_size) {
  uint64_t offset = 0, end = 0;
  if (!CheckedMul(offset_units, unit_bytes, &offset) ||
      !CheckedAdd(offset, bytes, &end)) {
    return MakeError(EINVAL, StrFormat("%s offset out of range", what));
  }
  if (offset < kSectorSize)
    return MakeError(EINVAL, StrFormat("%s at offset %" PRIu64
                                       " overlaps the header", what, offset));
  if (end > file_size)
    return MakeError(EINVAL,
                     StrFormat("%s at offset %" PRIu64 " (%" PRIu64
                               " bytes) is beyond the end of the file (%" PRIu64
                               " bytes)", what, offset, bytes, file_size));
  return offset;
}

uint64_t DivRoundUp(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

uint64_t RoundUp(uint64_t a, uint64_t b) { return DivRoundUp(a, b) * b; }

}  // namespace

std::optional<uint64_t> WrappedDescriptorOffset(const Vmdk4Header& h) {
  if (h.capacity == 0 && h.desc_offset != 0) return h.desc_offset;
  return std::nullopt;
}

Result<ByteRange> Vmdk4DescriptorRange(const Vmdk4Header& h,
                                       uint64_t file_size) {
  if (auto sectors = WrappedDescriptorOffset(h)) {
    uint64_t off = 0;
    if (!CheckedMul(*sectors, kSectorSize, &off) || off >= file_size)
      return MakeError(EINVAL, "Descriptor offset out of range");
    return ByteRange{off, std::min(file_size - off, kMaxDescriptorBytes)};
  }
  if (file_size <= kEmbeddedDescriptorOffset)
    return ByteRange{kEmbeddedDescriptorOffset, 0};
  return ByteRange{kEmbeddedDescriptorOffset,
                   std::min(file_size - kEmbeddedDescriptorOffset,
                            kEmbeddedDescriptorBytes)};
}

Result<uint64_t> FooterOffset(uint64_t file_size) {
  const uint64_t rounded = FileSectors(file_size) * kSectorSize;
  // Header sector + footer; anything smaller cannot hold a footer.
  if (rounded < kSectorSize + kFooterBytes)
    return MakeError(EINVAL, "Invalid footer");
  return rounded - kFooterBytes;
}

Result<Vmdk4Header> ValidateFooter(std::span<const uint8_t> f) {
  if (f.size() < kFooterBytes) return MakeError(EINVAL, "Invalid footer");
  auto marker = f.subspan(0, kSectorSize);
  auto header_sector = f.subspan(kSectorSize, kSectorSize);
  auto eos = f.subspan(2 * kSectorSize, kSectorSize);
  if (LoadBe32(header_sector, 0) != kVmdk4Magic ||
      LoadLe32(marker, 8) != 0 ||
      LoadLe32(marker, 12) != static_cast<uint32_t>(MarkerType::kFooter) ||
      LoadLe64(eos, 0) != 0 || LoadLe32(eos, 8) != 0 ||
      LoadLe32(eos, 12) != static_cast<uint32_t>(MarkerType::kEndOfStream)) {
    return MakeError(EINVAL, "Invalid footer");
  }
  return Vmdk4Header::Decode(header_sector);
}

Result<SparseLayout> LayoutFromVmdk4(
    const Vmdk4Header& header, const std::optional<Vmdk4Header>& footer_header,
    uint64_t file_size, bool read_write, bool footer_lost) {
  SparseLayout l;
  l.format = ExtentFormat::kVmdk4;
  Vmdk4Header h = header;
  if (NeedsFooter(header) && !footer_header && footer_lost) {
    l.gd_at_end = true;
    l.footer_lost = true;
  } else if (NeedsFooter(header)) {
    if (!footer_header) return MakeError(EINVAL, "Invalid footer");
    h = *footer_header;  // the footer takes precedence over the header
    l.gd_at_end = true;
    if (h.gd_offset == kGdAtEnd)
      return MakeError(EINVAL, "Invalid footer");
  }

  l.compressed = h.compress_algorithm == kCompressionDeflate;
  if (h.version > 3)
    return MakeError(ENOTSUP,
                     StrFormat("Unsupported VMDK version %" PRIu32, h.version));
  if (h.version == 3 && read_write && !l.compressed) {
    // Version 3 adds changed block tracking; readers may treat it as 1.
    return MakeError(EINVAL, "VMDK version 3 must be read only");
  }
  if (h.num_gtes_per_gt > kMaxL2Size)
    return MakeError(EINVAL, "L2 table size too big");
  if (h.num_gtes_per_gt == 0 || h.granularity == 0)
    return MakeError(EINVAL, "L1 entry size is invalid");
  COBLK_RETURN_IF_ERROR(CheckClusterSectors(h.granularity));
  COBLK_RETURN_IF_ERROR(CheckCapacity(h.capacity));
  l.l1_entry_sectors = h.num_gtes_per_gt * h.granularity;  // <= 2^30
  const uint64_t l1_size = DivRoundUp(h.capacity, l.l1_entry_sectors);
  COBLK_RETURN_IF_ERROR(CheckL1Size(l1_size));

  if (FileSectors(file_size) < h.grain_offset) {
    uint64_t bytes = 0;
    if (CheckedMul(h.grain_offset, kSectorSize, &bytes))
      return MakeError(EINVAL, StrFormat("File truncated, expecting at least "
                                         "%" PRIu64 " bytes", bytes));
    return MakeError(EINVAL, StrFormat("File truncated, expecting at least "
                                       "%" PRIu64 " sectors", h.grain_offset));
  }

  l.version = h.version;
  l.sectors = h.capacity;
  l.cluster_sectors = h.granularity;
  l.l1_size = static_cast<uint32_t>(l1_size);
  l.l2_size = h.num_gtes_per_gt;
  l.entry_size = 4;
  l.grain_start_sector = h.grain_offset;
  l.has_marker = (h.flags & kFlagMarker) != 0;
  l.has_zero_grain = (h.flags & kFlagZeroGrain) != 0;
  if (l.footer_lost) {
    // No directory: nothing is read at these offsets (see SparseLayout).
  } else if (l.l1_size != 0) {
    auto gd = CheckTable("Grain directory", h.gd_offset, kSectorSize,
                         l.l1_table_bytes(), file_size);
    if (!gd) return std::unexpected(gd.error());
    l.l1_table_offset = *gd;
    if ((h.flags & kFlagRgd) && h.rgd_offset != 0) {
      auto rgd = CheckTable("Redundant grain directory", h.rgd_offset,
                            kSectorSize, l.l1_table_bytes(), file_size);
      if (!rgd) return std::unexpected(rgd.error());
      l.l1_backup_offset = *rgd;
    }
  } else {
    // Empty extent: nothing is ever read from the GD, keep QEMU's values.
    uint64_t off = 0;
    if (CheckedMul(h.gd_offset, kSectorSize, &off)) l.l1_table_offset = off;
  }
  l.next_cluster_sector = RoundUp(FileSectors(file_size), l.cluster_sectors);
  return l;
}

// VMDK3 and seSparse headers give the directory size and the disk size
// separately: every grain of the disk must have a directory entry, or
// every lookup past the directory fails (and check reports each grain).
Status CheckDirectoryCoversDisk(const SparseLayout& l) {
  // l1_size < 2^25 and l1_entry_sectors <= 2^33: no overflow.
  const uint64_t covered = uint64_t{l.l1_size} * l.l1_entry_sectors;
  if (covered < l.sectors)
    return MakeError(EINVAL, StrFormat("Grain directory too small: %" PRIu32
                                       " entries cover %" PRIu64 " of %" PRIu64 " sectors",
                                       l.l1_size, covered, l.sectors));
  return OkStatus();
}

Result<SparseLayout> LayoutFromVmdk3(const Vmdk3Header& h, uint64_t file_size) {
  // QEMU has no check here and divides by a zero granularity.
  if (h.granularity == 0)
    return MakeError(EINVAL, "Invalid granularity, image may be corrupt");
  COBLK_RETURN_IF_ERROR(CheckClusterSectors(h.granularity));
  COBLK_RETURN_IF_ERROR(CheckL1Size(h.l1dir_size));
  SparseLayout l;
  l.format = ExtentFormat::kVmdk3;
  l.version = h.version;
  l.sectors = h.disk_sectors;
  l.cluster_sectors = h.granularity;
  l.l1_size = h.l1dir_size;
  l.l2_size = kVmdk3L2Size;
  l.entry_size = 4;
  l.l1_entry_sectors = uint64_t{kVmdk3L2Size} * h.granularity;
  if (l.l1_size != 0) {
    auto gd = CheckTable("Grain directory", h.l1dir_offset, kSectorSize,
                         l.l1_table_bytes(), file_size);
    if (!gd) return std::unexpected(gd.error());
    l.l1_table_offset = *gd;
  } else {
    l.l1_table_offset = uint64_t{h.l1dir_offset} * kSectorSize;
  }
  COBLK_RETURN_IF_ERROR(CheckDirectoryCoversDisk(l));
  l.next_cluster_sector = RoundUp(FileSectors(file_size), l.cluster_sectors);
  return l;
}

Status CheckSeSparseConstHeader(const SeSparseConstHeader& h) {
  if (h.magic != kSeSparseConstMagic)
    return MakeError(EINVAL, StrFormat("Bad const header magic: 0x%016" PRIx64,
                                       h.magic));
  if (h.version != kSeSparseVersion)
    return MakeError(ENOTSUP,
                     StrFormat("Unsupported version: 0x%016" PRIx64, h.version));
  if (h.grain_size != 8)
    return MakeError(ENOTSUP, StrFormat("Unsupported grain size: %" PRIu64,
                                        h.grain_size));
  if (h.grain_table_size != 64)
    return MakeError(ENOTSUP, StrFormat("Unsupported grain table size: %" PRIu64,
                                        h.grain_table_size));
  if (h.flags != 0)
    return MakeError(ENOTSUP,
                     StrFormat("Unsupported flags: 0x%016" PRIx64, h.flags));
  if (h.reserved1 != 0 || h.reserved2 != 0 || h.reserved3 != 0 ||
      h.reserved4 != 0) {
    return MakeError(
        ENOTSUP,
        StrFormat("Unsupported reserved bits: 0x%016" PRIx64 " 0x%016" PRIx64
                  " 0x%016" PRIx64 " 0x%016" PRIx64,
                  h.reserved1, h.reserved2, h.reserved3, h.reserved4));
  }
  if (!h.pad_is_zero)
    return MakeError(ENOTSUP, "Unsupported non-zero const header padding");
  return OkStatus();
}

Result<uint64_t> SeSparseVolatileHeaderOffset(const SeSparseConstHeader& h,
                                              uint64_t file_size) {
  return CheckTable("Volatile header", h.volatile_header_offset, kSectorSize,
                    SeSparseVolatileHeader::kEncodedSize, file_size);
}

Status CheckSeSparseVolatileHeader(const SeSparseVolatileHeader& h) {
  if (h.magic != kSeSparseVolatileMagic)
    return MakeError(EINVAL, StrFormat("Bad volatile header magic: 0x%016" PRIx64,
                                       h.magic));
  if (h.replay_journal != 0)
    return MakeError(ENOTSUP, "Image is dirty, Replaying journal not supported");
  if (!h.pad_is_zero)
    return MakeError(ENOTSUP, "Unsupported non-zero volatile header padding");
  return OkStatus();
}

Result<SparseLayout> LayoutFromSeSparse(const SeSparseConstHeader& h,
                                        uint64_t file_size) {
  COBLK_RETURN_IF_ERROR(CheckSeSparseConstHeader(h));
  COBLK_RETURN_IF_ERROR(CheckCapacity(h.capacity));
  uint64_t gd_bytes = 0;
  if (!CheckedMul(h.grain_dir_size, kSectorSize, &gd_bytes))
    return MakeError(EFBIG, "L1 size too big");
  const uint64_t l1_size = gd_bytes / 8;
  COBLK_RETURN_IF_ERROR(CheckL1Size(l1_size));

  SparseLayout l;
  l.format = ExtentFormat::kSeSparse;
  l.version = 2;
  l.sectors = h.capacity;
  l.cluster_sectors = h.grain_size;                       // 8
  l.l1_size = static_cast<uint32_t>(l1_size);
  l.l2_size = static_cast<uint32_t>(h.grain_table_size * kSectorSize / 8);
  l.entry_size = 8;
  l.l1_entry_sectors = uint64_t{l.l2_size} * l.cluster_sectors;
  if (l.l1_size != 0) {
    auto gd = CheckTable("Grain directory", h.grain_dir_offset, kSectorSize,
                         l.l1_table_bytes(), file_size);
    if (!gd) return std::unexpected(gd.error());
    l.l1_table_offset = *gd;
  }
  // Grain tables are preallocated, so the whole region must be in the file.
  uint64_t gt_bytes = 0;
  if (!CheckedMul(h.grain_tables_size, kSectorSize, &gt_bytes))
    return MakeError(EINVAL, "Grain tables offset out of range");
  if (gt_bytes != 0) {
    auto gt = CheckTable("Grain tables", h.grain_tables_offset, kSectorSize,
                         gt_bytes, file_size);
    if (!gt) return std::unexpected(gt.error());
  }
  // Grains are appended lazily: only require the region to be addressable.
  uint64_t grains_end = 0, grains_end_bytes = 0;
  if (!CheckedAdd(h.grains_offset, h.grains_size, &grains_end) ||
      !CheckedMul(grains_end, kSectorSize, &grains_end_bytes) ||
      h.grains_offset == 0) {
    return MakeError(EINVAL, "Grains offset out of range");
  }
  l.sesparse_l2_tables_offset = h.grain_tables_offset;
  l.sesparse_l2_tables_sectors = h.grain_tables_size;
  l.sesparse_clusters_offset = h.grains_offset;
  l.sesparse_clusters_sectors = h.grains_size;
  COBLK_RETURN_IF_ERROR(CheckDirectoryCoversDisk(l));
  l.next_cluster_sector = RoundUp(FileSectors(file_size), l.cluster_sectors);
  return l;
}

Result<GrainLocation> LocateGrain(const SparseLayout& l, uint64_t offset) {
  if (l.cluster_sectors == 0 || l.l1_entry_sectors == 0 || l.l2_size == 0)
    return MakeError(EIO, "Invalid extent layout");
  const uint64_t sector = offset / kSectorSize;
  const uint64_t l1_index = sector / l.l1_entry_sectors;
  if (l1_index >= l.l1_size)
    return MakeError(EIO, StrFormat("Offset %" PRIu64
                                    " is not covered by the grain directory",
                                    offset));
  GrainLocation loc;
  loc.l1_index = static_cast<uint32_t>(l1_index);
  loc.l2_index = static_cast<uint32_t>((sector / l.cluster_sectors) % l.l2_size);
  loc.offset_in_cluster = offset % l.cluster_bytes();
  return loc;
}

}  // namespace coblk::vmdk
