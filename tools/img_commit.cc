// coblk-img commit: copies what the layers above a base image hold into the
// base (qemu-img commit), through the backing chain as the vmdk driver
// opens it, with CopyLoop's parallel copy.
//
// As in qemu-img 7.2: the top image is opened with its chain, the base is
// its backing file or the -b image found in the chain; every range
// allocated above the base is written into it (zeroes as write-zeroes);
// "Image committed." ends it. VMDK cannot be emptied (QEMU's vmdk has no
// make_empty either), so the top image is left as it is with or without
// -d. Like QEMU, writing the base gives it a new CID, so overlays that
// named the old one no longer read through it: the committed data is read
// from the base itself.
#include <getopt.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "coroutine/sync_wait.h"
#include "tools/copy_loop.h"
#include "tools/img_commands.h"
#include "tools/progress.h"
#include "util/rate_limit.h"

namespace coblk::tools {

namespace {

// Whether `name` (as given to -b) names node: the same file, or the name the
// overlay recorded for it (QEMU's bdrv_find_backing_image).
bool NamesNode(const std::string& name, BlockNode& node, BlockNode& overlay) {
  if (name == node.filename() || name == overlay.backing_filename()) return true;
  std::error_code e1, e2;
  const auto a = std::filesystem::weakly_canonical(name, e1);
  const auto b = std::filesystem::weakly_canonical(node.filename(), e2);
  return !e1 && !e2 && a == b;
}

enum Kind : uint32_t { kCopyData = 0, kCopyZero = 1 };

}  // namespace

int ImgCommit(int argc, char** argv) {
  enum { kObject = 256, kImageOpts };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"object", required_argument, nullptr, kObject},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {nullptr, 0, nullptr, 0},
  };
  ImageSpec spec;
  std::string base_name;
  bool progress = false, quiet = false;
  int64_t rate_limit = 0;  // -r: bytes per second, 0 = none
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, ":f:ht:b:dpqr:", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'h': return ImgHelp();
      case 'f': spec.format = optarg; break;
      case 't': spec.cache = optarg; break;
      case 'b': base_name = optarg; break;
      case 'd': break;  // drop: the top image is not emptied either way (see above)
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'r':
        if (!ImgCvtNum("rate limit", optarg, 0, INT64_MAX, &rate_limit)) return 1;
        break;
      case kImageOpts: spec.image_opts = true; break;
      case kObject: return ImgErrorExit("--object is not supported by coblk-img");
      default: return ImgBadOption(c, argv);
    }
  }
  if (quiet) progress = false;
  if (optind != argc - 1) return ImgErrorExit("Expecting one image file name");
  spec.filename = argv[optind];
  if (!spec.cache.empty() && !ParseCacheMode(spec.cache)) {
    ImgError("Invalid cache option: %s", spec.cache.c_str());
    return 1;
  }

  // First open: find the base's depth in the chain.
  int depth = 0;
  {
    ImageSpec probe = spec;
    probe.read_only = true;
    auto img = ImgOpen(probe);
    if (!img) return 1;
    BlockNode* top = &img->blk->node();
    if (!top->backing()) {
      ImgError("Image does not have a backing file");
      return 1;
    }
    if (base_name.empty()) {
      depth = 1;
    } else {
      BlockNode* overlay = top;
      for (BlockNode* n = top->backing(); n; overlay = n, n = n->backing()) {
        ++depth;
        if (NamesNode(base_name, *n, *overlay)) break;
        if (!n->backing()) depth = 0;
      }
      if (depth == 0) {
        ImgError("Did not find '%s' in the backing chain of '%s'", base_name.c_str(),
                 spec.filename.c_str());
        return 1;
      }
    }
  }

  // Second open: the base writable ("backing.backing.read-only=off").
  auto loop = EventLoop::Create();
  if (!loop) {
    ImgError("%s", loop.error().ToString().c_str());
    return 1;
  }
  (*loop)->make_current();
  Result<Options> opts = ImageOptions(spec);
  if (!opts) {
    ImgError("%s", opts.error().ToString().c_str());
    return 1;
  }
  std::string key;
  for (int i = 0; i < depth; ++i) key += "backing.";
  opts->set(key + "read-only", "off");
  OpenFlags flags;
  flags.read_only = true;  // the top is only read
  auto blk = BlockBackend::Open(**loop, "", std::move(*opts), flags);
  if (!blk) {
    ImgError("Could not open '%s': %s", spec.filename.c_str(), blk.error().ToString().c_str());
    return 1;
  }
  BlockNode* top = &(*blk)->node();
  BlockNode* base = top;
  for (int i = 0; i < depth && base; ++i) base = base->backing();
  if (!base) {
    ImgError("Image does not have a backing file");
    return 1;
  }

  Progress prog(progress, 1.0f);
  prog.print(0, 100);
  const int64_t size = std::min(top->size(), base->size());
  CopyLoop copy;
  copy.plan = [top, base](int64_t offset) -> Task<Result<CopyExtent>> {
    Result<BlockStatus> st = co_await top->block_status_above(base, true, offset,
                                                               top->size() - offset);
    if (!st) co_return std::unexpected(st.error());
    CopyExtent e{offset, st->pnum, (st->status & kStatusAllocated) != 0, kCopyData};
    if ((st->status & kStatusZero) && !(st->status & kStatusData)) e.kind = kCopyZero;
    co_return e;
  };
  copy.work = [top, base](const CopyExtent& e, AlignedBuffer& buf) -> Task<Status> {
    if (e.kind == kCopyZero) co_return co_await base->pwrite_zeroes(e.offset, e.bytes, 0);
    COBLK_CO_RETURN_IF_ERROR(co_await top->pread(e.offset, buf.data(), e.bytes));
    co_return co_await base->pwrite(e.offset, buf.data(), e.bytes, 0);
  };
  const float total = static_cast<float>(std::max<int64_t>(size, 1));
  copy.done = [&prog, total](int64_t bytes) {
    prog.print(static_cast<float>(bytes) / total * 100.0f, 100);
  };
  copy.workers = 16;
  RateLimit limit(static_cast<uint64_t>(rate_limit));
  if (limit.enabled()) copy.rate_limit = &limit;
  Status st = sync_wait(**loop, copy.run(size));
  if (st) st = sync_wait(**loop, base->flush());
  Status closed = (*blk)->close();
  if (st && !closed) st = closed;
  prog.end();
  if (!st) {
    ImgError("Block job failed: %s", std::strerror(st.error().errnum()));
    return 1;
  }
  if (!quiet) std::printf("Image committed.\n");
  return 0;
}

}  // namespace coblk::tools
