// The "vmdk" format driver: registration, probing and open. The on-disk
// logic lives in extent.cc (grain lookup and reads), vmdk_node.cc (request
// handling) and vmdk_open.cc (descriptors, extents, backing).
#include <memory>

#include "block/block_driver.h"
#include "drivers/vmdk/format.h"
#include "drivers/vmdk/vmdk_create.h"
#include "drivers/vmdk/vmdk_open.h"

namespace coblk::vmdk {

class VmdkDriver final : public BlockDriver {
 public:
  std::string_view format_name() const override { return "vmdk"; }
  int probe(std::span<const uint8_t> first_bytes, std::string_view) const override {
    return ProbeScore(first_bytes);
  }
  bool supports_backing() const override { return true; }
  const std::vector<CreateOption>& create_options() const override { return VmdkCreateOptions(); }
  Task<Status> co_create(const std::string& filename, Options& opts, EventLoop& loop) const override {
    return CreateVmdk(filename, opts, loop);
  }
  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    return OpenVmdk(this, ctx);
  }
};

}  // namespace coblk::vmdk

using VmdkDriver = coblk::vmdk::VmdkDriver;
COBLK_REGISTER_BLOCK_DRIVER(VmdkDriver)
