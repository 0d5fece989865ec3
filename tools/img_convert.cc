// coblk-img convert: qemu-img 7.2's convert — same options, messages,
// progress output and copy algorithm (qemu-img.c's convert_iteration_sectors,
// convert_co_do_copy, convert_co_write), run on coblk coroutines.
//
// The sources' block status drives the copy: unallocated and zero ranges are
// skipped on a fresh zero-initialised target (write_zeroes otherwise), data is
// read in buffers of 2 MiB (or one cluster when compressing) and written
// unless -S finds runs of zeroes in it. -m N workers take chunks in order
// under a lock and read in parallel; without -W their writes are issued in
// chunk order. Everything counts in 512-byte sectors like qemu-img, so chunk
// boundaries (and so the output's layout) match qemu-img's.
#include <getopt.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "block/block_driver.h"
#include "block/block_graph.h"
#include "coroutine/co_mutex.h"
#include "coroutine/co_queue.h"
#include "coroutine/sleep.h"
#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "io/aligned_buffer.h"
#include "tools/img_commands.h"
#include "tools/progress.h"
#include "util/rate_limit.h"

namespace coblk::tools {

namespace {

constexpr int64_t kSector = 512;
constexpr int64_t kIoBufSectors = (int64_t{2} << 20) / kSector;  // IO_BUF_SIZE: 2 MiB
constexpr int64_t kMaxBufSectors = 32768;                        // MAX_BUF_SECTORS: 16 MiB
constexpr int kMaxCoroutines = 16;
constexpr int64_t kRequestMaxSectors = INT_MAX >> 9;  // BDRV_REQUEST_MAX_SECTORS

enum class Blk { kData, kZero, kBackingFile };

struct Source {
  std::string name;
  std::unique_ptr<BlockBackend> blk;
  int64_t bytes = 0;
  int64_t sectors = 0;
  int64_t alignment = 1;  // sectors: request alignment or cluster size
  // Sectors per block status answer of QEMU's driver stack (see
  // QemuStatusGrain); 0 where it answers whole runs as coblk does.
  int64_t status_grain = 0;
};

struct ConvertState {
  std::vector<Source>* src = nullptr;
  int64_t total_sectors = 0;
  int64_t allocated_sectors = 0;
  int64_t allocated_done = 0;
  // Progress counts in qemu-img's chunks: the end of the last chunk counted
  // and the end of the last copied chunk that counts for progress.
  int64_t progress_at = 0;
  int64_t progress_end = -1;
  int64_t sector_num = 0;
  int64_t wr_offs = 0;
  Blk status = Blk::kData;
  int64_t sector_next_status = 0;
  BlockBackend* target = nullptr;
  bool has_zero_init = false;
  bool compressed = false;
  bool target_is_new = false;
  bool target_has_backing = false;
  int64_t target_backing_sectors = -1;
  bool wr_in_order = true;
  bool quiet = false;
  bool salvage = false;  // --salvage: read errors become zeros with a warning
  RateLimit rate_limit;  // -r: bytes of data chunks per second
  int64_t min_sparse = 8;  // sectors; 4 KiB of zeroes at least
  int64_t alignment = 1;
  int64_t cluster_sectors = 0;
  int64_t buf_sectors = kIoBufSectors;
  int num_coroutines = 8;
  uint32_t write_flags = 0;  // FUA in write-through cache modes
  Progress* progress = nullptr;
  CoMutex lock;
  CoQueue write_turn;   // in-order writers waiting for wr_offs to reach them
  bool failed = false;  // qemu-img's s->ret != -EINPROGRESS
};

bool IsZero(const uint8_t* p, size_t len) {
  return len == 0 || (p[0] == 0 && std::memcmp(p, p + 1, len - 1) == 0);
}

int64_t Pow2Floor(int64_t v) {
  if (v <= 0) return 0;
  int64_t p = 1;
  while (p <= v / 2) p *= 2;
  return p;
}

// qemu-img's is_allocated_sectors: the length of the first run of equally
// zero / non-zero sectors, its end aligned to `alignment` when that saves a
// read-modify-write on the target.
bool IsAllocatedSectors(const uint8_t* buf, int64_t n, int64_t* pnum, int64_t sector_num,
                        int64_t alignment) {
  if (n <= 0) {
    *pnum = 0;
    return false;
  }
  bool is_zero = IsZero(buf, kSector);
  int64_t i = 1;
  for (; i < n; i++) {
    if (is_zero != IsZero(buf + i * kSector, kSector)) break;
  }
  if (i == n) {
    *pnum = i;
    return !is_zero;
  }
  const int64_t tail = (sector_num + i) & (alignment - 1);
  if (tail) {
    if (is_zero && i <= tail) is_zero = false;  // the next sector's RMW rewrites it anyway
    if (!is_zero) {
      i = std::min(i + alignment - tail, n);
    } else {
      i -= tail;
    }
  }
  *pnum = i;
  return !is_zero;
}

// qemu-img's is_allocated_sectors_min: like the above, but a data run
// swallows zero runs shorter than `min` sectors.
bool IsAllocatedSectorsMin(const uint8_t* buf, int64_t n, int64_t* pnum, int64_t min,
                           int64_t sector_num, int64_t alignment) {
  if (n < min) min = n;
  if (!IsAllocatedSectors(buf, n, pnum, sector_num, alignment)) return false;
  int64_t num_used = *pnum;
  buf += kSector * *pnum;
  n -= *pnum;
  sector_num += *pnum;
  int64_t num_checked = num_used;
  while (n > 0) {
    const bool ret = IsAllocatedSectors(buf, n, pnum, sector_num, alignment);
    buf += kSector * *pnum;
    n -= *pnum;
    sector_num += *pnum;
    num_checked += *pnum;
    if (ret) {
      num_used = num_checked;
    } else if (*pnum >= min) {
      break;
    }
  }
  *pnum = num_used;
  return true;
}

// The source holding total-image sector `sector_num`, and where it starts.
void SelectPart(const ConvertState& s, int64_t sector_num, size_t* cur, int64_t* cur_offset) {
  *cur = 0;
  *cur_offset = 0;
  while (sector_num - *cur_offset >= (*s.src)[*cur].sectors) {
    *cur_offset += (*s.src)[*cur].sectors;
    ++*cur;
  }
}

// qemu-img's convert_iteration_sectors: how many sectors from sector_num
// share one status (s.status), limited to one buffer for data.
Task<Result<int64_t>> IterationSectors(ConvertState& s, int64_t sector_num) {
  size_t cur = 0;
  int64_t cur_offset = 0;
  SelectPart(s, sector_num, &cur, &cur_offset);
  int64_t n = std::min(s.total_sectors - sector_num, kRequestMaxSectors);
  bool post_backing_zero = false;
  if (s.target_backing_sectors >= 0) {
    if (sector_num >= s.target_backing_sectors) {
      post_backing_zero = true;
    } else if (sector_num + n > s.target_backing_sectors) {
      n = s.target_backing_sectors - sector_num;  // zeroes differ from there on
    }
  }

  if (s.sector_next_status <= sector_num) {
    Source& src = (*s.src)[cur];
    BlockNode& node = src.blk->node();
    BlockNode* base = s.target_has_backing ? node.backing() : nullptr;
    const int64_t offset = (sector_num - cur_offset) * kSector;
    // The source's last sector may be partial: ask about its real bytes.
    const int64_t count = std::min(n * kSector, src.bytes - offset);
    Result<BlockStatus> st = co_await node.block_status_above(base, true, offset, count);
    if (!st && s.salvage) {
      // A damaged image's metadata (e.g. a grain table outside the file):
      // read up to the next MiB as data, which salvages it sector by sector.
      std::fprintf(stderr, "coblk-img: warning: error while reading block status at offset %" PRIu64
                   ": %s\n",
                   static_cast<uint64_t>(offset), std::strerror(st.error().errnum()));
      constexpr int64_t kSalvageStep = (1 << 20) / kSector;
      st = BlockStatus{};
      st->status = kStatusData | kStatusAllocated;
      st->pnum = std::min<int64_t>(count, (kSalvageStep - (offset / kSector) % kSalvageStep) * kSector);
    }
    if (!st) {
      ImgError("error while reading block status at offset %" PRIu64 ": %s",
               static_cast<uint64_t>(offset), std::strerror(st.error().errnum()));
      co_return std::unexpected(st.error());
    }
    if (st->pnum <= 0) {
      ImgError("error while reading block status at offset %" PRIu64 ": %s",
               static_cast<uint64_t>(offset), std::strerror(EIO));
      co_return MakeError(EIO, "block status made no progress");
    }
    n = (st->pnum + kSector - 1) / kSector;
    // Keep sector_next_status aligned to the source's alignment/cluster size.
    const int64_t tail = (sector_num - cur_offset + n) % src.alignment;
    if (n > tail) n -= tail;

    if (st->status & kStatusZero) {
      s.status = post_backing_zero ? Blk::kBackingFile : Blk::kZero;
    } else if (st->status & kStatusData) {
      s.status = Blk::kData;
    } else {
      s.status = s.target_has_backing ? Blk::kBackingFile : Blk::kData;
    }
    s.sector_next_status = sector_num + n;
  }

  n = std::min(n, s.sector_next_status - sector_num);
  if (s.status == Blk::kData) n = std::min(n, s.buf_sectors);
  // Compressed images are written in whole clusters: a shorter range is
  // taken as a whole (allocated) cluster.
  if (s.compressed) {
    if (n < s.cluster_sectors) {
      n = std::min(s.cluster_sectors, s.total_sectors - sector_num);
      s.status = Blk::kData;
    } else {
      n -= n % s.cluster_sectors;
    }
  }
  co_return n;
}

// convert_co_read: nb_sectors from sector_num of the concatenated sources.
Task<Status> ConvertRead(ConvertState& s, int64_t sector_num, int64_t nb_sectors, uint8_t* buf) {
  while (nb_sectors > 0) {
    size_t cur = 0;
    int64_t cur_offset = 0;
    SelectPart(s, sector_num, &cur, &cur_offset);
    Source& src = (*s.src)[cur];
    const int64_t n = std::min(nb_sectors, src.sectors - (sector_num - cur_offset));
    const int64_t offset = (sector_num - cur_offset) * kSector;
    const int64_t bytes = std::min(n * kSector, src.bytes - offset);
    Status st = co_await src.blk->co_read(offset, buf, bytes);
    if (!st && s.salvage) {
      // As qemu-img --salvage: the chunk again sector by sector; a sector
      // that cannot be read becomes zeros, with a warning.
      st = OkStatus();
      for (int64_t at = 0; at < bytes; at += kSector) {
        const int64_t len = std::min<int64_t>(kSector, bytes - at);
        Status one = co_await src.blk->co_read(offset + at, buf + at, len);
        if (!one) {
          std::fprintf(stderr, "coblk-img: warning: error while reading offset %" PRId64 ": %s\n",
                       offset + at, std::strerror(one.error().errnum()));
          std::memset(buf + at, 0, static_cast<size_t>(len));
        }
      }
    }
    COBLK_CO_RETURN_IF_ERROR(st);
    if (bytes < n * kSector) std::memset(buf + bytes, 0, static_cast<size_t>(n * kSector - bytes));
    sector_num += n;
    nb_sectors -= n;
    buf += n * kSector;
  }
  co_return OkStatus();
}

// convert_co_write.
Task<Status> ConvertWrite(ConvertState& s, int64_t sector_num, int64_t nb_sectors, uint8_t* buf,
                          Blk status) {
  while (nb_sectors > 0) {
    int64_t n = nb_sectors;
    bool write_zeroes = false;
    switch (status) {
      case Blk::kBackingFile:
        // Leave it unallocated: the target's backing file shows through.
        break;
      case Blk::kData: {
        // Written if -S 0, or if there is non-zero data; compressed
        // clusters are written whole unless entirely zero.
        bool write = !s.min_sparse;
        if (!write && !s.compressed) {
          write = IsAllocatedSectorsMin(buf, n, &n, s.min_sparse, sector_num, s.alignment);
        } else if (!write) {
          // qemu-img decides cluster by cluster; a run of clusters that
          // decide alike goes in one request (whose grains the driver can
          // compress in parallel).
          n = std::min(n, s.cluster_sectors);
          write = !IsZero(buf, static_cast<size_t>(n * kSector));
          while (n < nb_sectors) {
            const int64_t next = std::min(nb_sectors - n, s.cluster_sectors);
            if (IsZero(buf + n * kSector, static_cast<size_t>(next * kSector)) == write) break;
            n += next;
          }
        }
        if (write) {
          Status st;
          if (s.compressed) {
            st = co_await s.target->co_write_compressed(sector_num * kSector, buf, n * kSector);
          } else {
            st = co_await s.target->co_write(sector_num * kSector, buf, n * kSector,
                                             s.write_flags);
          }
          if (!st) co_return st;
          break;
        }
        write_zeroes = true;
        break;
      }
      case Blk::kZero:
        write_zeroes = true;
        break;
    }
    if (write_zeroes && !s.has_zero_init) {
      COBLK_CO_RETURN_IF_ERROR(co_await s.target->co_write_zeroes(
          sector_num * kSector, n * kSector, kReqMayUnmap | s.write_flags));
    }
    sector_num += n;
    nb_sectors -= n;
    buf += n * kSector;
  }
  co_return OkStatus();
}

// Progress for the counted chunk [sector_num, sector_num + n) of a status
// run ending at run_end, in qemu-img's steps: qemu-img counts a chunk at a
// time, and its chunks end where coblk's do and also at every boundary of
// the source's status grain, with buffer-sized chunks in between. A chunk
// of qemu-img's that ends after this one is counted with the next.
void CountProgress(ConvertState& s, int64_t sector_num, int64_t n, int64_t run_end) {
  if (sector_num != s.progress_end) s.progress_at = sector_num;  // a new run
  const int64_t end = sector_num + n;
  s.progress_end = end;
  size_t cur = 0;
  int64_t cur_offset = 0;
  SelectPart(s, sector_num, &cur, &cur_offset);
  const int64_t grain = (*s.src)[cur].status_grain;
  for (;;) {
    int64_t next = std::min(run_end, s.progress_at + s.buf_sectors);
    if (grain) next = std::min(next, cur_offset + ((s.progress_at - cur_offset) / grain + 1) * grain);
    if (next > end) break;
    s.allocated_done += next - s.progress_at;
    s.progress_at = next;
    s.progress->print(static_cast<float>(100.0 * static_cast<double>(s.allocated_done) /
                                         static_cast<double>(s.allocated_sectors)),
                      0);
    if (next == end) break;
  }
}

// convert_co_do_copy: one of the -m workers.
Task<void> CopyWorker(ConvertState& s) {
  AlignedBuffer buf(static_cast<size_t>(s.buf_sectors * kSector), 4096);
  for (;;) {
    int64_t n = 0;
    int64_t sector_num = 0;
    int64_t run_end = 0;
    Blk status = Blk::kData;
    {
      CoMutex::Guard guard = co_await s.lock.scoped_lock();
      if (s.failed || s.sector_num >= s.total_sectors) break;
      Result<int64_t> r = co_await IterationSectors(s, s.sector_num);
      if (!r) {
        s.failed = true;
        s.write_turn.notify_all();
        break;
      }
      n = *r;
      sector_num = s.sector_num;
      status = s.status;
      run_end = s.sector_next_status;
      if (!s.min_sparse && status == Blk::kZero) n = std::min(n, s.buf_sectors);
      // Let the other workers go on reading beyond this chunk.
      s.sector_num += n;
    }
    if (s.compressed && status == Blk::kData) {
      // Compressed chunks hold several clusters; qemu-img advances its
      // progress a cluster at a time, and so does this.
      for (int64_t left = n; left > 0; left -= s.cluster_sectors) {
        s.allocated_done += std::min(s.cluster_sectors, left);
        s.progress->print(static_cast<float>(100.0 * static_cast<double>(s.allocated_done) /
                                             static_cast<double>(s.allocated_sectors)),
                          0);
      }
    } else if (status == Blk::kData || (!s.min_sparse && status == Blk::kZero)) {
      CountProgress(s, sector_num, n, run_end);
    }

    // -r: a chunk that is read or written as data waits for its turn.
    if (s.rate_limit.enabled() &&
        (status == Blk::kData || (!s.min_sparse && status == Blk::kZero))) {
      while (s.rate_limit.wait_time().count() > 0) co_await co_sleep(s.rate_limit.wait_time());
      s.rate_limit.account(static_cast<uint64_t>(n * kSector));
    }
    if (status == Blk::kData) {
      Status st = co_await ConvertRead(s, sector_num, n, buf.data());
      if (!st) {
        ImgError("error while reading at byte %" PRId64 ": %s", sector_num * kSector,
                 std::strerror(st.error().errnum()));
        s.failed = true;
      }
    } else if (!s.min_sparse && status == Blk::kZero) {
      status = Blk::kData;
      std::memset(buf.data(), 0, static_cast<size_t>(n * kSector));
    }

    if (s.wr_in_order) {
      while (s.wr_offs != sector_num && !s.failed) co_await s.write_turn.wait();
    }
    if (!s.failed) {
      Status st = co_await ConvertWrite(s, sector_num, n, buf.data(), status);
      if (!st) {
        ImgError("error while writing at byte %" PRId64 ": %s", sector_num * kSector,
                 std::strerror(st.error().errnum()));
        s.failed = true;
      }
    }
    if (s.wr_in_order) {
      s.wr_offs = sector_num + n;
      s.write_turn.notify_all();
    } else if (s.failed) {
      s.write_turn.notify_all();
    }
  }
}

// convert_do_copy.
Task<Status> DoCopy(ConvertState& s) {
  if (!s.has_zero_init && s.target_is_new && s.min_sparse && !s.target_has_backing) {
    s.has_zero_init = s.target->node().has_zero_init();
  }
  if (s.compressed) {
    if (s.cluster_sectors <= 0 || s.cluster_sectors > s.buf_sectors) {
      ImgError("invalid cluster size");
      co_return MakeError(EINVAL, "invalid cluster size");
    }
    // Whole clusters per chunk, as many as fit the buffer (qemu-img takes
    // one; the clusters are still judged one by one in ConvertWrite).
    s.buf_sectors -= s.buf_sectors % s.cluster_sectors;
  }
  // The allocated size, for progress.
  for (int64_t sector_num = 0; sector_num < s.total_sectors;) {
    Result<int64_t> n = co_await IterationSectors(s, sector_num);
    if (!n) co_return std::unexpected(n.error());
    if (s.status == Blk::kData || (!s.min_sparse && s.status == Blk::kZero)) {
      s.allocated_sectors += *n;
    }
    sector_num += *n;
  }

  s.sector_next_status = 0;
  std::vector<Task<void>> workers;
  for (int i = 0; i < s.num_coroutines; i++) workers.push_back(CopyWorker(s));
  co_await when_all(std::move(workers));
  if (s.failed) co_return MakeError(EIO, "convert failed");

  if (s.compressed) {
    // qemu-img's zero-length compressed write ends a stream; coblk's vmdk
    // writes stream tails when flushed and closed.
    Status st = co_await s.target->co_flush();
    if (!st) {
      ImgError("%s", st.error().ToString().c_str());
      co_return st;
    }
  }
  co_return OkStatus();
}

// Formats whose driver implements compressed writes (qemu-img's
// block_driver_can_compress). BlockDriver has no flag for it yet.
bool FormatCanCompress(std::string_view format) { return format == "vmdk"; }

// VMDK's needs_compressed_writes: a streamOptimized (compressed) extent.
bool NeedsCompressedWrites(const ImageInfo& info) {
  for (const auto& [name, child] : info.specific.children) {
    if (name != "extents") continue;
    for (const auto& [idx, extent] : child.children) {
      for (const auto& [k, v] : extent.values) {
        if (k == "compressed" && v == "true") return true;
      }
    }
  }
  return false;
}

bool HasCreateOption(const BlockDriver* drv, const std::string& name) {
  if (!drv) return false;
  for (const CreateOption& o : drv->create_options()) {
    if (o.name == name) return true;
  }
  return false;
}

void InvalidSparseSize() {
  ImgError("Invalid buffer size for sparse output specified. You may use k, M, G, T, P or E "
           "suffixes for");
  ImgError("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
}

int TryHelp() {
  std::fprintf(stderr, "Try 'coblk-img --help' for more information\n");
  return 1;
}

}  // namespace

int ImgConvert(int argc, char** argv) {
  enum { kImageOpts = 256, kTargetIsZero, kSalvage, kBitmaps };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"target-is-zero", no_argument, nullptr, kTargetIsZero},
      {"salvage", no_argument, nullptr, kSalvage},
      {"bitmaps", no_argument, nullptr, kBitmaps},
      {"force-share", no_argument, nullptr, 'U'},
      {nullptr, 0, nullptr, 0},
  };
  std::string fmt, out_fmt = "raw", options, cache = "unsafe", src_cache = "writeback";
  std::string out_baseimg, backing_fmt;
  bool image_opts = false, skip_create = false, progress = false, force_share = false;
  bool copy_offload = false, explicit_min_sparse = false, bitmaps = false;
  std::string snapshot;  // -l
  ConvertState s;

