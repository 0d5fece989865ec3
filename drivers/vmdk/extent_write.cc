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
  auto it = extent_->grain_locks_.find(grain_);
  std::unique_ptr<CoQueue> waiters = std::move(it->second);
  extent_->grain_locks_.erase(it);
  waiters->notify_all();  // they re-check the map and one takes the lock
}

Task<Extent::GrainLock> Extent::lock_grain(uint64_t grain_index) {
  for (;;) {
    auto it = grain_locks_.find(grain_index);
    if (it == grain_locks_.end()) break;
    co_await it->second->wait();
  }
  grain_locks_.emplace(grain_index, std::make_unique<CoQueue>());
  co_return GrainLock(this, grain_index);
}

Task<Status> Extent::enable_writes(bool extent_writable) {
  writable_ = extent_writable && kind_ != ExtentKind::kZero;
  if (!writable_ || kind_ != ExtentKind::kSparse) co_return OkStatus();
  if (layout_.format != ExtentFormat::kVmdk4 || layout_.footer_lost) {
    // VMDK3 and seSparse are read-only, as in QEMU; a stream cut before
    // its footer is open for check -r only (which writes the file itself).
    writable_ = false;
    co_return OkStatus();
  }
  const uint64_t file_size = static_cast<uint64_t>(file_->size());
  // Compressed grains are packed; uncompressed ones stay grain-aligned.
  append_sector_ = layout_.compressed ? SectorsFor(file_size) : layout_.next_cluster_sector;
  reserved_end_ = file_size;
  opened_size_ = file_size;

  // Everything that is not guest data: header and descriptor area before the
  // first grain, both directories and every table they point at.
  metadata_.push_back({0, std::max<uint64_t>(kSectorSize, layout_.grain_start_sector * kSectorSize)});
  const uint64_t gd_bytes = layout_.l1_table_bytes(), gt_bytes = layout_.l2_table_bytes();
  if (gd_bytes) metadata_.push_back({layout_.l1_table_offset, layout_.l1_table_offset + gd_bytes});
  if (layout_.l1_backup_offset)
    metadata_.push_back({layout_.l1_backup_offset, layout_.l1_backup_offset + gd_bytes});
  auto add_tables = [&](const SparseDirectory<uint32_t>& dir) {
    for (uint32_t i = dir.next_nonzero(0); i < dir.size(); i = dir.next_nonzero(i + 1)) {
      const uint64_t entry = dir[i];
      metadata_.push_back({entry * kSectorSize, entry * kSectorSize + gt_bytes});
    }
  };
  add_tables(directory_);
  add_tables(backup_directory_);
  std::sort(metadata_.begin(), metadata_.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });

  stream_layout_ = false;
  if (layout_.compressed && layout_.gd_at_end) {
    stream_layout_ = true;
  } else if (layout_.compressed && layout_.has_marker && layout_.l1_table_offset >= kSectorSize &&
             layout_.l1_table_offset % kSectorSize == 0) {
    // A stream whose header names its directory: one coblk left this way
    // when it crashed mid-session (see begin_stream_session). The tail's
    // GD marker right before the directory tells it from QEMU's
    // streamOptimized layout (tables preallocated after the header).
    Sector before{};
    COBLK_CO_RETURN_IF_ERROR(co_await file_->pread(
        static_cast<int64_t>(layout_.l1_table_offset - kSectorSize), before.data(), kSectorSize));
    stream_layout_ = before == EncodeMetadataMarker(MarkerType::kGrainDirectory,
                                                    SectorsFor(gd_bytes));
  }
  if (stream_layout_) {
    // Every table must stay in memory until the tail is written.
    cache_ = std::make_unique<GrainTableCache>(layout_.l1_size, static_cast<uint32_t>(gt_bytes),
                                               std::max<uint32_t>(1, layout_.l1_size));
    const uint64_t gd_sector = layout_.l1_table_offset / kSectorSize;
    // New grains may go right after the directory (over the footer and
    // end-of-stream marker, or whatever a crashed session left) only if
    // nothing the directory names lies after it.
    bool all_before = true;
    for (uint32_t i = 0; i < layout_.l1_size; ++i) {
      if (directory_[i] == 0) continue;
      auto at = table_offset(i);
      if (!at) co_return std::unexpected(at.error());
      if (directory_[i] >= gd_sector) all_before = false;
      auto t = co_await cache_->get(i, *file_, *at);
      if (!t) co_return std::unexpected(t.error());
      std::span<const uint8_t> table(*t, gt_bytes);
      for (uint32_t k = 0; k < layout_.l2_size; ++k) {
        const uint32_t v = LoadLe32(table, size_t{k} * 4);
        if (v >= gd_sector && !(layout_.has_zero_grain && v == kGteZeroed)) all_before = false;
      }
      directory_.set(i, kInMemoryTable);
    }
    stream_header_at_end_ = layout_.gd_at_end;
    stream_gd_sector_ = gd_sector;
    stream_gd_end_ = all_before ? gd_sector + SectorsFor(gd_bytes) : 0;
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
  StoreLe64(stream_tail_->header, 56, gd_offset);
  COBLK_CO_RETURN_IF_ERROR(co_await file_->pwrite(0, stream_tail_->header.data(), kSectorSize));
  co_return co_await file_->flush();
}

