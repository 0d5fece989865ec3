// A driver plugin for LoadDriverPlugin tests: format "testplugin", a
// read-only node of the given size whose bytes are all 0x5A. Its undefined
// coblk symbols resolve against the test binary (built with ENABLE_EXPORTS).
#include "block/plugin.h"

namespace {

class PluginNode : public coblk::BlockNode {
 public:
  using BlockNode::BlockNode;

 protected:
  coblk::Task<coblk::Status> co_preadv(int64_t, int64_t bytes, coblk::IoVector& qiov,
                                       uint32_t) override {
    qiov.memset(0, 0x5A, static_cast<size_t>(bytes));
    co_return coblk::OkStatus();
  }
};

class PluginDriver : public coblk::BlockDriver {
 public:
  std::string_view format_name() const override { return "testplugin"; }
  bool has_file_child() const override { return false; }
  coblk::Task<coblk::Result<std::shared_ptr<coblk::BlockNode>>> open(
      coblk::OpenContext& ctx) const override {
    auto size = ctx.options.get_size("size", 4096);
    if (!size) co_return std::unexpected(size.error());
    auto node = std::make_shared<PluginNode>(this, ctx.loop);
    node->set_size(static_cast<int64_t>(*size));
    co_return node;
  }
};

}  // namespace

COBLK_PLUGIN_DRIVERS(PluginDriver)
