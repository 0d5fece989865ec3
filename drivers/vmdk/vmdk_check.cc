// The check walk of a VMDK4 sparse extent (see vmdk_check.h).
//
// Pass 1 reads the grain directory, then the redundant one, in chunks and
// marks every table they name as metadata; a table outside the file or
// over the header, descriptor, a directory or another table is a
// corruption. Pass 2 reads each usable table (and its redundant copy) and
// classifies every entry; grains that are fine are marked in the data
// bitmap, so a later entry naming the same sectors is a duplicate. Pass 3
// (compressed extents with markers) walks the stream of markers from the
// first grain to the end of the file, finding grain markers no entry names
// (leaked grains, and what a stream salvage can recover). Leaks are the
// sectors after the header area that nothing references, counted in grains.
#include "drivers/vmdk/vmdk_check.h"

#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "coroutine/spawn.h"
#include "coroutine/when_all.h"
#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/layout.h"
#include "drivers/vmdk/strfmt.h"

namespace coblk::vmdk {

// ---- CheckBitmap ------------------------------------------------------------

namespace {

uint64_t BitsFrom(uint64_t bit) { return ~uint64_t{0} << bit; }                 // [bit, 64)
uint64_t BitsBelow(uint64_t bit) { return bit ? ~uint64_t{0} >> (64 - bit) : 0; }  // [0, bit)

// The bits of word w within [begin, end) (w must overlap the range).
uint64_t RangeMask(uint64_t w, uint64_t begin, uint64_t end) {
  uint64_t m = ~uint64_t{0};
  if (w == begin / 64) m &= BitsFrom(begin % 64);
  if (w == (end - 1) / 64 && end % 64) m &= BitsBelow(end % 64);
  return m;
}

uint64_t SummaryWords(uint64_t words, uint64_t page_words) {
  return std::max<uint64_t>(1, (words + page_words * 64 - 1) / (page_words * 64));
}

}  // namespace

// The words are anonymous memory mapped by the bitmap itself: page
// aligned, so that a summary page is an OS page (4 KiB), zero-filled and
// allocated by the OS only where written. A bitmap of kHugeMinBytes to
// kHugeMaxBytes (a file of 1 to 64 GiB) is 2 MiB aligned and asks for
// transparent huge pages (a hint): a dense bitmap then costs one page
// fault per 2 MiB instead of 512, which is most of a check's time for a
// large image with its tables in the page cache. Memory stays bounded by
// the bitmap's size (rounded up to 2 MiB); only a sparse bitmap costs more
// than the parts it touches.
namespace {

constexpr uint64_t kHugePage = 2 << 20;
constexpr uint64_t kHugeMinBytes = 256 << 10;
constexpr uint64_t kHugeMaxBytes = 16 << 20;

uint64_t RoundUp(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

// Zero-filled anonymous memory of at least `bytes`; *mapped is its length.
void* MapZeroed(uint64_t bytes, uint64_t* mapped) {
  bytes = RoundUp(std::max<uint64_t>(1, bytes), 4096);
  if (bytes < kHugeMinBytes || bytes > kHugeMaxBytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    *mapped = bytes;
    return p == MAP_FAILED ? nullptr : p;
  }
  // 2 MiB aligned: map a huge page more and unmap the unaligned ends.
  const uint64_t len = RoundUp(bytes, kHugePage);
  void* p = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (p == MAP_FAILED) return nullptr;
  const auto base = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = RoundUp(base, kHugePage);
  if (aligned > base) ::munmap(p, aligned - base);
  if (aligned + len < base + len + kHugePage) ::munmap(reinterpret_cast<void*>(aligned + len), base + kHugePage - aligned);
  (void)::madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);
  *mapped = len;
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

MappedBuffer::MappedBuffer(uint64_t bytes) { data_ = static_cast<uint8_t*>(MapZeroed(bytes, &mapped_)); }

MappedBuffer::~MappedBuffer() {
  if (data_) ::munmap(data_, mapped_);
}

CheckBitmap::~CheckBitmap() {
  if (words_) ::munmap(words_, mapped_);
}

bool CheckBitmap::init(uint64_t bits) {
  if (words_) ::munmap(words_, mapped_);
  words_ = nullptr;
  bits_ = 0;
  summary_.clear();
  void* p = MapZeroed((bits + 63) / 64 * 8, &mapped_);
  if (!p) return false;
  words_ = static_cast<uint64_t*>(p);
  bits_ = bits;
  summary_.assign(SummaryWords(words(), kPageWords), 0);
  return true;
}

bool CheckBitmap::grow(uint64_t bits) {
  if (bits <= bits_) return true;
  const uint64_t bytes = RoundUp((bits + 63) / 64 * 8, 4096);
  if (bytes > mapped_) {
    // The pages mremap adds are zero-filled, and untouched.
    void* p = ::mremap(words_, mapped_, bytes, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) return false;
    words_ = static_cast<uint64_t*>(p);
    mapped_ = bytes;
  }
  bits_ = bits;
  summary_.resize(SummaryWords(words(), kPageWords), 0);
  return true;
}

bool CheckBitmap::any(uint64_t begin, uint64_t end) const {
  end = std::min(end, bits_);
  if (begin >= end) return false;
  for (uint64_t w = begin / 64, last = (end - 1) / 64; w <= last;) {
    if (!touched(w)) {
      w = (w / kPageWords + 1) * kPageWords;
      continue;
    }
    if (words_[w] & RangeMask(w, begin, end)) return true;
    ++w;
  }
  return false;
}

void CheckBitmap::set(uint64_t begin, uint64_t end) {
  end = std::min(end, bits_);
  if (begin >= end) return;
  for (uint64_t w = begin / 64, last = (end - 1) / 64; w <= last; ++w) {
    // A page written for the first time is all zero: store without
    // loading, so the OS faults it in once (for the write), not twice.
    const uint64_t m = RangeMask(w, begin, end);
    if (touched(w)) {
      words_[w] |= m;
    } else {
      touch(w);
      words_[w] = m;
    }
  }
}

void CheckBitmap::clear(uint64_t begin, uint64_t end) {
  end = std::min(end, bits_);
  if (begin >= end) return;
  for (uint64_t w = begin / 64, last = (end - 1) / 64; w <= last;) {
    if (!touched(w)) {  // nothing set there
      w = (w / kPageWords + 1) * kPageWords;
      continue;
    }
    words_[w] &= ~RangeMask(w, begin, end);
    ++w;
  }
}

uint64_t CheckBitmap::find(uint64_t from, bool value) const {
  for (uint64_t i = from; i < bits_;) {
    const uint64_t w = i / 64;
    if (!touched(w)) {
      if (!value) return i;
      i = (w / kPageWords + 1) * kPageWords * 64;
      continue;
    }
    const uint64_t masked = (value ? words_[w] : ~words_[w]) & BitsFrom(i % 64);
    if (masked) return std::min(bits_, w * 64 + static_cast<uint64_t>(__builtin_ctzll(masked)));
    i = (w + 1) * 64;
  }
  return bits_;
}

uint64_t CheckBitmap::end_of_set() const {
  for (uint64_t w = words(); w-- > 0;) {
    if (!touched(w)) {
      w = w / kPageWords * kPageWords;  // the loop steps below this page
      continue;
    }
    if (words_[w]) return w * 64 + 64 - static_cast<uint64_t>(__builtin_clzll(words_[w]));
  }
  return 0;
}

// ---- helpers ------------------------------------------------------------------

namespace {

uint64_t SectorsFor(uint64_t bytes) { return (bytes + kSectorSize - 1) / kSectorSize; }

// Directory entries per chunk: 256 KiB of directory at a time.
constexpr uint64_t kGdChunk = 65536;
// Bytes of grain tables (per side) read at once in pass 2.
constexpr uint64_t kTableBatchBytes = 512 << 10;
// Reads of ReadAll in flight at once.
constexpr size_t kReadsInFlight = 16;
// ReadAll merges requests whose file ranges lie at most kMaxGap apart into
// one read of at most kMaxSpan bytes (unless one request alone is larger):
// tables usually follow each other after the directory, and the grain
// markers of a stream lie a compressed grain apart.
constexpr uint64_t kMaxGap = 64 << 10;
constexpr uint64_t kMaxSpan = 1 << 20;

struct ReadReq {
  uint64_t offset;
  uint8_t* buf;
  uint64_t bytes;
};

// One merged read: requests [first, last) of the sorted list, covering the
// file range [begin, end).
struct ReadGroup {
  size_t first, last;
  uint64_t begin, end;
  bool direct;  // the requests' buffers are one contiguous buffer, no gaps
};

// Reads a group into its requests' buffers: straight into them when they
// are contiguous, else into a scratch buffer (owned by this coroutine frame
// for the whole read) copied out afterwards.
Task<Status> ReadGroupInto(BlockNode* file, const std::vector<ReadReq>* sorted, ReadGroup g) {
  const int64_t len = static_cast<int64_t>(g.end - g.begin);
  if (g.direct)
    co_return co_await file->pread(static_cast<int64_t>(g.begin), (*sorted)[g.first].buf, len);
  std::vector<uint8_t> scratch(g.end - g.begin);
  COBLK_CO_RETURN_IF_ERROR(co_await file->pread(static_cast<int64_t>(g.begin), scratch.data(), len));
  for (size_t k = g.first; k < g.last; ++k) {
    const ReadReq& r = (*sorted)[k];
    std::memcpy(r.buf, scratch.data() + (r.offset - g.begin), r.bytes);
  }
  co_return OkStatus();
}

// Reads every request (the buffers must not overlap each other; the file
// ranges may), merged into few large reads, kReadsInFlight of them at a
// time; the first error. Memory: at most kReadsInFlight scratch buffers of
// kMaxSpan bytes (or of one request, if larger).
Task<Status> ReadAll(BlockNode& file, const std::vector<ReadReq>& reqs) {
  std::vector<ReadReq> sorted(reqs);
  std::sort(sorted.begin(), sorted.end(), [](const ReadReq& a, const ReadReq& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.buf < b.buf;
  });
  std::vector<ReadGroup> groups;
  for (size_t k = 0; k < sorted.size(); ++k) {
    const ReadReq& r = sorted[k];
    if (!groups.empty()) {
      ReadGroup& g = groups.back();
      const uint64_t end = std::max(g.end, r.offset + r.bytes);
      if (r.offset <= g.end + kMaxGap && end - g.begin <= kMaxSpan) {
        const ReadReq& prev = sorted[k - 1];
        g.direct = g.direct && r.offset == g.end && r.buf == prev.buf + prev.bytes;
        g.end = end;
        g.last = k + 1;
        continue;
      }
    }
    groups.push_back({k, k + 1, r.offset, r.offset + r.bytes, true});
  }
  for (size_t i = 0; i < groups.size(); i += kReadsInFlight) {
    std::vector<Task<Status>> batch;
    for (size_t k = i; k < std::min(groups.size(), i + kReadsInFlight); ++k)
      batch.push_back(ReadGroupInto(&file, &sorted, groups[k]));
    std::vector<Status> done = co_await when_all(std::move(batch));
    for (Status& st : done)
      if (!st) co_return st;
  }
  co_return OkStatus();
}

// Reads directory entries [first, first + count) at `at` into out.
Task<Status> ReadEntries(BlockNode& file, uint64_t at, uint64_t first, uint64_t count,
                         std::vector<uint32_t>& out) {
  std::vector<uint8_t> raw(count * 4);
  out.resize(count);
  COBLK_CO_RETURN_IF_ERROR(co_await file.pread(static_cast<int64_t>(at + first * 4), raw.data(),
                                               static_cast<int64_t>(raw.size())));
  for (uint64_t i = 0; i < count; ++i) out[i] = LoadLe32(raw, i * 4);
  co_return OkStatus();
}

}  // namespace

// ---- ExtentChecker: setup ---------------------------------------------------

ExtentChecker::ExtentChecker(Extent& e, uint32_t fix, std::string label, CheckFindings& findings)
    : e_(e), file_(*e.file()), layout_(e.layout()), fix_(fix), label_(std::move(label)),
      f_(findings) {}

std::string ExtentChecker::prefix() const {
  return label_.empty() ? "ERROR: " : "ERROR: extent '" + label_ + "': ";
}

Task<Status> ExtentChecker::read_headers() {
  file_size_ = static_cast<uint64_t>(file_.size());
  file_sectors_ = SectorsFor(file_size_);
  grain_sectors_ = layout_.cluster_sectors;
  gt_sectors_ = SectorsFor(layout_.l2_table_bytes());
  gd_sectors_ = SectorsFor(layout_.l1_table_bytes());
  overhead_sectors_ = std::clamp<uint64_t>(layout_.grain_start_sector, 1, file_sectors_);
  markers_ = layout_.compressed && layout_.has_marker;
  Sector s{};
  COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(0, s.data(), kSectorSize));
  auto h = Vmdk4Header::Decode(s);
  if (!h) co_return std::unexpected(h.error());
  header_ = *h;
  if (layout_.compressed && file_size_ % kSectorSize == 0 && file_size_ >= kSectorSize + kFooterBytes) {
    std::vector<uint8_t> tail(kFooterBytes);
    COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(file_size_ - kFooterBytes),
                                                  tail.data(), kFooterBytes));
    if (auto f = ValidateFooter(tail)) footer_ = *f;
  }
  if (markers_ && layout_.l1_table_offset >= kSectorSize) {
    Sector before{};
    COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(
        static_cast<int64_t>(layout_.l1_table_offset - kSectorSize), before.data(), kSectorSize));
    stream_tail_layout_ = before == EncodeMetadataMarker(MarkerType::kGrainDirectory, gd_sectors_);
  }
  if (!meta_.init(file_sectors_) || !data_.init(file_sectors_) ||
      !structure_.init(markers_ ? file_sectors_ : 0) ||
      !walked_.init(markers_ ? file_sectors_ : 0) || !gd_ok_.init(layout_.l1_size) ||
      !rgd_ok_.init(layout_.l1_size))
    co_return MakeError(ENOMEM, "Out of memory for the check bitmaps");
  co_return OkStatus();
}