  optind = 0;
  opterr = 0;
  for (int c; (c = getopt_long(argc, argv, ":hf:O:B:F:co:S:pt:T:qnm:WUCr:l:", kLong, nullptr)) !=
              -1;) {
    switch (c) {
      case ':':
      case '?': return ImgBadOption(c, argv);
      case 'h': return ImgHelp();
      case 'f': fmt = optarg; break;
      case 'O': out_fmt = optarg; break;
      case 'B': out_baseimg = optarg; break;
      case 'F': backing_fmt = optarg; break;
      case 'c': s.compressed = true; break;
      case 'o':
        if (!options.empty()) options += ",";
        options += optarg;
        break;
      case 'S': {
        Result<uint64_t> v = ParseSize(optarg);
        if (!v || optarg[0] == '-') {
          InvalidSparseSize();
          return 1;
        }
        if (*v % kSector != 0 || *v / kSector > static_cast<uint64_t>(kMaxBufSectors)) {
          ImgError("Invalid buffer size for sparse output specified. Valid sizes are multiples "
                   "of %" PRId64 " up to %" PRId64 ". Select 0 to disable sparse detection "
                   "(fully allocates output).",
                   kSector, kMaxBufSectors * kSector);
          return 1;
        }
        s.min_sparse = static_cast<int64_t>(*v / kSector);
        explicit_min_sparse = true;
        break;
      }
      case 'p': progress = true; break;
      case 't': cache = optarg; break;
      case 'T': src_cache = optarg; break;
      case 'q': s.quiet = true; break;
      case 'n': skip_create = true; break;
      case 'm': {
        char* end = nullptr;
        errno = 0;
        long v = std::strtol(optarg, &end, 0);
        if (errno || end == optarg || *end || v < 1 || v > kMaxCoroutines) {
          ImgError("Invalid number of coroutines. Allowed number of coroutines is between 1 "
                   "and %d",
                   kMaxCoroutines);
          return 1;
        }
        s.num_coroutines = static_cast<int>(v);
        break;
      }
      case 'W': s.wr_in_order = false; break;
      case 'U': force_share = true; break;
      case kImageOpts: image_opts = true; break;
      case kTargetIsZero: s.has_zero_init = true; break;
      case kSalvage: s.salvage = true; break;
      case kBitmaps: bitmaps = true; break;
      // Copy offloading: coblk's drivers have none, so the data is copied
      // the way qemu-img copies it where offloading fails.
      case 'C': copy_offload = true; break;
      case 'r': {
        int64_t rate = 0;
        if (!ImgCvtNum("rate limit", optarg, 0, INT64_MAX, &rate)) return 1;
        s.rate_limit.set_speed(static_cast<uint64_t>(rate));
        break;
      }
      case 'l': snapshot = optarg; break;
      default: return TryHelp();
    }
  }

