// The "raw" format driver (QEMU's raw-format): the guest sees the bytes of
// its file child, optionally a window [offset, offset+size) of it.
//
// Options:
//   offset  start of the window in the file (default 0)
//   size    length of the window; multiple of 512 (default: to end of file)
// A node with a fixed size cannot be resized. Probe score 1: raw is the
// fallback when no other format recognises the image. Like QEMU, a probed
// raw image refuses writes that would make block 0 probe as another format.
#include <memory>
#include <string>

#include "block/block_driver.h"
#include "block/block_node.h"

namespace coblk::raw_format {

namespace {

constexpr int64_t kSectorSize = 512;

}  // namespace

class RawNode final : public BlockNode {
 public:
  RawNode(const BlockDriver* driver, EventLoop& loop) : BlockNode(driver, loop) {}

  // QEMU's raw_read_options checks against the file's length.
  Status Configure(uint64_t offset, bool has_size, uint64_t size, bool probed) {
    probed_ = probed;
    const int64_t file_len = file()->size();
    if (offset > static_cast<uint64_t>(file_len))
      return MakeError(EINVAL, "Offset (" + std::to_string(offset) +
                                   ") cannot be greater than size of the containing file (" +
                                   std::to_string(file_len) + ")");
    if (has_size && static_cast<uint64_t>(file_len) - offset < size)
      return MakeError(EINVAL, "The sum of offset (" + std::to_string(offset) + ") and size (" +
                                   std::to_string(size) +
                                   ") has to be smaller or equal to the  actual size of the "
                                   "containing file (" +
                                   std::to_string(file_len) + ")");
    if (has_size && size % kSectorSize != 0)
      return MakeError(EINVAL, "Specified size is not multiple of " + std::to_string(kSectorSize));
    offset_ = static_cast<int64_t>(offset);
    has_size_ = has_size;
    set_size(has_size ? static_cast<int64_t>(size) : file_len - offset_);
    return OkStatus();
  }

  bool has_zero_init() override { return offset_ == 0 && !has_size_ && file()->has_zero_init(); }
  int64_t allocated_file_size() override { return file()->allocated_file_size(); }

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    COBLK_CO_RETURN_IF_ERROR(Adjust(offset, bytes, false));
    file()->debug_event("read_aio");
    co_return co_await file()->preadv(offset, bytes, qiov, flags);
  }

  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    COBLK_CO_RETURN_IF_ERROR(CheckProbedWrite(offset, qiov));
    COBLK_CO_RETURN_IF_ERROR(Adjust(offset, bytes, true));
    file()->debug_event("write_aio");
    co_return co_await file()->pwritev(offset, bytes, qiov, flags);
  }

  Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) override {
    COBLK_CO_RETURN_IF_ERROR(Adjust(offset, bytes, true));
    co_return co_await file()->pwrite_zeroes(offset, bytes, flags);
  }

  Task<Status> co_pdiscard(int64_t offset, int64_t bytes) override {
    COBLK_CO_RETURN_IF_ERROR(Adjust(offset, bytes, true));
    co_return co_await file()->pdiscard(offset, bytes);
  }

  Task<Status> co_flush() override { co_return co_await file()->flush(); }

  Task<Status> co_truncate(int64_t size, bool exact, PreallocMode prealloc) override {
    if (has_size_) co_return MakeError(ENOTSUP, "Cannot resize fixed-size raw disks");
    if (size > INT64_MAX - offset_) co_return MakeError(EINVAL, "Disk size too large for the chosen offset");
    COBLK_CO_RETURN_IF_ERROR(co_await file()->truncate(size + offset_, exact, prealloc));
    // The file's length as it now reports it (QEMU's refresh after a
    // truncate): a file counts in whole sectors, so 1000 bytes read as 1024.
    set_size(file()->size() - offset_);
    co_return OkStatus();
  }

  // Let the generic layer ask the file at the shifted offset.
  Task<Result<BlockStatus>> co_block_status(bool, int64_t offset, int64_t bytes) override {
    co_return BlockStatus{kStatusRaw | kStatusOffsetValid, bytes, offset + offset_, file()};
  }

  // Partial writes to block 0 cannot be checked: a probed image takes whole
  // sectors (QEMU does the same).
  BlockLimits driver_limits() override {
    BlockLimits l;
    if (probed_) l.request_alignment = kSectorSize;
    return l;
  }

 private:
  Status CheckProbedWrite(int64_t offset, const IoVector& qiov) const {
    if (!probed_ || offset != 0 || qiov.size() < kSectorSize) return OkStatus();
    uint8_t first[kSectorSize];
    qiov.copy_to(0, first, sizeof(first));
    const BlockDriver* fmt = ProbeFormat(first, filename());
    if (fmt && fmt != driver())
      return MakeError(EPERM, "raw: refusing to write a " + std::string(fmt->format_name()) +
                                  " header to a probed raw image");
    return OkStatus();
  }

  // QEMU's raw_adjust_offset: never touch bytes outside the window.
  Status Adjust(int64_t& offset, int64_t bytes, bool is_write) const {
    if (has_size_ && (offset > size() || bytes > size() - offset))
      return MakeError(is_write ? ENOSPC : EINVAL, "raw: request outside the configured size");
    if (offset > INT64_MAX - offset_) return MakeError(EINVAL, "raw: offset overflow");
    offset += offset_;
    return OkStatus();
  }

  int64_t offset_ = 0;
  bool has_size_ = false;
  bool probed_ = false;
};

class RawDriver final : public BlockDriver {
 public:
  std::string_view format_name() const override { return "raw"; }
  int probe(std::span<const uint8_t>, std::string_view) const override { return 1; }

  // Creating a raw image is creating the file: the protocol's options.
  const std::vector<CreateOption>& create_options() const override {
    if (const BlockDriver* proto = FindProtocolDriver("file")) return proto->create_options();
    return BlockDriver::create_options();
  }

  // A raw image is just a file of the right size: the protocol creates it.
  Task<Status> co_create(const std::string& filename, Options& opts,
                         EventLoop& loop) const override {
    const BlockDriver* proto = FindProtocolDriver("file");
    if (!proto) co_return MakeError(ENOTSUP, "raw: the 'file' protocol is not available");
    co_return co_await proto->co_create(filename, opts, loop);
  }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    auto offset = ctx.options.get_size("offset", 0);
    if (!offset) co_return std::unexpected(offset.error());
    const bool has_size = ctx.options.has("size");
    auto size = ctx.options.get_size("size", 0);
    if (!size) co_return std::unexpected(size.error());
    std::string filename = ctx.filename;
    if (auto f = ctx.options.take_string("filename"); f && filename.empty()) filename = *f;
    auto child = co_await ctx.open_child("file", ChildRole::kFile, filename);
    if (!child) co_return std::unexpected(child.error());
    auto node = std::make_shared<RawNode>(this, ctx.loop);
    node->attach_file(*child, ctx.read_only);
    // Flags pass through to the file, whose generic layer honours them.
    node->set_supported_flags(kReqFua, kReqFua | kReqMayUnmap | kReqNoFallback);
    COBLK_CO_RETURN_IF_ERROR(node->Configure(*offset, has_size, *size, ctx.probed));
    node->refresh_limits();
    co_return std::shared_ptr<BlockNode>(std::move(node));
  }
};

COBLK_REGISTER_BLOCK_DRIVER(RawDriver)

}  // namespace coblk::raw_format