Task<Status> Extent::begin_stream_session() {
  while (stream_starting_) co_await stream_start_waiters_.wait();
  if (stream_session_) co_return OkStatus();
  stream_starting_ = true;
  Status st = co_await file_->pread(0, stream_tail_->header.data(), kSectorSize);
  // The directory the footer names must be on disk before the header
  // names it: it is, it was read at open (written and flushed before).
  if (st && stream_header_at_end_) st = co_await write_header_gd_offset(stream_gd_sector_);
  if (st) {
    stream_session_ = true;
    if (stream_gd_end_) append_sector_ = stream_gd_end_;
  }
  stream_starting_ = false;
  stream_start_waiters_.notify_all();
  co_return st;
}

// Appending grains one write at a time would extend the file with every
// write, and Linux runs size-extending O_DIRECT AIO synchronously inside
// io_submit. So the file is grown ahead of the append point in large sparse
// steps (costing no disk space) and trimmed back when the image is closed;
// after a crash the excess is merely unused space at the end.
Task<Result<uint64_t>> Extent::allocate(uint64_t bytes) {
  if (stream_layout_ && !stream_session_) COBLK_CO_RETURN_IF_ERROR(co_await begin_stream_session());
  co_return co_await reserve(SectorsFor(bytes));
}

// The position is taken before the first suspension, so concurrent callers
// (grains and stream tails) get disjoint ranges in call order.
Task<Result<uint64_t>> Extent::reserve(uint64_t sectors) {
  // Grain-table entries are 32-bit sector numbers.
  if (append_sector_ + sectors > kExtentMaxSectors)
    co_return MakeError(ENOSPC, "VMDK extent '" + file_->filename() + "' is full");
  const uint64_t at = append_sector_ * kSectorSize;
  append_sector_ += sectors;
  const uint64_t end = append_sector_ * kSectorSize;
  // Growth only ever extends the file: each truncate goes beyond every
  // earlier target, one at a time. While the file does not end on a grow
  // step (the first allocation of a session), everyone waits for the
  // growth before writing: extending a file whose last block is partial
  // while O_DIRECT writes into that block are in flight made ext4's
  // fdatasync fail with EIO (a stream image packs grains into it).
  while (end > reserved_end_ || reserved_end_ % kGrowStep != 0) {
    if (growing_) {
      co_await grow_waiters_.wait();
      continue;
    }
    growing_ = true;
    const uint64_t target = (std::max(end, reserved_end_) + kGrowStep - 1) / kGrowStep * kGrowStep;
    Status st = co_await file_->truncate(static_cast<int64_t>(target), true, PreallocMode::kOff);
    growing_ = false;
    grow_waiters_.notify_all();
    if (!st) co_return std::unexpected(st.error());
    reserved_end_ = std::max(reserved_end_, target);
  }
  co_return at;
}

Task<Status> Extent::finish_writes() {
  if (!writable_ || kind_ != ExtentKind::kSparse) co_return OkStatus();
  if (stream_layout_) co_return co_await write_stream_tail(true);
  // Only growth of this session is cut: whatever the file held beyond the
  // append point at open (an image from another writer) stays.
  const uint64_t end = std::max(append_sector_ * kSectorSize, opened_size_);
  if (static_cast<uint64_t>(file_->size()) <= end) co_return OkStatus();
  COBLK_CO_RETURN_IF_ERROR(co_await file_->truncate(static_cast<int64_t>(end), true, PreallocMode::kOff));
  reserved_end_ = end;
  co_return OkStatus();
}

Status Extent::check_data_target(uint64_t file_offset, uint64_t bytes) const {
  uint64_t end = 0;
  if (!CheckedAdd(file_offset, bytes, &end) || end > static_cast<uint64_t>(file_->size()))
    return MakeError(EIO, StrFormat("Grain at offset %" PRIu64
                                    " lies past the end of '%s'; refusing to write",
                                    file_offset, file_->filename().c_str()));
  // First metadata range ending after file_offset; overlap if it starts before end.
  auto it = std::upper_bound(metadata_.begin(), metadata_.end(), file_offset,
                             [](uint64_t off, const Range& r) { return off < r.end; });
  for (; it != metadata_.end() && it->begin < end; ++it) {
    if (it->end > file_offset)
      return MakeError(EIO, StrFormat("Grain at offset %" PRIu64
                                      " overlaps VMDK metadata in '%s'; refusing to write",
                                      file_offset, file_->filename().c_str()));
  }
  return OkStatus();
}