void ExtentChecker::mark_fixed_metadata() {
  meta_.set(0, 1);
  if (header_.desc_offset && header_.desc_size)
    meta_.set(header_.desc_offset, header_.desc_offset + std::min<uint64_t>(header_.desc_size, file_sectors_));
  if (layout_.footer_lost) return;  // no directory, no footer
  const uint64_t gd = layout_.l1_table_offset / kSectorSize;
  meta_.set(gd, gd + gd_sectors_);
  if (stream_tail_layout_) meta_.set(gd - 1, gd);  // its GD marker
  if (layout_.l1_backup_offset) {
    const uint64_t rgd = layout_.l1_backup_offset / kSectorSize;
    meta_.set(rgd, rgd + gd_sectors_);
  }
  if (footer_ && (layout_.gd_at_end || footer_->gd_offset * kSectorSize == layout_.l1_table_offset))
    meta_.set(file_sectors_ - kFooterBytes / kSectorSize, file_sectors_);
}

// The header's directories must lie clear of each other, the header and
// the descriptor: a capacity, grain size or directory offset changed on
// disk can make the (redundant) directory run over the other one, and then
// every write repair makes to one changes the other (a repair that never
// converges, new tables for garbage entries on each run). Reported as one
// corruption; nothing of the extent is repaired.
void ExtentChecker::check_directory_overlap() {
  struct Area {
    const char* name;
    uint64_t begin, end;
  };
  std::vector<Area> areas = {{"the header", 0, 1}};
  if (header_.desc_offset && header_.desc_size)
    areas.push_back({"the descriptor", header_.desc_offset, header_.desc_offset + header_.desc_size});
  const uint64_t gd = layout_.l1_table_offset / kSectorSize;
  areas.push_back({"the grain directory", gd, gd + gd_sectors_});
  if (layout_.l1_backup_offset) {
    const uint64_t rgd = layout_.l1_backup_offset / kSectorSize;
    areas.push_back({"the redundant grain directory", rgd, rgd + gd_sectors_});
  }
  for (size_t a = 0; a < areas.size(); ++a) {
    for (size_t b = a + 1; b < areas.size(); ++b) {
      if (areas[a].begin >= areas[b].end || areas[b].begin >= areas[a].end) continue;
      f_.corruption(prefix() + StrFormat("%s (sectors %" PRIu64 "..%" PRIu64 ") overlaps %s (sectors %" PRIu64
                                         "..%" PRIu64 "): the header's capacity, grain size or directory "
                                         "offsets are wrong; this extent is not repaired",
                                         areas[b].name, areas[b].begin, areas[b].end - 1, areas[a].name,
                                         areas[a].begin, areas[a].end - 1));
      fix_ = 0;
      return;
    }
  }
}

