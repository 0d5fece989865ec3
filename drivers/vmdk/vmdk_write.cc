// VmdkNode's write path. No request-wide lock: overwrites of allocated
// grains go straight to the file, allocating writes serialise only on their
// grain, and grain-table updates share flushes (see extent_write.cc).
#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <random>

#include "coroutine/when_all.h"
#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/strfmt.h"
#include "drivers/vmdk/vmdk_node.h"
#include "io/aligned_buffer.h"
#include "io/thread_pool.h"
#include "util/report.h"

namespace coblk::vmdk {

namespace {

constexpr char kStreamOverwriteMsg[] = "Could not write to allocated cluster for streamOptimized";

// QEMU reports a refused stream overwrite before the request fails, once:
// it writes the grains of a request one by one and stops at the first that
// fails, where the grains here run in parallel and several may be refused.
Status ReportedOnce(Status st) {
  if (!st && st.error().message() == kStreamOverwriteMsg) ReportError(kStreamOverwriteMsg);
  return st;
}

Status NotWritable(const Extent& e) {
  if (e.kind() == ExtentKind::kSparse && e.layout().format == ExtentFormat::kSeSparse)
    return MakeError(ENOTSUP, "No write support for seSparse images available");
  if (e.kind() == ExtentKind::kSparse && e.layout().footer_lost)
    return MakeError(EACCES, "VMDK extent '" + e.file()->filename() +
                                 "' was cut before its footer: open for check only");
  return MakeError(EACCES, "VMDK extent '" + (e.file() ? e.file()->filename() : std::string(e.type_name())) +
                               "' is read-only");
}

// File space for a new grain, taken in the request's offset order.
Task<Result<uint64_t>> AllocateInOrder(Extent& e, uint64_t bytes, PieceOrder order) {
  if (order.order) co_await order.order->wait_turn(order.index);
  Result<uint64_t> where = co_await e.allocate(bytes);
  if (order.order) order.order->done(order.index);
  co_return where;
}

}  // namespace

Task<Result<std::string>> VmdkNode::read_descriptor_text() {
  BlockNode& f = *descriptor_file;
  const uint64_t size = static_cast<uint64_t>(f.size());
  const uint64_t limit = descriptor_capacity ? descriptor_capacity : size;
  if (descriptor_offset >= size) co_return MakeError(EIO, "Descriptor is missing");
  std::string text(std::min(limit, size - descriptor_offset), '\0');
  COBLK_CO_RETURN_IF_ERROR(co_await f.pread(static_cast<int64_t>(descriptor_offset), text.data(),
                                            static_cast<int64_t>(text.size())));
  text.resize(std::strlen(text.c_str()));
  co_return text;
}

Task<Status> VmdkNode::write_descriptor_text(const std::string& text, const char* why,
                                             bool keep_tail) {
  BlockNode& f = *descriptor_file;
  if (descriptor_capacity) {
    // Embedded: rewrite the whole area so no stale bytes follow the text.
    if (text.size() >= descriptor_capacity)
      co_return MakeError(ENOSPC, std::string("Descriptor does not fit its area ") + why);
    std::string area(descriptor_capacity, '\0');
    area.replace(0, text.size(), text);
    co_return co_await f.pwrite(static_cast<int64_t>(descriptor_offset), area.data(),
                                static_cast<int64_t>(area.size()));
  }
  // A descriptor file: laid out as QEMU's vmdk_write_cid leaves it (whole
  // sectors, the new text NUL-terminated at the start), so that a file
  // written by coblk is the one qemu-io's same writes leave.
  std::string old(static_cast<size_t>(f.size()), '\0');
  COBLK_CO_RETURN_IF_ERROR(co_await f.pread(0, old.data(), static_cast<int64_t>(old.size())));
  const std::string bytes = DescriptorFileBytes(old, text, keep_tail);
  co_return co_await f.pwrite(0, bytes.data(), static_cast<int64_t>(bytes.size()));
}

Task<Status> VmdkNode::update_cid_once() {
  if (cid_updated_) co_return OkStatus();
  auto guard = co_await cid_lock_.scoped_lock();
  if (cid_updated_ || !descriptor_file) co_return OkStatus();
  auto text = co_await read_descriptor_text();
  if (!text) co_return std::unexpected(text.error());
  std::random_device rd;
  uint32_t new_cid = static_cast<uint32_t>(rd());
  auto updated = SetCid(*text, CidField::kCid, new_cid);
  if (!updated) co_return std::unexpected(updated.error());
  // QEMU leaves what follows the new text as it was; so does this.
  COBLK_CO_RETURN_IF_ERROR(
      co_await write_descriptor_text(*updated, "after the CID update", /*keep_tail=*/true));
  cid = new_cid;
  cid_updated_ = true;
  co_return OkStatus();
}

Task<Status> VmdkNode::co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) {
  COBLK_CO_RETURN_IF_ERROR(co_await write_range(offset, bytes, qiov));
  // Force unit access: data and the table entries pointing at it are durable
  // before the write completes.
  if (flags & kReqFua) co_return co_await co_flush();
  co_return OkStatus();
}

