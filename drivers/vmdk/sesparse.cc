#include "drivers/vmdk/sesparse.h"

#include <cinttypes>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/strfmt.h"

namespace coblk::vmdk {

Result<SeSparseGdLookup> DecodeSeSparseGdEntry(const SparseLayout& l,
                                               uint64_t entry) {
  if (l.format != ExtentFormat::kSeSparse || l.l2_table_bytes() == 0)
    return MakeError(EINVAL, "Not a seSparse extent");
  if (entry == 0) return SeSparseGdLookup{};
  // Top 32 bits must be exactly 0x10000000: at most 64 TB / 16 MB tables.
  if ((entry & 0xffffffff00000000ULL) != 0x1000000000000000ULL)
    return MakeError(EIO, StrFormat("Invalid seSparse grain directory entry "
                                    "0x%016" PRIx64, entry));
  const uint64_t index = entry & 0xffffffffULL;
  const uint64_t gt_sectors = l.l2_table_bytes() / kSectorSize;
  // index < tables in the GT area (checked to be inside the file at open).
  if (index >= l.sesparse_l2_tables_sectors / gt_sectors)
    return MakeError(EIO, StrFormat("seSparse grain table index %" PRIu64
                                    " out of range", index));
  // Cannot overflow: the GT area end * 512 was checked at open.
  SeSparseGdLookup r;
  r.allocated = true;
  r.gt_offset = (l.sesparse_l2_tables_offset + index * gt_sectors) * kSectorSize;
  return r;
}

Result<SeSparseGrain> DecodeSeSparseGtEntry(const SparseLayout& l,
                                            uint64_t entry) {
  if (l.format != ExtentFormat::kSeSparse || l.cluster_sectors == 0)
    return MakeError(EINVAL, "Not a seSparse extent");
  SeSparseGrain g;
  switch (entry >> 60) {
    case 0x0:
      if (entry != 0)
        return MakeError(EIO, StrFormat("Invalid seSparse grain table entry "
                                        "0x%016" PRIx64, entry));
      g.state = GrainState::kUnallocated;
      return g;
    case 0x1:  // unmapped by the guest (SCSI UNMAP): reads as zeros
    case 0x2:  // zero grain
      g.state = GrainState::kZero;
      return g;
    case 0x3: {
      const uint64_t index = ((entry & 0x0fff000000000000ULL) >> 48) |
                             ((entry & 0x0000ffffffffffffULL) << 12);
      uint64_t rel = 0, sector = 0, end = 0, bytes = 0;
      if (!CheckedMul(index, l.cluster_sectors, &rel) ||
          !CheckedAdd(rel, l.cluster_sectors, &end) ||
          end > l.sesparse_clusters_sectors ||
          !CheckedAdd(l.sesparse_clusters_offset, rel, &sector) ||
          !CheckedMul(sector, kSectorSize, &bytes)) {
        return MakeError(EIO, StrFormat("seSparse grain index %" PRIu64
                                        " out of range", index));
      }
      g.state = GrainState::kAllocated;
      g.offset = bytes;
      return g;
    }
    default:
      return MakeError(EIO, StrFormat("Invalid seSparse grain table entry "
                                      "0x%016" PRIx64, entry));
  }
}

}  // namespace coblk::vmdk
