// The writes of VMDK repair (coblk-img check -r leaks|all), driven by the
// check walk in vmdk_check.cc.
//
// Crash safety: a kill at any moment of a repair leaves an image no worse
// than before it, because every write keeps the invariant that each
// grain-table and directory entry on disk is either its old value or its
// repaired value, and never names data that is not durable:
//   1. repair_begin() flushes the file first, so every grain a repaired
//      entry may name from then on (an existing grain the redundant table
//      names, a leaked grain marker being salvaged) is durable before any
//      entry names it.
//   2. Entries are only cleared (an entry naming metadata, space past the
//      end or a grain another entry uses — it was wrong already) or set to
//      such durable grains. Grain tables are rewritten in place, the
//      primary before the redundant copy; a torn table write leaves some
//      entries old and some new, each one valid on its own.
//   3. A new grain table (for a directory entry whose table lay outside the
//      file or over metadata, or a missing redundant table) is written after
//      everything referenced and flushed before the directory entry naming
//      it is written.
//   4. Leaked space at the end of the file is cut only after every table
//      write has been flushed, and it holds nothing any entry names (old or
//      new), so the cut cannot take data from under an entry.
//   5. A final flush makes the repair durable.
//   6. A GD_AT_END stream cut before its footer (opened for check only,
//      layout_.footer_lost) gets a new tail after everything kept: tables
//      and directory, flushed; then footer and end-of-stream marker,
//      flushed; then the cut after them. Nothing that was there is read
//      differently before the cut (the file still ends in no footer, so
//      the image stays cut off and a repair starts over), and afterwards
//      the footer names only durable tables and grains.
//   7. A footer naming another directory than a header without GD_AT_END
//      (vmdk_check.cc, choose_directory, before the walk): one sector is
//      rewritten, after the flush of step 1. Either the header's gd_offset
//      becomes GD_AT_END (readers switch from one plausible directory to
//      the footer's, whose tables and grains are durable), or the footer's
//      copy names the header's directory (readers ignore that footer
//      before and after).
// Nothing is written when the check finds nothing to repair, so a second
// repair changes nothing.
#include <algorithm>
#include <cinttypes>
#include <map>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/grain_inflate.h"
#include "drivers/vmdk/strfmt.h"
#include "drivers/vmdk/vmdk_check.h"