Task<Status> VmdkNode::write_range(int64_t offset, int64_t bytes, IoVector& qiov) {
  COBLK_CO_RETURN_IF_ERROR(co_await update_cid_once());
  // Pieces (one grain, or one flat extent's part) in flight at once: bounds
  // the grain buffers a huge request holds.
  constexpr size_t kWindow = 32;
  struct Piece {
    Extent* extent;
    uint64_t in_extent, n;
    IoVector data;
  };
  uint64_t pos = static_cast<uint64_t>(offset), done = 0;
  const uint64_t total = static_cast<uint64_t>(bytes);
  while (done < total) {
    std::vector<Piece> pieces;
    while (done < total && pieces.size() < kWindow) {
      Extent* e = find_extent(pos);
      // Alignment padding past the end of the disk (see co_preadv) is dropped.
      if (!e && pos >= static_cast<uint64_t>(size())) {
        done = total;
        break;
      }
      if (!e) co_return MakeError(EIO, "Offset beyond the last extent");
      if (!e->writable()) co_return NotWritable(*e);
      const uint64_t in_extent = pos - e->start;
      const uint64_t grain = e->grain_bytes();
      const uint64_t n = std::min({total - done, grain - in_extent % grain, e->end() - pos});
      pieces.push_back(Piece{e, in_extent, n, qiov.slice(done, n)});
      pos += n;
      done += n;
    }
    if (pieces.size() == 1) {
      Status st = co_await write_piece(*pieces[0].extent, pieces[0].in_extent, pieces[0].n,
                                       pieces[0].data);
      if (!st) co_return ReportedOnce(std::move(st));
      continue;
    }
    AllocationOrder order(pieces.size());
    std::vector<Task<Status>> tasks;
    for (size_t k = 0; k < pieces.size(); ++k)
      tasks.push_back(write_piece_in_order(*pieces[k].extent, pieces[k].in_extent, pieces[k].n,
                                           pieces[k].data, PieceOrder{&order, k}));
    std::vector<Status> results = co_await when_all(std::move(tasks));
    for (Status& st : results)
      if (!st) co_return ReportedOnce(std::move(st));
  }
  co_return OkStatus();
}

Task<Status> VmdkNode::write_piece_in_order(Extent& e, uint64_t in_extent, uint64_t n,
                                            IoVector& data, PieceOrder order) {
  Status st = co_await write_piece(e, in_extent, n, data, order);
  order.order->done(order.index);  // also when it allocated nothing or failed
  co_return st;
}

Task<Status> VmdkNode::co_pwritev_compressed(int64_t offset, int64_t bytes, IoVector& qiov) {
  // Compressed extents compress every write; others store it uncompressed,
  // as QEMU's vmdk does.
  co_return co_await co_pwritev(offset, bytes, qiov, 0);
}

Task<Status> VmdkNode::write_piece(Extent& e, uint64_t in_extent, uint64_t n, IoVector& data,
                                   PieceOrder order) {
  if (e.kind() == ExtentKind::kFlat) {
    GrainMapping flat;
    Status err;
    e.try_lookup(in_extent, &flat, &err);
    co_return co_await e.file()->pwritev(static_cast<int64_t>(flat.grain_offset + in_extent),
                                         static_cast<int64_t>(n), data);
  }
  auto m = co_await e.lookup(in_extent);
  if (!m) co_return std::unexpected(m.error());
  if (m->state != GrainMapping::kAllocated) {
    const uint64_t grain_index = in_extent / e.grain_bytes();
    auto lock = co_await e.lock_grain(grain_index);
    // Another writer may have allocated it while we waited.
    m = co_await e.lookup(in_extent);
    if (!m) co_return std::unexpected(m.error());
    if (m->state != GrainMapping::kAllocated)
      co_return co_await allocate_grain(e, in_extent, n, data, m->state, order);
  }
  if (e.compressed()) co_return MakeError(EIO, kStreamOverwriteMsg);
  const uint64_t at = m->grain_offset + in_extent % e.grain_bytes();
  COBLK_CO_RETURN_IF_ERROR(e.check_data_target(at, n));
  co_return co_await e.file()->pwritev(static_cast<int64_t>(at), static_cast<int64_t>(n), data);
}

