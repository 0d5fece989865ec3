// coblk-io's vectored and control commands: readv, writev, truncate,
// reopen, abort, sigraise, quit. Arguments, messages and exit statuses are
// qemu-io 7.2's.
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "block/block_driver.h"
#include "coroutine/sync_wait.h"
#include "tools/human_size.h"
#include "tools/io_args.h"
#include "tools/io_report.h"
#include "tools/io_shell.h"

namespace coblk::tools {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kReadFill = 0xab;
constexpr int kWriteFill = 0xcd;

}  // namespace

int IoShell::ReadvCmd(Args& args) {
  ArgParser p(args);
  bool machine = false, quiet = false, verbose = false;
  int pattern = -1;
  for (int c; (c = p.next("CP:qv")) != -1;) {
    switch (c) {
      case 'C': machine = true; break;
      case 'P':
        pattern = ParsePattern(p.optarg());
        if (pattern < 0) return -EINVAL;
        break;
      case 'q': quiet = true; break;
      case 'v': verbose = true; break;
      default: return Usage("readv");
    }
  }
  std::vector<std::string> rest = p.rest();
  if (rest.size() < 2) return Usage("readv");
  int64_t offset = 0;
  if (!ParseNum(rest[0], &offset)) return -EINVAL;
  IoVectorBuffer data;
  if (!MakeIoVector({rest.begin() + 1, rest.end()}, kReadFill, &data)) return -EINVAL;

  const auto start = Clock::now();
  Status s = sync_wait(loop_, blk_->co_preadv(offset, data.size, data.qiov));
  const auto elapsed = Clock::now() - start;
  if (!s) {
    std::printf("readv failed: %s\n", std::strerror(s.error().errnum()));
    return -s.error().errnum();
  }
  int ret = 0;
  if (pattern >= 0) {
    for (int64_t i = 0; i < data.size; i++) {
      if (data.buf.data()[i] != pattern) {
        std::printf("Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
                    offset, data.size);
        ret = -EINVAL;
        break;
      }
    }
  }
  if (quiet) return ret;
  if (verbose) DumpBuffer(data.buf.data(), offset, data.size);
  PrintReport("read", elapsed, offset, data.size, data.size, 1, machine);
  return ret;
}

int IoShell::WritevCmd(Args& args) {
  ArgParser p(args);
  bool machine = false, quiet = false;
  uint32_t flags = 0;
  int pattern = kWriteFill;
  for (int c; (c = p.next("CfqP:")) != -1;) {
    switch (c) {
      case 'C': machine = true; break;
      case 'f': flags |= kReqFua; break;
      case 'q': quiet = true; break;
      case 'P':
        pattern = ParsePattern(p.optarg());
        if (pattern < 0) return -EINVAL;
        break;
      default: return Usage("writev");
    }
  }
  std::vector<std::string> rest = p.rest();
  if (rest.size() < 2) return Usage("writev");
  int64_t offset = 0;
  if (!ParseNum(rest[0], &offset)) return -EINVAL;
  IoVectorBuffer data;
  if (!MakeIoVector({rest.begin() + 1, rest.end()}, pattern, &data)) return -EINVAL;

  flags |= write_flags();
  const auto start = Clock::now();
  Status s = sync_wait(loop_, blk_->co_pwritev(offset, data.size, data.qiov, flags));
  const auto elapsed = Clock::now() - start;
  if (!s) {
    std::printf("writev failed: %s\n", std::strerror(s.error().errnum()));
    return -s.error().errnum();
  }
  if (!quiet) PrintReport("wrote", elapsed, offset, data.size, data.size, 1, machine);
  return 0;
}

int IoShell::TruncateCmd(Args& args) {
  ArgParser p(args);
  PreallocMode prealloc = PreallocMode::kOff;
  for (int c; (c = p.next("m:")) != -1;) {
    switch (c) {
      case 'm': {
        const std::string mode = p.optarg();
        if (mode == "off") {
          prealloc = PreallocMode::kOff;
        } else if (mode == "metadata") {
          prealloc = PreallocMode::kMetadata;
        } else if (mode == "falloc") {
          prealloc = PreallocMode::kFalloc;
        } else if (mode == "full") {
          prealloc = PreallocMode::kFull;
        } else {
          std::fprintf(stderr, "coblk-io: Invalid preallocation mode '%s'\n", mode.c_str());
          return -EINVAL;
        }
        break;
      }
      default: return Usage("truncate");
    }
  }
  std::vector<std::string> rest = p.rest();
  // qemu-io 7.2 reads past the end here (and crashes) for "truncate -m x".
  if (rest.empty()) return Usage("truncate");
  // Only the first operand counts; a parse error names the command's first
  // argument, as qemu-io's message does ("truncate -m full x" -> "-m").
  Result<int64_t> size = ParseIoNumber(rest[0]);
  if (!size) {
    std::string message = size.error().message();
    message.replace(message.rfind(" -- ") + 4, std::string::npos, args[1]);
    std::printf("%s\n", message.c_str());
    return -EINVAL;
  }
  Status s = sync_wait(loop_, blk_->node().truncate(*size, false, prealloc));
  if (!s) {
    const bool is_raw = image().driver()->format_name() == "raw";
    if (s.error().errnum() == ENOTSUP && !is_raw) {
      std::fprintf(stderr, "coblk-io: Image format driver does not support resize\n");
    } else {
      std::fprintf(stderr, "coblk-io: %s\n", s.error().ToString().c_str());
    }
    return -s.error().errnum();
  }
  return 0;
}