  if (skip_create && !options.empty()) {
    ImgError("-o has no effect when skipping image creation");
    return 1;
  }
  if (s.has_zero_init && !skip_create) {
    ImgError("--target-is-zero requires use of -n flag");
    return 1;
  }
  if (copy_offload && s.compressed) {
    ImgError("Cannot enable copy offloading when -c is used");
    return 1;
  }
  if (copy_offload && explicit_min_sparse) {
    ImgError("Cannot enable copy offloading when -S is used");
    return 1;
  }
  const int src_num = argc - optind - 1;
  const std::string out_filename = src_num >= 1 ? argv[argc - 1] : "";
  const bool want_help = options == "help" || options == "?" || options.ends_with(",help") ||
                         options.ends_with(",?") || options.starts_with("help,");
  if (want_help) {
    const BlockDriver* drv = FindFormatDriver(out_fmt);
    if (!drv) {
      ImgError("Unknown file format '%s'", out_fmt.c_str());
      return 1;
    }
    PrintCreateHelp(*drv);
    return 0;
  }
  if (src_num < 1) {
    ImgError("Must specify image file name");
    return 1;
  }
  if (!ParseCacheMode(src_cache)) {
    ImgError("Invalid source cache option: %s", src_cache.c_str());
    return 1;
  }

