// Pure planning for image creation (QEMU's vmdk_co_do_create and
// vmdk_init_extent): option checks, extent file names and sizes, and the
// exact header / grain directories of a new sparse extent.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "drivers/vmdk/descriptor.h"
#include "drivers/vmdk/format.h"
#include "util/status.h"

namespace coblk::vmdk {

// VMDK has a constant split size for twoGbMaxExtent* subformats.
inline constexpr int64_t kSplitExtentBytes = 0x80000000;

// "Flat image can't have backing file" / "Flat image can't enable zeroed
// grain" (ENOTSUP); negative or unaligned sizes: "Image size must be a
// multiple of 512 bytes" (EINVAL).
Status CheckCreateOptions(Subformat f, int64_t size_bytes, bool has_backing,
                          bool zeroed_grain);

// filename_decompose(): "dir/name.vmdk" -> {"dir/", "name", ".vmdk"}.
struct FilenameParts {
  std::string path, prefix, postfix;
};
Result<FilenameParts> DecomposeFilename(std::string_view filename);
// idx 0: the descriptor file ("name.vmdk"); split extents "name-s001.vmdk"
// / "name-f001.vmdk"; the monolithicFlat data file "name-flat.vmdk".
std::string ExtentFileName(const FilenameParts& p, int idx, bool flat,
                           bool split);

struct CreatePlan {
  // monolithicSparse / streamOptimized: the descriptor file is the single
  // sparse extent of `size` bytes; otherwise it is a plain text file.
  bool descriptor_is_extent = false;
  std::vector<int64_t> extent_sizes;  // extents 1..N (bytes)
};
CreatePlan PlanExtents(int64_t size_bytes, Subformat f);

// A new sparse extent: header plus where the two GDs and the GTs go.
struct SparseExtentPlan {
  Vmdk4Header header;
  uint64_t gd_sectors = 0;  // sectors per grain directory
  uint64_t gt_sectors = 0;  // sectors per grain table (4)
  uint64_t gt_count = 0;
  uint64_t file_bytes() const { return header.grain_offset * kSectorSize; }
};
// Grain 64 KiB (128 sectors), 512 GTEs per GT, descriptor at sector 1 (20
// sectors), redundant GD at 21, then its GTs, then the GD and its GTs.
// EFBIG if the metadata would not be addressable by 32-bit sectors.
Result<SparseExtentPlan> PlanSparseExtent(int64_t size_bytes, bool compress,
                                          bool zeroed_grain);
// gd_sectors * 512 bytes of little-endian GT sector numbers for the primary
// (redundant = false, at header.gd_offset) or redundant (at rgd_offset) GD.
std::vector<uint8_t> BuildGrainDirectory(const SparseExtentPlan& plan,
                                         bool redundant);

}  // namespace coblk::vmdk