Status Extent::check_can_allocate(uint64_t offset) const {
  const uint64_t l1 = offset / kSectorSize / layout_.l1_entry_sectors;
  if (l1 >= layout_.l1_size) return MakeError(EIO, "Grain directory index out of range");
  if (directory_[l1] == 0 && !stream_layout_)
    return MakeError(EIO, StrFormat("Grain directory entry %" PRIu64
                                    " of '%s' has no grain table; refusing to allocate "
                                    "(writing would overwrite image metadata)",
                                    l1, file_->filename().c_str()));
  return OkStatus();
}

Task<Status> Extent::update_entry(uint64_t offset, uint32_t value) {
  const uint64_t sector = offset / kSectorSize;
  const uint32_t l1 = static_cast<uint32_t>(sector / layout_.l1_entry_sectors);
  const uint32_t l2 = static_cast<uint32_t>((sector / layout_.cluster_sectors) % layout_.l2_size);
  if (stream_layout_) {
    uint8_t* table = cache_->lookup(l1);
    if (!table) table = cache_->install(l1);
    if (!table) co_return MakeError(EIO, "No room for an in-memory grain table");
    directory_.set(l1, kInMemoryTable);
    StoreLe32(std::span<uint8_t>(table, layout_.l2_table_bytes()), size_t{l2} * 4, value);
    ++stream_gen_;
    co_return OkStatus();
  }
  // The grain's data is written; lookups see the new entry from now on,
  // and a background commit puts it on disk after a flush.
  uncommitted_[sector / layout_.cluster_sectors] = value;
  schedule_commit();
  // Bound the metadata a crash could lose and the memory it takes.
  while (uncommitted_.size() >= kMaxUncommitted && committing_) co_await commit_waiters_.wait();
  if (!commit_error_) co_return std::unexpected(commit_error_.error());
  co_return OkStatus();
}

// Commits start when enough entries are waiting (one flush then covers
// many allocations), or at the latest kCommitDelay after the first one, so
// the metadata a crash can lose stays bounded in time as well as in size.
void Extent::schedule_commit() {
  if (committing_) return;
  if (uncommitted_.size() >= kCommitThreshold) {
    cancel_commit_timer();
    spawn_now(run_commits());
    return;
  }
  if (commit_timer_) return;
  commit_timer_ = file_->loop().add_timer(kCommitDelay, [this] {
    commit_timer_ = 0;
    if (!committing_ && !uncommitted_.empty()) spawn_now(run_commits());
  });
}

void Extent::cancel_commit_timer() {
  if (commit_timer_) file_->loop().cancel_timer(std::exchange(commit_timer_, 0));
}

Extent::~Extent() { if (file_) cancel_commit_timer(); }

// The background committer: repeatedly takes every uncommitted entry as one
// batch (entries added meanwhile form the next), so the number of flushes
// follows the disk's flush latency, not the number of allocations.
Task<void> Extent::run_commits() {
  committing_ = true;
  while (!uncommitted_.empty()) {
    std::vector<EntryUpdate> batch;
    batch.reserve(uncommitted_.size());
    for (const auto& [grain, value] : uncommitted_) {
      const uint64_t sector = grain * layout_.cluster_sectors;
      batch.push_back({static_cast<uint32_t>(sector / layout_.l1_entry_sectors),
                       static_cast<uint32_t>(grain % layout_.l2_size), value, grain});
    }
    Status st = co_await commit_batch(batch);
    if (!st) {
      // Entries stay uncommitted (and visible); the error surfaces on the
      // next write or flush, as a failed write-back would.
      commit_error_ = st;
      break;
    }
    for (const EntryUpdate& u : batch) {
      auto it = uncommitted_.find(u.grain);
      if (it != uncommitted_.end() && it->second == u.value) uncommitted_.erase(it);
    }
    commit_waiters_.notify_all();
  }
  committing_ = false;
  commit_waiters_.notify_all();
}

