// Extent: one piece of a VMDK disk — a flat file range, a sparse file
// (VMDK4 / VMDK3 / seSparse) or a ZERO range — and the grain lookup for it.
//
// Memory: a descriptor may name 100,000 extents (issue 10), nearly all of
// them flat or ZERO in practice. So an Extent holds only what every kind
// needs (kind, sector range, file and offset, type name: 56 bytes, no heap
// of its own); everything a sparse extent needs besides — layout, grain
// directories, table cache, write and stream state, their locks and queues
// — lives in Extent::Sparse, which only sparse extents allocate.
//
// Threads: an Extent is used only on its node's loop thread (every request
// runs there, DESIGN.md), so none of its state needs atomics; the CoQueues
// and CoMutexes in Sparse order coroutines on that thread, not threads.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "block/block_node.h"
#include "coroutine/co_mutex.h"
#include "coroutine/task.h"
#include "drivers/vmdk/descriptor.h"
#include "drivers/vmdk/grain_directory.h"
#include "drivers/vmdk/grain_table_cache.h"
#include "drivers/vmdk/layout.h"
#include "io/io_vector.h"
#include "util/status.h"

namespace coblk::vmdk {

enum class ExtentKind : uint8_t { kFlat, kZero, kSparse };

// Where a guest offset's grain lives.
struct GrainMapping {
  enum State { kUnallocated, kZero, kAllocated } state = kUnallocated;
  uint64_t grain_offset = 0;  // byte offset of the grain (or its marker) in the file
};

class Extent {
 public:
  // Opens a flat extent of `sectors` sectors starting at start_sector in
  // file; `type` is its line's (FLAT or VMFS).
  static std::unique_ptr<Extent> Flat(BlockNode* file, uint64_t sectors, uint64_t start_sector,
                                      ExtentType type);
  static std::unique_ptr<Extent> Zero(uint64_t sectors);
  // Opens a sparse extent by reading its headers and grain directory.
  // read_write selects QEMU's read-only-only checks (e.g. VMDK version 3).
  // cache_bytes bounds the memory for cached grain tables.
  // for_check (OpenFlags::check): a streamOptimized extent whose header
  // says GD_AT_END but whose footer is missing opens with
  // layout().footer_lost instead of failing, for check to repair it.
  static Task<Result<std::unique_ptr<Extent>>> OpenSparse(BlockNode* file, bool read_write,
                                                          uint64_t cache_bytes, bool for_check = false);

  ExtentKind kind() const { return kind_; }
  BlockNode* file() const { return file_; }
  // A sparse extent's layout; a default (empty) one for flat and ZERO.
  const SparseLayout& layout() const { return sparse() ? sp_->layout : kNoLayout; }
  uint64_t sectors() const { return sectors_; }
  uint64_t bytes() const { return sectors_ * kSectorSize; }
  // Grain size in bytes; a flat or zero extent is one grain.
  uint64_t grain_bytes() const {
    return sparse() ? sp_->layout.cluster_bytes() : bytes();
  }
  bool compressed() const { return sparse() && sp_->layout.compressed; }
  // The type its extent line gives (nullopt for a monolithic file, which
  // has no extent line), and its name ("FLAT", "SPARSE", ...; "" if none).
  std::optional<ExtentType> line_type() const {
    return has_line_type_ ? std::optional<ExtentType>(line_type_) : std::nullopt;
  }
  void set_line_type(std::optional<ExtentType> t) {
    has_line_type_ = t.has_value();
    line_type_ = t.value_or(ExtentType::kSparse);
  }
  const char* type_name() const { return has_line_type_ ? ExtentTypeName(line_type_) : ""; }
  // Virtual-disk position, set by the disk when extents are concatenated.
  uint64_t start = 0;  // bytes
  uint64_t end() const { return start + bytes(); }

  // Grain lookup for an offset relative to the extent start. Hits in the
  // grain-table cache complete without suspending.
  Task<Result<GrainMapping>> lookup(uint64_t offset);
  // Synchronous fast path: true and *out set if the answer needs no I/O.
  bool try_lookup(uint64_t offset, GrainMapping* out, Status* error);

