// Image creation (qemu-img create -f vmdk): every subformat and create
// option QEMU has, with its defaults, validation and file naming.
#pragma once

#include <string>
#include <vector>

#include "block/block_driver.h"

namespace coblk::vmdk {

const std::vector<CreateOption>& VmdkCreateOptions();
Task<Status> CreateVmdk(const std::string& filename, Options& opts, EventLoop& loop);

}  // namespace coblk::vmdk