  if (s.quiet) progress = false;
  Progress prog(progress, 1.0f);
  s.progress = &prog;
  prog.print(0, 100);
  // Every exit from here on ends the progress line, like qemu-img's "out:".
  auto finish = [&](int ret) {
    if (ret == 0) prog.print(100, 0);
    prog.end();
    return ret;
  };

  auto loop_r = EventLoop::Create();
  if (!loop_r) {
    ImgError("%s", loop_r.error().ToString().c_str());
    return finish(1);
  }
  std::unique_ptr<EventLoop> loop = std::move(*loop_r);
  loop->make_current();

  std::vector<Source> sources(static_cast<size_t>(src_num));
  s.src = &sources;
  for (int i = 0; i < src_num; i++) {
    Source& src = sources[static_cast<size_t>(i)];
    src.name = argv[optind + i];
    ImageSpec spec;
    spec.filename = src.name;
    spec.format = fmt;
    spec.image_opts = image_opts;
    spec.cache = src_cache;
    spec.read_only = true;
    spec.force_share = force_share;
    auto blk = OpenImage(*loop, spec);
    if (!blk) {
      ImgError("Could not open '%s': %s", src.name.c_str(), blk.error().ToString().c_str());
      return finish(1);
    }
    src.blk = std::move(*blk);
    if (!snapshot.empty()) {
      // No coblk format has internal snapshots.
      ImgError("Failed to load snapshot: Block format '%s' used by device '' does not support "
               "temporarily loading internal snapshots",
               std::string(src.blk->node().driver()->format_name()).c_str());
      return finish(1);
    }
    src.bytes = src.blk->size();
    src.sectors = (src.bytes + kSector - 1) / kSector;
    BlockNode& node = src.blk->node();
    src.alignment = std::max<int64_t>(
        1, (static_cast<int64_t>(node.limits().request_alignment) + kSector - 1) / kSector);
    src.alignment = std::max(src.alignment, node.get_info().cluster_size / kSector);
    s.total_sectors += src.sectors;
  }