// What lies at a file sector marked as metadata (for messages).
std::string ExtentChecker::where(uint64_t sector) const {
  if (sector == 0) return "the header";
  if (header_.desc_offset && sector >= header_.desc_offset &&
      sector < header_.desc_offset + header_.desc_size)
    return "the descriptor";
  const uint64_t gd = layout_.l1_table_offset / kSectorSize;
  if (sector >= gd && sector < gd + gd_sectors_) return "the grain directory";
  const uint64_t rgd = layout_.l1_backup_offset / kSectorSize;
  if (layout_.l1_backup_offset && sector >= rgd && sector < rgd + gd_sectors_)
    return "the redundant grain directory";
  if (footer_ && sector >= file_sectors_ - kFooterBytes / kSectorSize) return "the footer";
  if (meta_.test(sector)) return "a grain table";
  if (sector < overhead_sectors_) return "the header area before the first grain";
  return "image metadata";
}

bool ExtentChecker::table_location_ok(uint64_t table, std::string* why) const {
  if (table * kSectorSize + layout_.l2_table_bytes() > file_size_) {
    *why = "lies past the end of the file";
    return false;
  }
  if (meta_.any(table, table + gt_sectors_)) {
    uint64_t at = meta_.find(table, true);
    *why = "overlaps " + where(at);
    return false;
  }
  return true;
}

// ---- pass 1: the directories --------------------------------------------------

Task<Status> ExtentChecker::walk_directories() {
  const uint32_t n = layout_.l1_size;
  const bool has_rgd = layout_.l1_backup_offset != 0;
  std::vector<uint32_t> gd, rgd;
  // Primary first: where a primary and a redundant table overlap, the
  // primary keeps its place.
  for (uint64_t first = 0; first < n; first += kGdChunk) {
    const uint64_t count = std::min<uint64_t>(kGdChunk, n - first);
    COBLK_CO_RETURN_IF_ERROR(co_await ReadEntries(file_, layout_.l1_table_offset, first, count, gd));
    for (uint64_t k = 0; k < count; ++k) {
      if (!gd[k]) continue;
      std::string why;
      if (table_location_ok(gd[k], &why)) {
        meta_.set(gd[k], gd[k] + gt_sectors_);
        gd_ok_.set(first + k, first + k + 1);
        continue;
      }
      ++bad_gd_entries_;
      f_.corruption(prefix() + StrFormat("grain directory entry %" PRIu64 " names a grain table at offset %" PRIu64
                                         " that %s",
                                         first + k, uint64_t{gd[k]} * kSectorSize, why.c_str()));
    }
  }
  if (!has_rgd) co_return OkStatus();
  for (uint64_t first = 0; first < n; first += kGdChunk) {
    const uint64_t count = std::min<uint64_t>(kGdChunk, n - first);
    COBLK_CO_RETURN_IF_ERROR(co_await ReadEntries(file_, layout_.l1_table_offset, first, count, gd));
    COBLK_CO_RETURN_IF_ERROR(co_await ReadEntries(file_, layout_.l1_backup_offset, first, count, rgd));
    for (uint64_t k = 0; k < count; ++k) {
      const uint64_t i = first + k;
      if (rgd[k]) {
        std::string why;
        if (table_location_ok(rgd[k], &why)) {
          meta_.set(rgd[k], rgd[k] + gt_sectors_);
          rgd_ok_.set(i, i + 1);
        } else {
          ++bad_rgd_entries_;
          f_.corruption(prefix() + StrFormat("redundant grain directory entry %" PRIu64
                                             " names a grain table at offset %" PRIu64 " that %s",
                                             i, uint64_t{rgd[k]} * kSectorSize, why.c_str()));
          continue;
        }
      }
      if ((gd[k] == 0) != (rgd[k] == 0)) {
        const bool primary_ok = gd_ok_.test(i) || gd[k] == 0;
        f_.corruption(prefix() + StrFormat("grain directory entry %" PRIu64
                                           " differs from the redundant grain directory "
                                           "(primary %" PRIu32 ", redundant %" PRIu32 "); the %s is plausible",
                                           i, gd[k], rgd[k],
                                           gd[k] && primary_ok ? "primary" : rgd[k] ? "redundant" : "primary"));
      }
    }
  }
  co_return OkStatus();
}

