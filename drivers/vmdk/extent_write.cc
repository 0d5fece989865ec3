// Write-side state of an extent: append-point allocation, per-grain locks,
// the metadata map that keeps guest data off metadata, and grain-table
// updates batched behind one flush.
//
// Crash-safety ordering (the invariant: an on-disk grain-table entry only
// ever points at a grain whose data is already on disk):
//   1. the grain's data is written to newly allocated space;
//   2. update_entry() records the entry in memory (reads see it at once) and
//      the writer is acknowledged, like a disk acknowledging into its cache;
//   3. a background committer takes every recorded entry as one batch and
//      flushes the file (fdatasync), making the data of every grain in the
//      batch durable;
//   4. only then are the table sectors (and their redundant copies) written
//      and the cached tables updated.
// A crash before 4 leaks the new grains (unreferenced space, as in QEMU)
// but never exposes unwritten data. flush() waits for the committer to
// write every entry, then flushes the file, so data acknowledged before a
// successful flush() is durable. FUA writes flush before they complete.
// Stream-layout extents keep all tables in memory and write them, with the
// grain directory, after the last grain on each flush(); close adds the
// footer and end-of-stream marker (the streamOptimized layout ESXi and
// ovftool expect). How that stays crash-safe: see begin_stream_session().
// Tail writes take their file space through reserve() like grains, so a
// tail never overlaps a grain allocated while it is written.
#include <algorithm>
#include <array>
#include <cinttypes>

#include "coroutine/spawn.h"
#include "io/event_loop.h"
#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/extent.h"
#include "drivers/vmdk/strfmt.h"