  // The mapping at `offset` and how many bytes from there (at most
  // max_bytes, never past the extent) share it: the same state and, for
  // uncompressed data, one contiguous file range. A directory entry with no
  // grain table is skipped whole; tables are scanned in memory, so the cost
  // grows with the allocated tables in range, not with the disk size.
  struct Run {
    GrainMapping mapping;
    uint64_t bytes = 0;
  };
  Task<Result<Run>> lookup_run(uint64_t offset, uint64_t max_bytes);
  // The grain directory's shape, for check (sparse extents only): table i
  // covers guest bytes [i * table_span_bytes(), (i + 1) * table_span_bytes())
  // of the extent.
  uint32_t table_count() const { return sp_->layout.l1_size; }
  uint64_t table_span_bytes() const { return sp_->layout.l1_entry_sectors * kSectorSize; }
  // True if table `l1` has no grain at all: its directory entry is 0 and
  // no allocation into it is waiting to be committed. Sparse extents only.
  bool table_unallocated(uint32_t l1) const {
    return l1 < sp_->directory.size() && sp_->directory[l1] == 0 && sp_->uncommitted.empty();
  }
  // The first directory index >= l1 whose table may hold a grain (see
  // table_unallocated), or table_count() if there is none. Runs of empty
  // entries are skipped a directory page at a time. Sparse extents only.
  uint32_t next_table(uint32_t l1) const {
    if (!sp_->uncommitted.empty()) return std::min(l1, table_count());
    return sp_->directory.next_nonzero(l1);
  }

  // Reads bytes at `offset` (relative to the extent) that lie inside one
  // allocated grain into qiov.
  Task<Status> read_allocated(const GrainMapping& m, uint64_t offset, IoVector& qiov);

  // ---- Write side (extent_write.cc) ----

  // Prepares a sparse extent for writing: the append point, the metadata
  // map used to refuse writes over metadata, and for stream-layout
  // (streamOptimized with the grain directory at the end) all grain tables
  // in memory, since their on-disk copies are only written at flush.
  Task<Status> enable_writes(bool extent_writable);
  bool writable() const { return writable_; }
  bool stream_layout() const { return sparse() && sp_->stream_layout; }

  // Allocating writes of one grain serialise on that grain; everything else
  // (other grains, overwrites of allocated grains) runs in parallel.
  class GrainLock {
   public:
    GrainLock() = default;
    GrainLock(Extent* e, uint64_t grain) : extent_(e), grain_(grain) {}
    GrainLock(GrainLock&& o) noexcept
        : extent_(std::exchange(o.extent_, nullptr)), grain_(o.grain_) {}
    GrainLock& operator=(GrainLock&&) = delete;
    ~GrainLock();

   private:
    Extent* extent_ = nullptr;
    uint64_t grain_ = 0;
  };
  Task<GrainLock> lock_grain(uint64_t grain_index);

  // Reserves `bytes` (rounded up to sectors) at the end of the extent file
  // for a new grain. On a stream-layout extent the first one of a session
  // first points the header at the grain directory (see extent_write.cc).
  Task<Result<uint64_t>> allocate(uint64_t bytes);
  // At close: cuts the file back to the append point (see allocate); a
  // stream-layout extent written to in this session gets its final tail
  // (ending in footer and end-of-stream marker) and its GD_AT_END header
  // back instead. Untouched images stay byte-for-byte unchanged.
  Task<Status> finish_writes();
  // Refuses in-place writes over the header, descriptor, grain directories,
  // grain tables or past the end of the file (hostile or corrupt entries).
  Status check_data_target(uint64_t file_offset, uint64_t bytes) const;
  // Whether the grain table for this offset exists (a GD entry of 0 cannot
  // take an allocation without a new table).
  Status check_can_allocate(uint64_t offset) const;

