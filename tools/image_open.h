// Opening an image the way qemu-io and qemu-img do from their command lines:
// a filename (probed, or -f FMT), or an --image-opts option string, with a
// cache mode (-t / -n) and an AIO mode (-i).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "block/block_backend.h"
#include "io/event_loop.h"
#include "util/status.h"

namespace coblk::tools {

struct ImageSpec {
  std::string filename;   // a filename, or an option string with image_opts
  std::string format;     // -f; empty = probe
  bool image_opts = false;
  std::string cache;      // none | writeback | writethrough | directsync | unsafe
  std::string aio;        // native | threads; empty = driver default
  bool read_only = false;
  bool force_share = false;  // -U
  // qemu-io -C: reads of ranges the image does not allocate copy what its
  // backing chain holds into it (a copy-on-read filter over the image).
  bool copy_on_read = false;
  // qemu-io's `open -o` / `reopen -o`: key=value options set on the top
  // node, overriding what the fields above imply (e.g. cache.direct).
  std::vector<std::pair<std::string, std::string>> options;
  // Print the "probing guessed raw" warning (not again on a reopen).
  bool probe_warning = true;
  // Open for check/repair (OpenFlags::check).
  bool check = false;
};

// What a cache mode means above the protocol layer: whether every write must
// be stable on return (QEMU's write-through BlockBackend), done with FUA.
struct CacheMode {
  bool direct = true;
  bool no_flush = false;
  bool writethrough = false;
};
Result<CacheMode> ParseCacheMode(const std::string& mode);

// Builds the option set for spec (exposed for tests and `info`).
Result<Options> ImageOptions(const ImageSpec& spec);

// Opens spec; warnings (the raw probe warning) go to stderr. With
// copy_on_read the backend's root is the copy-on-read filter and the image
// is its "file" child; read_only together with it is refused, as by QEMU.
Result<std::unique_ptr<BlockBackend>> OpenImage(EventLoop& loop, const ImageSpec& spec);

}  // namespace coblk::tools