// ---- pass 2: the tables -------------------------------------------------------

ExtentChecker::Classified ExtentChecker::classify(uint32_t v, uint64_t sector,
                                                  const uint8_t* marker) const {
  Classified c;
  if (v == 0) return c;
  if (v == kGteZeroed) {
    if (layout_.has_zero_grain) {
      c.verdict = Verdict::kZero;
      return c;
    }
    c.verdict = Verdict::kBad;
    c.why = "is a zeroed-grain entry (1), but the image has no zeroed-grain flag";
    return c;
  }
  const uint64_t at = uint64_t{v} * kSectorSize;
  c.verdict = Verdict::kBad;
  if (at >= file_size_) {
    c.why = StrFormat("points after EOF (offset %" PRIu64 ")", at);
    return c;
  }
  c.begin = v;
  if (!layout_.compressed) {
    c.end = v + grain_sectors_;
  } else if (!markers_) {
    c.end = v + 1;
  } else {
    const uint64_t lba = LoadLe64(std::span<const uint8_t>(marker, 16), 0);
    const uint32_t size = LoadLe32(std::span<const uint8_t>(marker, 16), 8);
    if (size == 0) {
      c.why = StrFormat("points at a metadata marker (offset %" PRIu64 ")", at);
      return c;
    }
    if (lba != sector) {
      c.why = StrFormat("points at the grain marker of sector %" PRIu64 " (offset %" PRIu64 ")", lba, at);
      return c;
    }
    if (size > CompressedReadBytes(layout_.cluster_bytes()) - GrainMarker::kGrainHeaderSize) {
      c.why = StrFormat("points at a grain marker with the impossible size %" PRIu32 " (offset %" PRIu64 ")",
                        size, at);
      return c;
    }
    if (size > file_size_ - at - GrainMarker::kGrainHeaderSize) {
      c.why = StrFormat("points at a compressed grain that extends past the end of the file (offset %" PRIu64 ")",
                        at);
      return c;
    }
    c.end = v + SectorsFor(GrainMarker::kGrainHeaderSize + size);
  }
  if (c.begin < overhead_sectors_ || meta_.any(c.begin, c.end)) {
    const uint64_t hit = c.begin < overhead_sectors_ && !meta_.any(c.begin, c.end)
                             ? c.begin
                             : meta_.find(c.begin, true);
    c.why = StrFormat("points into %s (offset %" PRIu64 ")", where(hit).c_str(), at);
    return c;
  }
  if (data_.any(c.begin, c.end)) {
    c.why = StrFormat("points at a grain another entry already uses (offset %" PRIu64 ")", at);
    return c;
  }
  c.verdict = Verdict::kData;
  return c;
}

// Pass 2 for one table: directory entry i, its table `t` (at
// table_sector) and, if `rt` is not empty, the redundant copy (at
// rtable_sector). With repair, changed tables are written back here.
Task<Status> ExtentChecker::check_table(uint64_t i, std::span<uint8_t> t, uint64_t table_sector,
                                        std::span<uint8_t> rt, uint64_t rtable_sector,
                                        std::vector<std::array<uint8_t, 16>>& markers) {
  const uint32_t l2 = layout_.l2_size;
  const bool redundant = !rt.empty();
  const uint64_t first_grain = i * l2;
  // Grain markers of compressed entries, read all at once.
  if (markers_) {
    std::vector<ReadReq> reqs;
    for (uint32_t j = 0; j < l2; ++j) {
      const uint32_t v = LoadLe32(t, size_t{j} * 4);
      markers[j].fill(0);
      if (v > kGteZeroed && uint64_t{v} * kSectorSize < file_size_)
        reqs.push_back({uint64_t{v} * kSectorSize, markers[j].data(),
                        std::min<uint64_t>(16, file_size_ - uint64_t{v} * kSectorSize)});
    }
    COBLK_CO_RETURN_IF_ERROR(co_await ReadAll(file_, reqs));
  }
  bool primary_changed = false, redundant_changed = false;
  for (uint32_t j = 0; j < l2; ++j) {
    const uint64_t grain = first_grain + j;
    const uint64_t sector = grain * grain_sectors_;
    if (sector >= layout_.sectors) break;  // entries past the capacity are never read
    const uint64_t guest = e_.start / kSectorSize + sector;
    const uint32_t v = LoadLe32(t, size_t{j} * 4);
    Classified c = classify(v, sector, markers[j].data());
    uint32_t keep = v;
    if (c.verdict == Verdict::kBad) {
      f_.corruption(prefix() + StrFormat("grain-table entry for sector %" PRIu64 " %s", guest, c.why.c_str()));
      keep = 0;
    }
    if (redundant) {
      const uint32_t rv = LoadLe32(rt, size_t{j} * 4);
      if (rv != v) {
        std::array<uint8_t, 16> rmarker{};
        if (markers_ && rv > kGteZeroed && uint64_t{rv} * kSectorSize < file_size_)
          COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(
              static_cast<int64_t>(uint64_t{rv} * kSectorSize), rmarker.data(),
              static_cast<int64_t>(std::min<uint64_t>(16, file_size_ - uint64_t{rv} * kSectorSize))));
        Classified rc = classify(rv, sector, rmarker.data());
        const bool p_ok = c.verdict != Verdict::kBad, r_ok = rc.verdict != Verdict::kBad;
        // An entry of 0 against a valid one: that side lags (tables
        // are written primary first, so normally the redundant one).
        f_.corruption(prefix() + StrFormat("redundant grain table %" PRIu64 " differs at entry %" PRIu32
                                           " (sector %" PRIu64 "): primary %" PRIu32 ", redundant %" PRIu32
                                           "; %s",
                                           i, j, guest, v, rv,
                                           p_ok && r_ok && rv == 0 ? "the primary is plausible (the redundant lags)"
                                           : p_ok && r_ok && v == 0 ? "the redundant is plausible (the primary lags); the primary is kept, as QEMU reads it"
                                           : p_ok && r_ok           ? "both are plausible, the primary is kept"
                                           : p_ok                   ? "the primary is plausible"
                                           : r_ok                   ? "the redundant is plausible"
                                                                    : "neither is plausible"));
        if (fix_ & kCheckFixErrors) {
          if (!p_ok && r_ok) {
            // The primary entry was bad (counted above); the redundant
            // one names valid data: take it.
            c = rc;
            keep = rv;
          }
          ++corruptions_fixed;
        }
      }
    }
    if (c.verdict == Verdict::kBad) {
      if (fix_ & kCheckFixErrors) {
        ++corruptions_fixed;
        const uint64_t b = guest * kSectorSize;
        const uint64_t end = std::min(b + layout_.cluster_bytes(), e_.start + e_.bytes());
        f_.note(StrFormat("Repair: guest bytes %" PRIu64 "..%" PRIu64
                          " now read as unallocated (their grain-table entry was cleared)",
                          b, end - 1));
      }
    }
    if (c.verdict == Verdict::kData) {
      data_.set(c.begin, c.end);
      ++allocated_grains;
      if (layout_.compressed) {
        ++compressed_grains;
        ++fragmented_grains;  // as qcow2: compressed grains are fragmented by nature
      } else if (last_data_sector_ >= 0 && c.begin != static_cast<uint64_t>(last_data_sector_)) {
        ++fragmented_grains;
      }
      last_data_sector_ = static_cast<int64_t>(c.end);
    }
    if (fix_ & kCheckFixErrors) {
      if (keep != v) {
        StoreLe32(t, size_t{j} * 4, keep);
        primary_changed = true;
      }
      if (redundant && LoadLe32(rt, size_t{j} * 4) != keep) {
        StoreLe32(rt, size_t{j} * 4, keep);
        redundant_changed = true;
      }
    }
  }
  // Primary first, then the redundant copy: see vmdk_repair.cc.
  if (primary_changed) {
    std::vector<uint8_t> copy(t.begin(), t.end());
    COBLK_CO_RETURN_IF_ERROR(co_await write_table(table_sector, copy));
  }
  if (redundant_changed) {
    std::vector<uint8_t> copy(rt.begin(), rt.end());
    COBLK_CO_RETURN_IF_ERROR(co_await write_table(rtable_sector, copy));
  }
  co_return OkStatus();
}

