// seSparse grain directory / grain table entry decoding (QEMU's
// get_cluster_offset for seSparse extents).
//
// GD entry: 0 = no grain table; otherwise the top 32 bits must be 0x10000000
// and the low 32 bits are a grain-table index into the preallocated GT area.
// GT entry, by top nibble:
//   0x0  unallocated (whole entry must be 0) - read from backing file
//   0x1  unmapped by the guest - reads as zeros
//   0x2  zero grain
//   0x3  allocated; grain index = bits 48..59 | bits 0..47 << 12
//   else corrupt
#pragma once

#include <cstdint>

#include "drivers/vmdk/layout.h"
#include "util/status.h"

namespace coblk::vmdk {

struct SeSparseGdLookup {
  bool allocated = false;   // false: every grain of this GT is unallocated
  uint64_t gt_offset = 0;   // bytes, valid when allocated
};
// Errors (EIO) for a malformed entry or a GT index outside the GT area / file.
Result<SeSparseGdLookup> DecodeSeSparseGdEntry(const SparseLayout& l,
                                               uint64_t entry);

enum class GrainState { kUnallocated, kZero, kAllocated };
struct SeSparseGrain {
  GrainState state = GrainState::kUnallocated;
  uint64_t offset = 0;  // bytes, valid when kAllocated
};
// Errors (EIO) for a malformed entry or a grain outside the grains area.
Result<SeSparseGrain> DecodeSeSparseGtEntry(const SparseLayout& l,
                                            uint64_t entry);

// Encoders for tests and tools.
inline uint64_t EncodeSeSparseGdEntry(uint32_t gt_index) {
  return 0x1000000000000000ULL | gt_index;
}
inline uint64_t EncodeSeSparseAllocatedGte(uint64_t grain_index) {
  return 0x3000000000000000ULL | ((grain_index & 0xfff) << 48) |
         ((grain_index >> 12) & 0x0000ffffffffffffULL);
}

}  // namespace coblk::vmdk
