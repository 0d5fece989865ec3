// Extent: one piece of a VMDK disk — a flat file range, a sparse file
// (VMDK4 / VMDK3 / seSparse) or a ZERO range — and the grain lookup for it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
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

enum class ExtentKind { kFlat, kZero, kSparse };

// Where a guest offset's grain lives.
struct GrainMapping {
  enum State { kUnallocated, kZero, kAllocated } state = kUnallocated;
  uint64_t grain_offset = 0;  // byte offset of the grain (or its marker) in the file
};

class Extent {
 public:
  // Opens a flat extent of `sectors` sectors starting at start_sector in file.
  static std::unique_ptr<Extent> Flat(BlockNode* file, uint64_t sectors, uint64_t start_sector,
                                      std::string type_name);
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
  const SparseLayout& layout() const { return layout_; }
  uint64_t sectors() const { return sectors_; }
  uint64_t bytes() const { return sectors_ * kSectorSize; }
  // Grain size in bytes; a flat or zero extent is one grain.
  uint64_t grain_bytes() const {
    return kind_ == ExtentKind::kSparse ? layout_.cluster_bytes() : bytes();
  }
  bool compressed() const { return layout_.compressed; }
  const std::string& type_name() const { return type_name_; }
  void set_type_name(std::string t) { type_name_ = std::move(t); }
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
  // The grain directory's shape, for check: table i covers guest bytes
  // [i * table_span_bytes(), (i + 1) * table_span_bytes()) of the extent.
  uint32_t table_count() const { return layout_.l1_size; }
  uint64_t table_span_bytes() const { return layout_.l1_entry_sectors * kSectorSize; }
  // True if table `l1` has no grain at all: its directory entry is 0 and
  // no allocation into it is waiting to be committed.
  bool table_unallocated(uint32_t l1) const {
    return l1 < directory_.size() && directory_[l1] == 0 && uncommitted_.empty();
  }
  // The first directory index >= l1 whose table may hold a grain (see
  // table_unallocated), or table_count() if there is none. Runs of empty
  // entries are skipped a directory page at a time.
  uint32_t next_table(uint32_t l1) const {
    if (!uncommitted_.empty()) return std::min(l1, table_count());
    return directory_.next_nonzero(l1);
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
  bool stream_layout() const { return stream_layout_; }

  // Allocating writes of one grain serialise on that grain; everything else
  // (other grains, overwrites of allocated grains) runs in parallel.
  class GrainLock {
   public:
    GrainLock() = default;
    GrainLock(Extent* e, uint64_t grain) : extent_(e), grain_(grain) {}
    GrainLock(GrainLock&& o) noexcept : extent_(std::exchange(o.extent_, nullptr)), grain_(o.grain_) {}
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
  const GrainTableCache* cache() const { return cache_.get(); }
  // Whether the primary and redundant grain directories disagreed at open.
  const std::string& rgd_mismatch() const { return rgd_mismatch_; }

 public:
  ~Extent();

 private:
  Extent() = default;

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
                                           std::string type_name);
  Task<Status> load_directories(uint64_t cache_bytes);
  // Stream layout (extent_write.cc).
  Task<Status> begin_stream_session();
  Task<Status> write_stream_tail(bool final);
  Task<Status> write_header_gd_offset(uint64_t gd_offset);
  // Takes `sectors` at the append point and grows the file over them.
  Task<Result<uint64_t>> reserve(uint64_t sectors);

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

  ExtentKind kind_ = ExtentKind::kFlat;
  BlockNode* file_ = nullptr;
  uint64_t sectors_ = 0;
  uint64_t flat_offset_ = 0;  // bytes, flat extents
  SparseLayout layout_;
  std::string type_name_;
  // Decoded grain directory: VMDK3/VMDK4 entries as on disk (sector of the
  // table, 0 = none); for seSparse 1 where the raw entry (se_directory_)
  // is non-zero, so that "has a table" reads the same for every format.
  SparseDirectory<uint32_t> directory_;
  SparseDirectory<uint64_t> se_directory_;  // seSparse raw entries
  std::unique_ptr<GrainTableCache> cache_;
  std::string rgd_mismatch_;
  // As read at open (VMDK4 only; empty otherwise): on the heap, so that
  // flat and ZERO extents (a descriptor may have 100,000) stay small.
  std::vector<uint8_t> header_sector_;

  // Write state.
  bool writable_ = false;
  bool stream_layout_ = false;
  // Stream layout state. Invariant: the directory the header (or, with
  // GD_AT_END, the footer) on disk names, and every table it names, are
  // never overwritten; grains only go to the append point after them.
  bool stream_header_at_end_ = false;  // on-disk header says GD_AT_END
  bool stream_session_ = false;        // header now names stream_gd_sector_
  bool stream_starting_ = false;
  CoQueue stream_start_waiters_;
  uint64_t stream_gd_sector_ = 0;      // directory the on-disk header/footer names
  uint64_t stream_gd_end_ = 0;         // sector after it, 0 if not known to end the data
  // Sector 0 as on disk (session only) and the lock that makes one tail
  // (and header update) at a time: on the heap, made by NewSparse, so that
  // flat and ZERO extents (a descriptor may have 100,000) do not carry
  // them (a CoMutex's empty deque alone allocates about 600 bytes).
  struct StreamTail {
    Sector header{};
    CoMutex lock;
  };
  std::unique_ptr<StreamTail> stream_tail_;
  uint64_t stream_gen_ = 0;            // bumped by every entry change
  uint64_t stream_clean_gen_ = 0;      // stream_gen_ the last durable tail holds
  uint64_t append_sector_ = 0;       // next free sector in the file
  SparseDirectory<uint32_t> backup_directory_;  // redundant GD entries (sectors)
  struct Range {
    uint64_t begin, end;             // bytes
  };
  std::vector<Range> metadata_;      // sorted, for check_data_target
  std::unordered_map<uint64_t, std::unique_ptr<CoQueue>> grain_locks_;
  static constexpr size_t kCommitThreshold = 4096;   // entries
  static constexpr size_t kMaxUncommitted = 16384;    // writers wait beyond this
  static constexpr std::chrono::milliseconds kCommitDelay{500};
  uint64_t commit_timer_ = 0;
  static constexpr uint64_t kGrowStep = 64 << 20;
  uint64_t reserved_end_ = 0;  // file size the allocator has grown to
  uint64_t opened_size_ = 0;   // file size when writes were enabled
  bool growing_ = false;
  CoQueue grow_waiters_;
  std::unordered_map<uint64_t, uint32_t> uncommitted_;  // grain index -> entry
  bool committing_ = false;
  Status commit_error_;
  CoQueue commit_waiters_;
};

}  // namespace coblk::vmdk
