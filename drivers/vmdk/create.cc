#include "drivers/vmdk/create.h"

#include <algorithm>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/strfmt.h"

namespace coblk::vmdk {

namespace {
constexpr size_t kPathMax = 4096;
uint64_t DivRoundUp(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }
}  // namespace

Status CheckCreateOptions(Subformat f, int64_t size_bytes, bool has_backing,
                          bool zeroed_grain) {
  if (size_bytes < 0 || size_bytes % 512 != 0)
    return MakeError(EINVAL, "Image size must be a multiple of 512 bytes");
  if (IsFlatSubformat(f) && has_backing)
    return MakeError(ENOTSUP, "Flat image can't have backing file");
  if (IsFlatSubformat(f) && zeroed_grain)
    return MakeError(ENOTSUP, "Flat image can't enable zeroed grain");
  return OkStatus();
}

Result<FilenameParts> DecomposeFilename(std::string_view filename) {
  if (filename.empty()) return MakeError(EINVAL, "No filename provided");
  if (filename.size() >= kPathMax)
    return MakeError(ENAMETOOLONG, "File name too long");
  size_t sep = filename.rfind('/');
  if (sep == std::string_view::npos) sep = filename.rfind('\\');
  if (sep == std::string_view::npos) sep = filename.rfind(':');
  FilenameParts p;
  std::string_view rest = filename;
  if (sep != std::string_view::npos) {
    p.path = std::string(filename.substr(0, sep + 1));
    rest = filename.substr(sep + 1);
  }
  size_t dot = rest.rfind('.');
  if (dot == std::string_view::npos) {
    p.prefix = std::string(rest);
  } else {
    p.prefix = std::string(rest.substr(0, dot));
    p.postfix = std::string(rest.substr(dot));
  }
  return p;
}

std::string ExtentFileName(const FilenameParts& p, int idx, bool flat,
                           bool split) {
  std::string rel;
  if (idx == 0) {
    rel = p.prefix + p.postfix;
  } else if (split) {
    rel = p.prefix + StrFormat("-%c%03d", flat ? 'f' : 's', idx) + p.postfix;
  } else {
    rel = p.prefix + "-flat" + p.postfix;
  }
  return p.path + rel;
}

CreatePlan PlanExtents(int64_t size_bytes, Subformat f) {
  CreatePlan plan;
  const bool split = IsSplitSubformat(f), flat = IsFlatSubformat(f);
  const int64_t extent_size = split ? kSplitExtentBytes : size_bytes;
  int64_t created = 0;
  if (!split && !flat) {
    plan.descriptor_is_extent = true;
    created = size_bytes;
  }
  while (created < size_bytes) {
    int64_t cur = std::min(size_bytes - created, extent_size);
    plan.extent_sizes.push_back(cur);
    created += cur;
  }
  return plan;
}

Result<SparseExtentPlan> PlanSparseExtent(int64_t size_bytes, bool compress,
                                          bool zeroed_grain) {
  if (size_bytes < 0) return MakeError(EINVAL, "Invalid image size");
  SparseExtentPlan p;
  Vmdk4Header& h = p.header;
  h.version = compress ? 3 : zeroed_grain ? 2 : 1;
  h.flags = kFlagRgd | kFlagNlDetect |
            (compress ? kFlagCompress | kFlagMarker : 0) |
            (zeroed_grain ? kFlagZeroGrain : 0);
  h.compress_algorithm = compress ? kCompressionDeflate : 0;
  h.capacity = static_cast<uint64_t>(size_bytes) / kSectorSize;
  h.granularity = 128;
  h.num_gtes_per_gt = 512;
  const uint64_t grains = DivRoundUp(h.capacity, h.granularity);
  p.gt_sectors = DivRoundUp(h.num_gtes_per_gt * 4, kSectorSize);
  p.gt_count = DivRoundUp(grains, h.num_gtes_per_gt);
  p.gd_sectors = DivRoundUp(p.gt_count * 4, kSectorSize);
  h.desc_offset = 1;
  h.desc_size = 20;
  h.rgd_offset = h.desc_offset + h.desc_size;
  // capacity < 2^55, so these cannot overflow 64 bits.
  const uint64_t meta = p.gd_sectors + p.gt_sectors * p.gt_count;
  h.gd_offset = h.rgd_offset + meta;
  h.grain_offset = DivRoundUp(h.gd_offset + meta, h.granularity) * h.granularity;
  h.check_bytes = kCheckBytes;
  // GD entries are 32-bit sector numbers.
  if (h.grain_offset >= kExtentMaxSectors)
    return MakeError(EFBIG, "Image size too big for a sparse VMDK extent");
  return p;
}

std::vector<uint8_t> BuildGrainDirectory(const SparseExtentPlan& plan,
                                         bool redundant) {
  std::vector<uint8_t> gd(plan.gd_sectors * kSectorSize, 0);
  uint64_t sector = (redundant ? plan.header.rgd_offset : plan.header.gd_offset) +
                    plan.gd_sectors;
  for (uint64_t i = 0; i < plan.gt_count; ++i, sector += plan.gt_sectors)
    StoreLe32(gd, i * 4, static_cast<uint32_t>(sector));
  return gd;
}

}  // namespace coblk::vmdk
