// check and repair of VMDK4 sparse extents (monolithicSparse,
// twoGbMaxExtentSparse, streamOptimized): everything QEMU's vmdk check
// finds (entries past the end of the file) and what it does not — leaked
// space, entries pointing at metadata or at a grain another entry uses,
// zeroed-grain entries without the flag, grain-table entries of compressed
// extents that do not name a grain marker of their own sector, markers with
// impossible sizes, a footer that disagrees with the header, redundant
// directory and tables that differ from the primary.
//
// The walk reads the on-disk structures itself (not the extent's caches):
// the grain directory and its redundant copy in bounded chunks, each
// allocated grain table once, and for compressed extents the stream of
// markers sequentially. Memory is four bitmaps with one bit per sector of
// the file (1/1024 of the file size, allocated lazily by the OS via calloc)
// plus one bit per directory entry — never sized by a header field alone.
//
// Repair (fix != 0) happens in the same walk; vmdk_repair.cc holds the
// writes and explains their order. Repair must not run concurrently with
// other requests on the node (coblk-img check -r opens the image alone,
// holding the write lock).
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "block/block_types.h"
#include "coroutine/task.h"
#include "drivers/vmdk/extent.h"
#include "drivers/vmdk/format.h"
#include "util/status.h"

namespace coblk::vmdk {

// Findings of a check: counted exactly, stored up to kMaxCheckMessages,
// then "... and N more".
class CheckFindings {
 public:
  static constexpr size_t kMaxCheckMessages = 100;
  explicit CheckFindings(CheckResult& r) : r_(r) {}
  void corruption(std::string message) {
    ++r_.corruptions;
    note(std::move(message));
  }
  void note(std::string message) {
    if (r_.messages.size() < kMaxCheckMessages)
      r_.messages.push_back(std::move(message));
    else
      ++dropped_;
  }
  void finish() {
    if (dropped_) r_.messages.push_back("... and " + std::to_string(dropped_) + " more");
    dropped_ = 0;
  }
  CheckResult& result() { return r_; }

 private:
  CheckResult& r_;
  uint64_t dropped_ = 0;
};

// One bit per unit, in anonymous memory mapped for it (zero-filled by the
// OS, so untouched parts cost no memory). A summary with one bit per 4 KiB page
// of the bitmap records which pages were ever written: queries skip the
// others without reading them, so a sparse bitmap costs no page faults
// where nothing was set (reading an untouched page would fault it in).
class CheckBitmap {
 public:
  CheckBitmap() = default;
  ~CheckBitmap();
  CheckBitmap(const CheckBitmap&) = delete;
  CheckBitmap& operator=(const CheckBitmap&) = delete;
  bool init(uint64_t bits);
  // Grows to `bits` (new bits clear); false if out of memory.
  bool grow(uint64_t bits);
  uint64_t size() const { return bits_; }
  bool test(uint64_t i) const { return i < bits_ && (word(i / 64) >> (i % 64)) & 1; }
  // [begin, end) clipped to the bitmap.
  bool any(uint64_t begin, uint64_t end) const;
  void set(uint64_t begin, uint64_t end);
  void clear(uint64_t begin, uint64_t end);
  // First index >= from whose bit is `value`, or size().
  uint64_t find(uint64_t from, bool value) const;
  // One past the last set bit (0 if none).
  uint64_t end_of_set() const;
  // Bits [64 * i, 64 * i + 64); 0 beyond the bitmap.
  uint64_t word(uint64_t i) const { return i < words() && touched(i) ? words_[i] : 0; }

 private:
  static constexpr uint64_t kPageWords = 512;  // one summary bit per 4 KiB of words
  uint64_t words() const { return (bits_ + 63) / 64; }
  bool touched(uint64_t word) const {
    const uint64_t p = word / kPageWords;
    return (summary_[p / 64] >> (p % 64)) & 1;
  }
  void touch(uint64_t word) {
    const uint64_t p = word / kPageWords;
    summary_[p / 64] |= uint64_t{1} << (p % 64);
  }

  uint64_t* words_ = nullptr;
  uint64_t mapped_ = 0;  // bytes mapped at words_
  uint64_t bits_ = 0;
  std::vector<uint64_t> summary_;
};

// Zero-filled anonymous memory, 2 MiB aligned with transparent huge pages
// asked for from 256 KiB to 16 MiB (see CheckBitmap); data() is null if out of memory.
class MappedBuffer {
 public:
  explicit MappedBuffer(uint64_t bytes);
  ~MappedBuffer();
  MappedBuffer(const MappedBuffer&) = delete;
  MappedBuffer& operator=(const MappedBuffer&) = delete;
  uint8_t* data() const { return data_; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t mapped_ = 0;
};

class ExtentChecker {
 public:
  // `fix`: CheckFix bits. `label`: how findings name the extent ("" for a
  // single-extent image).
  ExtentChecker(Extent& e, uint32_t fix, std::string label, CheckFindings& findings);
  // Runs the check (and repair). An error means the check could not
  // complete (an I/O error, out of memory): a check error.
  Task<Status> run();

  // Results for the extent.
  int64_t total_grains = 0;
  int64_t allocated_grains = 0;
  int64_t fragmented_grains = 0;
  int64_t compressed_grains = 0;
  int64_t leaks = 0;             // in grains (see count_leaks)
  int64_t corruptions_fixed = 0;
  int64_t leaks_fixed = 0;
  uint64_t image_end = 0;        // bytes: end of the last referenced structure
  bool changed = false;          // repair wrote something

