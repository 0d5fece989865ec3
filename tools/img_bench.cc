// coblk-img bench: qemu-img bench's workload, flags and output.
//
// Like qemu-img, requests go out at offset, offset+step, ... wrapping modulo
// the image size, `depth` at a time; with --flush-interval=N a flush is sent
// whenever the number of requests still to submit is a multiple of N, after
// draining the queue unless --no-drain. Extension: -r/--random picks each
// offset uniformly at random (4 KiB aligned, request inside the image);
// qemu-img bench has no random mode.
#include <getopt.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "coroutine/spawn.h"
#include "io/aligned_buffer.h"
#include "tools/img_commands.h"

namespace coblk::tools {

namespace {

struct Bench {
  BlockBackend* blk = nullptr;
  EventLoop* loop = nullptr;
  int64_t image_size = 0;
  int64_t bufsize = 0;
  int64_t step = 0;
  int64_t offset = 0;
  int nrreq = 0;
  int n = 0;          // requests not yet completed
  int in_flight = 0;
  int flushes = 0;    // flushes outstanding
  int flush_interval = 0;
  bool write = false;
  bool drain_on_flush = true;
  bool in_flush = false;
  bool random = false;
  bool failed = false;
  uint32_t write_flags = 0;
  AlignedBuffer buf;           // nrreq slots of bufsize bytes
  std::vector<int> free_slots;
  std::mt19937_64 rng{0x636f626c6b};
};

void Pump(Bench& b, const Status& ret);

int64_t NextOffset(Bench& b) {
  if (b.random) {
    const int64_t span = b.image_size > b.bufsize ? (b.image_size - b.bufsize) / 4096 : 0;
    return std::uniform_int_distribution<int64_t>(0, span)(b.rng) * 4096;
  }
  const int64_t offset = b.offset;
  b.offset = (b.offset + b.step) % b.image_size;
  return offset;
}

Task<void> BenchRequest(Bench& b, int64_t offset, int slot) {
  IoVector qiov = b.buf.iov(static_cast<size_t>(slot * b.bufsize), static_cast<size_t>(b.bufsize));
  // No co_await inside ?: — GCC 12 destroys the result twice there.
  Status s;
  if (b.write) {
    s = co_await b.blk->co_pwritev(offset, b.bufsize, qiov, b.write_flags);
  } else {
    s = co_await b.blk->co_preadv(offset, b.bufsize, qiov);
  }
  b.free_slots.push_back(slot);
  Pump(b, s);
}

Task<void> BenchFlush(Bench& b, bool drained) {
  Status s = co_await b.blk->co_flush();
  b.flushes--;
  if (drained) {
    Pump(b, s);
  } else if (!s && !b.failed) {
    ImgError("Failed flush request: %s", std::strerror(s.error().errnum()));
    b.failed = true;
  }
}

// qemu-img's bench_cb: account a completion, maybe flush, then refill.
// Requests start from the loop (spawn), never inline, so synchronously
// completing drivers cannot recurse.
void Pump(Bench& b, const Status& ret) {
  if (!ret && !b.failed) {
    ImgError("Failed request: %s", std::strerror(ret.error().errnum()));
    b.failed = true;
  }
  if (b.in_flush) {
    b.in_flush = false;
  } else if (b.in_flight > 0) {
    const int remaining = b.n - b.in_flight;
    b.n--;
    b.in_flight--;
    if (b.flush_interval && remaining % b.flush_interval == 0) {
      if (!b.in_flight || !b.drain_on_flush) {
        if (b.drain_on_flush) b.in_flush = true;
        b.flushes++;
        spawn(*b.loop, BenchFlush(b, b.drain_on_flush));
      }
      if (b.drain_on_flush) return;
    }
  }
  if (b.failed) return;
  while (b.n > b.in_flight && b.in_flight < b.nrreq) {
    const int64_t offset = NextOffset(b);
    b.in_flight++;
    const int slot = b.free_slots.back();
    b.free_slots.pop_back();
    spawn(*b.loop, BenchRequest(b, offset, slot));
  }
}

// qemu-img's cvtnum error wording.
bool ParseBenchSize(const char* name, const char* text, int64_t* out) {
  Result<uint64_t> v = ParseSize(text);
  if (!v || *v > static_cast<uint64_t>(INT64_MAX) || text[0] == '-') {
    ImgError("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name);
    ImgError("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    return false;
  }
  *out = static_cast<int64_t>(*v);
  return true;
}

bool ParseInt(const char* text, int64_t max, int64_t* out) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text, &end, 0);
  if (errno || end == text || *end || v < 0 || v > max) return false;
  *out = v;
  return true;
}

}  // namespace

int ImgBench(int argc, char** argv) {
  enum { kFlushInterval = 256, kImageOpts, kPattern, kNoDrain };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"flush-interval", required_argument, nullptr, kFlushInterval},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"pattern", required_argument, nullptr, kPattern},
      {"no-drain", no_argument, nullptr, kNoDrain},
      {"force-share", no_argument, nullptr, 'U'},
      {"random", no_argument, nullptr, 'r'},
      {nullptr, 0, nullptr, 0},
  };
  ImageSpec spec;
  spec.cache = "writeback";  // qemu-img's default cache mode
  int64_t count = 75000, depth = 64, offset = 0, bufsize = 4096, step = 0, pattern = 0;
  int64_t flush_interval = 0;
  bool write = false, drain_on_flush = true, random = false;
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, ":hc:d:f:ni:o:qrs:S:t:wU", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'c':
        if (!ParseInt(optarg, INT_MAX, &count)) {
          ImgError("Invalid request count specified");
          return 1;
        }
        break;
      case 'd':
        if (!ParseInt(optarg, INT_MAX, &depth) || depth == 0) {
          ImgError("Invalid queue depth specified");
          return 1;
        }
        break;
      case 'f': spec.format = optarg; break;
      case 'n': spec.aio = "native"; break;  // qemu-img bench: -n = native AIO
      case 'i':
        if (std::strcmp(optarg, "native") && std::strcmp(optarg, "threads")) {
          ImgError("Invalid aio option: %s", optarg);
          return 1;
        }
        spec.aio = optarg;
        break;
      case 'o':
        if (!ParseBenchSize("offset", optarg, &offset)) return 1;
        break;
      case 'q': break;  // accepted; qemu-img 7.2 prints both lines all the same
      case 'r': random = true; break;
      case 's':
        if (!ParseBenchSize("buffer size", optarg, &bufsize)) return 1;
        if (bufsize > INT_MAX) {
          ImgError("Invalid buffer size specified");
          return 1;
        }
        break;
      case 'S':
        if (!ParseBenchSize("step_size", optarg, &step)) return 1;
        if (step > INT_MAX) {
          ImgError("Invalid step size specified");
          return 1;
        }
        break;
      case 't': spec.cache = optarg; break;
      case 'w': write = true; break;
      case 'U': spec.force_share = true; break;
      case kFlushInterval:
        if (!ParseInt(optarg, INT_MAX, &flush_interval)) {
          ImgError("Invalid flush interval specified");
          return 1;
        }
        break;
      case kPattern:
        if (!ParseInt(optarg, 0xff, &pattern)) {
          ImgError("Invalid pattern byte specified");
          return 1;
        }
        break;
      case kNoDrain: drain_on_flush = false; break;
      case kImageOpts: spec.image_opts = true; break;
      case 'h': return ImgHelp();
      default: return ImgBadOption(c, argv);
    }
  }
  if (optind != argc - 1) return ImgErrorExit("Expecting one image file name");
  if (!write && flush_interval) {
    ImgError("--flush-interval is only available in write tests");
    return 1;
  }
  if (flush_interval && flush_interval < depth) {
    ImgError("Flush interval can't be smaller than depth");
    return 1;
  }
  Result<CacheMode> mode = ParseCacheMode(spec.cache);
  if (!mode) {
    ImgError("Invalid cache mode: %s", spec.cache.c_str());
    return 1;
  }
  spec.filename = argv[optind];
  spec.read_only = !write;
  auto img = ImgOpen(spec);
  if (!img) return 1;

  Bench b;
  b.blk = img->blk.get();
  b.loop = img->loop.get();
  b.image_size = b.blk->size();
  b.bufsize = bufsize;
  b.step = step ? step : bufsize;
  b.offset = offset;
  b.nrreq = static_cast<int>(depth);
  b.n = static_cast<int>(count);
  b.write = write;
  b.flush_interval = static_cast<int>(flush_interval);
  b.drain_on_flush = drain_on_flush;
  b.random = random;
  b.write_flags = mode->writethrough ? uint32_t{kReqFua} : 0u;
  if (b.image_size <= 0) {
    ImgError("Image size must be greater than zero");
    return 1;
  }
  std::printf("Sending %d %s requests, %d bytes each, %d in parallel (starting at offset "
              "%lld, step size %d)\n",
              b.n, write ? "write" : "read", static_cast<int>(bufsize), b.nrreq,
              static_cast<long long>(offset), static_cast<int>(b.step));
  if (flush_interval) std::printf("Sending flush every %d requests\n", b.flush_interval);
  std::fflush(stdout);
  b.buf = AlignedBuffer(static_cast<size_t>(b.nrreq * b.bufsize));
  std::memset(b.buf.data(), static_cast<int>(pattern), b.buf.size());
  for (int i = b.nrreq - 1; i >= 0; i--) b.free_slots.push_back(i);

  const auto t1 = std::chrono::steady_clock::now();
  Pump(b, OkStatus());
  while ((b.n > 0 && !b.failed) || b.in_flight > 0) b.loop->run_once(/*block=*/true);
  const auto t2 = std::chrono::steady_clock::now();
  // Unlike qemu-img (which exits with them pending), let undrained flushes end.
  while (b.flushes > 0) b.loop->run_once(/*block=*/true);
  if (b.failed) return 1;
  std::printf("Run completed in %3.3f seconds.\n",
              std::chrono::duration<double>(t2 - t1).count());
  return 0;
}

}  // namespace coblk::tools
