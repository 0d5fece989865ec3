// On-disk layout of "exsparse", the example sparse image format: a template
// for prototyping a new format as a coblk plugin (copy this folder).
//
//   offset 0          header (one cluster; the backing file name follows it)
//   l1_offset         L1 table: l1_entries x u64, each the offset of an L2
//                     table or 0 (none yet); sized at create for
//                     l1_capacity entries so the image can grow in place
//   anywhere after    L2 tables (one cluster each: cluster_size/8 x u64)
//                     and data clusters, appended at the end of the file
//
// An L2 entry is
//   0              unallocated: reads fall through to the backing file, or
//                  read zeros without one
//   1 (kZeroEntry) reads zeros, whatever the backing file holds
//   otherwise      the cluster-aligned file offset of the cluster's data
//
// All integers are little-endian. Crash safety comes from ordering, not
// journalling: a data cluster (or a new L2 table) is written and flushed
// before the table entry that points at it, so a table never points at
// garbage. Clusters orphaned by a crash or by write_zeroes/discard are
// leaks, which `check` reports (they are never reused).
#pragma once

#include <cstdint>

namespace exsparse {

inline constexpr char kMagic[8] = {'E', 'X', 'S', 'P', 'A', 'R', 'S', 'E'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kMinClusterBits = 12;  // 4 KiB
inline constexpr uint32_t kMaxClusterBits = 21;  // 2 MiB
inline constexpr uint64_t kZeroEntry = 1;
inline constexpr uint32_t kMaxBackingName = 1024;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t cluster_bits;
  uint64_t size;           // virtual size in bytes, a multiple of 512
  uint64_t l1_offset;      // cluster-aligned
  uint32_t l1_entries;     // L1 entries in use: enough to map `size`
  uint32_t l1_capacity;    // entries the L1 area holds (for resize)
  uint32_t backing_len;    // bytes of backing file name after the header
  uint32_t reserved;
};
static_assert(sizeof(Header) == 48);

}  // namespace exsparse
