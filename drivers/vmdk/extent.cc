#include "drivers/vmdk/extent.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/format.h"
#include "drivers/vmdk/grain_inflate.h"
#include "drivers/vmdk/sesparse.h"
#include "drivers/vmdk/strfmt.h"
#include "io/aligned_buffer.h"

namespace coblk::vmdk {

// A flat or ZERO extent is this and nothing else (a descriptor may have
// 100,000 of them): the kind, the file, its range and the sparse pointer.
static_assert(sizeof(Extent) <= 40, "keep the per-extent state of flat and ZERO extents small");

std::unique_ptr<Extent> Extent::Flat(BlockNode* file, uint64_t sectors, uint64_t start_sector,
                                     ExtentType type) {
  std::unique_ptr<Extent> e(new Extent());
  e->kind_ = ExtentKind::kFlat;
  e->file_ = file;
  e->sectors_ = sectors;
  e->flat_offset_ = start_sector * kSectorSize;
  e->set_line_type(type);
  return e;
}

std::unique_ptr<Extent> Extent::Zero(uint64_t sectors) {
  std::unique_ptr<Extent> e(new Extent());
  e->kind_ = ExtentKind::kZero;
  e->sectors_ = sectors;
  e->set_line_type(ExtentType::kZero);
  return e;
}

Task<Result<std::unique_ptr<Extent>>> Extent::OpenSparse(BlockNode* file, bool read_write,
                                                         uint64_t cache_bytes, bool for_check) {
  const uint64_t file_size = static_cast<uint64_t>(file->size());
  if (file_size < 4) co_return MakeError(EINVAL, "File is too small, not a valid image");
  uint8_t magic_bytes[4];
  COBLK_CO_RETURN_IF_ERROR(co_await file->pread(0, magic_bytes, 4));
  const uint32_t magic = LoadBe32(magic_bytes, 0);
  if (magic == kVmdk4Magic) co_return co_await OpenVmdk4(file, read_write, cache_bytes, file_size, for_check);
  if (magic == kVmdk3Magic) co_return co_await OpenVmdk3(file, cache_bytes, file_size);
  if (file_size >= 8) {
    uint8_t se_magic[8];
    COBLK_CO_RETURN_IF_ERROR(co_await file->pread(0, se_magic, 8));
    if (LoadLe64(se_magic, 0) == kSeSparseConstMagic)
      // Opened for check -r: read-only, so that the check itself says that
      // it cannot repair seSparse (coblk-img check exits 63).
      co_return co_await OpenSeSparse(file, read_write && !for_check, cache_bytes, file_size);
  }
  co_return MakeError(EINVAL, "Image not in VMDK format");
}

// Reads the sector at byte offset `at` (zero-filled past end of file).
static Task<Result<Sector>> ReadSector(BlockNode* file, uint64_t at) {
  Sector s{};
  const uint64_t size = static_cast<uint64_t>(file->size());
  if (at < size) {
    const uint64_t n = std::min<uint64_t>(kSectorSize, size - at);
    Status st = co_await file->pread(static_cast<int64_t>(at), s.data(), static_cast<int64_t>(n));
    if (!st)
      co_return MakeError(st.error().errnum(), "Could not read header from file '" +
                                                   file->filename() + "': " + st.error().message());
  }
  co_return s;
}

std::unique_ptr<Extent> Extent::NewSparse(BlockNode* file, const SparseLayout& layout,
                                          ExtentType type) {
  std::unique_ptr<Extent> e(new Extent());
  e->kind_ = ExtentKind::kSparse;
  e->file_ = file;
  e->sp_ = new Sparse();  // ~Extent deletes it (kind_ is kSparse)
  e->sp_->layout = layout;
  e->sectors_ = layout.sectors;
  e->set_line_type(type);
  return e;
}

Task<Result<std::unique_ptr<Extent>>> Extent::OpenVmdk4(BlockNode* file, bool read_write,
                                                        uint64_t cache_bytes, uint64_t file_size,
                                                        bool for_check) {
  auto sector = co_await ReadSector(file, 0);
  if (!sector) co_return std::unexpected(sector.error());
  auto header = Vmdk4Header::Decode(*sector);
  if (!header) co_return std::unexpected(header.error());
  const Sector header_sector = *sector;

  std::optional<Vmdk4Header> footer;
  bool footer_lost = false;
  if (NeedsFooter(*header)) {
    // streamOptimized: the footer near the end holds the real header.
    auto at = FooterOffset(file_size);
    Result<Vmdk4Header> f = std::unexpected(at ? Error(EINVAL, "Invalid footer") : at.error());
    if (at) {
      std::vector<uint8_t> bytes(kFooterBytes, 0);
      Status st = co_await file->pread(static_cast<int64_t>(*at), bytes.data(),
                                       static_cast<int64_t>(std::min<uint64_t>(kFooterBytes, file_size - *at)));
      if (!st) co_return MakeError(st.error().errnum(), "Failed to read footer");
      f = ValidateFooter(bytes);
    }
    if (f && f->gd_offset != kGdAtEnd) {
      footer = *f;
    } else if (for_check) {
      footer_lost = true;  // opened for check to rebuild the tail
    } else {
      // QEMU's message, and what to do about it.
      co_return MakeError(EINVAL, "Invalid footer: the header says the grain directory is at the end "
                                  "of the file (GD_AT_END) but no valid footer ends it; the stream may "
                                  "have been cut off. 'coblk-img check -r all' rebuilds it from its grains");
    }
  }
  auto layout = LayoutFromVmdk4(*header, footer, file_size, read_write, footer_lost);
  if (!layout) co_return std::unexpected(layout.error());

  std::unique_ptr<Extent> e = NewSparse(file, *layout, ExtentType::kSparse);
  const Sector kept = footer ? footer->Encode() : header_sector;
  e->sp_->header_sector.assign(kept.begin(), kept.end());
  COBLK_CO_RETURN_IF_ERROR(co_await e->load_directories(cache_bytes));
  co_return e;
}

Task<Result<std::unique_ptr<Extent>>> Extent::OpenVmdk3(BlockNode* file, uint64_t cache_bytes,
                                                        uint64_t file_size) {
  auto sector = co_await ReadSector(file, 0);
  if (!sector) co_return std::unexpected(sector.error());
  auto header = Vmdk3Header::Decode(*sector);
  if (!header) co_return std::unexpected(header.error());
  auto layout = LayoutFromVmdk3(*header, file_size);
  if (!layout) co_return std::unexpected(layout.error());
  std::unique_ptr<Extent> e = NewSparse(file, *layout, ExtentType::kVmfsSparse);
  COBLK_CO_RETURN_IF_ERROR(co_await e->load_directories(cache_bytes));
  co_return e;
}

Task<Result<std::unique_ptr<Extent>>> Extent::OpenSeSparse(BlockNode* file, bool read_write,
                                                           uint64_t cache_bytes,
                                                           uint64_t file_size) {
  if (read_write)
    co_return MakeError(EACCES, "No write support for seSparse images available");
  auto sector = co_await ReadSector(file, 0);
  if (!sector) co_return std::unexpected(sector.error());
  auto header = SeSparseConstHeader::Decode(*sector);
  if (!header) co_return std::unexpected(header.error());
  COBLK_CO_RETURN_IF_ERROR(CheckSeSparseConstHeader(*header));
  auto vh_offset = SeSparseVolatileHeaderOffset(*header, file_size);
  if (!vh_offset) co_return std::unexpected(vh_offset.error());
  auto vsector = co_await ReadSector(file, *vh_offset);
  if (!vsector) co_return std::unexpected(vsector.error());
  auto vheader = SeSparseVolatileHeader::Decode(*vsector);
  if (!vheader) co_return std::unexpected(vheader.error());
  COBLK_CO_RETURN_IF_ERROR(CheckSeSparseVolatileHeader(*vheader));
  auto layout = LayoutFromSeSparse(*header, file_size);
  if (!layout) co_return std::unexpected(layout.error());
  std::unique_ptr<Extent> e = NewSparse(file, *layout, ExtentType::kSeSparse);
  COBLK_CO_RETURN_IF_ERROR(co_await e->load_directories(cache_bytes));
  co_return e;
}

// Reads `count` directory entries of sizeof(T) bytes at file offset `at`
// into out, through one bounded, aligned buffer (O_DIRECT needs no bounce
// copy): memory is the stored pages only, never a copy of a directory of up
// to 256 MiB, and an all-zero stretch costs its read and one scan.
template <typename T>
static Task<Status> ReadDirectory(BlockNode& file, uint64_t at, uint32_t count,
                                  SparseDirectory<T>& out) {
  constexpr uint64_t kChunk = 1 << 20;  // a multiple of the page size of out
  out = SparseDirectory<T>(count);
  const uint64_t total = uint64_t{count} * sizeof(T);
  AlignedBuffer raw(std::min(kChunk, total));
  for (uint64_t done = 0; done < total;) {
    const uint64_t n = std::min<uint64_t>(raw.size(), total - done);
    COBLK_CO_RETURN_IF_ERROR(co_await file.pread(static_cast<int64_t>(at + done), raw.data(),
                                                 static_cast<int64_t>(n)));
    out.load_le(static_cast<uint32_t>(done / sizeof(T)), raw.span().first(n));
    done += n;
  }
  co_return OkStatus();
}

// Reads the grain directory (and the redundant one) into memory. Their size
// was bounded against the file size by the layout checks, so a hostile
// header cannot make this allocate more than the file holds; entries that
// are 0 take no memory (SparseDirectory).
Task<Status> Extent::load_directories(uint64_t cache_bytes) {
  // A stream cut before its footer has no directory: all unallocated.
  const uint64_t bytes = sp_->layout.footer_lost ? 0 : sp_->layout.l1_table_bytes();
  if (bytes) {
    Status st;
    if (sp_->layout.entry_size == 8) {
      st = co_await ReadDirectory(*file_, sp_->layout.l1_table_offset, sp_->layout.l1_size,
                                  sp_->se_directory);
      // "Has a table" marks, decoded lazily by table_offset like QEMU does.
      sp_->directory = SparseDirectory<uint32_t>(sp_->layout.l1_size);
      for (uint32_t i = sp_->se_directory.next_nonzero(0); i < sp_->layout.l1_size;
           i = sp_->se_directory.next_nonzero(i + 1))
        sp_->directory.set(i, 1);
    } else {
      st = co_await ReadDirectory(*file_, sp_->layout.l1_table_offset, sp_->layout.l1_size,
                                  sp_->directory);
    }
    if (!st)
      co_return MakeError(st.error().errnum(), "Could not read l1 table from extent '" +
                                                   file_->filename() + "'");
  }
  sp_->directory.resize(sp_->layout.l1_size);

  if (sp_->layout.l1_backup_offset && bytes) {
    // QEMU never compares the two directories; VirtualBox does. A mismatch
    // is reported (get_info, check) but the primary stays authoritative.
    Status st = co_await ReadDirectory(*file_, sp_->layout.l1_backup_offset, sp_->layout.l1_size,
                                       sp_->backup_directory);
    if (!st)
      co_return MakeError(st.error().errnum(), "Could not read l1 backup table from extent '" +
                                                   file_->filename() + "'");
    // Both zero or both non-zero is consistent: the tables live apart. Only
    // indices where either one is non-zero can differ.
    for (uint32_t i = 0; i < sp_->layout.l1_size; ++i) {
      i = std::min(sp_->directory.next_nonzero(i), sp_->backup_directory.next_nonzero(i));
      if (i >= sp_->layout.l1_size) break;
      if ((sp_->directory[i] == 0) != (sp_->backup_directory[i] == 0)) {
        sp_->rgd_mismatch = StrFormat("grain directory entry %" PRIu32
                                      " differs from the redundant grain directory",
                                      i);
        break;
      }
    }
  }
  const uint64_t table_bytes = sp_->layout.l2_table_bytes();
  uint64_t tables = table_bytes ? cache_bytes / table_bytes : 1;
  tables = std::clamp<uint64_t>(tables, 1, UINT32_MAX);
  sp_->cache = std::make_unique<GrainTableCache>(
      sp_->layout.l1_size, static_cast<uint32_t>(table_bytes), static_cast<uint32_t>(tables));
  co_return OkStatus();
}

Result<uint64_t> Extent::table_offset(uint32_t l1) const {
  if (sp_->layout.format == ExtentFormat::kSeSparse) {
    auto gd = DecodeSeSparseGdEntry(sp_->layout, sp_->se_directory[l1]);
    if (!gd) return std::unexpected(gd.error());
    return gd->allocated ? gd->gt_offset : 0;
  }
  const uint64_t entry = sp_->directory[l1];
  if (entry == 0) return uint64_t{0};
  const uint64_t offset = entry * kSectorSize;  // entry < 2^32: no overflow
  const uint64_t file_size = static_cast<uint64_t>(file_->size());
  // A grain table outside the file or over the header is corruption.
  if (offset < kSectorSize || offset > file_size ||
      sp_->layout.l2_table_bytes() > file_size - offset)
    return MakeError(EIO, StrFormat("Grain table %" PRIu32 " at offset %" PRIu64
                                    " is outside the image file",
                                    l1, offset));
  return offset;
}

Result<GrainMapping> Extent::decode_entry(const uint8_t* table, uint32_t l2) const {
  std::span<const uint8_t> t(table, sp_->layout.l2_table_bytes());
  GrainMapping m;
  if (sp_->layout.format == ExtentFormat::kSeSparse) {
    auto g = DecodeSeSparseGtEntry(sp_->layout, LoadLe64(t, size_t{l2} * 8));
    if (!g) return std::unexpected(g.error());
    m.state = g->state == GrainState::kAllocated ? GrainMapping::kAllocated
              : g->state == GrainState::kZero    ? GrainMapping::kZero
                                                 : GrainMapping::kUnallocated;
    m.grain_offset = g->offset;
    return m;
  }
  const uint32_t entry = LoadLe32(t, size_t{l2} * 4);
  if (entry == 0) return m;
  if (sp_->layout.has_zero_grain && entry == kGteZeroed) {
    m.state = GrainMapping::kZero;
    return m;
  }
  m.state = GrainMapping::kAllocated;
  m.grain_offset = uint64_t{entry} * kSectorSize;
  return m;
}

bool Extent::try_lookup(uint64_t offset, GrainMapping* out, Status* error) {
  if (kind_ == ExtentKind::kZero) {
    out->state = GrainMapping::kZero;
    return true;
  }
  if (kind_ == ExtentKind::kFlat) {
    out->state = GrainMapping::kAllocated;
    out->grain_offset = flat_offset_;
    return true;
  }
  const uint64_t sector = offset / kSectorSize;
  const uint64_t l1 = sector / sp_->layout.l1_entry_sectors;
  if (l1 >= sp_->layout.l1_size) {
    *error = MakeError(EIO, "Grain directory index out of range");
    return true;
  }
  const uint32_t l2 =
      static_cast<uint32_t>((sector / sp_->layout.cluster_sectors) % sp_->layout.l2_size);
  const uint32_t index = static_cast<uint32_t>(l1);
  if (!sp_->uncommitted.empty() && uncommitted_lookup(offset, out)) return true;
  // A cached table implies a non-zero directory entry (tables are loaded
  // or installed only for those), so the hit path skips the directory.
  const uint8_t* table = sp_->cache->lookup(index);
  if (!table) {
    if (sp_->directory[index] != 0) return false;
    *out = GrainMapping{};
    return true;
  }
  auto m = decode_entry(table, l2);
  if (!m)
    *error = std::unexpected(m.error());
  else
    *out = *m;
  return true;
}

Task<Result<GrainMapping>> Extent::lookup(uint64_t offset) {
  GrainMapping m;
  Status error;
  if (try_lookup(offset, &m, &error)) {
    if (!error) co_return std::unexpected(error.error());
    co_return m;
  }
  // Miss: load the grain table (once, however many requests want it).
  const uint64_t sector = offset / kSectorSize;
  const uint32_t l1 = static_cast<uint32_t>(sector / sp_->layout.l1_entry_sectors);
  const uint32_t l2 =
      static_cast<uint32_t>((sector / sp_->layout.cluster_sectors) % sp_->layout.l2_size);
  auto at = table_offset(l1);
  if (!at) co_return std::unexpected(at.error());
  if (*at == 0) co_return GrainMapping{};
  auto table = co_await sp_->cache->get(l1, *file_, *at);
  if (!table) co_return std::unexpected(table.error());
  co_return decode_entry(*table, l2);
}

Task<Result<Extent::Run>> Extent::lookup_run(uint64_t offset, uint64_t max_bytes) {
  Run run;
  const uint64_t limit = std::min(max_bytes, bytes() - offset);
  if (kind_ != ExtentKind::kSparse) {
    auto m = co_await lookup(offset);
    if (!m) co_return std::unexpected(m.error());
    run.mapping = *m;
    run.bytes = limit;  // a flat or zero extent is one grain
    co_return run;
  }
  const uint64_t grain = grain_bytes();
  const uint64_t span = table_span_bytes();
  // Where the run may extend by every unallocated table up to the next one
  // that has a grain (one step, however many empty entries lie between).
  auto table_gap = [&](uint64_t at) -> uint64_t {
    const uint64_t l1 = at / span;
    if (l1 >= sp_->layout.l1_size || !table_unallocated(static_cast<uint32_t>(l1))) return 0;
    uint64_t end = 0;
    if (!CheckedMul(next_table(static_cast<uint32_t>(l1)), span, &end) || end > bytes())
      end = bytes();
    return end - at;
  };
  if (uint64_t gap = table_gap(offset)) {
    run.bytes = std::min(gap, limit);
  } else {
    auto m = co_await lookup(offset);
    if (!m) co_return std::unexpected(m.error());
    run.mapping = *m;
    run.bytes = std::min(grain - offset % grain, limit);
    // Compressed grains are one grain each (no file offset to continue).
    if (m->state == GrainMapping::kAllocated && compressed()) co_return run;
  }
  const GrainMapping& first = run.mapping;
  const uint64_t first_grain = offset / grain * grain;
  while (run.bytes < limit) {
    const uint64_t next = offset + run.bytes;  // grain aligned
    if (first.state == GrainMapping::kUnallocated) {
      if (uint64_t gap = table_gap(next)) {
        run.bytes += std::min(gap, limit - run.bytes);
        continue;
      }
    }
    GrainMapping m;
    Status err;
    if (!try_lookup(next, &m, &err)) {
      // A table not in the cache: load it (bounded by the allocated tables).
      auto r = co_await lookup(next);
      if (!r) break;  // the next call reports it
      m = *r;
    } else if (!err) {
      break;
    }
    if (m.state != first.state) break;
    if (m.state == GrainMapping::kAllocated &&
        m.grain_offset != first.grain_offset + (next - first_grain))
      break;
    run.bytes += std::min(grain, limit - run.bytes);
  }
  co_return run;
}

Task<Status> Extent::read_allocated(const GrainMapping& m, uint64_t offset, IoVector& qiov) {
  const uint64_t in_grain = offset % grain_bytes();
  if (kind_ == ExtentKind::kSparse && sp_->layout.compressed)
    co_return co_await read_compressed(m, in_grain, qiov);
  uint64_t at = 0;
  if (!CheckedAdd(m.grain_offset, in_grain, &at) || at > uint64_t{INT64_MAX} - qiov.size())
    co_return MakeError(EIO, "Grain offset out of range");
  // Data beyond the end of the extent file reads as zeros, as in QEMU.
  const uint64_t file_size = static_cast<uint64_t>(file_->size());
  const uint64_t len = qiov.size();
  if (at >= file_size) {
    qiov.memset(0, 0, len);
    co_return OkStatus();
  }
  if (len > file_size - at) {
    const uint64_t inside = file_size - at;
    IoVector head = qiov.slice(0, inside);
    qiov.memset(inside, 0, len - inside);
    co_return co_await file_->preadv(static_cast<int64_t>(at), static_cast<int64_t>(inside), head);
  }
  co_return co_await file_->preadv(static_cast<int64_t>(at), static_cast<int64_t>(len), qiov);
}

// Reads the part of a compressed grain that qiov asks for: the input is
// read in pieces of at most kCompressedChunk and inflated only up to the
// end of the range (RangeInflater), so a 512-byte read of a grain declared
// 1 GiB costs a few KiB, not the grain. Input is bounded like QEMU's: the
// marker's size (at most two grains less the marker), or without markers
// two grains; never past the end of the file.
Task<Status> Extent::read_compressed(const GrainMapping& m, uint64_t offset_in_grain,
                                     IoVector& qiov) {
  constexpr uint64_t kCompressedChunk = 128 << 10;
  const uint64_t grain = sp_->layout.cluster_bytes();
  const uint64_t file_size = static_cast<uint64_t>(file_->size());
  if (m.grain_offset >= file_size) co_return MakeError(EINVAL, "Compressed grain past end of file");
  const uint64_t readable = std::min(CompressedReadBytes(grain), file_size - m.grain_offset);
  std::vector<uint8_t> in(std::min(kCompressedChunk, readable));
  COBLK_CO_RETURN_IF_ERROR(co_await file_->pread(static_cast<int64_t>(m.grain_offset), in.data(),
                                                 static_cast<int64_t>(in.size())));
  uint64_t head = 0, data_len = readable;
  if (sp_->layout.has_marker) {
    auto marker = GrainMarker::Decode(in);
    if (!marker) co_return std::unexpected(marker.error());
    head = GrainMarker::kGrainHeaderSize;
    if (marker->size == 0) co_return MakeError(EINVAL, "Invalid compressed grain marker: size 0");
    if (marker->size > readable - head)
      co_return MakeError(EINVAL, StrFormat("Invalid compressed grain marker: size %" PRIu32
                                            " exceeds the %" PRIu64 " bytes read",
                                            marker->size, readable - head));
    data_len = marker->size;
  }
  // The last grain of a disk whose size is not a multiple of the grain
  // inflates to less than a grain: only the requested range must be there
  // (QEMU: offset_in_cluster + bytes <= inflated length).
  std::vector<uint8_t> out(qiov.size());
  RangeInflater inflater(offset_in_grain, out, grain);
  std::span<const uint8_t> piece =
      std::span<const uint8_t>(in).subspan(head, std::min<uint64_t>(in.size() - head, data_len));
  uint64_t fed = 0;
  for (;;) {
    fed += piece.size();
    auto done = inflater.feed(piece, fed == data_len);
    if (!done) co_return std::unexpected(done.error());
    if (*done) break;
    const uint64_t n = std::min(kCompressedChunk, data_len - fed);
    in.resize(n);
    COBLK_CO_RETURN_IF_ERROR(co_await file_->pread(
        static_cast<int64_t>(m.grain_offset + head + fed), in.data(), static_cast<int64_t>(n)));
    piece = in;
  }
  qiov.copy_from(0, out.data(), out.size());
  co_return OkStatus();
}

// Mirrors QEMU's vmdk_get_extent_info (and its key order): cluster-size
// only for sparse extents, compressed only when true, format = the extent
// line's type (empty for a monolithic file, which has no extent line).
InfoTree Extent::info() const {
  InfoTree t;
  // Room for exactly the values below (an image may list 100,000 extents).
  size_t n = 3;
  if (sparse()) n += 1 + sp_->layout.compressed + !sp_->rgd_mismatch.empty();
  t.values.reserve(n);
  if (kind_ == ExtentKind::kSparse && sp_->layout.compressed)
    t.values.emplace_back("compressed", "true");
  t.values.emplace_back("virtual-size", std::to_string(bytes()));
  t.values.emplace_back("filename", file_ ? file_->filename() : "");
  if (kind_ == ExtentKind::kSparse)
    t.values.emplace_back("cluster-size", std::to_string(sp_->layout.cluster_bytes()));
  t.values.emplace_back("format", type_name());
  if (sparse() && !sp_->rgd_mismatch.empty())
    t.values.emplace_back("redundant-gd-mismatch", sp_->rgd_mismatch);
  return t;
}

}  // namespace coblk::vmdk