namespace coblk::vmdk {

namespace {

// A directory entry whose table lives only in memory (stream layout, where
// every non-zero entry is such a table and is never read from the file).
constexpr uint32_t kInMemoryTable = UINT32_MAX;

uint64_t SectorsFor(uint64_t bytes) { return (bytes + kSectorSize - 1) / kSectorSize; }

}  // namespace

Extent::GrainLock::~GrainLock() {
  if (!extent_) return;
  auto it = extent_->sp_->grain_locks.find(grain_);
  std::unique_ptr<CoQueue> waiters = std::move(it->second);
  extent_->sp_->grain_locks.erase(it);
  waiters->notify_all();  // they re-check the map and one takes the lock
}

Task<Extent::GrainLock> Extent::lock_grain(uint64_t grain_index) {
  for (;;) {
    auto it = sp_->grain_locks.find(grain_index);
    if (it == sp_->grain_locks.end()) break;
    co_await it->second->wait();
  }
  sp_->grain_locks.emplace(grain_index, std::make_unique<CoQueue>());
  co_return GrainLock(this, grain_index);
}

Task<Status> Extent::enable_writes(bool extent_writable) {
  writable_ = extent_writable && kind_ != ExtentKind::kZero;
  if (!writable_ || kind_ != ExtentKind::kSparse) co_return OkStatus();
  if (sp_->layout.format == ExtentFormat::kSeSparse || sp_->layout.footer_lost) {
    // seSparse is read-only, as in QEMU; a stream cut before its footer is
    // open for check -r only (which writes the file itself).
    writable_ = false;
    co_return OkStatus();
  }
  const bool vmdk3 = sp_->layout.format == ExtentFormat::kVmdk3;
  if (vmdk3) {
    // VMDK3 (COWD) takes grain writes as QEMU does (its tables are
    // preallocated; a directory entry of 0 is refused like VMDK4's). The
    // header's freeSector, which QEMU leaves alone, says where VMware
    // allocates next, so it is kept beyond every grain written here.
    Sector header{};
    COBLK_CO_RETURN_IF_ERROR(co_await file_->pread(0, header.data(), kSectorSize));
    sp_->vmdk3_free_sector = sp_->vmdk3_free_sector_at_open = LoadLe32(header, 28);
  }
  const uint64_t file_size = static_cast<uint64_t>(file_->size());
  // Compressed grains are packed; uncompressed ones stay grain-aligned.
  sp_->append_sector =
      sp_->layout.compressed ? SectorsFor(file_size) : sp_->layout.next_cluster_sector;
  sp_->reserved_end = file_size;
  sp_->opened_size = file_size;

  // Everything that is not guest data: header and descriptor area before the
  // first grain, both directories and every table they point at.
  // (VMDK3 has no grain offset: its header area ends at the directory.)
  const uint64_t header_end =
      vmdk3 ? sp_->layout.l1_table_offset : sp_->layout.grain_start_sector * kSectorSize;
  sp_->metadata.push_back({0, std::max<uint64_t>(kSectorSize, header_end)});
  const uint64_t gd_bytes = sp_->layout.l1_table_bytes(), gt_bytes = sp_->layout.l2_table_bytes();
  if (gd_bytes)
    sp_->metadata.push_back({sp_->layout.l1_table_offset, sp_->layout.l1_table_offset + gd_bytes});
  if (sp_->layout.l1_backup_offset)
    sp_->metadata.push_back(
        {sp_->layout.l1_backup_offset, sp_->layout.l1_backup_offset + gd_bytes});
  auto add_tables = [&](const SparseDirectory<uint32_t>& dir) {
    for (uint32_t i = dir.next_nonzero(0); i < dir.size(); i = dir.next_nonzero(i + 1)) {
      const uint64_t entry = dir[i];
      sp_->metadata.push_back({entry * kSectorSize, entry * kSectorSize + gt_bytes});
    }
  };
  add_tables(sp_->directory);
  add_tables(sp_->backup_directory);
  std::sort(sp_->metadata.begin(), sp_->metadata.end(),
            [](const Sparse::Range& a, const Sparse::Range& b) { return a.begin < b.begin; });

  sp_->stream_layout = false;
  if (sp_->layout.compressed && sp_->layout.gd_at_end) {
    sp_->stream_layout = true;
  } else if (sp_->layout.compressed && sp_->layout.has_marker &&
             sp_->layout.l1_table_offset >= kSectorSize &&
             sp_->layout.l1_table_offset % kSectorSize == 0) {
    // A stream whose header names its directory: one coblk left this way
    // when it crashed mid-session (see begin_stream_session). The tail's
    // GD marker right before the directory tells it from QEMU's
    // streamOptimized layout (tables preallocated after the header).
    Sector before{};
    COBLK_CO_RETURN_IF_ERROR(
        co_await file_->pread(static_cast<int64_t>(sp_->layout.l1_table_offset - kSectorSize),
                              before.data(), kSectorSize));
    sp_->stream_layout = before == EncodeMetadataMarker(MarkerType::kGrainDirectory,
                                                        SectorsFor(gd_bytes));
  }
  if (sp_->stream_layout) {
    sp_->stream_tail = std::make_unique<Sparse::StreamTail>();
    // Every table must stay in memory until the tail is written.
    sp_->cache =
        std::make_unique<GrainTableCache>(sp_->layout.l1_size, static_cast<uint32_t>(gt_bytes),
                                          std::max<uint32_t>(1, sp_->layout.l1_size));
    const uint64_t gd_sector = sp_->layout.l1_table_offset / kSectorSize;
    // New grains may go right after the directory (over the footer and
    // end-of-stream marker, or whatever a crashed session left) only if
    // nothing the directory names lies after it.
    bool all_before = true;
    for (uint32_t i = 0; i < sp_->layout.l1_size; ++i) {
      if (sp_->directory[i] == 0) continue;
      auto at = table_offset(i);
      if (!at) co_return std::unexpected(at.error());
      if (sp_->directory[i] >= gd_sector) all_before = false;
      auto t = co_await sp_->cache->get(i, *file_, *at);
      if (!t) co_return std::unexpected(t.error());
      std::span<const uint8_t> table(*t, gt_bytes);
      for (uint32_t k = 0; k < sp_->layout.l2_size; ++k) {
        const uint32_t v = LoadLe32(table, size_t{k} * 4);
        if (v >= gd_sector && !(sp_->layout.has_zero_grain && v == kGteZeroed)) all_before = false;
      }
      sp_->directory.set(i, kInMemoryTable);
    }
    sp_->stream_header_at_end = sp_->layout.gd_at_end;
    sp_->stream_gd_sector = gd_sector;
    sp_->stream_gd_end = all_before ? gd_sector + SectorsFor(gd_bytes) : 0;
  }
  co_return OkStatus();
}

// Stream layout, crash safety. A stream image is found through the header
// (GD_AT_END: through the footer at the very end of the file). The first
// allocation of a session points the header at the current directory and
// flushes, before anything is written or the file grows; from then on the
// file end may move and grains go right after that directory. Each flush
// writes the tables and directory after the grains, flushes, points the
// header at the new directory and flushes again. finish_writes() at close
// writes the footer and end-of-stream marker, cuts the file there, flushes
// and only then restores GD_AT_END. A crash at any point leaves a header
// (or footer) naming a directory whose tables and grains are all on disk;
// later grains are merely leaked. Opening and closing without a write
// changes nothing.
Task<Status> Extent::write_header_gd_offset(uint64_t gd_offset) {
  // Only gd_offset (header bytes 56..63) changes, so restoring GD_AT_END
  // gives back the original sector byte for byte.
  StoreLe64(sp_->stream_tail->header, 56, gd_offset);
  COBLK_CO_RETURN_IF_ERROR(co_await file_->pwrite(0, sp_->stream_tail->header.data(), kSectorSize));
  co_return co_await file_->flush();
}

Task<Status> Extent::begin_stream_session() {
  while (sp_->stream_starting) co_await sp_->stream_start_waiters.wait();
  if (sp_->stream_session) co_return OkStatus();
  sp_->stream_starting = true;
  Status st = co_await file_->pread(0, sp_->stream_tail->header.data(), kSectorSize);
  // The directory the footer names must be on disk before the header
  // names it: it is, it was read at open (written and flushed before).
  if (st && sp_->stream_header_at_end) st = co_await write_header_gd_offset(sp_->stream_gd_sector);
  if (st) {
    sp_->stream_session = true;
    if (sp_->stream_gd_end) sp_->append_sector = sp_->stream_gd_end;
  }
  sp_->stream_starting = false;
  sp_->stream_start_waiters.notify_all();
  co_return st;
}

// Appending grains one write at a time would extend the file with every
// write, and Linux runs size-extending O_DIRECT AIO synchronously inside
// io_submit. So the file is grown ahead of the append point in large sparse
// steps (costing no disk space) and trimmed back when the image is closed;
// after a crash the excess is merely unused space at the end.
Task<Result<uint64_t>> Extent::allocate(uint64_t bytes) {
  if (sp_->stream_layout && !sp_->stream_session)
    COBLK_CO_RETURN_IF_ERROR(co_await begin_stream_session());
  co_return co_await reserve(SectorsFor(bytes));
}

// The position is taken before the first suspension, so concurrent callers
// (grains and stream tails) get disjoint ranges in call order.
Task<Result<uint64_t>> Extent::reserve(uint64_t sectors) {
  // Grain-table entries are 32-bit sector numbers.
  if (sp_->append_sector + sectors > kExtentMaxSectors)
    co_return MakeError(ENOSPC, "VMDK extent '" + file_->filename() + "' is full");
  const uint64_t at = sp_->append_sector * kSectorSize;
  sp_->append_sector += sectors;
  const uint64_t end = sp_->append_sector * kSectorSize;
  // Growth only ever extends the file: each truncate goes beyond every
  // earlier target, one at a time. While the file does not end on a grow
  // step (the first allocation of a session), everyone waits for the
  // growth before writing: extending a file whose last block is partial
  // while O_DIRECT writes into that block are in flight made ext4's
  // fdatasync fail with EIO (a stream image packs grains into it).
  while (end > sp_->reserved_end || sp_->reserved_end % kGrowStep != 0) {
    if (sp_->growing) {
      co_await sp_->grow_waiters.wait();
      continue;
    }
    sp_->growing = true;
    const uint64_t target =
        (std::max(end, sp_->reserved_end) + kGrowStep - 1) / kGrowStep * kGrowStep;
    Status st = co_await file_->truncate(static_cast<int64_t>(target), true, PreallocMode::kOff);
    // Before any grain lands in the new space, and so durable with the
    // flush that precedes the table entries naming those grains.
    if (st) st = co_await raise_vmdk3_free_sector(target, false);
    sp_->growing = false;
    sp_->grow_waiters.notify_all();
    if (!st) co_return std::unexpected(st.error());
    sp_->reserved_end = std::max(sp_->reserved_end, target);
  }
  co_return at;
}

Task<Status> Extent::raise_vmdk3_free_sector(uint64_t end_bytes, bool lower_ok) {
  if (sp_->layout.format != ExtentFormat::kVmdk3) co_return OkStatus();
  const uint64_t sector = std::min<uint64_t>(
      std::max(SectorsFor(end_bytes), sp_->vmdk3_free_sector_at_open), UINT32_MAX);
  if (sector == sp_->vmdk3_free_sector || (sector < sp_->vmdk3_free_sector && !lower_ok))
    co_return OkStatus();
  std::array<uint8_t, 4> field{};
  StoreLe32(field, 0, static_cast<uint32_t>(sector));
  COBLK_CO_RETURN_IF_ERROR(co_await file_->pwrite(28, field.data(), field.size()));
  sp_->vmdk3_free_sector = sector;
  co_return OkStatus();
}

Task<Status> Extent::finish_writes() {
  if (!writable_ || kind_ != ExtentKind::kSparse) co_return OkStatus();
  if (sp_->stream_layout) co_return co_await write_stream_tail(true);
  // Only growth of this session is cut: whatever the file held beyond the
  // append point at open (an image from another writer) stays.
  const uint64_t end = std::max(sp_->append_sector * kSectorSize, sp_->opened_size);
  if (static_cast<uint64_t>(file_->size()) <= end) co_return OkStatus();
  COBLK_CO_RETURN_IF_ERROR(
      co_await file_->truncate(static_cast<int64_t>(end), true, PreallocMode::kOff));
  sp_->reserved_end = end;
  // The growth was cut back: freeSector follows it, down to the append
  // point (never below what the file held at open).
  co_return co_await raise_vmdk3_free_sector(end, true);
}

Status Extent::check_data_target(uint64_t file_offset, uint64_t bytes) const {
  uint64_t end = 0;
  if (!CheckedAdd(file_offset, bytes, &end) || end > static_cast<uint64_t>(file_->size()))
    return MakeError(EIO, StrFormat("Grain at offset %" PRIu64
                                    " lies past the end of '%s'; refusing to write",
                                    file_offset, file_->filename().c_str()));
  // First metadata range ending after file_offset; overlap if it starts before end.
  auto it = std::upper_bound(sp_->metadata.begin(), sp_->metadata.end(), file_offset,
                             [](uint64_t off, const Sparse::Range& r) { return off < r.end; });
  for (; it != sp_->metadata.end() && it->begin < end; ++it) {
    if (it->end > file_offset)
      return MakeError(EIO, StrFormat("Grain at offset %" PRIu64
                                      " overlaps VMDK metadata in '%s'; refusing to write",
                                      file_offset, file_->filename().c_str()));
  }
  return OkStatus();
}

Status Extent::check_can_allocate(uint64_t offset) const {
  const uint64_t l1 = offset / kSectorSize / sp_->layout.l1_entry_sectors;
  if (l1 >= sp_->layout.l1_size) return MakeError(EIO, "Grain directory index out of range");
  if (sp_->directory[l1] == 0 && !sp_->stream_layout)
    return MakeError(EIO, StrFormat("Grain directory entry %" PRIu64
                                    " of '%s' has no grain table; refusing to allocate "
                                    "(writing would overwrite image metadata)",
                                    l1, file_->filename().c_str()));
  return OkStatus();
}

Task<Status> Extent::update_entry(uint64_t offset, uint32_t value) {
  const uint64_t sector = offset / kSectorSize;
  const uint32_t l1 = static_cast<uint32_t>(sector / sp_->layout.l1_entry_sectors);
  const uint32_t l2 =
      static_cast<uint32_t>((sector / sp_->layout.cluster_sectors) % sp_->layout.l2_size);
  if (sp_->stream_layout) {
    uint8_t* table = sp_->cache->lookup(l1);
    if (!table) table = sp_->cache->install(l1);
    if (!table) co_return MakeError(EIO, "No room for an in-memory grain table");
    sp_->directory.set(l1, kInMemoryTable);
    StoreLe32(std::span<uint8_t>(table, sp_->layout.l2_table_bytes()), size_t{l2} * 4, value);
    ++sp_->stream_gen;
    co_return OkStatus();
  }
  // The grain's data is written; lookups see the new entry from now on,
  // and a background commit puts it on disk after a flush.
  sp_->uncommitted[sector / sp_->layout.cluster_sectors] = value;
  schedule_commit();
  // Bound the metadata a crash could lose and the memory it takes.
  while (sp_->uncommitted.size() >= kMaxUncommitted && sp_->committing)
    co_await sp_->commit_waiters.wait();
  if (!sp_->commit_error) co_return std::unexpected(sp_->commit_error.error());
  co_return OkStatus();
}

// Commits start when enough entries are waiting (one flush then covers
// many allocations), or at the latest kCommitDelay after the first one, so
// the metadata a crash can lose stays bounded in time as well as in size.
void Extent::schedule_commit() {
  if (sp_->committing) return;
  if (sp_->uncommitted.size() >= kCommitThreshold) {
    cancel_commit_timer();
    spawn_now(run_commits());
    return;
  }
  if (sp_->commit_timer) return;
  sp_->commit_timer = file_->loop().add_timer(kCommitDelay, [this] {
    sp_->commit_timer = 0;
    if (!sp_->committing && !sp_->uncommitted.empty()) spawn_now(run_commits());
  });
}

void Extent::cancel_commit_timer() {
  if (sp_->commit_timer) file_->loop().cancel_timer(std::exchange(sp_->commit_timer, 0));
}

Extent::~Extent() {
  if (!sparse()) return;
  cancel_commit_timer();
  delete sp_;
}

// The background committer: repeatedly takes every uncommitted entry as one
// batch (entries added meanwhile form the next), so the number of flushes
// follows the disk's flush latency, not the number of allocations.
Task<void> Extent::run_commits() {
  sp_->committing = true;
  while (!sp_->uncommitted.empty()) {
    std::vector<EntryUpdate> batch;
    batch.reserve(sp_->uncommitted.size());
    for (const auto& [grain, value] : sp_->uncommitted) {
      const uint64_t sector = grain * sp_->layout.cluster_sectors;
      batch.push_back({static_cast<uint32_t>(sector / sp_->layout.l1_entry_sectors),
                       static_cast<uint32_t>(grain % sp_->layout.l2_size), value, grain});
    }
    Status st = co_await commit_batch(batch);
    if (!st) {
      // Entries stay uncommitted (and visible); the error surfaces on the
      // next write or flush, as a failed write-back would.
      sp_->commit_error = st;
      break;
    }
    for (const EntryUpdate& u : batch) {
      auto it = sp_->uncommitted.find(u.grain);
      if (it != sp_->uncommitted.end() && it->second == u.value) sp_->uncommitted.erase(it);
    }
    sp_->commit_waiters.notify_all();
  }
  sp_->committing = false;
  sp_->commit_waiters.notify_all();
}

bool Extent::uncommitted_lookup(uint64_t offset, GrainMapping* out) const {
  auto it = sp_->uncommitted.find(offset / kSectorSize / sp_->layout.cluster_sectors);
  if (it == sp_->uncommitted.end()) return false;
  if (sp_->layout.has_zero_grain && it->second == kGteZeroed) {
    out->state = GrainMapping::kZero;
  } else {
    out->state = GrainMapping::kAllocated;
    out->grain_offset = uint64_t{it->second} * kSectorSize;
  }
  return true;
}

Task<Status> Extent::commit_batch(std::vector<EntryUpdate> batch) {
  // Step 2: the data of every grain in this batch becomes durable.
  COBLK_CO_RETURN_IF_ERROR(co_await file_->flush());
  std::sort(batch.begin(), batch.end(), [](const EntryUpdate& a, const EntryUpdate& b) {
    return a.l1 != b.l1 ? a.l1 < b.l1 : a.l2 < b.l2;
  });
  // Step 3: per grain table, patch the cached copy and write the sectors
  // that changed, primary first, then the redundant table.
  for (size_t i = 0; i < batch.size();) {
    const uint32_t l1 = batch[i].l1;
    auto at = table_offset(l1);
    if (!at) co_return std::unexpected(at.error());
    if (*at == 0) co_return MakeError(EIO, "Grain table disappeared during a write");
    auto table = co_await sp_->cache->get(l1, *file_, *at);
    if (!table) co_return std::unexpected(table.error());
    GrainTableCache::Pin pin(sp_->cache.get(), l1);
    std::span<uint8_t> t(*table, sp_->layout.l2_table_bytes());
    uint64_t first = UINT64_MAX, last = 0;
    std::vector<std::pair<uint32_t, uint32_t>> old_values;  // l2, value before
    for (; i < batch.size() && batch[i].l1 == l1; ++i) {
      old_values.emplace_back(batch[i].l2, LoadLe32(t, size_t{batch[i].l2} * 4));
      StoreLe32(t, size_t{batch[i].l2} * 4, batch[i].value);
      first = std::min<uint64_t>(first, batch[i].l2 * 4 / kSectorSize);
      last = std::max<uint64_t>(last, batch[i].l2 * 4 / kSectorSize);
    }
    file_->debug_event("l2_update");
    Status st = co_await write_table_sectors(l1, *table, first, last);
    if (!st) {
      // The entries may not be on disk: forget them, or a later overwrite
      // of such a grain would be acknowledged into space no table names.
      // (Restored in reverse so a grain updated twice gets its oldest value.)
      for (auto it = old_values.rbegin(); it != old_values.rend(); ++it)
        StoreLe32(t, size_t{it->first} * 4, it->second);
      co_return st;
    }
  }
  co_return OkStatus();
}

Task<Status> Extent::write_table_sectors(uint32_t l1, const uint8_t* table, uint64_t first_sector,
                                         uint64_t last_sector) {
  const uint64_t begin = first_sector * kSectorSize;
  const uint64_t end =
      std::min<uint64_t>((last_sector + 1) * kSectorSize, sp_->layout.l2_table_bytes());
  const uint64_t primary = sp_->directory[l1] * kSectorSize;
  COBLK_CO_RETURN_IF_ERROR(co_await file_->pwrite(
      static_cast<int64_t>(primary + begin), table + begin, static_cast<int64_t>(end - begin)));
  if (sp_->layout.l1_backup_offset && l1 < sp_->backup_directory.size() &&
      sp_->backup_directory[l1] != 0) {
    const uint64_t backup = sp_->backup_directory[l1] * kSectorSize;
    COBLK_CO_RETURN_IF_ERROR(co_await file_->pwrite(
        static_cast<int64_t>(backup + begin), table + begin, static_cast<int64_t>(end - begin)));
  }
  co_return OkStatus();
}

Task<Status> Extent::drain_updates() {
  if (!sparse()) co_return OkStatus();  // flat and ZERO extents commit nothing
  // A failed commit is retried here: flush is where its error belongs.
  if (!sp_->commit_error && !sp_->committing) sp_->commit_error = OkStatus();
  if (!sp_->uncommitted.empty() && !sp_->committing) {
    cancel_commit_timer();
    spawn_now(run_commits());
  }
  while (sp_->committing) co_await sp_->commit_waiters.wait();
  co_return sp_->commit_error;
}

Task<Status> Extent::write_stream_tail(bool final) {
  auto guard = co_await sp_->stream_tail->lock.scoped_lock();
  // Without a session the header and footer on disk are untouched.
  if (!sp_->stream_session) co_return OkStatus();
  const uint64_t gen = sp_->stream_gen;
  const bool clean = gen == sp_->stream_clean_gen;
  if (!final && clean) co_return OkStatus();
  const uint64_t gd_sectors = SectorsFor(sp_->layout.l1_table_bytes());
  auto header = Vmdk4Header::Decode(sp_->header_sector);
  if (!header) co_return std::unexpected(header.error());
  header->rgd_offset = 0;
  header->flags &= ~kFlagRgd;

  // Built without suspending, so it holds exactly the entries of `gen`.
  std::vector<uint8_t> tail;
  uint64_t gd_sector = sp_->stream_gd_sector;
  // At close with nothing new since the last tail, and nothing allocated
  // after it, the footer simply follows that tail's directory.
  const bool footer_only =
      final && clean && sp_->stream_gd_end && sp_->append_sector == sp_->stream_gd_end;
  if (!footer_only) {
    const uint64_t gt_bytes = sp_->layout.l2_table_bytes();
    const uint64_t gt_sectors = SectorsFor(gt_bytes);
    uint64_t tables = 0;
    for (uint32_t i = 0; i < sp_->layout.l1_size; ++i) tables += sp_->directory[i] != 0;
    const uint64_t sectors = tables * (1 + gt_sectors) + 1 + gd_sectors;
    tail.reserve(sectors * kSectorSize + kFooterBytes);
    std::vector<uint8_t> gd(gd_sectors * kSectorSize, 0);
    const uint64_t base = sp_->append_sector;  // reserve() below returns it
    auto append = [&tail](const uint8_t* p, size_t n) { tail.insert(tail.end(), p, p + n); };
    for (uint32_t i = 0; i < sp_->layout.l1_size; ++i) {
      if (sp_->directory[i] == 0) continue;
      const uint8_t* table = sp_->cache->lookup(i);
      if (!table) co_return MakeError(EIO, "In-memory grain table missing");
      Sector marker = EncodeMetadataMarker(MarkerType::kGrainTable, gt_sectors);
      append(marker.data(), marker.size());
      StoreLe32(gd, size_t{i} * 4, static_cast<uint32_t>(base + tail.size() / kSectorSize));
      append(table, gt_bytes);
      tail.resize(SectorsFor(tail.size()) * kSectorSize, 0);
    }
    Sector gd_marker = EncodeMetadataMarker(MarkerType::kGrainDirectory, gd_sectors);
    append(gd_marker.data(), gd_marker.size());
    gd_sector = base + tail.size() / kSectorSize;
    append(gd.data(), gd.size());
  }
  if (final) {
    header->gd_offset = gd_sector;
    std::vector<uint8_t> footer = EncodeFooter(*header);
    tail.insert(tail.end(), footer.begin(), footer.end());
  }
  const uint64_t tail_sectors = tail.size() / kSectorSize;
  if (footer_only) sp_->append_sector = sp_->stream_gd_end;  // nothing was allocated after it
  const uint64_t expected_at = sp_->append_sector * kSectorSize;
  auto at = co_await reserve(tail_sectors);
  if (!at) co_return std::unexpected(at.error());
  if (*at != expected_at) co_return MakeError(EIO, "Stream tail moved while it was built");
  COBLK_CO_RETURN_IF_ERROR(co_await file_->pwrite(static_cast<int64_t>(*at), tail.data(),
                                                  static_cast<int64_t>(tail.size())));
  const uint64_t gd_end = gd_sector + gd_sectors;
  if (final) {
    // Readers find the footer relative to the end of the file: cut the
    // file after the end-of-stream marker, make all of it durable, and
    // only then let the header say GD_AT_END again. Requests have
    // drained (close), so nothing lies beyond the tail.
    const int64_t tail_end = static_cast<int64_t>(*at + tail.size());
    if (file_->size() != tail_end)
      COBLK_CO_RETURN_IF_ERROR(co_await file_->truncate(tail_end, true, PreallocMode::kOff));
    sp_->reserved_end = static_cast<uint64_t>(tail_end);
    COBLK_CO_RETURN_IF_ERROR(co_await file_->flush());
    COBLK_CO_RETURN_IF_ERROR(co_await write_header_gd_offset(kGdAtEnd));
    sp_->stream_session = false;
    sp_->stream_header_at_end = true;
    sp_->stream_gd_sector = gd_sector;
    sp_->stream_gd_end = gd_end;
    sp_->append_sector = gd_end + kFooterBytes / kSectorSize;
    sp_->stream_clean_gen = gen;
    co_return OkStatus();
  }
  // The grains the new tables name, and the tables, become durable before
  // the header names them; the second flush makes the header durable.
  COBLK_CO_RETURN_IF_ERROR(co_await file_->flush());
  COBLK_CO_RETURN_IF_ERROR(co_await write_header_gd_offset(gd_sector));
  sp_->stream_gd_sector = gd_sector;
  sp_->stream_clean_gen = gen;
  // Grains allocated while the tail was written lie after it; otherwise
  // the next grain goes right after the new directory.
  sp_->stream_gd_end = gd_end;
  co_return OkStatus();
}

}  // namespace coblk::vmdk
