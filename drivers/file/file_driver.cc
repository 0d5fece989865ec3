// The "file" protocol driver: option parsing, open and image creation.
//
// Options (QEMU's file-posix names):
//   filename        host file or block device ("file:" prefix allowed)
//   cache.direct    on (default): O_DIRECT; off: page cache
//   cache.no-flush  on: flush is a no-op (unsafe)
//   cache           shorthand: none | writeback | directsync | writethrough | unsafe
//   aio             native (default with O_DIRECT: libaio) | threads (ThreadPool)
//   locking         auto (default) | on | off   (OFD byte locks, see file_lock.h)
//   force-share     on: share every permission (read-only opens only)
// Create options: size, preallocation (off | falloc | full).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "block/block_driver.h"
#include "drivers/file/file_io.h"
#include "drivers/file/file_lock.h"
#include "drivers/file/file_node.h"
#include "io/thread_pool.h"

namespace coblk::file_proto {

namespace {

std::string StripProtocol(std::string name) {
  if (name.starts_with("file:")) name.erase(0, 5);
  return name;
}

Status ApplyCacheMode(const std::string& mode, FileConfig& c) {
  // Same table as QEMU's bdrv_parse_cache_mode.
  if (mode == "none" || mode == "off") {
    c.direct = true;
  } else if (mode == "writeback") {
    c.direct = false;
  } else if (mode == "directsync") {
    c.direct = true;
    c.dsync = true;
  } else if (mode == "writethrough") {
    c.direct = false;
    c.dsync = true;
  } else if (mode == "unsafe") {
    c.direct = false;
    c.no_flush = true;
  } else {
    return MakeError(EINVAL, "Invalid cache mode '" + mode + "'");
  }
  return OkStatus();
}

Status ApplyAioMode(const std::string& mode, FileConfig& c) {
  c.aio_explicit = true;
  if (mode == "native") {
    c.native_aio = true;
  } else if (mode == "threads") {
    c.native_aio = false;
  } else if (mode == "io_uring") {
    return MakeError(ENOTSUP, "aio=io_uring is not supported by coblk");
  } else {
    return MakeError(EINVAL, "Parameter 'aio' does not accept value '" + mode + "'");
  }
  return OkStatus();
}

Result<FileConfig> ParseFileConfig(Options& o, const std::string& filename) {
  FileConfig c;
  c.filename = StripProtocol(filename);
  if (auto mode = o.take_string("cache")) COBLK_RETURN_IF_ERROR(ApplyCacheMode(*mode, c));
  auto direct = o.get_bool("cache.direct", c.direct);
  if (!direct) return std::unexpected(direct.error());
  c.direct = *direct;
  auto no_flush = o.get_bool("cache.no-flush", c.no_flush);
  if (!no_flush) return std::unexpected(no_flush.error());
  c.no_flush = *no_flush;
  c.native_aio = c.direct;  // default: libaio exactly when O_DIRECT
  if (auto aio = o.take_string("aio")) COBLK_RETURN_IF_ERROR(ApplyAioMode(*aio, c));
  auto locking = ParseLockMode(o.take_string("locking").value_or("auto"));
  if (!locking) return std::unexpected(locking.error());
  c.locking = *locking;
  auto share = o.get_bool("force-share", false);
  if (!share) return std::unexpected(share.error());
  c.force_share = *share;
  return c;
}

Result<PreallocMode> ParsePrealloc(const std::string& s) {
  if (s == "off") return PreallocMode::kOff;
  if (s == "falloc") return PreallocMode::kFalloc;
  if (s == "full") return PreallocMode::kFull;
  return MakeError(EINVAL, "Unsupported preallocation mode: " + s);
}

// QEMU's raw_co_create: lock first, only then drop the old contents, so an
// image in use by someone else is never truncated.
Status CreateBlocking(const std::string& name, int64_t size, PreallocMode prealloc) {
  int fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("Could not create '" + name + "'");
  Status st = ApplyImageLock(fd, LockMode::kAuto, kPermWrite | kPermResize,
                             kPermAll & ~kPermResize, name);
  struct stat sb;
  if (st && fstat(fd, &sb) < 0) st = ErrnoError("Could not stat '" + name + "'");
  if (st && S_ISREG(sb.st_mode)) {
    if (ftruncate(fd, 0) < 0) {
      st = ErrnoError("Could not clear '" + name + "'");
    } else if (int r = TruncateRegular(fd, size, prealloc); r < 0) {
      st = ErrnoError("Could not resize file", -r);
    }
  } else if (st && FileLength(fd) < size) {
    st = MakeError(ENOSPC, "Device '" + name + "' is too small");
  }
  ::close(fd);
  return st;
}

}  // namespace

class FileDriver final : public BlockDriver {
 public:
  std::string_view format_name() const override { return "file"; }
  std::string_view protocol_name() const override { return "file"; }

  const std::vector<CreateOption>& create_options() const override {
    static const std::vector<CreateOption> opts = {
        {"size", CreateOption::Type::kSize, "Virtual disk size", ""},
        {"preallocation", CreateOption::Type::kString,
         // No default string, as in QEMU: qemu-img's "Formatting" line omits it.
         "Preallocation mode (allowed values: off, falloc, full)", ""},
    };
    return opts;
  }

  Task<Status> co_create(const std::string& filename, Options& opts,
                         EventLoop& loop) const override {
    (void)loop;
    auto size = opts.get_size("size", 0);
    if (!size) co_return std::unexpected(size.error());
    if (*size > static_cast<uint64_t>(INT64_MAX) - 511)
      co_return MakeError(EFBIG, "Image size is too large");
    auto prealloc = ParsePrealloc(opts.get_string("preallocation", "off"));
    if (!prealloc) co_return std::unexpected(prealloc.error());
    const std::string name = StripProtocol(filename);
    // Whole sectors, as QEMU's file-posix creates them (15 -> 512 bytes).
    const int64_t bytes = static_cast<int64_t>((*size + 511) / 512 * 512);
    const PreallocMode mode = *prealloc;
    auto job = [&name, bytes, mode] { return CreateBlocking(name, bytes, mode); };
    co_return co_await default_thread_pool().run(job);
  }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    std::string filename = ctx.filename;
    if (auto f = ctx.options.take_string("filename"); f && filename.empty()) filename = *f;
    if (filename.empty()) co_return MakeError(EINVAL, "The 'file' driver requires a filename");
    auto config = ParseFileConfig(ctx.options, filename);
    if (!config) co_return std::unexpected(config.error());
    auto node = std::make_shared<FileNode>(this, ctx.loop);
    // FileNode makes FUA writes durable itself (O_DSYNC or fdatasync); for
    // write_zeroes (fallocate, which O_DSYNC does not cover) the generic
    // layer flushes.
    node->set_supported_flags(kReqFua, kReqMayUnmap | kReqNoFallback);
    COBLK_CO_RETURN_IF_ERROR(node->Open(std::move(*config), ctx.read_only));
    node->refresh_limits();
    co_return std::shared_ptr<BlockNode>(std::move(node));
  }
};

COBLK_REGISTER_BLOCK_DRIVER(FileDriver)

}  // namespace coblk::file_proto