namespace {

// The tables of one batch of directory entries, and the reads filling them.
struct TableBatch {
  size_t from = 0, count = 0;  // todo[from, from + count)
  uint8_t* tables = nullptr;   // kTableBatchBytes each
  uint8_t* rtables = nullptr;
  std::vector<ReadReq> reqs;
};

}  // namespace

// Reads the tables of each directory chunk in batches of kTableBatchBytes;
// while a batch is checked, the next one is read (double buffering; not
// when repairing, which writes tables: its reads and writes stay in order).
// Tables named by different directory entries never overlap (pass 1), so
// a read in flight never covers a table being checked.
Task<Status> ExtentChecker::walk_tables() {
  const uint32_t n = layout_.l1_size;
  const uint64_t gt_bytes = layout_.l2_table_bytes();
  const bool has_rgd = layout_.l1_backup_offset != 0;
  std::vector<uint32_t> gd, rgd;
  std::vector<std::array<uint8_t, 16>> markers(layout_.l2_size);
  // A VMDK4 table is at most kMaxL2Size entries (2 KiB).
  if (gt_bytes == 0 || gt_bytes > kTableBatchBytes) co_return MakeError(EINVAL, "L2 table size too big");
  const uint64_t tables_at_once = kTableBatchBytes / gt_bytes;
  // Directory chunks holding a usable table (a huge, mostly empty
  // directory is skipped through the bitmap), then their tables.
  std::vector<uint64_t> todo;
  auto chunk_of = [&](uint64_t from) {
    const uint64_t next = gd_ok_.find(from, true);
    return next >= n ? uint64_t{n} : next / kGdChunk * kGdChunk;
  };
  // Both batches' buffers in one mapping: a huge page where the kernel
  // gives one, instead of a page fault per 4 KiB.
  MappedBuffer area(4 * kTableBatchBytes);
  if (!area.data()) co_return MakeError(ENOMEM, "Out of memory for the grain tables");
  TableBatch batches[2];
  for (int x = 0; x < 2; ++x) {
    batches[x].tables = area.data() + 2 * x * kTableBatchBytes;
    batches[x].rtables = batches[x].tables + kTableBatchBytes;
  }
  for (uint64_t first = chunk_of(0); first < n; first = chunk_of(first + kGdChunk)) {
    const uint64_t count = std::min<uint64_t>(kGdChunk, n - first);
    COBLK_CO_RETURN_IF_ERROR(co_await ReadEntries(file_, layout_.l1_table_offset, first, count, gd));
    if (has_rgd)
      COBLK_CO_RETURN_IF_ERROR(co_await ReadEntries(file_, layout_.l1_backup_offset, first, count, rgd));
    todo.clear();
    for (uint64_t k = gd_ok_.find(first, true); k < first + count; k = gd_ok_.find(k + 1, true))
      todo.push_back(k - first);
    // Sets up batch `tb` for todo[from, ...) and starts its reads.
    auto start = [&](TableBatch& tb, size_t from) {
      tb.from = from;
      tb.count = std::min<size_t>(tables_at_once, todo.size() - from);
      tb.reqs.clear();
      for (size_t x = 0; x < tb.count; ++x) {
        const uint64_t k = todo[from + x];
        tb.reqs.push_back({uint64_t{gd[k]} * kSectorSize, tb.tables + x * gt_bytes, gt_bytes});
        if (has_rgd && rgd_ok_.test(first + k))
          tb.reqs.push_back({uint64_t{rgd[k]} * kSectorSize, tb.rtables + x * gt_bytes, gt_bytes});
      }
      return spawn_now(ReadAll(file_, tb.reqs));
    };
    if (todo.empty()) continue;
    // Invariant: `pending` reads into batches[cur]; at most one other read
    // (into batches[cur ^ 1]) is started while batches[cur] is checked,
    // and it is always joined before its buffers are reused or freed.
    size_t cur = 0;
    JoinHandle<Status> pending = start(batches[cur], 0);
    for (;;) {
      Status read = co_await pending.join();
      TableBatch& tb = batches[cur];
      const size_t next_from = tb.from + tb.count;
      const bool ahead = read && next_from < todo.size() && !fix_;
      if (ahead) pending = start(batches[cur ^ 1], next_from);
      Status checked = read;
      for (size_t x = 0; checked && x < tb.count; ++x) {
        const uint64_t k = todo[tb.from + x];
        const bool redundant = has_rgd && rgd_ok_.test(first + k);
        std::span<uint8_t> t(tb.tables + x * gt_bytes, gt_bytes);
        std::span<uint8_t> rt(redundant ? tb.rtables + x * gt_bytes : nullptr, redundant ? gt_bytes : 0);
        checked = co_await check_table(first + k, t, gd[k], rt, redundant ? rgd[k] : 0, markers);
      }
      if (!checked) {
        if (ahead) (void)co_await pending.join();
        co_return checked;
      }
      if (next_from >= todo.size()) break;
      if (!ahead) pending = start(batches[cur ^ 1], next_from);
      cur ^= 1;
    }
  }
  co_return OkStatus();
}