namespace coblk::vmdk {

namespace {

uint64_t SectorsFor(uint64_t bytes) { return (bytes + kSectorSize - 1) / kSectorSize; }

}  // namespace

Task<Status> ExtentChecker::repair_begin() { co_return co_await file_.flush(); }

Task<Status> ExtentChecker::write_table(uint64_t table_sector, const std::vector<uint8_t>& table) {
  changed = true;
  file_.debug_event("l2_update");
  co_return co_await file_.pwrite(static_cast<int64_t>(table_sector * kSectorSize), table.data(),
                                  static_cast<int64_t>(table.size()));
}

Task<Status> ExtentChecker::write_directory_entry(uint64_t dir_offset, uint64_t i, uint32_t value) {
  uint8_t b[4];
  StoreLe32(std::span<uint8_t>(b, 4), 0, value);
  changed = true;
  co_return co_await file_.pwrite(static_cast<int64_t>(dir_offset + i * 4), b, 4);
}

// Step 3: a new table goes after everything referenced (and after every
// leaked grain marker, which a salvage may still want), behind a grain
// table marker where the stream has them; it is durable before the caller
// writes the directory entry that names it.
Task<Result<uint64_t>> ExtentChecker::append_table(const std::vector<uint8_t>& table) {
  uint64_t at = std::max({meta_.end_of_set(), data_.end_of_set(), walked_.end_of_set(),
                          overhead_sectors_});
  std::vector<uint8_t> bytes;
  if (stream_tail_layout_) {
    Sector marker = EncodeMetadataMarker(MarkerType::kGrainTable, gt_sectors_);
    bytes.assign(marker.begin(), marker.end());
  }
  bytes.insert(bytes.end(), table.begin(), table.end());
  bytes.resize(SectorsFor(bytes.size()) * kSectorSize, 0);
  const uint64_t sectors = bytes.size() / kSectorSize;
  if (at + sectors > kExtentMaxSectors) co_return MakeError(ENOSPC, "No room for a new grain table");
  changed = true;
  file_.debug_event("l2_alloc_write");
  COBLK_CO_RETURN_IF_ERROR(co_await file_.pwrite(static_cast<int64_t>(at * kSectorSize), bytes.data(),
                                                 static_cast<int64_t>(bytes.size())));
  COBLK_CO_RETURN_IF_ERROR(co_await file_.flush());
  if (at + sectors > file_sectors_) {
    // The bitmaps cover the file as it was; the new table lies beyond.
    for (CheckBitmap* b : {&meta_, &data_, &structure_, &walked_})
      if (b->size() && !b->grow(at + sectors)) co_return MakeError(ENOMEM, "Out of memory for the check bitmaps");
    file_size_ = (at + sectors) * kSectorSize;
    file_sectors_ = at + sectors;
  }
  const uint64_t table_at = stream_tail_layout_ ? at + 1 : at;
  meta_.set(at, at + sectors);
  image_end = std::max(image_end, (at + sectors) * kSectorSize);
  co_return table_at;
}

// Directory entries found bad in pass 1, and primary/redundant directory
// mismatches: see step 3. A compressed extent gets no new table (stream
// layouts keep tables behind their markers, and an entry of 0 is valid
// there: the range reads as unallocated); its bad entry is cleared.
Task<Status> ExtentChecker::repair_directories() {
  const uint32_t n = layout_.l1_size;
  const bool has_rgd = layout_.l1_backup_offset != 0;
  if (!bad_gd_entries_ && !bad_rgd_entries_ && !has_rgd) co_return OkStatus();
  const uint64_t gt_bytes = layout_.l2_table_bytes();
  const uint64_t span = layout_.l1_entry_sectors * kSectorSize;
  auto lost = [&](uint64_t i) {
    const uint64_t b = e_.start + i * span;
    const uint64_t end = std::min(b + span, e_.start + e_.bytes());
    f_.note(StrFormat("Repair: guest bytes %" PRIu64 "..%" PRIu64
                      " now read as unallocated (their grain table was lost)",
                      b, end - 1));
  };
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t raw[4];
    COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(layout_.l1_table_offset + i * 4), raw, 4));
    uint32_t p = LoadLe32(std::span<const uint8_t>(raw, 4), 0);
    uint32_t r = 0;
    if (has_rgd) {
      COBLK_CO_RETURN_IF_ERROR(
          co_await file_.pread(static_cast<int64_t>(layout_.l1_backup_offset + i * 4), raw, 4));
      r = LoadLe32(std::span<const uint8_t>(raw, 4), 0);
    }
    const bool p_bad = p && !gd_ok_.test(i), r_bad = has_rgd && r && !rgd_ok_.test(i);
    const bool mismatch = has_rgd && (p == 0) != (r == 0);
    if (!p_bad && !r_bad && !mismatch) continue;
    if (p_bad) {
      if (layout_.compressed) {
        COBLK_CO_RETURN_IF_ERROR(co_await write_directory_entry(layout_.l1_table_offset, i, 0));
        p = 0;
        lost(i);
      } else {
        // The redundant table's entries that are valid, else zeros.
        std::vector<uint8_t> table(gt_bytes, 0);
        bool kept = false;
        if (has_rgd && r && rgd_ok_.test(i)) {
          std::vector<uint8_t> rt(gt_bytes);
          COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(uint64_t{r} * kSectorSize),
                                                        rt.data(), static_cast<int64_t>(gt_bytes)));
          for (uint32_t j = 0; j < layout_.l2_size; ++j) {
            const uint64_t sector = (i * layout_.l2_size + j) * grain_sectors_;
            if (sector >= layout_.sectors) break;
            const uint32_t v = LoadLe32(rt, size_t{j} * 4);
            Classified c = classify(v, sector, nullptr);
            if (c.verdict == Verdict::kBad) continue;
            if (c.verdict == Verdict::kData) {
              data_.set(c.begin, c.end);
              ++allocated_grains;
            }
            StoreLe32(table, size_t{j} * 4, v);
            kept = kept || v != 0;
          }
        }
        auto at = co_await append_table(table);
        if (!at) co_return std::unexpected(at.error());
        COBLK_CO_RETURN_IF_ERROR(co_await write_directory_entry(layout_.l1_table_offset, i, static_cast<uint32_t>(*at)));
        p = static_cast<uint32_t>(*at);
        gd_ok_.set(i, i + 1);
        if (!kept) lost(i);
      }
      ++corruptions_fixed;
    }
    if (has_rgd) {
      if (p == 0 && r != 0) {
        COBLK_CO_RETURN_IF_ERROR(co_await write_directory_entry(layout_.l1_backup_offset, i, 0));
      } else if (p != 0 && (r == 0 || r_bad)) {
        // A redundant table copied from the (validated) primary.
        std::vector<uint8_t> table(gt_bytes);
        COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(uint64_t{p} * kSectorSize),
                                                      table.data(), static_cast<int64_t>(gt_bytes)));
        auto at = co_await append_table(table);
        if (!at) co_return std::unexpected(at.error());
        COBLK_CO_RETURN_IF_ERROR(co_await write_directory_entry(layout_.l1_backup_offset, i, static_cast<uint32_t>(*at)));
      }
      corruptions_fixed += r_bad + mismatch;
    }
  }
  co_return OkStatus();
}

