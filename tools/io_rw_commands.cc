// coblk-io's data commands: read, write, aio_read, aio_write, aio_flush,
// flush, discard.
#include <algorithm>
#include <cerrno>
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
#include "tools/io_args.h"
#include "tools/io_report.h"
#include "tools/io_shell.h"

namespace coblk::tools {

namespace {

using Clock = std::chrono::steady_clock;

// qemu-io fills read buffers with 0xab so untouched bytes stand out, and
// writes 0xcd unless -P says otherwise.
constexpr int kReadFill = 0xab;
constexpr int kWriteFill = 0xcd;

int Errno(const Status& s) { return s ? 0 : -s.error().errnum(); }

const char* StrError(const Status& s) { return std::strerror(s.error().errnum()); }

// read -b / write -b address the VM state area, which qemu's raw and vmdk
// drivers (like every coblk driver) do not have: after qemu-io's argument
// checks the request fails with ENOTSUP, as bdrv_{load,save}_vmstate does.
bool CheckVmStateAlignment(int64_t offset, int64_t count) {
  if (offset % 512) {
    std::printf("%" PRId64 " is not a sector-aligned value for 'offset'\n", offset);
    return false;
  }
  if (count % 512) {
    std::printf("%" PRId64 " is not a sector-aligned value for 'count'\n", count);
    return false;
  }
  return true;
}

Status NoVmState() { return MakeError(ENOTSUP, "no VM state area"); }

// qemu-io's qemu_io_alloc_from_file: the first count bytes of file_name,
// repeated to fill count bytes if the file is shorter. Errors go to stderr
// as qemu-io's perror(file_name) and "file is empty".
bool FillFromFile(const std::string& file_name, uint8_t* buf, int64_t count) {
  std::FILE* f = std::fopen(file_name.c_str(), "r");
  if (!f) {
    std::perror(file_name.c_str());
    return false;
  }
  const size_t got = std::fread(buf, 1, static_cast<size_t>(count), f);
  const bool failed = std::ferror(f);
  const int err = errno;
  std::fclose(f);
  if (failed) {
    errno = err;
    std::perror(file_name.c_str());
    return false;
  }
  if (got == 0) {
    std::fprintf(stderr, "%s: file is empty\n", file_name.c_str());
    return false;
  }
  for (size_t pos = got; pos < static_cast<size_t>(count); pos += got) {
    std::memcpy(buf + pos, buf, std::min(got, static_cast<size_t>(count) - pos));
  }
  return true;
}

}  // namespace

int IoShell::ReadCmd(Args& args) {
  ArgParser p(args);
  bool machine = false, quiet = false, verbose = false, lflag = false, sflag = false;
  bool vmstate = false;
  int pattern = -1;
  int64_t pattern_offset = 0, pattern_count = 0;
  for (int c; (c = p.next("bCpP:qs:l:v")) != -1;) {
    switch (c) {
      case 'b': vmstate = true; break;
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
  if (vmstate && !CheckVmStateAlignment(offset, count)) return -EINVAL;

  AlignedBuffer buf(static_cast<size_t>(count));
  std::memset(buf.data(), kReadFill, buf.size());
  const auto start = Clock::now();
  Status s = vmstate ? NoVmState() : sync_wait(loop_, blk_->co_read(offset, buf.data(), count));
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
  bool machine = false, quiet = false, zero = false, compressed = false, vmstate = false;
  uint32_t flags = 0;
  int pattern = kWriteFill;
  bool pflag = false;
  const char* source = nullptr;  // -s FILE
  for (int c; (c = p.next("bcCfnpP:qs:uz")) != -1;) {
    switch (c) {
      case 'b': vmstate = true; break;
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
      case 's': source = p.optarg(); break;
      case 'u': flags |= kReqMayUnmap; break;
      case 'z': zero = true; break;
      default: return Usage("write");
    }
  }
  std::vector<std::string> rest = p.rest();
  if (rest.size() != 2) return Usage("write");
  // qemu-io 7.2's checks, in its order.
  if (vmstate && zero) {
    std::printf("-b and -z cannot be specified at the same time\n");
    return -EINVAL;
  }
  if ((flags & kReqFua) && (vmstate || compressed)) {
    std::printf("-f and -b or -c cannot be specified at the same time\n");
    return -EINVAL;
  }
  if ((flags & kReqNoFallback) && !zero) {
    std::printf("-n requires -z to be specified\n");
    return -EINVAL;
  }
  if ((flags & kReqMayUnmap) && !zero) {
    std::printf("-u requires -z to be specified\n");
    return -EINVAL;
  }
  if (int(zero) + int(pflag) + int(source != nullptr) > 1) {
    std::printf("Only one of -z, -P, and -s can be specified at the same time\n");
    return -EINVAL;
  }
  int64_t offset = 0, count = 0;
  if (!ParseNum(rest[0], &offset) || !ParseNum(rest[1], &count)) return -EINVAL;
  if (count > kMaxRequestBytes && !(flags & kReqNoFallback)) {
    std::printf("length cannot exceed %" PRId64 " without -n, given %s\n", kMaxRequestBytes,
                rest[1].c_str());
    return -EINVAL;
  }
  if ((vmstate || compressed) && !CheckVmStateAlignment(offset, count)) return -EINVAL;

  flags |= write_flags();
  AlignedBuffer buf(zero ? 0 : static_cast<size_t>(count));
  if (source) {
    if (!FillFromFile(source, buf.data(), count)) return -EINVAL;
  } else {
    std::memset(buf.data(), pattern, buf.size());
  }
  const auto start = Clock::now();
  Status s;
  if (vmstate) {
    s = NoVmState();
  } else if (zero) {
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
  IoVectorBuffer data;  // the request's buffers (none for -z)
  int pattern = -1;     // read: verify against it
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
    s = co_await blk_->co_pwritev(req->offset, req->count, req->data.qiov, req->flags);
  } else {
    s = co_await blk_->co_preadv(req->offset, req->count, req->data.qiov);
  }
  const auto elapsed = Clock::now() - req->start;
  aio_pending_--;
  if (!s) {
    std::printf("%s failed: %s\n", req->write ? "aio_write" : "readv", StrError(s));
    std::fflush(stdout);
    co_return;
  }
  const uint8_t* bytes = req->data.buf.data();
  if (!req->write && req->pattern >= 0) {
    for (int64_t i = 0; i < req->count; i++) {
      if (bytes[i] != req->pattern) {
        std::printf("Pattern verification failed at offset %" PRId64 ", %" PRId64 " bytes\n",
                    req->offset, req->count);
        break;
      }
    }
  }
  if (!req->quiet) {
    if (req->verbose) DumpBuffer(bytes, req->offset, req->count);
    PrintReport(req->write ? "wrote" : "read", elapsed, req->offset, req->count, req->count, 1,
                req->machine);
  }
  std::fflush(stdout);
}

int IoShell::AioReadCmd(Args& args) {
  ArgParser p(args);
  auto req = std::make_unique<AioRequest>();
  for (int c; (c = p.next("CiP:qv")) != -1;) {
    switch (c) {
      case 'C': req->machine = true; break;
      case 'i':
        // qemu-io only counts an invalid request in the accounting
        // statistics and submits nothing; coblk-io submits nothing either.
        std::printf("injecting invalid read request\n");
        return 0;
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
  if (!MakeIoVector({rest.begin() + 1, rest.end()}, kReadFill, &req->data)) return -EINVAL;
  req->count = req->data.size;
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
  for (int c; (c = p.next("CfiP:quz")) != -1;) {
    switch (c) {
      case 'C': req->machine = true; break;
      case 'f': req->flags |= kReqFua; break;
      case 'i':
        std::printf("injecting invalid write request\n");
        return 0;
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
  if (req->zero) {
    if (!ParseNum(rest[1], &req->count)) return -EINVAL;
  } else {
    if (!MakeIoVector({rest.begin() + 1, rest.end()}, pattern, &req->data)) return -EINVAL;
    req->count = req->data.size;
  }
  req->flags |= write_flags();
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