// ---- pass 3: the stream ---------------------------------------------------------

// From the first grain to the end of the file: a sector marked as metadata
// or as referenced grain data is skipped over; elsewhere a well-formed
// metadata marker (grain table, grain directory, footer) and what follows
// it is stream structure, zero sectors (end-of-stream markers) only as
// QEMU's padding at the end, a well-formed grain marker no entry names is a
// leaked grain, and anything else is unreferenced space.
Task<Status> ExtentChecker::walk_stream() {
  constexpr uint64_t kChunk = 1 << 20;
  std::vector<uint8_t> buf;
  uint64_t buf_at = 0;  // sector of buf[0]
  auto load = [&](uint64_t sector) -> Task<Status> {
    const uint64_t at = sector * kSectorSize;
    buf.assign(std::min<uint64_t>(kChunk, file_size_ - at), 0);
    buf_at = sector;
    co_return co_await file_.pread(static_cast<int64_t>(at), buf.data(), static_cast<int64_t>(buf.size()));
  };
  const uint64_t max_size = CompressedReadBytes(layout_.cluster_bytes()) - GrainMarker::kGrainHeaderSize;
  uint64_t zero_run = UINT64_MAX;  // start of the current run of zero sectors
  for (uint64_t s = overhead_sectors_; s < file_sectors_;) {
    if (meta_.test(s)) {
      s = meta_.find(s, false);
      zero_run = UINT64_MAX;
      continue;
    }
    if (data_.test(s)) {
      s = data_.find(s, false);
      zero_run = UINT64_MAX;
      continue;
    }
    const uint64_t at = s * kSectorSize;
    if (buf.empty() || s < buf_at || at + 16 > buf_at * kSectorSize + buf.size()) {
      if (file_size_ - at < 16) break;
      COBLK_CO_RETURN_IF_ERROR(co_await load(s));
    }
    std::span<const uint8_t> m(buf.data() + (at - buf_at * kSectorSize), 16);
    const uint64_t lba = LoadLe64(m, 0);
    const uint32_t size = LoadLe32(m, 8);
    const uint32_t type = LoadLe32(m, 12);
    uint64_t len = 0;
    if (size > 0) {
      const uint64_t sectors = SectorsFor(GrainMarker::kGrainHeaderSize + size);
      if (size <= max_size && lba < layout_.sectors && lba % grain_sectors_ == 0 &&
          at + GrainMarker::kGrainHeaderSize + size <= file_size_ && !meta_.any(s, s + sectors) &&
          !data_.any(s, s + sectors)) {
        walked_.set(s, s + sectors);
        zero_run = UINT64_MAX;
        ++leaks;
        if (fix_ & kCheckFixErrors) salvage_.push_back({lba, s, size});
        s += sectors;
        continue;
      }
    } else if (type == static_cast<uint32_t>(MarkerType::kGrainTable) && lba == gt_sectors_) {
      len = 1 + lba;
    } else if (type == static_cast<uint32_t>(MarkerType::kGrainDirectory) && lba == gd_sectors_) {
      len = 1 + lba;
    } else if (type == static_cast<uint32_t>(MarkerType::kFooter) && lba == 1) {
      len = 2;
    }  // an end-of-stream marker is a zero sector: see the zero run below
    if (len && s + len <= file_sectors_) {
      if (!meta_.any(s, s + len) && !data_.any(s, s + len)) {
        structure_.set(s, s + len);
        zero_run = UINT64_MAX;
        s += len;
        continue;
      }
      if (len > 1 && meta_.find(s + 1, false) >= s + len) {
        structure_.set(s, s + 1);  // the marker of a referenced table or directory
        ++s;
        continue;
      }
    }
    // Unreferenced space; a run of zero sectors is remembered, see below.
    const bool zero = lba == 0 && size == 0 && type == 0;
    if (!zero) zero_run = UINT64_MAX;
    else if (zero_run == UINT64_MAX) zero_run = s;
    ++s;
  }
  // QEMU pads the end of the streamOptimized images it writes with zeros
  // (less than a grain, after the last grain): not counted as a leak.
  if (zero_run != UINT64_MAX && file_sectors_ - zero_run < grain_sectors_ &&
      !meta_.any(zero_run, file_sectors_) && !data_.any(zero_run, file_sectors_) &&
      !walked_.any(zero_run, file_sectors_))
    walked_.set(zero_run, file_sectors_);
  co_return OkStatus();
}

// Leaks: after the header area, maximal runs of sectors nothing references
// count ceil(run / grain) grains each; stream structure (superseded tables
// and directories behind their markers) counts only where it lies after
// everything referenced; leaked grain markers were counted one each by the
// stream walk. The run reaching the end of the file is what -r leaks cuts.
void ExtentChecker::count_leaks() {
  const uint64_t end_sector = SectorsFor(image_end);
  // Accounted sectors of word w: referenced, leaked grain markers (counted
  // already), stream structure before the end; past the file: accounted.
  auto accounted = [&](uint64_t w) {
    uint64_t structure = structure_.word(w);
    if (w * 64 + 64 > end_sector) {
      const uint64_t keep = end_sector > w * 64 ? end_sector - w * 64 : 0;
      structure &= keep >= 64 ? ~uint64_t{0} : (uint64_t{1} << keep) - 1;
    }
    uint64_t a = meta_.word(w) | data_.word(w) | walked_.word(w) | structure;
    if (w * 64 + 64 > file_sectors_) {
      const uint64_t inside = file_sectors_ > w * 64 ? file_sectors_ - w * 64 : 0;
      a |= inside >= 64 ? 0 : ~((uint64_t{1} << inside) - 1);
    }
    return a;
  };
  // First sector >= from whose accounted bit is `value` (file_sectors_ if none).
  auto find = [&](uint64_t from, bool value) {
    for (uint64_t x = from; x < file_sectors_;) {
      const uint64_t w = value ? accounted(x / 64) : ~accounted(x / 64);
      const uint64_t masked = w & (~uint64_t{0} << (x % 64));
      if (masked) return std::min(file_sectors_, x / 64 * 64 + static_cast<uint64_t>(__builtin_ctzll(masked)));
      x = (x / 64 + 1) * 64;
    }
    return file_sectors_;
  };
  const std::string in = label_.empty() ? "" : "in '" + label_ + "' ";
  for (uint64_t s = find(overhead_sectors_, false); s < file_sectors_;) {
    const uint64_t e = find(s, true);
    const uint64_t grains = (e - s + grain_sectors_ - 1) / grain_sectors_;
    leaks += static_cast<int64_t>(grains);
    if (e == file_sectors_ && s >= end_sector) {
      end_leak_begin_ = s;
      f_.note(StrFormat("Leaked %s%" PRIu64 " grains at the end of the file, offsets %" PRIu64 "..%" PRIu64
                        " (-r leaks reclaims them)",
                        in.c_str(), grains, s * kSectorSize, file_size_ - 1));
    } else {
      interior_leak_grains_ += grains;
      f_.note(StrFormat("Leaked %s%" PRIu64 " grains inside the file, offsets %" PRIu64 "..%" PRIu64
                        " (only a rewrite, e.g. coblk-img convert, reclaims them)",
                        in.c_str(), grains, s * kSectorSize, std::min(e * kSectorSize, file_size_) - 1));
    }
    s = find(e, false);
  }
}

