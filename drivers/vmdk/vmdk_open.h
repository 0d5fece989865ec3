// Opening a VMDK disk: monolithic sparse files (with their embedded
// descriptor) and descriptor files naming extents, plus the backing chain
// from parentFileNameHint.
#pragma once

#include <memory>

#include "block/block_driver.h"
#include "drivers/vmdk/vmdk_node.h"

namespace coblk::vmdk {

// Options the vmdk format accepts (besides children's):
//   l2-cache-size    bytes of grain tables cached per extent (default 4 MiB)
//   confine-extents  on: extent files must lie in the descriptor's directory
//                    (no absolute paths, "..", or symlinks leading out)
inline constexpr uint64_t kDefaultL2CacheBytes = 4 << 20;

Task<Result<std::shared_ptr<BlockNode>>> OpenVmdk(const BlockDriver* driver, OpenContext& ctx);

}  // namespace coblk::vmdk