bool Extent::uncommitted_lookup(uint64_t offset, GrainMapping* out) const {
  auto it = uncommitted_.find(offset / kSectorSize / layout_.cluster_sectors);
  if (it == uncommitted_.end()) return false;
  if (layout_.has_zero_grain && it->second == kGteZeroed) {
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
    auto table = co_await cache_->get(l1, *file_, *at);
    if (!table) co_return std::unexpected(table.error());
    GrainTableCache::Pin pin(cache_.get(), l1);
    std::span<uint8_t> t(*table, layout_.l2_table_bytes());
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
  const uint64_t end = std::min<uint64_t>((last_sector + 1) * kSectorSize, layout_.l2_table_bytes());
  const uint64_t primary = directory_[l1] * kSectorSize;
  COBLK_CO_RETURN_IF_ERROR(co_await file_->pwrite(static_cast<int64_t>(primary + begin),
                                                  table + begin, static_cast<int64_t>(end - begin)));
  if (layout_.l1_backup_offset && l1 < backup_directory_.size() && backup_directory_[l1] != 0) {
    const uint64_t backup = backup_directory_[l1] * kSectorSize;
    COBLK_CO_RETURN_IF_ERROR(co_await file_->pwrite(static_cast<int64_t>(backup + begin),
                                                    table + begin, static_cast<int64_t>(end - begin)));
  }
  co_return OkStatus();
}

Task<Status> Extent::drain_updates() {
  // A failed commit is retried here: flush is where its error belongs.
  if (!commit_error_ && !committing_) commit_error_ = OkStatus();
  if (!uncommitted_.empty() && !committing_) {
    cancel_commit_timer();
    spawn_now(run_commits());
  }
  while (committing_) co_await commit_waiters_.wait();
  co_return commit_error_;
}

Task<Status> Extent::write_stream_tail(bool final) {
  auto guard = co_await stream_tail_->lock.scoped_lock();
  // Without a session the header and footer on disk are untouched.
  if (!stream_session_) co_return OkStatus();
  const uint64_t gen = stream_gen_;
  const bool clean = gen == stream_clean_gen_;
  if (!final && clean) co_return OkStatus();
  const uint64_t gd_sectors = SectorsFor(layout_.l1_table_bytes());
  auto header = Vmdk4Header::Decode(header_sector_);
  if (!header) co_return std::unexpected(header.error());
  header->rgd_offset = 0;
  header->flags &= ~kFlagRgd;

  // Built without suspending, so it holds exactly the entries of `gen`.
  std::vector<uint8_t> tail;
  uint64_t gd_sector = stream_gd_sector_;
  // At close with nothing new since the last tail, and nothing allocated
  // after it, the footer simply follows that tail's directory.
  const bool footer_only = final && clean && stream_gd_end_ && append_sector_ == stream_gd_end_;
  if (!footer_only) {
    const uint64_t gt_bytes = layout_.l2_table_bytes();
    const uint64_t gt_sectors = SectorsFor(gt_bytes);
    uint64_t tables = 0;
    for (uint32_t i = 0; i < layout_.l1_size; ++i) tables += directory_[i] != 0;
    const uint64_t sectors = tables * (1 + gt_sectors) + 1 + gd_sectors;
    tail.reserve(sectors * kSectorSize + kFooterBytes);
    std::vector<uint8_t> gd(gd_sectors * kSectorSize, 0);
    const uint64_t base = append_sector_;  // reserve() below returns it
    auto append = [&tail](const uint8_t* p, size_t n) { tail.insert(tail.end(), p, p + n); };
    for (uint32_t i = 0; i < layout_.l1_size; ++i) {
      if (directory_[i] == 0) continue;
      const uint8_t* table = cache_->lookup(i);
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
  if (footer_only) append_sector_ = stream_gd_end_;  // nothing was allocated after it
  const uint64_t expected_at = append_sector_ * kSectorSize;
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
    reserved_end_ = static_cast<uint64_t>(tail_end);
    COBLK_CO_RETURN_IF_ERROR(co_await file_->flush());
    COBLK_CO_RETURN_IF_ERROR(co_await write_header_gd_offset(kGdAtEnd));
    stream_session_ = false;
    stream_header_at_end_ = true;
    stream_gd_sector_ = gd_sector;
    stream_gd_end_ = gd_end;
    append_sector_ = gd_end + kFooterBytes / kSectorSize;
    stream_clean_gen_ = gen;
    co_return OkStatus();
  }
  // The grains the new tables name, and the tables, become durable before
  // the header names them; the second flush makes the header durable.
  COBLK_CO_RETURN_IF_ERROR(co_await file_->flush());
  COBLK_CO_RETURN_IF_ERROR(co_await write_header_gd_offset(gd_sector));
  stream_gd_sector_ = gd_sector;
  stream_clean_gen_ = gen;
  // Grains allocated while the tail was written lie after it; otherwise
  // the next grain goes right after the new directory.
  stream_gd_end_ = gd_end;
  co_return OkStatus();
}

}  // namespace coblk::vmdk