Task<Status> VmdkNode::allocate_grain(Extent& e, uint64_t in_extent, uint64_t n, IoVector& data,
                                      GrainMapping::State old_state, PieceOrder order) {
  COBLK_CO_RETURN_IF_ERROR(e.check_can_allocate(in_extent));
  const uint64_t grain = e.grain_bytes();
  const uint64_t grain_start = in_extent - in_extent % grain;
  // The part of the grain inside the extent (the last grain may be short).
  const uint64_t grain_len = std::min(grain, e.bytes() - grain_start);
  AlignedBuffer buf(grain, 4096);
  IoVector whole = buf.iov(0, grain);
  if (grain_len < grain) whole.memset(grain_len, 0, grain - grain_len);
  IoVector inside = whole.slice(0, grain_len);
  if (old_state == GrainMapping::kUnallocated && (n < grain_len)) {
    // Copy-on-write from the backing file (or zeros without one).
    COBLK_CO_RETURN_IF_ERROR(co_await read_unallocated(e.start + grain_start, grain_len, inside));
  } else if (n < grain_len) {
    inside.memset(0, 0, grain_len);  // a zeroed grain reads as zeros
  }
  whole.copy_from(in_extent - grain_start, data, 0, n);

  uint64_t at = 0;
  if (e.compressed()) {
    // Deflate takes ~1 ms a grain: run it on the pool so concurrent
    // writers (convert's coroutines) compress on every core, not the loop's.
    auto deflate = [&] { return CompressGrain(buf.span(), (e.start + grain_start) / kSectorSize); };
    auto packed = co_await default_thread_pool().run(deflate);
    if (!packed) co_return std::unexpected(packed.error());
    auto where = co_await AllocateInOrder(e, packed->size(), order);
    if (!where) co_return std::unexpected(where.error());
    at = *where;
    e.file()->debug_event("write_compressed");
    COBLK_CO_RETURN_IF_ERROR(co_await e.file()->pwrite(static_cast<int64_t>(at), packed->data(),
                                                       static_cast<int64_t>(packed->size())));
  } else {
    auto where = co_await AllocateInOrder(e, grain, order);
    if (!where) co_return std::unexpected(where.error());
    at = *where;
    e.file()->debug_event("cluster_alloc");
    COBLK_CO_RETURN_IF_ERROR(co_await e.file()->pwritev(static_cast<int64_t>(at),
                                                        static_cast<int64_t>(grain), whole));
  }
  co_return co_await e.update_entry(grain_start, static_cast<uint32_t>(at / kSectorSize));
}

Task<Status> VmdkNode::zero_grain(Extent& e, uint64_t in_extent) {
  auto lock = co_await e.lock_grain(in_extent / e.grain_bytes());
  co_return co_await e.update_entry(in_extent, kGteZeroed);
}

// Whole grains become zeroed-grain entries (GTE = 1) when the extent has
// the zeroed-grain feature; anything else is ENOTSUP so the generic layer
// writes zeroed data instead. Like QEMU, the whole range is checked before
// anything changes (its "dry run").
Task<Status> VmdkNode::co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t) {
  const uint64_t begin = static_cast<uint64_t>(offset), end = begin + static_cast<uint64_t>(bytes);
  for (uint64_t pos = begin; pos < end;) {
    Extent* e = find_extent(pos);
    if (!e || !e->writable() || e->kind() != ExtentKind::kSparse || e->compressed() ||
        !e->layout().has_zero_grain || e->stream_layout())
      co_return MakeError(ENOTSUP, "Zeroed grains are not available here");
    const uint64_t grain = e->grain_bytes();
    const uint64_t in_extent = pos - e->start;
    if (in_extent % grain != 0 || std::min(end, e->end()) - pos < std::min(grain, e->end() - pos))
      co_return MakeError(ENOTSUP, "Write zeroes is not grain aligned");
    for (uint64_t g = in_extent; g < std::min(end, e->end()) - e->start; g += grain)
      COBLK_CO_RETURN_IF_ERROR(e->check_can_allocate(g));
    pos = std::min(end, e->end());
  }
  COBLK_CO_RETURN_IF_ERROR(co_await update_cid_once());
  // Update many grains at once so their entries share one commit.
  constexpr size_t kParallel = 512;
  for (uint64_t pos = begin; pos < end;) {
    std::vector<Task<Status>> batch;
    while (pos < end && batch.size() < kParallel) {
      Extent* e = find_extent(pos);
      batch.push_back(zero_grain(*e, pos - e->start));
      pos = std::min(end, pos - (pos - e->start) % e->grain_bytes() + e->grain_bytes());
    }
    std::vector<Status> results = co_await when_all(std::move(batch));
    for (auto& st : results)
      if (!st) co_return st;
  }
  co_return OkStatus();
}

}  // namespace coblk::vmdk