  // Points the grain-table entry for `offset` at `value` (sector number or
  // kGteZeroed) once the grain's data is written. The entry is visible to
  // lookups at once and reaches the disk through a background commit that
  // flushes the data first (see extent_write.cc); stream layout keeps it in
  // the in-memory tables until the tail is written.
  Task<Status> update_entry(uint64_t offset, uint32_t value);

  // Stream layout, at flush: if an entry changed since the last tail,
  // writes grain tables and grain directory after the last grain, makes
  // them durable, then points the header at the new directory.
  Task<Status> write_stream_tail() { return write_stream_tail(false); }
  // Commits every recorded entry and waits for it; the commit's error, if any.
  Task<Status> drain_updates();

  // Facts for `info`.
  InfoTree info() const;
  // The grain-table cache; nullptr for flat and ZERO extents.
  const GrainTableCache* cache() const { return sparse() ? sp_->cache.get() : nullptr; }
  // Whether the primary and redundant grain directories disagreed at open
  // (empty if they agree, or the extent is not sparse).
  const std::string& rgd_mismatch() const { return sparse() ? sp_->rgd_mismatch : kNoMismatch; }

 public:
  ~Extent();
  Extent(const Extent&) = delete;  // owns sp_
  Extent& operator=(const Extent&) = delete;

 private:
  Extent() = default;
  bool sparse() const { return kind_ == ExtentKind::kSparse; }

  static Task<Result<std::unique_ptr<Extent>>> OpenVmdk4(BlockNode* file, bool read_write,
                                                         uint64_t cache_bytes, uint64_t file_size,
                                                         bool for_check);
  static Task<Result<std::unique_ptr<Extent>>> OpenVmdk3(BlockNode* file, uint64_t cache_bytes,
                                                         uint64_t file_size);
  static Task<Result<std::unique_ptr<Extent>>> OpenSeSparse(BlockNode* file, bool read_write,
                                                            uint64_t cache_bytes,
                                                            uint64_t file_size);
  // A sparse extent over `file` with a validated layout; the caller then
  // loads its directories.
  static std::unique_ptr<Extent> NewSparse(BlockNode* file, const SparseLayout& layout,
                                           ExtentType type);
  Task<Status> load_directories(uint64_t cache_bytes);
  // Stream layout (extent_write.cc).
  Task<Status> begin_stream_session();
  Task<Status> write_stream_tail(bool final);
  Task<Status> write_header_gd_offset(uint64_t gd_offset);
  // Takes `sectors` at the append point and grows the file over them.
  Task<Result<uint64_t>> reserve(uint64_t sectors);
  // VMDK3: raises the header's freeSector to `end_bytes` (no-op otherwise).
  Task<Status> raise_vmdk3_free_sector(uint64_t end_bytes, bool lower_ok);

  // Grain-table file offset for directory index l1 (0 = none), or error.
  Result<uint64_t> table_offset(uint32_t l1) const;
  // Decodes entry l2 of a loaded table.
  Result<GrainMapping> decode_entry(const uint8_t* table, uint32_t l2) const;

  Task<Status> read_compressed(const GrainMapping& m, uint64_t offset_in_grain, IoVector& qiov);

  struct EntryUpdate {
    uint32_t l1;
    uint32_t l2;
    uint32_t value;
    uint64_t grain;
  };
  Task<Status> commit_batch(std::vector<EntryUpdate> batch);
  Task<void> run_commits();
  void schedule_commit();
  void cancel_commit_timer();
  // Entries written but not committed yet; true and *out set if found.
  bool uncommitted_lookup(uint64_t offset, GrainMapping* out) const;
  Task<Status> write_table_sectors(uint32_t l1, const uint8_t* table, uint64_t first_sector,
                                   uint64_t last_sector);

  static inline const SparseLayout kNoLayout{};
  static inline const std::string kNoMismatch;