int IoShell::ReopenCmd(Args& args) {
  ArgParser p(args);
  ImageSpec next = spec_;
  next.probe_warning = false;
  bool has_rw = false, has_cache = false;
  Options extra;
  for (int c; (c = p.next("c:o:rw")) != -1;) {
    switch (c) {
      case 'c': {
        Result<CacheMode> m = ParseCacheMode(p.optarg());
        if (!m) {
          std::fprintf(stderr, "coblk-io: %s\n", m.error().message().c_str());
          return -EINVAL;
        }
        next.cache = p.optarg();
        has_cache = true;
        break;
      }
      case 'o': {
        Result<Options> o = Options::Parse(p.optarg());
        if (!o) {
          std::fprintf(stderr, "coblk-io: %s\n", o.error().message().c_str());
          return -EINVAL;
        }
        for (const auto& [k, v] : o->values()) extra.set(k, v);
        break;
      }
      case 'r':
      case 'w':
        if (has_rw) {
          std::fprintf(stderr, "coblk-io: Only one -r/-w option may be given\n");
          return -EINVAL;
        }
        has_rw = true;
        next.read_only = c == 'r';
        break;
      default: return Usage("reopen");
    }
  }
  if (!p.rest().empty()) return Usage("reopen");

  // What a reopen can change: read-only and the cache flags. Any other
  // option is refused, as QEMU refuses options whose value would change.
  bool has_cache_opts = false;
  for (const auto& [key, value] : extra.values()) {
    if (key == "read-only") {
      if (has_rw) {
        std::fprintf(stderr, "coblk-io: Cannot set both -r/-w and 'read-only'\n");
        return -EINVAL;
      }
      Result<bool> ro = extra.get_bool(key, false);
      if (!ro) {
        std::fprintf(stderr, "coblk-io: %s\n", ro.error().message().c_str());
        return -EINVAL;
      }
      next.read_only = *ro;
    } else if (key == "cache.direct" || key == "cache.no-flush") {
      Result<bool> on = extra.get_bool(key, false);
      if (!on) {
        std::fprintf(stderr, "coblk-io: %s\n", on.error().message().c_str());
        return -EINVAL;
      }
      has_cache_opts = true;
    } else if (key == "driver" && value == image().driver()->format_name()) {
      // Unchanged: accepted.
    } else {
      std::fprintf(stderr, "coblk-io: Cannot change the option '%s'\n", key.c_str());
      return -EINVAL;
    }
  }
  if (has_cache_opts && has_cache) {
    std::fprintf(stderr, "coblk-io: Cannot set both -c and the cache options\n");
    return -EINVAL;
  }
  if (has_cache) {
    std::erase_if(next.options, [](const auto& kv) { return kv.first.starts_with("cache."); });
  }
  for (const char* key : {"cache.direct", "cache.no-flush"}) {
    if (std::optional<std::string> v = extra.peek(key)) {
      std::erase_if(next.options, [key](const auto& kv) { return kv.first == key; });
      next.options.emplace_back(key, *v);
    }
  }
  // A reopen keeps the format the image was opened as (probed or not).
  if (next.format.empty() && !next.image_opts) {
    next.format = std::string(image().driver()->format_name());
  }

  // A copy-on-read image must stay writable (QEMU's bdrv_reopen_prepare).
  if (next.copy_on_read && next.read_only) {
    std::fprintf(stderr, "coblk-io: Can't set node '%s' to r/o with copy-on-read enabled\n",
                 image().node_name().c_str());
    return -EINVAL;
  }
  // The graph is closed (flushing it) and opened again with the new
  // settings; if that fails the image is opened again as it was.
  const ImageSpec previous = spec_;
  Close();
  Result<std::unique_ptr<BlockBackend>> blk = OpenImage(loop_, next);
  if (!blk) {
    std::fprintf(stderr, "coblk-io: %s\n", blk.error().ToString().c_str());
    ImageSpec back = previous;
    back.probe_warning = false;
    Open(back);
    return -blk.error().errnum();
  }
  blk_ = std::move(*blk);
  spec_ = next;
  // next.cache was parsed above (or when the image was opened).
  writethrough_ = !next.cache.empty() && ParseCacheMode(next.cache)->writethrough;
  read_only_ = next.read_only;
  return 0;
}

int IoShell::AbortCmd(Args&) {
  std::fflush(stdout);
  std::abort();
}

int IoShell::SigraiseCmd(Args& args) {
  Result<int64_t> sig = ParseIoNumber(args[1]);
  if (!sig) {
    std::printf("%s\n", sig.error().message().c_str());
    return -EINVAL;
  }
  if (*sig > NSIG) {
    std::printf("signal argument '%s' is too large to be a valid signal\n", args[1].c_str());
    return -EINVAL;
  }
  // Output so far must reach its file before a fatal signal ends the process.
  std::fflush(stdout);
  std::fflush(stderr);
  std::raise(static_cast<int>(*sig));
  return 0;
}

int IoShell::QuitCmd(Args&) {
  quit_ = true;
  return 0;
}

}  // namespace coblk::tools
