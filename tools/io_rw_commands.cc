// coblk-io's data commands: read, write, aio_read, aio_write, aio_flush,
// flush, discard.
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "coroutine/spawn.h"
#include "coroutine/sync_wait.h"
#include "io/aligned_buffer.h"
#include "tools/human_size.h"
#include "tools/io_report.h"
#include "tools/io_shell.h"

namespace coblk::tools {

namespace {

using Clock = std::chrono::steady_clock;

// QEMU's BDRV_REQUEST_MAX_BYTES: the largest request qemu-io accepts.
constexpr int64_t kMaxRequestBytes = 2147483136;
// qemu-io fills read buffers with 0xab so untouched bytes stand out, and
// writes 0xcd unless -P says otherwise.
constexpr int kReadFill = 0xab;
constexpr int kWriteFill = 0xcd;

int ParsePattern(const char* arg) {
  char* end = nullptr;
  long v = std::strtol(arg, &end, 0);
  if (v < 0 || v > UCHAR_MAX || *end != '\0') {
    std::printf("%s is not a valid pattern byte\n", arg);
    return -1;
  }
  return static_cast<int>(v);
}

// qemu-io's cvtnum + print_cvtnum_err.
bool ParseNum(const std::string& arg, int64_t* out) {
  Result<int64_t> v = ParseIoNumber(arg);
  if (!v) {
    std::printf("%s\n", v.error().message().c_str());
    return false;
  }
  *out = *v;
  return true;
}

bool CheckLength(int64_t count, const std::string& arg) {
  if (count <= kMaxRequestBytes) return true;
  std::printf("length cannot exceed %" PRId64 ", given %s\n", kMaxRequestBytes, arg.c_str());
  return false;
}

int Errno(const Status& s) { return s ? 0 : -s.error().errnum(); }

const char* StrError(const Status& s) { return std::strerror(s.error().errnum()); }

}  // namespace

int IoShell::ReadCmd(Args& args) {
  ArgParser p(args);
  bool machine = false, quiet = false, verbose = false, lflag = false, sflag = false;
  int pattern = -1;
  int64_t pattern_offset = 0, pattern_count = 0;
  for (int c; (c = p.next("CpP:qs:l:v")) != -1;) {
    switch (c) {
      case 'C': machine = true; break;
      case 'p': break;  // qemu-io's deprecated "use pread" flag: same path here
      case 'P':
        pattern = ParsePattern(p.optarg());
        if (pattern < 0) return -EINVAL;
        break;
      case 'q': quiet = true; break;
      case 'v': verbose = true; break;
      case 's':
        sflag = true;
        if (!ParseNum(p.optarg(), &pattern_offset)) return -EINVAL;
        break;
      case 'l':
        lflag = true;
        if (!ParseNum(p.optarg(), &pattern_count)) return -EINVAL;
        break;
      default: return Usage("read");
    }
  }
  std::vector<std::string> rest = p.rest();
  if (rest.size() != 2) return Usage("read");
  int64_t offset = 0, count = 0;
  if (!ParseNum(rest[0], &offset) || !ParseNum(rest[1], &count)) return -EINVAL;
  if (!CheckLength(count, rest[1])) return -EINVAL;
  if (pattern < 0 && (lflag || sflag)) return Usage("read");
  if (!lflag) pattern_count = count - pattern_offset;
  if (pattern_count < 0 || pattern_count + pattern_offset > count) {
    std::printf("pattern verification range exceeds end of read data\n");
    return -EINVAL;
  }

  AlignedBuffer buf(static_cast<size_t>(count));
  std::memset(buf.data(), kReadFill, buf.size());
  const auto start = Clock::now();
  Status s = sync_wait(loop_, blk_->co_read(offset, buf.data(), count));
  const auto elapsed = Clock::now() - start;
  if (!s) {
    std::printf("read failed: %s\n", StrError(s));
    return Errno(s);
  }
  int ret = 0;
  if (pattern >= 0) {
    const uint8_t* d = buf.data() + pattern_offset;
    for (int64_t i = 0; i < pattern_count; i++) {
      if (d[i] != pattern) {
        std::printf("Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
                    offset + pattern_offset, pattern_count);
        ret = -EINVAL;
        break;
      }
    }
  }
  if (quiet) return ret;
  if (verbose) DumpBuffer(buf.data(), offset, count);
  PrintReport("read", elapsed, offset, count, count, 1, machine);
  return ret;
}

int IoShell::WriteCmd(Args& args) {
  ArgParser p(args);
  bool machine = false, quiet = false, zero = false, compressed = false;
  uint32_t flags = 0;
  int pattern = kWriteFill;
  bool pflag = false;
  for (int c; (c = p.next("cCfnpP:quz")) != -1;) {
    switch (c) {
      case 'c': compressed = true; break;
      case 'C': machine = true; break;
      case 'f': flags |= kReqFua; break;
      case 'n': flags |= kReqNoFallback; break;
      case 'p': break;  // deprecated "use pwrite": same path here
      case 'P':
        pflag = true;
        pattern = ParsePattern(p.optarg());
        if (pattern < 0) return -EINVAL;
        break;
      case 'q': quiet = true; break;
      case 'u': flags |= kReqMayUnmap; break;
      case 'z': zero = true; break;
      default: return Usage("write");
    }
  }
  std::vector<std::string> rest = p.rest();
  if (rest.size() != 2) return Usage("write");
  if (zero && pflag) {
    std::printf("Only one of -z, -P, and -s can be specified at the same time\n");
    return -EINVAL;
  }
  if ((flags & kReqMayUnmap) && !zero) {
    std::printf("-u requires -z to be specified\n");
    return -EINVAL;
  }
  if ((flags & kReqNoFallback) && !zero) {
    std::printf("-n requires -z to be specified\n");
    return -EINVAL;
  }
  int64_t offset = 0, count = 0;
  if (!ParseNum(rest[0], &offset) || !ParseNum(rest[1], &count)) return -EINVAL;
  if (!CheckLength(count, rest[1])) return -EINVAL;
  if (!CheckWritable()) return -EPERM;

  flags |= write_flags();
  AlignedBuffer buf(zero ? 0 : static_cast<size_t>(count));
  std::memset(buf.data(), pattern, buf.size());
  const auto start = Clock::now();
  Status s;
  if (zero) {
    s = sync_wait(loop_, blk_->co_write_zeroes(offset, count, flags));
  } else if (compressed) {
    s = sync_wait(loop_, blk_->co_write_compressed(offset, buf.data(), count));
  } else {
    s = sync_wait(loop_, blk_->co_write(offset, buf.data(), count, flags));
  }
  const auto elapsed = Clock::now() - start;
  if (!s) {
    std::printf("write failed: %s\n", StrError(s));
    return Errno(s);
  }
  if (!quiet) PrintReport("wrote", elapsed, offset, count, count, 1, machine);
  return 0;
}

// One outstanding aio_read / aio_write, owned by its coroutine.
struct IoShell::AioRequest {
  bool write = false;
  bool zero = false;
  uint32_t flags = 0;
  int64_t offset = 0;
  int64_t count = 0;
  AlignedBuffer buf;
  int pattern = -1;  // read: verify against it
  bool quiet = false;
  bool verbose = false;
  bool machine = false;
  Clock::time_point start;
};

Task<void> IoShell::RunAio(std::unique_ptr<AioRequest> req) {
  Status s;
  if (req->zero) {
    s = co_await blk_->co_write_zeroes(req->offset, req->count, req->flags);
  } else if (req->write) {
    s = co_await blk_->co_write(req->offset, req->buf.data(), req->count, req->flags);
  } else {
    s = co_await blk_->co_read(req->offset, req->buf.data(), req->count);
  }
  const auto elapsed = Clock::now() - req->start;
  aio_pending_--;
  if (!s) {
    std::printf("%s failed: %s\n", req->write ? "aio_write" : "readv", StrError(s));
    std::fflush(stdout);
    co_return;
  }
  if (!req->write && req->pattern >= 0) {
    for (int64_t i = 0; i < req->count; i++) {
      if (req->buf.data()[i] != req->pattern) {
        std::printf("Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
                    req->offset, req->count);
        break;
      }
    }
  }
  if (!req->quiet) {
    if (req->verbose) DumpBuffer(req->buf.data(), req->offset, req->count);
    PrintReport(req->write ? "wrote" : "read", elapsed, req->offset, req->count, req->count, 1,
                req->machine);
  }
  std::fflush(stdout);
}

namespace {

// aio_read/aio_write take several lengths (one vectored request).
bool SumLengths(const std::vector<std::string>& lens, int64_t* total) {
  *total = 0;
  for (const std::string& l : lens) {
    Result<int64_t> v = ParseIoNumber(l);
    if (!v) {
      std::printf("non-numeric length argument -- %s\n", l.c_str());
      return false;
    }
    if (*v > INT_MAX) {
      std::printf("too large length argument -- %s\n", l.c_str());
      return false;
    }
    *total += *v;
  }
  return true;
}

}  // namespace

int IoShell::AioReadCmd(Args& args) {
  ArgParser p(args);
  auto req = std::make_unique<AioRequest>();
  for (int c; (c = p.next("CP:qv")) != -1;) {
    switch (c) {
      case 'C': req->machine = true; break;
      case 'P':
        req->pattern = ParsePattern(p.optarg());
        if (req->pattern < 0) return -EINVAL;
        break;
      case 'q': req->quiet = true; break;
      case 'v': req->verbose = true; break;
      default: return Usage("aio_read");
    }
  }
  std::vector<std::string> rest = p.rest();
  if (rest.size() < 2) return Usage("aio_read");
  if (!ParseNum(rest[0], &req->offset)) return -EINVAL;
  if (!SumLengths({rest.begin() + 1, rest.end()}, &req->count)) return -EINVAL;
  req->buf = AlignedBuffer(static_cast<size_t>(req->count));
  std::memset(req->buf.data(), kReadFill, req->buf.size());
  req->start = Clock::now();
  aio_pending_++;
  spawn(loop_, RunAio(std::move(req)));
  return 0;
}

int IoShell::AioWriteCmd(Args& args) {
  ArgParser p(args);
  auto req = std::make_unique<AioRequest>();
  req->write = true;
  int pattern = kWriteFill;
  bool pflag = false;
  for (int c; (c = p.next("CfP:quz")) != -1;) {
    switch (c) {
      case 'C': req->machine = true; break;
      case 'f': req->flags |= kReqFua; break;
      case 'P':
        pflag = true;
        pattern = ParsePattern(p.optarg());
        if (pattern < 0) return -EINVAL;
        break;
      case 'q': req->quiet = true; break;
      case 'u': req->flags |= kReqMayUnmap; break;
      case 'z': req->zero = true; break;
      default: return Usage("aio_write");
    }
  }
  std::vector<std::string> rest = p.rest();
  if (rest.size() < 2) return Usage("aio_write");
  if (req->zero && pflag) {
    std::printf("-z and -P cannot be specified at the same time\n");
    return -EINVAL;
  }
  if ((req->flags & kReqMayUnmap) && !req->zero) {
    std::printf("-u requires -z to be specified\n");
    return -EINVAL;
  }
  if (req->zero && rest.size() != 2) return Usage("aio_write");
  if (!ParseNum(rest[0], &req->offset)) return -EINVAL;
  if (!SumLengths({rest.begin() + 1, rest.end()}, &req->count)) return -EINVAL;
  if (!CheckWritable()) return -EPERM;
  req->flags |= write_flags();
  if (!req->zero) {
    req->buf = AlignedBuffer(static_cast<size_t>(req->count));
    std::memset(req->buf.data(), pattern, req->buf.size());
  }
  req->start = Clock::now();
  aio_pending_++;
  spawn(loop_, RunAio(std::move(req)));
  return 0;
}

int IoShell::AioFlushCmd(Args&) {
  Drain();
  return 0;
}

int IoShell::FlushCmd(Args&) { return Errno(sync_wait(loop_, blk_->co_flush())); }

int IoShell::DiscardCmd(Args& args) {
  ArgParser p(args);
  bool machine = false, quiet = false;
  for (int c; (c = p.next("Cq")) != -1;) {
    switch (c) {
      case 'C': machine = true; break;
      case 'q': quiet = true; break;
      default: return Usage("discard");
    }
  }
  std::vector<std::string> rest = p.rest();
  if (rest.size() != 2) return Usage("discard");
  int64_t offset = 0, bytes = 0;
  if (!ParseNum(rest[0], &offset) || !ParseNum(rest[1], &bytes)) return -EINVAL;
  if (!CheckLength(bytes, rest[1])) return -EINVAL;
  if (!CheckWritable()) return -EPERM;
  const auto start = Clock::now();
  Status s = sync_wait(loop_, blk_->co_discard(offset, bytes));
  const auto elapsed = Clock::now() - start;
  if (!s) {
    std::printf("discard failed: %s\n", StrError(s));
    return Errno(s);
  }
  if (!quiet) PrintReport("discard", elapsed, offset, bytes, bytes, 1, machine);
  return 0;
}

}  // namespace coblk::tools
