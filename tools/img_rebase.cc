// coblk-img rebase: gives an image a new backing file (qemu-img rebase).
//
//  * -u (unsafe): only the image's reference changes (for VMDK the
//    descriptor's parentFileNameHint and parentCID; the new parent's CID is
//    read from it, so it must open).
//  * safe (default): every range the image does not allocate itself is read
//    through the old backing chain and through the new backing file; where
//    they differ (sector by sector, qemu-img's compare_buffers) the old data
//    is written into the image, so the guest sees the same disk afterwards.
//    Then the reference changes. -b "" flattens: the new view is zeroes.
// qemu-img 7.2 refuses both modes for VMDK ("Operation not supported"); the
// rest (arguments, messages, where the new name is resolved) is as qemu-img.
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "coroutine/sync_wait.h"
#include "tools/copy_loop.h"
#include "tools/img_commands.h"
#include "tools/progress.h"

namespace coblk::tools {

namespace {

constexpr int64_t kSector = 512;

// Reads [offset, offset+bytes) of node as the image above sees it: zeroes
// without a node or past its end.
Task<Status> ReadView(BlockNode* node, int64_t offset, int64_t bytes, uint8_t* buf) {
  std::memset(buf, 0, static_cast<size_t>(bytes));
  if (!node || offset >= node->size()) co_return OkStatus();
  const int64_t n = std::min(bytes, node->size() - offset);
  co_return co_await node->pread(offset, buf, n);
}

}  // namespace

int ImgRebase(int argc, char** argv) {
  enum { kObject = 256, kImageOpts };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"object", required_argument, nullptr, kObject},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"force-share", no_argument, nullptr, 'U'},
      {nullptr, 0, nullptr, 0},
  };
  ImageSpec spec;
  std::string backing_fmt, src_cache;
  std::optional<std::string> backing;
  bool unsafe = false, progress = false, quiet = false;
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'h': return ImgHelp();
      case 'f': spec.format = optarg; break;
      case 'F': backing_fmt = optarg; break;
      case 'b': backing = optarg; break;
      case 'u': unsafe = true; break;
      case 'p': progress = true; break;
      case 't': spec.cache = optarg; break;
      case 'T': src_cache = optarg; break;
      case 'q': quiet = true; break;
      case 'U': spec.force_share = true; break;
      case kImageOpts: spec.image_opts = true; break;
      case kObject: return ImgErrorExit("--object is not supported by coblk-img");
      default: return ImgBadOption(c, argv);
    }
  }
  if (quiet) progress = false;
  if (optind != argc - 1) return ImgErrorExit("Expecting one image file name");
  if (!unsafe && !backing) {
    return ImgErrorExit("Must specify backing file (-b) or use unsafe mode (-u)");
  }
  spec.filename = argv[optind];
  const std::string new_name = backing.value_or("");
  if (!spec.cache.empty() && !ParseCacheMode(spec.cache)) {
    ImgError("Invalid cache option: %s", spec.cache.c_str());
    return 1;
  }
  if (!src_cache.empty() && !ParseCacheMode(src_cache)) {
    ImgError("Invalid source cache option: %s", src_cache.c_str());
    return 1;
  }
  if (!new_name.empty() && backing_fmt.empty()) {
    ImgError("Could not change the backing file to '%s': backing format must be specified",
             new_name.c_str());
    return 1;
  }

  // The image, read-write; its old chain only in safe mode.
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
  OpenFlags flags;
  flags.no_backing = unsafe;
  auto blk = BlockBackend::Open(**loop, "", std::move(*opts), flags);
  if (!blk) {
    ImgError("Could not open '%s': %s", spec.filename.c_str(), blk.error().ToString().c_str());
    return 1;
  }
  BlockNode* top = &(*blk)->node();

  // The new backing file, named relative to the image, read-only.
  std::unique_ptr<BlockBackend> new_blk;
  if (!new_name.empty()) {
    std::string path = new_name;
    const std::string& image = spec.filename;
    if (const size_t slash = image.rfind('/');
        !spec.image_opts && slash != std::string::npos && !new_name.starts_with('/') &&
        !new_name.starts_with("json:")) {
      path = image.substr(0, slash + 1) + new_name;
    }
    ImageSpec nspec;
    nspec.filename = path;
    nspec.format = backing_fmt;
    nspec.read_only = true;
    nspec.cache = src_cache;
    nspec.force_share = true;
    auto nb = OpenImage(**loop, nspec);
    if (!nb) {
      ImgError("Could not open new backing file '%s': %s", path.c_str(),
               nb.error().ToString().c_str());
      return 1;
    }
    new_blk = std::move(*nb);
  }
  BlockNode* new_backing = new_blk ? &new_blk->node() : nullptr;

  Status st;
  Progress prog(progress, 2.0f);
  prog.print(0, 100);
  if (!unsafe) {
    BlockNode* old_backing = top->backing();
    const int64_t size = top->size();
    CopyLoop copy;
    copy.plan = [top](int64_t offset) -> Task<Result<CopyExtent>> {
      int64_t pnum = 0;
      Result<bool> allocated = co_await top->is_allocated(offset, top->size() - offset, &pnum);
      if (!allocated) co_return std::unexpected(allocated.error());
      co_return CopyExtent{offset, pnum, !*allocated, 0};
    };
    copy.work = [top, old_backing, new_backing](const CopyExtent& e,
                                                AlignedBuffer& buf) -> Task<Status> {
      AlignedBuffer fresh(static_cast<size_t>(e.bytes));
      COBLK_CO_RETURN_IF_ERROR(co_await ReadView(old_backing, e.offset, e.bytes, buf.data()));
      COBLK_CO_RETURN_IF_ERROR(co_await ReadView(new_backing, e.offset, e.bytes, fresh.data()));
      // Write the runs of sectors where the views differ.
      for (int64_t i = 0; i < e.bytes;) {
        const int64_t len = std::min(kSector, e.bytes - i);
        if (std::memcmp(buf.data() + i, fresh.data() + i, static_cast<size_t>(len)) == 0) {
          i += len;
          continue;
        }
        int64_t j = i + len;
        while (j < e.bytes) {
          const int64_t l = std::min(kSector, e.bytes - j);
          if (std::memcmp(buf.data() + j, fresh.data() + j, static_cast<size_t>(l)) == 0) break;
          j += l;
        }
        COBLK_CO_RETURN_IF_ERROR(co_await top->pwrite(e.offset + i, buf.data() + i, j - i, 0));
        i = j;
      }
      co_return OkStatus();
    };
    const float total = static_cast<float>(std::max<int64_t>(size, 1));
    copy.done = [&prog, total](int64_t bytes) {
      prog.print(static_cast<float>(bytes) / total * 100.0f, 100);
    };
    copy.workers = 8;
    st = sync_wait(**loop, copy.run(size));
    if (!st) {
      prog.end();
      ImgError("Error while rebasing the image: %s", std::strerror(st.error().errnum()));
      return 1;
    }
  }
  st = sync_wait(**loop, top->change_backing_file(new_name, backing_fmt, new_backing));
  if (st) st = sync_wait(**loop, top->flush());
  prog.print(100, 0);
  prog.end();
  if (!st) {
    ImgError("Could not change the backing file to '%s': %s", new_name.c_str(),
             st.error().ToString().c_str());
    return 1;
  }
  if (new_blk) (void)new_blk->close();
  Status closed = (*blk)->close();
  if (!closed) {
    ImgError("%s", closed.error().ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace coblk::tools