  // No coblk format keeps persistent dirty bitmaps.
  if (bitmaps) {
    ImgError(src_num > 1 ? "Copying bitmaps only possible with single source"
                         : "Source lacks bitmap support");
    return finish(1);
  }

  const BlockDriver* drv = nullptr;
  Options create_opts;
  if (!skip_create) {
    drv = FindFormatDriver(out_fmt);
    if (!drv) {
      ImgError("Unknown file format '%s'", out_fmt.c_str());
      return finish(1);
    }
    if (!options.empty()) {
      Result<Options> parsed = Options::Parse(options);
      if (!parsed) {
        ImgError("%s", parsed.error().message().c_str());
        return finish(1);
      }
      create_opts = std::move(*parsed);
      const BlockDriver* proto = FindProtocolDriver("file");
      for (const auto& [key, value] : create_opts.values()) {
        if (!HasCreateOption(drv, key) && !HasCreateOption(proto, key)) {
          ImgError("Invalid parameter '%s'", key.c_str());
          return finish(1);
        }
      }
    }
    create_opts.set("size", std::to_string(s.total_sectors * kSector));
    // qemu-img's add_old_style_options.
    if (!out_baseimg.empty()) {
      if (!HasCreateOption(drv, "backing_file")) {
        ImgError("Backing file not supported for file format '%s'", out_fmt.c_str());
        return finish(1);
      }
      create_opts.set("backing_file", out_baseimg);
    }
    if (!backing_fmt.empty()) {
      if (!HasCreateOption(drv, "backing_fmt")) {
        ImgError("Backing file format not supported for file format '%s'", out_fmt.c_str());
        return finish(1);
      }
      create_opts.set("backing_fmt", backing_fmt);
    }
  }
  if (std::optional<std::string> b = create_opts.peek("backing_file")) out_baseimg = *b;
  s.target_has_backing = !out_baseimg.empty();
  if (s.has_zero_init && s.target_has_backing) {
    ImgError("Cannot use --target-is-zero when the destination image has a backing file");
    return finish(1);
  }
  if (src_num > 1 && s.target_has_backing) {
    ImgError("Having a backing file for the target makes no sense when concatenating multiple "
             "input images");
    return finish(1);
  }
  for (Source& src : sources) {
    BlockNode& node = src.blk->node();
    src.status_grain =
        QemuStatusGrain(&node, s.target_has_backing ? node.backing() : nullptr) / kSector;
  }
  if (s.target_has_backing && !create_opts.has("backing_fmt")) {
    ImgError("Use of backing file requires explicit backing format");
    return finish(1);
  }
  if (s.compressed) {
    if (drv && !FormatCanCompress(drv->format_name())) {
      ImgError("Compression not supported for this file format");
      return finish(1);
    }
    std::optional<std::string> prealloc = create_opts.peek("preallocation");
    if (prealloc && *prealloc != "off") {
      ImgError("Compression and preallocation not supported at the same time");
      return finish(1);
    }
  }