// streamOptimized with GD_AT_END: the footer's copy of the header is the
// one in use; the header at sector 0 must describe the same disk. Without
// GD_AT_END, a footer at the end must name the header's directory.
void ExtentChecker::check_footer() {
  if (!footer_) return;
  const Vmdk4Header& f = *footer_;
  auto differs = [&](const char* what, uint64_t a, uint64_t b) {
    f_.corruption(prefix() + StrFormat("the footer disagrees with the header: %s %" PRIu64
                                       " in the footer, %" PRIu64 " in the header",
                                       what, a, b));
  };
  if (f.capacity != header_.capacity) differs("capacity", f.capacity, header_.capacity);
  if (f.granularity != header_.granularity) differs("granularity", f.granularity, header_.granularity);
  if (f.num_gtes_per_gt != header_.num_gtes_per_gt)
    differs("GTEs per GT", f.num_gtes_per_gt, header_.num_gtes_per_gt);
  if (f.grain_offset != header_.grain_offset) differs("grain offset", f.grain_offset, header_.grain_offset);
  if (f.compress_algorithm != header_.compress_algorithm)
    differs("compression algorithm", f.compress_algorithm, header_.compress_algorithm);
  // A different directory offset: choose_directory().
}

Task<Result<bool>> ExtentChecker::directory_plausible(uint64_t gd_sector, std::string* why) {
  const uint64_t gt_bytes = layout_.l2_table_bytes(), gd_end = gd_sector + gd_sectors_;
  // Over the header or the descriptor (QEMU's layout keeps directories and
  // tables before the first grain, coblk's streams after the grains).
  const uint64_t desc = header_.desc_offset;
  const uint64_t desc_end = !desc ? 0 : header_.desc_size > UINT64_MAX - desc ? UINT64_MAX : desc + header_.desc_size;
  auto over_header = [&](uint64_t b, uint64_t e) { return b < 1 || (b < desc_end && e > desc); };
  if (over_header(gd_sector, gd_end) || gd_end > file_sectors_ ||
      gd_sector * kSectorSize + layout_.l1_table_bytes() > file_size_) {
    *why = "it lies outside the file or over the header";
    co_return false;
  }
  std::vector<uint32_t> gd;
  std::vector<uint8_t> table(gt_bytes);
  std::vector<std::array<uint8_t, 16>> markers(layout_.l2_size);
  for (uint64_t first = 0; first < layout_.l1_size; first += kGdChunk) {
    const uint64_t count = std::min<uint64_t>(kGdChunk, layout_.l1_size - first);
    COBLK_CO_RETURN_IF_ERROR(co_await ReadEntries(file_, gd_sector * kSectorSize, first, count, gd));
    for (uint64_t k = 0; k < count; ++k) {
      const uint64_t t = gd[k], i = first + k;
      if (!t) continue;
      if (over_header(t, t + gt_sectors_) || t * kSectorSize + gt_bytes > file_size_ ||
          (t < gd_end && t + gt_sectors_ > gd_sector)) {
        *why = StrFormat("its entry %" PRIu64 " names a grain table outside the file or over metadata", i);
        co_return false;
      }
      COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(t * kSectorSize), table.data(),
                                                    static_cast<int64_t>(gt_bytes)));
      std::vector<ReadReq> reqs;
      for (uint32_t j = 0; j < layout_.l2_size; ++j) {
        const uint32_t v = LoadLe32(table, size_t{j} * 4);
        markers[j].fill(0);
        if (v == 0 || (v == kGteZeroed && layout_.has_zero_grain)) continue;
        const uint64_t end = uint64_t{v} * kSectorSize + (layout_.compressed ? 16 : layout_.cluster_bytes());
        if (v < overhead_sectors_ || end > file_size_) {
          *why = StrFormat("grain table %" PRIu64 " names a grain outside the file or in the header area", i);
          co_return false;
        }
        if (markers_) reqs.push_back({uint64_t{v} * kSectorSize, markers[j].data(), 16});
      }
      if (!markers_) continue;
      COBLK_CO_RETURN_IF_ERROR(co_await ReadAll(file_, reqs));
      for (uint32_t j = 0; j < layout_.l2_size; ++j) {
        const uint32_t v = LoadLe32(table, size_t{j} * 4);
        if (v == 0 || (v == kGteZeroed && layout_.has_zero_grain)) continue;
        const uint64_t lba = LoadLe64(std::span<const uint8_t>(markers[j]), 0);
        const uint32_t size = LoadLe32(std::span<const uint8_t>(markers[j]), 8);
        if (size == 0 || lba != (i * layout_.l2_size + j) * grain_sectors_ ||
            uint64_t{v} * kSectorSize + GrainMarker::kGrainHeaderSize + size > file_size_) {
          *why = StrFormat("grain table %" PRIu64 " entry %" PRIu32 " names no grain marker of its sector", i, j);
          co_return false;
        }
      }
    }
  }
  co_return true;
}