 private:
  // ---- vmdk_check.cc: the walk ----
  Task<Status> read_headers();
  void mark_fixed_metadata();
  void check_directory_overlap();
  Task<Status> walk_directories();  // pass 1: tables named by GD and RGD
  Task<Status> walk_tables();       // pass 2: every entry of every table
  Task<Status> check_table(uint64_t i, std::span<uint8_t> t, uint64_t table_sector, std::span<uint8_t> rt,
                           uint64_t rtable_sector, std::vector<std::array<uint8_t, 16>>& markers);
  Task<Status> walk_stream();       // pass 3: markers of compressed extents
  void count_leaks();
  void check_footer();
  // A footer naming another directory than the header (no GD_AT_END):
  // reports which is plausible and, repairing, makes the header or the
  // footer name it.
  Task<Status> choose_directory();
  // Whether the directory at gd_sector and its tables are plausible: inside
  // the file, tables clear of it and of the header area, every entry 0,
  // a zeroed grain with the flag, or a grain (marker of its own sector)
  // inside the file. Else *why says what is wrong.
  Task<Result<bool>> directory_plausible(uint64_t gd_sector, std::string* why);

  enum class Verdict { kUnallocated, kZero, kData, kBad };
  struct Classified {
    Verdict verdict = Verdict::kUnallocated;
    uint64_t begin = 0, end = 0;  // sectors the grain occupies (kData)
    std::string why;              // kBad
  };
  // Classifies grain-table value `v` for guest sector `sector`; `marker`
  // holds the 16 bytes at the grain (compressed extents with markers).
  Classified classify(uint32_t v, uint64_t sector, const uint8_t* marker) const;
  std::string where(uint64_t sector_in_file) const;  // "the header", ...
  std::string prefix() const;
  bool table_location_ok(uint64_t table_sector, std::string* why) const;

  // ---- vmdk_repair.cc: the writes ----
  Task<Status> repair_begin();
  Task<Status> write_table(uint64_t table_sector, const std::vector<uint8_t>& table);
  // Entry i of the directory at byte offset dir_offset (primary or redundant).
  Task<Status> write_directory_entry(uint64_t dir_offset, uint64_t i, uint32_t value);
  Task<Status> repair_directories();
  Task<Status> salvage_stream_grains();
  Task<Status> rebuild_lost_tail();
  Task<Status> reclaim_end_leaks();
  Task<Status> repair_footer();
  Task<Result<uint64_t>> append_table(const std::vector<uint8_t>& table);

  Extent& e_;
  BlockNode& file_;
  // The extent's layout; a repair that takes the footer's directory over
  // the header's (choose_directory) walks with the footer's.
  SparseLayout layout_;
  uint32_t fix_;
  std::string label_;
  CheckFindings& f_;

  uint64_t file_size_ = 0;
  uint64_t file_sectors_ = 0;   // sectors holding any byte of the file
  uint64_t grain_sectors_ = 0;
  uint64_t gt_sectors_ = 0;
  uint64_t gd_sectors_ = 0;
  uint64_t overhead_sectors_ = 0;  // header area before the first grain
  Vmdk4Header header_;             // sector 0
  std::optional<Vmdk4Header> footer_;  // the footer at the end, if valid
  bool stream_tail_layout_ = false;    // tables/GD preceded by markers
  bool markers_ = false;

  // Sectors of the file: metadata (header, descriptor, directories,
  // tables, footer), referenced grain data, stream structure (metadata
  // marker blocks: not leaks where referenced data follows them), and what
  // the stream walk accounted for itself (leaked grain markers, counted one
  // each; QEMU's zero padding at the end, not a leak).
  CheckBitmap meta_, data_, structure_, walked_;
  // Per directory entry: its table is usable (primary / redundant).
  CheckBitmap gd_ok_, rgd_ok_;
  // Directory entries whose primary (or redundant) table location is
  // bad, found in pass 1; repaired after pass 2.
  uint64_t bad_gd_entries_ = 0, bad_rgd_entries_ = 0;
  int64_t last_data_sector_ = -1;  // for fragmentation: previous grain's end

  // Leaked, well-formed grain markers of compressed extents (repair
  // only): candidates for salvage into unallocated entries.
  struct LeakedGrain {
    uint64_t lba, sector;
    uint32_t size;
  };
  std::vector<LeakedGrain> salvage_;
  // Whether leaked grain `lg` inflates to a whole grain (else noted).
  Task<Result<bool>> grain_inflates(const LeakedGrain& lg);
  // Accounts a recovered leaked grain as referenced data.
  void count_recovered(const LeakedGrain& lg);
  uint64_t interior_leak_grains_ = 0;
  uint64_t end_leak_begin_ = 0;  // sector where the trailing leak starts (0: none)
};

// Checks (and with `fix`, repairs) every sparse extent of a VMDK disk and
// adds the figures to r. Each extent is labelled with its file name when
// there is more than one.
Task<Status> CheckVmdkExtents(const std::vector<Extent*>& extents, uint32_t fix, CheckResult& r,
                              bool* changed);

}  // namespace coblk::vmdk
