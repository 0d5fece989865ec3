// Opening a VMDK disk: monolithic sparse files (with their embedded
// descriptor) and descriptor files naming extents, plus the backing chain
// from parentFileNameHint.
#pragma once

#include <memory>

#include "block/block_driver.h"
#include "drivers/vmdk/vmdk_node.h"

namespace coblk::vmdk {

// Options the vmdk format accepts (besides children's):
//   l2-cache-size    bytes of grain tables cached per extent (default 4 MiB;
//                    see kExtentsCacheBudget for descriptors of many extents)
//   confine-extents  on: extent files must lie in the descriptor's directory
//                    (no absolute paths, "..", or symlinks leading out),
//                    and so must every parentFileNameHint of the backing
//                    chain; every layer is opened with confine-extents=on
inline constexpr uint64_t kDefaultL2CacheBytes = 4 << 20;
// The grain-table caches of a descriptor's extents share one budget: the
// larger of l2-cache-size and this, split between the extents (each keeps at
// most l2-cache-size). A descriptor of thousands of sparse lines must not
// hold thousands of full caches (65,000 x 4 MiB).
inline constexpr uint64_t kExtentsCacheBudget = uint64_t{64} << 20;
// Bytes of grain-table cache each of `extents` extents gets.
inline uint64_t ExtentCacheBytes(uint64_t l2_cache_size, uint64_t extents) {
  const uint64_t budget = l2_cache_size > kExtentsCacheBudget ? l2_cache_size : kExtentsCacheBudget;
  const uint64_t share = budget / (extents ? extents : 1);
  return share < l2_cache_size ? share : l2_cache_size;
}
// Longest backing chain below an image. Opening is iterative, but a read of
// unallocated data descends one layer per level (coroutine frames resumed on
// the native stack when the bottom read completes), so the depth is bounded.
inline constexpr size_t kMaxBackingDepth = 256;

Task<Result<std::shared_ptr<BlockNode>>> OpenVmdk(const BlockDriver* driver, OpenContext& ctx);

}  // namespace coblk::vmdk
