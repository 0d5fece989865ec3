// coblk-io's commands about the image rather than its data: length, map,
// alloc, info, plus sleep, open and close.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "block/block_driver.h"
#include "coroutine/sleep.h"
#include "coroutine/sync_wait.h"
#include "tools/human_size.h"
#include "tools/info_dump.h"
#include "tools/io_shell.h"

namespace coblk::tools {

namespace {

// bdrv_is_allocated() of this layer only, as qemu-io's map and alloc use it.
// Past the end it reports nothing allocated and *pnum = 0.
Task<Result<bool>> IsAllocated(BlockNode& node, int64_t offset, int64_t bytes, int64_t* pnum) {
  if (bytes <= 0 || offset >= node.size()) {
    *pnum = 0;
    co_return false;
  }
  co_return co_await node.is_allocated(offset, std::min(bytes, node.size() - offset), pnum);
}

// qemu-io's map_is_allocated: extends the first answer over following
// extents with the same allocation state.
Task<Result<bool>> MapIsAllocated(BlockNode& node, int64_t offset, int64_t bytes,
                                  int64_t* pnum) {
  int64_t num = 0;
  Result<bool> first = co_await IsAllocated(node, offset, bytes, &num);
  if (!first) co_return first;
  *pnum = num;
  while (bytes > 0) {
    offset += num;
    bytes -= num;
    Result<bool> r = co_await IsAllocated(node, offset, bytes, &num);
    if (!r || *r != *first || num == 0) break;
    *pnum += num;
  }
  co_return first;
}

}  // namespace

int IoShell::LengthCmd(Args&) {
  std::printf("%s\n", IoSizeString(static_cast<double>(blk_->size())).c_str());
  return 0;
}

int IoShell::MapCmd(Args&) {
  BlockNode& node = image();
  const int64_t length = node.size();
  int64_t offset = 0;
  int64_t bytes = length;
  do {
    int64_t num = 0;
    Result<bool> r = sync_wait(loop_, MapIsAllocated(node, offset, bytes, &num));
    if (!r) {
      std::fprintf(stderr, "coblk-io: Failed to get allocation status: %s\n",
                   std::strerror(r.error().errnum()));
      return -r.error().errnum();
    }
    if (num == 0) {
      std::fprintf(stderr, "coblk-io: Unexpected end of image\n");
      return -EIO;
    }
    std::printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n",
                IoSizeString(static_cast<double>(num)).c_str(), static_cast<uint64_t>(num),
                *r ? "    allocated" : "not allocated",
                IoSizeString(static_cast<double>(offset)).c_str(),
                static_cast<uint64_t>(offset));
    offset += num;
    bytes -= num;
  } while (offset < length);
  return 0;
}

int IoShell::AllocCmd(Args& args) {
  Result<int64_t> start = ParseIoNumber(args[1]);
  if (!start) {
    std::printf("%s\n", start.error().message().c_str());
    return -EINVAL;
  }
  int64_t count = 512;  // qemu-io's default: one sector
  if (args.size() == 3) {
    Result<int64_t> c = ParseIoNumber(args[2]);
    if (!c) {
      std::printf("%s\n", c.error().message().c_str());
      return -EINVAL;
    }
    count = *c;
  }
  int64_t offset = *start, remaining = count, allocated = 0;
  while (remaining) {
    int64_t num = 0;
    Result<bool> r = sync_wait(loop_, IsAllocated(image(), offset, remaining, &num));
    if (!r) {
      std::printf("is_allocated failed: %s\n", std::strerror(r.error().errnum()));
      return -r.error().errnum();
    }
    offset += num;
    remaining -= num;
    if (*r) allocated += num;
    if (num == 0) {
      count -= remaining;
      remaining = 0;
    }
  }
  std::printf("%" PRId64 "/%" PRId64 " bytes allocated at offset %s\n", allocated, count,
              IoSizeString(static_cast<double>(*start)).c_str());
  return 0;
}

int IoShell::InfoCmd(Args&) {
  BlockNode& node = image();
  // qemu-io prints both names, so protocol drivers appear twice.
  std::printf("format name: %s\n", std::string(node.driver()->format_name()).c_str());
  if (!node.driver()->protocol_name().empty()) {
    std::printf("format name: %s\n", std::string(node.driver()->protocol_name()).c_str());
  }
  ImageInfo info = node.get_info();
  std::printf("cluster size: %s\n", IoSizeString(static_cast<double>(info.cluster_size)).c_str());
  std::printf("vm state offset: %s\n", IoSizeString(0).c_str());
  if (!info.specific.values.empty() || !info.specific.children.empty()) {
    std::printf("Format specific information:\n");
    DumpInfoTree(info.specific, 1);
  }
  return 0;
}

int IoShell::SleepCmd(Args& args) {
  char* end = nullptr;
  long ms = std::strtol(args[1].c_str(), &end, 0);
  if (ms < 0 || *end != '\0' || end == args[1].c_str()) {
    std::printf("%s is not a valid number\n", args[1].c_str());
    return -EINVAL;
  }
  sync_wait(loop_, co_sleep_task(std::chrono::milliseconds(ms)));
  return 0;
}

int IoShell::OpenCmd(Args& args) {
  ArgParser p(args);
  ImageSpec spec = defaults_;
  std::string options;  // -o, possibly repeated
  for (int c; (c = p.next("rCnkUf:t:i:o:")) != -1;) {
    switch (c) {
      case 'r': spec.read_only = true; break;
      case 'C': spec.copy_on_read = true; break;
      case 'n': spec.cache = "none"; break;
      case 'k': spec.aio = "native"; break;
      case 'U': spec.force_share = true; break;
      case 'f': spec.format = p.optarg(); break;
      case 't': spec.cache = p.optarg(); break;
      case 'i': spec.aio = p.optarg(); break;
      case 'o': options += (options.empty() ? "" : ",") + std::string(p.optarg()); break;
      default: return Usage("open");
    }
  }
  std::vector<std::string> rest = p.rest();
  if (rest.size() > 1 || (rest.empty() && options.empty())) return Usage("open");
  if (rest.empty()) {
    // Everything in the option string, as with --image-opts.
    spec.image_opts = true;
    spec.filename = options;
  } else {
    Result<Options> o = Options::Parse(options);
    if (!o) {
      std::fprintf(stderr, "coblk-io: %s\n", o.error().message().c_str());
      return -EINVAL;
    }
    for (const auto& [k, v] : o->values()) spec.options.emplace_back(k, v);
    spec.filename = rest[0];
  }
  return Open(spec) ? 0 : -EINVAL;
}

int IoShell::CloseCmd(Args&) {
  Close();
  return 0;
}

}  // namespace coblk::tools