  // Everything only a sparse extent needs: made by NewSparse, absent for
  // flat and ZERO extents. Used on the loop thread only (see the top
  // of this file); the invariants of each part are stated beside it.
  struct Sparse {
    SparseLayout layout;
    // Decoded grain directory: VMDK3/VMDK4 entries as on disk (sector of the
    // table, 0 = none); for seSparse 1 where the raw entry (se_directory)
    // is non-zero, so that "has a table" reads the same for every format.
    SparseDirectory<uint32_t> directory;
    SparseDirectory<uint64_t> se_directory;  // seSparse raw entries
    std::unique_ptr<GrainTableCache> cache;
    std::string rgd_mismatch;
    // As read at open (VMDK4 only; empty otherwise).
    std::vector<uint8_t> header_sector;

    // Write state (extent_write.cc).
    bool stream_layout = false;
    // Stream layout state. Invariant: the directory the header (or, with
    // GD_AT_END, the footer) on disk names, and every table it names, are
    // never overwritten; grains only go to the append point after them.
    bool stream_header_at_end = false;  // on-disk header says GD_AT_END
    bool stream_session = false;        // header now names stream_gd_sector
    bool stream_starting = false;       // begin_stream_session in progress
    CoQueue stream_start_waiters;       // wait for stream_starting to clear
    uint64_t stream_gd_sector = 0;      // directory the on-disk header/footer names
    uint64_t stream_gd_end = 0;         // sector after it, 0 if not known to end the data
    // Sector 0 as on disk (session only) and the lock that makes one tail
    // (and header update) at a time: made by enable_writes for a
    // stream-layout extent only (a CoMutex's empty deque alone allocates
    // about 600 bytes, the sector 512).
    struct StreamTail {
      Sector header{};
      CoMutex lock;
    };
    std::unique_ptr<StreamTail> stream_tail;
    uint64_t stream_gen = 0;            // bumped by every entry change
    uint64_t stream_clean_gen = 0;      // stream_gen the last durable tail holds
    uint64_t append_sector = 0;         // next free sector in the file
    SparseDirectory<uint32_t> backup_directory;  // redundant GD entries (sectors)
    struct Range {
      uint64_t begin, end;  // bytes
    };
    std::vector<Range> metadata;  // sorted, for check_data_target
    // Grains with an allocating writer (GrainLock); others wait on the queue
    // and re-check the map when it is released.
    std::unordered_map<uint64_t, std::unique_ptr<CoQueue>> grain_locks;
    uint64_t commit_timer = 0;
    uint64_t reserved_end = 0;  // file size the allocator has grown to
    uint64_t opened_size = 0;   // file size when writes were enabled
    // VMDK3: the header's freeSector (QEMU's file_sectors), where VMware
    // allocates its next grain; kept at or beyond everything allocated.
    uint64_t vmdk3_free_sector = 0;
    uint64_t vmdk3_free_sector_at_open = 0;
    bool growing = false;       // one truncate (growth) at a time, see reserve()
    CoQueue grow_waiters;
    // Entries written but not committed: visible to lookups, put on disk by
    // the background committer after a flush (crash-safety order: see the
    // top of extent_write.cc).
    std::unordered_map<uint64_t, uint32_t> uncommitted;  // grain index -> entry
    bool committing = false;    // one run_commits at a time
    Status commit_error;
    CoQueue commit_waiters;
  };

  // Common to every kind (keep it small: see the top of this file).
  ExtentKind kind_ = ExtentKind::kFlat;
  bool writable_ = false;
  bool has_line_type_ = false;
  ExtentType line_type_ = ExtentType::kSparse;
  BlockNode* file_ = nullptr;  // null for ZERO
  uint64_t sectors_ = 0;
  // Flat: the byte offset of the extent in file_. Sparse: its Sparse,
  // owned (made by NewSparse, deleted by ~Extent). ZERO: unused. Which one
  // is live follows kind_, which never changes after construction.
  union {
    uint64_t flat_offset_ = 0;
    Sparse* sp_;
  };

  static constexpr size_t kCommitThreshold = 4096;   // entries
  static constexpr size_t kMaxUncommitted = 16384;    // writers wait beyond this
  static constexpr std::chrono::milliseconds kCommitDelay{500};
  static constexpr uint64_t kGrowStep = 64 << 20;
};

}  // namespace coblk::vmdk