// The footer's header copy is the one in use (GD_AT_END): sector 0 is
// rewritten from it, keeping its own gd_offset. One sector, written alone.
Task<Status> ExtentChecker::repair_footer() {
  if (!footer_ || !layout_.gd_at_end) co_return OkStatus();
  Vmdk4Header h = *footer_;
  h.gd_offset = header_.gd_offset;
  h.rgd_offset = header_.rgd_offset;
  h.flags = header_.flags;
  const int64_t before = corruptions_fixed;
  for (bool d : {h.capacity != header_.capacity, h.granularity != header_.granularity,
                 h.num_gtes_per_gt != header_.num_gtes_per_gt, h.grain_offset != header_.grain_offset,
                 h.compress_algorithm != header_.compress_algorithm})
    corruptions_fixed += d;
  if (corruptions_fixed == before) co_return OkStatus();
  Sector s{};
  COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(0, s.data(), kSectorSize));
  Sector enc = h.Encode();
  std::copy(enc.begin(), enc.begin() + Vmdk4Header::kEncodedSize, s.begin());
  changed = true;
  COBLK_CO_RETURN_IF_ERROR(co_await file_.pwrite(0, s.data(), kSectorSize));
  header_ = h;
  co_return OkStatus();
}

Task<Result<bool>> ExtentChecker::grain_inflates(const LeakedGrain& lg) {
  std::vector<uint8_t> raw(GrainMarker::kGrainHeaderSize + lg.size), out(layout_.cluster_bytes());
  COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(lg.sector * kSectorSize), raw.data(),
                                                static_cast<int64_t>(raw.size())));
  const uint64_t in_disk =
      std::min<uint64_t>(layout_.cluster_bytes(), layout_.sectors * kSectorSize - lg.lba * kSectorSize);
  if (DecompressGrain(raw, true, out, static_cast<size_t>(in_disk))) co_return true;
  f_.note(StrFormat("Repair: the leaked grain marker at offset %" PRIu64 " does not inflate; not recovered",
                    lg.sector * kSectorSize));
  co_return false;
}