  if (!skip_create) {
    Status st = sync_wait(*loop, CreateImage(*loop, out_fmt, out_filename, create_opts));
    if (!st) {
      ImgError("%s: error while converting %s: %s", out_filename.c_str(), out_fmt.c_str(),
               st.error().ToString().c_str());
      return finish(1);
    }
  }
  s.target_is_new = !skip_create;

  Result<CacheMode> mode = ParseCacheMode(cache);
  if (!mode) {
    ImgError("Invalid cache option: %s", cache.c_str());
    return finish(1);
  }
  if (mode->writethrough) s.write_flags = kReqFua;
  ImageSpec tspec;
  tspec.filename = out_filename;
  tspec.format = out_fmt;
  tspec.cache = cache;
  auto target = OpenImage(*loop, tspec);
  if (!target) {
    ImgError("Could not open '%s': %s", out_filename.c_str(), target.error().ToString().c_str());
    return finish(1);
  }
  s.target = target->get();
  BlockNode& out = s.target->node();
  if (s.compressed && !FormatCanCompress(out.driver() ? out.driver()->format_name() : "")) {
    ImgError("Compression not supported for this file format");
    return finish(1);
  }

  // Bigger buffers when the target discards in larger units (max 16 MiB).
  s.buf_sectors = std::min(kMaxBufSectors,
                           std::max(s.buf_sectors,
                                    static_cast<int64_t>(out.limits().pdiscard_alignment) /
                                        kSector));
  // Align writes to the target to avoid read-modify-write cycles.
  s.alignment = std::max(Pow2Floor(s.min_sparse),
                         (static_cast<int64_t>(out.limits().request_alignment) + kSector - 1) /
                             kSector);

  if (skip_create) {
    const int64_t output_sectors = (s.target->size() + kSector - 1) / kSector;
    if (output_sectors < s.total_sectors) {
      ImgError("output file is smaller than input file");
      return finish(1);
    }
  }
  if (s.target_has_backing && s.target_is_new && out.backing()) {
    s.target_backing_sectors = (out.backing()->size() + kSector - 1) / kSector;
  }
  const ImageInfo info = out.get_info();
  s.compressed = s.compressed || NeedsCompressedWrites(info);
  s.cluster_sectors = info.cluster_size / kSector;

  Status copied = sync_wait(*loop, DoCopy(s));
  // Closing writes the format's metadata (and a stream's tail): its
  // failure fails the conversion.
  Status closed = s.target->close();
  if (copied && !closed) ImgError("%s", closed.error().ToString().c_str());
  for (Source& src : sources) (void)src.blk->close();
  return finish(copied && closed ? 0 : 1);
}

}  // namespace coblk::tools
