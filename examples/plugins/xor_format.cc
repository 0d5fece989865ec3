// Example driver plugin: format "xor", an image whose bytes are stored
// XOR-ed with a key in its file child — a template for prototyping a new
// image format outside the coblk tree.
//
// Build: part of the coblk build (build/lib/coblk-plugin-xor.so), or
//   g++ -std=c++23 -shared -fPIC -I<coblk> xor_format.cc -o xor.so
// Use:
//   COBLK_PLUGINS=build/lib/coblk-plugin-xor.so
//     coblk-io --image-opts driver=xor,key=90,file.filename=disk.img -c "write 0 4k"
// or from an embedding program: coblk::LoadDriverPlugin("xor.so").
#include <vector>

#include "block/plugin.h"

namespace {

class XorNode : public coblk::BlockNode {
 public:
  XorNode(const coblk::BlockDriver* d, coblk::EventLoop& loop, uint8_t key)
      : BlockNode(d, loop), key_(key) {}

 protected:
  coblk::Task<coblk::Status> co_preadv(int64_t offset, int64_t bytes, coblk::IoVector& qiov,
                                       uint32_t) override {
    COBLK_CO_RETURN_IF_ERROR(co_await file()->preadv(offset, bytes, qiov));
    std::vector<uint8_t> buf(static_cast<size_t>(bytes));
    qiov.copy_to(0, buf.data(), buf.size());
    for (uint8_t& b : buf) b ^= key_;
    qiov.copy_from(0, buf.data(), buf.size());
    co_return coblk::OkStatus();
  }

  coblk::Task<coblk::Status> co_pwritev(int64_t offset, int64_t bytes, coblk::IoVector& qiov,
                                        uint32_t flags) override {
    std::vector<uint8_t> buf(static_cast<size_t>(bytes));  // never modify the caller's data
    qiov.copy_to(0, buf.data(), buf.size());
    for (uint8_t& b : buf) b ^= key_;
    co_return co_await file()->pwrite(offset, buf.data(), bytes, flags);
  }

 private:
  uint8_t key_;
};

class XorDriver : public coblk::BlockDriver {
 public:
  std::string_view format_name() const override { return "xor"; }
  coblk::Task<coblk::Result<std::shared_ptr<coblk::BlockNode>>> open(
      coblk::OpenContext& ctx) const override {
    auto key = ctx.options.get_int("key", 0x5a);
    if (!key) co_return std::unexpected(key.error());
    if (*key < 0 || *key > 255) co_return coblk::MakeError(EINVAL, "xor: key must be 0..255");
    auto file = co_await ctx.open_child("file", coblk::ChildRole::kFile);
    if (!file) co_return std::unexpected(file.error());
    auto node = std::make_shared<XorNode>(this, ctx.loop, static_cast<uint8_t>(*key));
    node->add_child("file", coblk::ChildRole::kFile, *file);
    node->set_size((*file)->size());
    co_return node;
  }
};

}  // namespace

COBLK_PLUGIN_DRIVERS(XorDriver)