void ExtentChecker::count_recovered(const LeakedGrain& lg) {
  const uint64_t sectors = SectorsFor(GrainMarker::kGrainHeaderSize + lg.size);
  walked_.clear(lg.sector, lg.sector + sectors);
  data_.set(lg.sector, lg.sector + sectors);
  --leaks;
  ++leaks_fixed;
  ++allocated_grains;
  ++compressed_grains;
  ++fragmented_grains;
  f_.note(StrFormat("Repair: recovered the grain of guest sector %" PRIu64 " from the leaked grain marker "
                    "at offset %" PRIu64,
                    e_.start / kSectorSize + lg.lba, lg.sector * kSectorSize));
}

// Stream salvage: grain markers no entry names (written by a writer that
// was cut off before its tables were) become entries again where their
// sector is unallocated and the grain inflates to a whole grain. Later
// markers of the same sector win (the stream is in write order). Entries
// go into the existing tables in place; a range whose table does not exist
// gets a new table (step 3) unless the header depends on a footer at the
// end of the file (GD_AT_END), which a new table would move.
Task<Status> ExtentChecker::salvage_stream_grains() {
  const uint64_t gt_bytes = layout_.l2_table_bytes();
  struct Table {
    uint32_t at = 0;  // sector, 0 = new
    std::vector<uint8_t> bytes;
    bool dirty = false;
  };
  std::map<uint64_t, Table> tables;
  std::map<uint64_t, size_t> chosen;  // grain index -> salvage_ index
  for (size_t k = 0; k < salvage_.size(); ++k) chosen[salvage_[k].lba / grain_sectors_] = k;
  for (const auto& [g, k] : chosen) {
    const LeakedGrain& lg = salvage_[k];
    const uint64_t i = lg.lba / layout_.l1_entry_sectors;
    const uint32_t j = static_cast<uint32_t>(g % layout_.l2_size);
    if (i >= layout_.l1_size) continue;
    auto it = tables.find(i);
    if (it == tables.end()) {
      Table t;
      uint8_t b[4];
      COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(layout_.l1_table_offset + i * 4), b, 4));
      t.at = LoadLe32(std::span<const uint8_t>(b, 4), 0);
      t.bytes.assign(gt_bytes, 0);
      if (t.at) {
        if (!gd_ok_.test(i)) continue;  // a bad table was not repaired
        COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(uint64_t{t.at} * kSectorSize),
                                                      t.bytes.data(), static_cast<int64_t>(gt_bytes)));
      } else if (layout_.gd_at_end) {
        f_.note(StrFormat("Repair: a leaked grain for guest sector %" PRIu64
                          " was not recovered: its grain table does not exist",
                          e_.start / kSectorSize + lg.lba));
        continue;
      }
      it = tables.emplace(i, std::move(t)).first;
    }
    Table& t = it->second;
    if (LoadLe32(t.bytes, size_t{j} * 4) != 0) continue;  // allocated: kept as it reads
    auto ok = co_await grain_inflates(lg);
    if (!ok) co_return std::unexpected(ok.error());
    if (!*ok) continue;
    StoreLe32(t.bytes, size_t{j} * 4, static_cast<uint32_t>(lg.sector));
    t.dirty = true;
    count_recovered(lg);
  }
  // Primary table, then the redundant copy (which names the same grains).
  const bool has_rgd = layout_.l1_backup_offset != 0;
  for (auto& [i, t] : tables) {
    if (!t.dirty) continue;
    uint32_t r = 0;
    if (has_rgd) {
      uint8_t b[4];
      COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(layout_.l1_backup_offset + i * 4), b, 4));
      r = LoadLe32(std::span<const uint8_t>(b, 4), 0);
    }
    if (t.at) {
      COBLK_CO_RETURN_IF_ERROR(co_await write_table(t.at, t.bytes));
    } else {
      auto at = co_await append_table(t.bytes);
      if (!at) co_return std::unexpected(at.error());
      COBLK_CO_RETURN_IF_ERROR(
          co_await write_directory_entry(layout_.l1_table_offset, i, static_cast<uint32_t>(*at)));
      gd_ok_.set(i, i + 1);
    }
    if (!has_rgd) continue;
    if (r && rgd_ok_.test(i)) {
      COBLK_CO_RETURN_IF_ERROR(co_await write_table(r, t.bytes));
    } else if (!r) {
      auto at = co_await append_table(t.bytes);
      if (!at) co_return std::unexpected(at.error());
      COBLK_CO_RETURN_IF_ERROR(
          co_await write_directory_entry(layout_.l1_backup_offset, i, static_cast<uint32_t>(*at)));
      rgd_ok_.set(i, i + 1);
    }
  }
  image_end = std::max({image_end, data_.end_of_set() * kSectorSize});
  image_end = std::min(image_end, file_size_);
  co_return OkStatus();
}