// Without GD_AT_END readers take the header's directory and ignore the
// footer; a footer naming another one is what coblk's stream writer leaves
// when it stops after writing the final footer but before the header says
// GD_AT_END again (or hand damage). The side whose directory is plausible
// wins; if both are, the later one in the file (the writer's newer tail).
// Repair (before the walk, which then uses the chosen directory): the
// header then says GD_AT_END (one sector; the footer's directory, tables
// and grains are durable since repair_begin), or the footer's copy names
// the header's directory (readers ignore that footer either way).
Task<Status> ExtentChecker::choose_directory() {
  if (!footer_ || layout_.gd_at_end || !markers_) co_return OkStatus();
  const uint64_t hgd = layout_.l1_table_offset / kSectorSize, fgd = footer_->gd_offset;
  if (fgd == kGdAtEnd || fgd == hgd) co_return OkStatus();
  std::string hwhy, fwhy;
  auto h_ok = co_await directory_plausible(hgd, &hwhy);
  if (!h_ok) co_return std::unexpected(h_ok.error());
  auto f_ok = co_await directory_plausible(fgd, &fwhy);
  if (!f_ok) co_return std::unexpected(f_ok.error());
  const bool footer_rgd = (footer_->flags & kFlagRgd) && footer_->rgd_offset != 0;
  if (*f_ok && footer_rgd) {
    f_ok = co_await directory_plausible(footer_->rgd_offset, &fwhy);
    if (!f_ok) co_return std::unexpected(f_ok.error());
  }
  const bool take_footer = *f_ok && (!*h_ok || fgd > hgd);
  std::string verdict = take_footer ? (*h_ok ? "both are plausible, the footer's is newer"
                                             : "the footer's is plausible, the header's not (" + hwhy + ")")
                        : *h_ok     ? (*f_ok ? "both are plausible, the header's is newer"
                                             : "the header's is plausible, the footer's not (" + fwhy + ")")
                                    : "neither is plausible (" + hwhy + "; " + fwhy + "), the header's is kept";
  f_.corruption(prefix() + StrFormat("the footer names the grain directory at offset %" PRIu64
                                     ", the header the one at offset %" PRIu64 "; %s",
                                     fgd * kSectorSize, hgd * kSectorSize, verdict.c_str()));
  if (!(fix_ & kCheckFixErrors)) co_return OkStatus();
  changed = true;
  ++corruptions_fixed;
  if (take_footer) {
    Sector s{};
    COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(0, s.data(), kSectorSize));
    StoreLe64(s, 56, kGdAtEnd);
    COBLK_CO_RETURN_IF_ERROR(co_await file_.pwrite(0, s.data(), kSectorSize));
    header_.gd_offset = kGdAtEnd;
    layout_.gd_at_end = true;
    layout_.l1_table_offset = fgd * kSectorSize;
    layout_.l1_backup_offset = footer_rgd ? footer_->rgd_offset * kSectorSize : 0;
    stream_tail_layout_ = false;
    if (fgd >= 1) {
      Sector before{};
      COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>((fgd - 1) * kSectorSize), before.data(),
                                                    kSectorSize));
      stream_tail_layout_ = before == EncodeMetadataMarker(MarkerType::kGrainDirectory, gd_sectors_);
    }
    f_.note(StrFormat("Repair: the header now says GD_AT_END: the footer's grain directory at offset %" PRIu64
                      " is the one in use",
                      fgd * kSectorSize));
  } else {
    // The footer's header copy is its second sector.
    const uint64_t at = file_size_ - kFooterBytes + kSectorSize;
    Sector s{};
    COBLK_CO_RETURN_IF_ERROR(co_await file_.pread(static_cast<int64_t>(at), s.data(), kSectorSize));
    StoreLe64(s, 48, header_.rgd_offset);
    StoreLe64(s, 56, header_.gd_offset);
    COBLK_CO_RETURN_IF_ERROR(co_await file_.pwrite(static_cast<int64_t>(at), s.data(), kSectorSize));
    footer_->gd_offset = header_.gd_offset;
    footer_->rgd_offset = header_.rgd_offset;
    f_.note(StrFormat("Repair: the footer now names the header's grain directory at offset %" PRIu64,
                      hgd * kSectorSize));
  }
  co_return OkStatus();
}

// ---- run ----------------------------------------------------------------------

Task<Status> ExtentChecker::run() {
  COBLK_CO_RETURN_IF_ERROR(co_await read_headers());
  if (fix_) COBLK_CO_RETURN_IF_ERROR(co_await repair_begin());
  COBLK_CO_RETURN_IF_ERROR(co_await choose_directory());
  total_grains = static_cast<int64_t>((layout_.sectors + grain_sectors_ - 1) / grain_sectors_);
  mark_fixed_metadata();
  if (layout_.footer_lost) {
    // Opened for check (Extent::OpenSparse): nothing to walk but the stream.
    f_.corruption(prefix() + "the header says the grain directory is at the end of the file (GD_AT_END), "
                             "but no valid footer ends the file: the stream was cut off, its grain directory "
                             "and tables are lost and every grain reads as unallocated (-r all rebuilds them "
                             "from the grain markers)");
  } else {
    check_directory_overlap();
    const int64_t before_footer = f_.result().corruptions;
    check_footer();
    const bool footer_bad = f_.result().corruptions != before_footer;
    COBLK_CO_RETURN_IF_ERROR(co_await walk_directories());
    COBLK_CO_RETURN_IF_ERROR(co_await walk_tables());
    if (fix_ & kCheckFixErrors) {
      COBLK_CO_RETURN_IF_ERROR(co_await repair_directories());
      if (footer_bad) COBLK_CO_RETURN_IF_ERROR(co_await repair_footer());
    }
  }
  // The end of everything referenced (before the stream walk, which
  // classifies structure by it).
  const uint64_t end = std::max(meta_.end_of_set(), data_.end_of_set());
  image_end = std::min(end * kSectorSize, file_size_);
  if (markers_) {
    COBLK_CO_RETURN_IF_ERROR(co_await walk_stream());
    if ((fix_ & kCheckFixErrors) && layout_.footer_lost)
      COBLK_CO_RETURN_IF_ERROR(co_await rebuild_lost_tail());
    else if ((fix_ & kCheckFixErrors) && !salvage_.empty())
      COBLK_CO_RETURN_IF_ERROR(co_await salvage_stream_grains());
  }
  count_leaks();
  if ((fix_ & kCheckFixLeaks) && end_leak_begin_) COBLK_CO_RETURN_IF_ERROR(co_await reclaim_end_leaks());
  if (changed) COBLK_CO_RETURN_IF_ERROR(co_await file_.flush());
  co_return OkStatus();
}

// ---- the disk -------------------------------------------------------------------

Task<Status> CheckVmdkExtents(const std::vector<Extent*>& extents, uint32_t fix, CheckResult& r,
                              bool* changed) {
  CheckFindings findings(r);
  const bool label = extents.size() > 1;
  uint64_t files = 0, image_end = 0;
  r.fragmented_clusters = 0;
  r.compressed_clusters = 0;
  for (Extent* e : extents) {
    ExtentChecker c(*e, fix, label ? e->file()->filename() : "", findings);
    Status st = co_await c.run();
    if (!st) {
      ++r.check_errors;
      findings.note("ERROR: checking '" + e->file()->filename() + "' failed: " + st.error().message());
    }
    r.total_clusters += c.total_grains;
    r.allocated_clusters += c.allocated_grains;
    r.fragmented_clusters += c.fragmented_grains;
    r.compressed_clusters += c.compressed_grains;
    r.leaks += c.leaks;
    r.leaks_fixed += c.leaks_fixed;
    r.corruptions_fixed += c.corruptions_fixed;
    *changed |= c.changed;
    ++files;
    image_end = c.image_end;
  }
  // One file: its end, as QEMU reports it for one-file formats.
  if (files == 1) r.image_end_offset = static_cast<int64_t>(image_end);
  findings.finish();
  co_return OkStatus();
}

}  // namespace coblk::vmdk
