#include "tools/image_open.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "block/block_driver.h"
#include "block/block_graph.h"
#include "coroutine/sync_wait.h"

namespace coblk::tools {

Result<CacheMode> ParseCacheMode(const std::string& mode) {
  // QEMU's bdrv_parse_cache_mode table.
  if (mode == "none" || mode == "off") return CacheMode{true, false, false};
  if (mode == "writeback") return CacheMode{false, false, false};
  if (mode == "writethrough") return CacheMode{false, false, true};
  if (mode == "directsync") return CacheMode{true, false, true};
  if (mode == "unsafe") return CacheMode{false, true, false};
  return MakeError(EINVAL, "Invalid cache option: " + mode);
}

namespace {

bool IsProtocol(const std::string& format) {
  if (FindProtocolDriver(format)) return true;
  const BlockDriver* d = FindFormatDriver(format);
  return d && !d->protocol_name().empty();
}

// The format a plain filename probes as.
Result<std::string> ProbeFormatOf(const std::string& filename) {
  int fd = ::open(filename.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("Could not open '" + filename + "'");
  std::vector<uint8_t> buf(2048);
  ssize_t n = ::pread(fd, buf.data(), buf.size(), 0);
  ::close(fd);
  if (n < 0) return ErrnoError("Could not read image for determining its format");
  buf.resize(static_cast<size_t>(n));
  const BlockDriver* d = ProbeFormat(buf, filename);
  if (!d) return MakeError(ENOENT, "Could not determine image format: No compatible format found");
  return std::string(d->format_name());
}

}  // namespace

Result<Options> ImageOptions(const ImageSpec& spec) {
  Options opts;
  if (spec.image_opts) {
    Result<Options> parsed = Options::Parse(spec.filename);
    if (!parsed) return parsed;
    opts = std::move(*parsed);
  } else {
    opts.set("filename", spec.filename);
  }
  for (const auto& [key, value] : spec.options) opts.set(key, value);
  std::string format = spec.format;
  if (!spec.image_opts && !format.empty()) opts.set("driver", format);
  if (spec.image_opts) format = opts.peek("driver").value_or("");

  if (!spec.cache.empty()) {
    Result<CacheMode> mode = ParseCacheMode(spec.cache);
    if (!mode) return std::unexpected(mode.error());
    // cache.direct / cache.no-flush are inherited by every child node.
    opts.set_default("cache.direct", mode->direct ? "on" : "off");
    opts.set_default("cache.no-flush", mode->no_flush ? "on" : "off");
  }
  // "aio" and "force-share" are not inherited, so they are addressed to the
  // protocol node by path; with a probed format that path is unknown until
  // the probe, so probe here (same rule as the graph) and name the format.
  const bool force_share = spec.force_share && spec.read_only;
  const bool is_json = spec.filename.starts_with("json:");
  if ((!spec.aio.empty() || force_share) && !is_json) {
    if (format.empty() && !spec.image_opts) {
      Result<std::string> probed = ProbeFormatOf(spec.filename);
      if (!probed) return std::unexpected(probed.error());
      format = *probed;
      opts.set("driver", format);
      if (format == "raw" && !spec.read_only && spec.probe_warning) {
        std::fprintf(stderr,
                     "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
                     "         Automatically detecting the format is dangerous for raw images, "
                     "write operations on block 0 will be restricted.\n"
                     "         Specify the 'raw' format explicitly to remove the restrictions.\n",
                     spec.filename.c_str());
      }
    }
    const std::string prefix = IsProtocol(format) ? "" : "file.";
    if (!spec.aio.empty()) opts.set_default(prefix + "aio", spec.aio);
    if (force_share) opts.set_default(prefix + "force-share", "on");
  }
  return opts;
}

Result<std::unique_ptr<BlockBackend>> OpenImage(EventLoop& loop, const ImageSpec& spec) {
  if (spec.copy_on_read && spec.read_only) {
    return MakeError(EINVAL, "Can't use copy-on-read on read-only device");
  }
  Result<Options> opts = ImageOptions(spec);
  if (!opts) return std::unexpected(opts.error());
  OpenFlags flags;
  flags.read_only = spec.read_only;
  flags.probe_warning = spec.probe_warning;
  flags.check = spec.check;
  Result<std::unique_ptr<BlockBackend>> blk = BlockBackend::Open(loop, "", std::move(*opts), flags);
  if (!blk || !spec.copy_on_read) return blk;
  // The filter goes over the opened root; the backend is new, so nothing is
  // in flight and the drain around the switch returns at once.
  BlockBackend& backend = **blk;
  auto insert = [&backend]() -> Task<Status> {
    BlockGraph graph(backend.loop());
    Result<std::shared_ptr<BlockNode>> filter =
        co_await graph.open_filter("copy-on-read", Options{}, backend.root());
    if (!filter) co_return std::unexpected(filter.error());
    co_await backend.co_drain_begin();
    backend.replace_root(std::move(*filter));
    backend.drain_end();
    co_return OkStatus();
  };
  if (Status s = sync_wait(loop, insert()); !s) return std::unexpected(s.error());
  return blk;
}

}  // namespace coblk::tools