// Step 6: a GD_AT_END stream cut before its footer (layout_.footer_lost)
// gets a new tail, as coblk's stream writer lays it out: after everything
// the walk kept (header area, whole grain markers, old stream structure),
// each table behind a grain table marker, the directory behind its
// marker; flushed; then the footer (the header with the new directory's
// offset) and end-of-stream marker; flushed; then the file is cut after
// them. Until that cut the file does not end in a valid footer (the old
// end was no footer, and the new one lies at the end only once the file
// ends there), so the image stays "cut off" and a new repair starts over;
// from the cut on, the footer names a directory and tables that are
// durable and grains that were (step 1).
Task<Status> ExtentChecker::rebuild_lost_tail() {
  const uint64_t gt_bytes = layout_.l2_table_bytes();
  std::map<uint64_t, size_t> chosen;  // grain index -> salvage_ index; later markers win
  for (size_t k = 0; k < salvage_.size(); ++k) chosen[salvage_[k].lba / grain_sectors_] = k;
  std::map<uint64_t, std::vector<uint8_t>> tables;
  for (const auto& [g, k] : chosen) {
    const LeakedGrain& lg = salvage_[k];
    const uint64_t i = lg.lba / layout_.l1_entry_sectors;
    if (i >= layout_.l1_size) continue;
    auto ok = co_await grain_inflates(lg);
    if (!ok) co_return std::unexpected(ok.error());
    if (!*ok) {
      // Garbage, such as a grain cut in the middle of its last sector (the
      // file's size is seen in whole sectors, zero-filled): unreferenced
      // space again, which the new tail may overwrite if nothing follows.
      walked_.clear(lg.sector, lg.sector + SectorsFor(GrainMarker::kGrainHeaderSize + lg.size));
      --leaks;  // count_leaks counts it again where it stays
      continue;
    }
    std::vector<uint8_t>& t = tables[i];
    if (t.empty()) t.assign(gt_bytes, 0);
    StoreLe32(t, size_t{g % layout_.l2_size} * 4, static_cast<uint32_t>(lg.sector));
    count_recovered(lg);
  }
  const uint64_t at = std::max({meta_.end_of_set(), data_.end_of_set(), walked_.end_of_set(),
                                structure_.end_of_set(), overhead_sectors_});
  std::vector<uint8_t> tail, gd(gd_sectors_ * kSectorSize, 0);
  auto append = [&tail](const uint8_t* p, size_t n) { tail.insert(tail.end(), p, p + n); };
  for (const auto& [i, t] : tables) {
    Sector marker = EncodeMetadataMarker(MarkerType::kGrainTable, gt_sectors_);
    append(marker.data(), marker.size());
    StoreLe32(gd, size_t{i} * 4, static_cast<uint32_t>(at + tail.size() / kSectorSize));
    append(t.data(), t.size());
    tail.resize(SectorsFor(tail.size()) * kSectorSize, 0);
  }
  Sector gd_marker = EncodeMetadataMarker(MarkerType::kGrainDirectory, gd_sectors_);
  append(gd_marker.data(), gd_marker.size());
  const uint64_t gd_sector = at + tail.size() / kSectorSize;
  append(gd.data(), gd.size());
  const uint64_t footer_at = at + tail.size() / kSectorSize;
  const uint64_t end = footer_at + kFooterBytes / kSectorSize;
  if (end > kExtentMaxSectors) co_return MakeError(ENOSPC, "No room for a new grain directory");
  Vmdk4Header h = header_;
  h.gd_offset = gd_sector;
  h.rgd_offset = 0;  // as coblk's and VMware's streams: no redundant directory
  h.flags &= ~kFlagRgd;
  std::vector<uint8_t> footer = EncodeFooter(h);
  changed = true;
  file_.debug_event("l2_alloc_write");
  COBLK_CO_RETURN_IF_ERROR(co_await file_.pwrite(static_cast<int64_t>(at * kSectorSize), tail.data(),
                                                 static_cast<int64_t>(tail.size())));
  COBLK_CO_RETURN_IF_ERROR(co_await file_.flush());
  file_.debug_event("l1_update");
  COBLK_CO_RETURN_IF_ERROR(co_await file_.pwrite(static_cast<int64_t>(footer_at * kSectorSize), footer.data(),
                                                 static_cast<int64_t>(footer.size())));
  COBLK_CO_RETURN_IF_ERROR(co_await file_.flush());
  // What followed the kept stream (a grain cut in the middle, a torn
  // marker) was a trailing leak: the tail replaced it, the cut removes
  // the rest.
  if (file_sectors_ > at)
    leaks_fixed += static_cast<int64_t>((file_sectors_ - at + grain_sectors_ - 1) / grain_sectors_);
  if (end < file_sectors_) {
    COBLK_CO_RETURN_IF_ERROR(co_await file_.truncate(static_cast<int64_t>(end * kSectorSize), true, PreallocMode::kOff));
    f_.note(StrFormat("Repair: cut %" PRIu64 " bytes after the new footer (now %" PRIu64 " bytes)",
                      file_size_ - end * kSectorSize, end * kSectorSize));
  }
  for (CheckBitmap* b : {&meta_, &data_, &structure_, &walked_})
    if (b->size() && !b->grow(end)) co_return MakeError(ENOMEM, "Out of memory for the check bitmaps");
  file_size_ = end * kSectorSize;
  file_sectors_ = end;
  meta_.set(at, end);
  image_end = file_size_;
  ++corruptions_fixed;
  f_.note(StrFormat("Repair: rebuilt %zu grain tables, the grain directory, the footer and the end-of-stream "
                    "marker at offsets %" PRIu64 "..%" PRIu64 " from the grain markers",
                    tables.size(), at * kSectorSize, file_size_ - 1));
  co_return OkStatus();
}

// Step 4: trailing leaked space is cut after the table writes are durable.
Task<Status> ExtentChecker::reclaim_end_leaks() {
  const uint64_t cut = end_leak_begin_ * kSectorSize;
  if (cut >= file_size_) co_return OkStatus();
  COBLK_CO_RETURN_IF_ERROR(co_await file_.flush());
  COBLK_CO_RETURN_IF_ERROR(co_await file_.truncate(static_cast<int64_t>(cut), true, PreallocMode::kOff));
  changed = true;
  const uint64_t grains = (file_sectors_ - end_leak_begin_ + grain_sectors_ - 1) / grain_sectors_;
  leaks_fixed += static_cast<int64_t>(grains);
  f_.note(StrFormat("Repair: cut %" PRIu64 " leaked bytes at the end of the file (now %" PRIu64 " bytes)",
                    file_size_ - cut, cut));
  co_return OkStatus();
}

}  // namespace coblk::vmdk
