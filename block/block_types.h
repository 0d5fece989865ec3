// Plain types shared by the block layer and drivers: request flags, block
// status, limits, check results, image info. Units are bytes, as in QEMU.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace coblk {

class BlockNode;

// Request flags (QEMU's BdrvRequestFlags).
enum ReqFlags : uint32_t {
  kReqNone = 0,
  kReqMayUnmap = 1u << 0,     // write_zeroes may deallocate
  kReqNoFallback = 1u << 1,   // write_zeroes must not fall back to writing a buffer
  kReqFua = 1u << 2,          // force unit access
  // Reads only, set by the generic layer on a driver's read whose alignment
  // padding runs past the end of the node. QEMU reads past a node's end as
  // zeros; coblk refuses it, except that a read carrying this flag and
  // starting inside the node may run past its end, that part reading as
  // zeros. A filter that passes its read flags on to its child (blkdebug,
  // raw) thereby lets the child accept the padded read it forwards.
  kReqPaddedPastEnd = 1u << 3,
};
// Every public flag; the generic layer drops any other bit a caller passes
// (bits above these are reserved for the generic layer's own use).
inline constexpr uint32_t kReqPublicFlags = kReqMayUnmap | kReqNoFallback | kReqFua;

// Block status bits (QEMU's BDRV_BLOCK_*).
enum BlockStatusBits : uint32_t {
  kStatusData = 1u << 0,         // reads return data from this layer
  kStatusZero = 1u << 1,         // reads return zeroes
  kStatusOffsetValid = 1u << 2,  // map/file are valid
  kStatusAllocated = 1u << 3,    // this layer determines the content
  kStatusEof = 1u << 4,          // the range reaches the end of the node
  kStatusRaw = 1u << 5,          // (internal) pass the query to `file` at `map`
  // (internal) QEMU's BDRV_BLOCK_RECURSE: set by a driver beside
  // kStatusData and kStatusOffsetValid when `file`'s own status at `map` may
  // refine the answer (a hole in `file` reads as zeroes, so that part
  // becomes kStatusZero). The generic layer asks `file` only then, and only
  // for want_zero queries; otherwise a data answer stands as the driver
  // gave it. Set it where the driver's layout says nothing about zeroes
  // and the file's holes do (QEMU: vmdk's flat extents, qcow2 with
  // preallocated metadata). A format that allocates on write (sparse vmdk
  // grains) leaves it out, as QEMU does: such a cluster is data even where
  // its file has a hole, and the lookup would cost a seek per answer.
  // Callers never see this bit.
  kStatusRecurse = 1u << 6,
};

struct BlockStatus {
  uint32_t status = 0;
  int64_t pnum = 0;             // bytes from offset that share this status
  int64_t map = 0;              // offset in `file` when kStatusOffsetValid
  BlockNode* file = nullptr;    // node that holds the data at `map`
};

struct BlockLimits {
  uint32_t request_alignment = 1;       // offsets/lengths a driver sees are multiples
  uint32_t pwrite_zeroes_alignment = 0; // preferred write_zeroes granularity (0 = none)
  uint64_t max_pwrite_zeroes = 0;       // 0 = unlimited
  uint64_t max_transfer = 0;            // 0 = unlimited; requests are split above this
  uint32_t min_mem_alignment = 1;       // buffer address alignment the node needs
  uint32_t opt_mem_alignment = 4096;
  uint64_t pdiscard_alignment = 0;
};

// What co_check may repair (QEMU's BdrvCheckMode): 0 = only check;
// leaks = reclaim space no metadata references; errors = also fix
// corruptions. qemu-img check -r leaks = kCheckFixLeaks, -r all = both.
enum CheckFix : uint32_t {
  kCheckFixLeaks = 1,
  kCheckFixErrors = 2,
  kCheckFixAll = kCheckFixLeaks | kCheckFixErrors,
};

// Result of co_check, QEMU's BdrvCheckResult.
struct CheckResult {
  int64_t corruptions = 0;
  int64_t leaks = 0;
  int64_t check_errors = 0;
  int64_t corruptions_fixed = 0;
  int64_t leaks_fixed = 0;
  int64_t image_end_offset = 0;
  int64_t allocated_clusters = 0;
  int64_t total_clusters = 0;
  // -1: the driver does not compute it (QEMU's vmdk does not; qcow2 does).
  int64_t fragmented_clusters = -1;
  int64_t compressed_clusters = -1;
  std::vector<std::string> messages;  // human-readable findings
};

// A tree of key/value facts for `info` (QEMU's ImageInfoSpecific). Children
// are named objects, lists are indexed children.
struct InfoTree {
  std::vector<std::pair<std::string, std::string>> values;   // printed as strings
  std::vector<std::pair<std::string, InfoTree>> children;
  bool is_list = false;
};

struct ImageInfo {
  std::string filename;
  std::string format;
  int64_t virtual_size = 0;
  int64_t actual_size = -1;    // bytes allocated on the host, -1 if unknown
  int64_t cluster_size = 0;    // 0 if not applicable
  std::string backing_filename;
  std::string backing_format;
  bool encrypted = false;
  InfoTree specific;           // format-specific info ("Format specific information")
};

enum class PreallocMode { kOff, kMetadata, kFalloc, kFull };

}  // namespace coblk
