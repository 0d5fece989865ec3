#include "drivers/vmdk/vmdk_node.h"

#include <algorithm>
#include <cinttypes>

#include "block/block_driver.h"
#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/strfmt.h"
#include "drivers/vmdk/vmdk_check.h"

namespace coblk::vmdk {

void VmdkNode::add_extent(std::unique_ptr<Extent> e) {
  e->start = extents_.empty() ? 0 : extents_.back()->end();
  extents_.push_back(std::move(e));
  set_size(static_cast<int64_t>(extents_.back()->end()));
}

Extent* VmdkNode::find_extent(uint64_t offset) const {
  // Extents are sorted by start; most disks have one, so check it first.
  if (extents_.size() == 1) return offset < extents_[0]->end() ? extents_[0].get() : nullptr;
  auto it = std::upper_bound(extents_.begin(), extents_.end(), offset,
                             [](uint64_t off, const auto& e) { return off < e->end(); });
  return it == extents_.end() ? nullptr : it->get();
}

bool VmdkNode::parent_cid_valid() {
  if (cid_checked_ || !backing()) return true;
  auto* parent = dynamic_cast<VmdkNode*>(backing());
  // A parent of another format (given with backing.driver=..., or put
  // under this image by a job) has no CID to compare: QEMU then fails every
  // read that falls through (EINVAL); coblk reads through it, because the
  // backing child is generic and the user chose that parent explicitly.
  if (!parent) {
    cid_checked_ = true;
    return true;
  }
  if (parent->cid != parent_cid) return false;
  cid_checked_ = true;
  return true;
}

Task<Status> VmdkNode::read_unallocated(uint64_t offset, uint64_t len, IoVector& qiov) {
  BlockNode* parent = backing();
  if (!parent) {
    qiov.memset(0, 0, len);
    co_return OkStatus();
  }
  if (!parent_cid_valid())
    co_return MakeError(EINVAL, StrFormat("Parent CID of '%s' does not match the CID of its "
                                          "backing file '%s' (parentCID=%08x, CID=%08x): the "
                                          "backing file changed after this image was made",
                                          filename().c_str(), parent->filename().c_str(),
                                          parent_cid, static_cast<VmdkNode*>(parent)->cid));
  // The backing image may be smaller: the rest reads as zeros.
  const uint64_t parent_size = static_cast<uint64_t>(std::max<int64_t>(parent->size(), 0));
  const uint64_t from_parent = offset >= parent_size ? 0 : std::min(len, parent_size - offset);
  if (from_parent < len) qiov.memset(from_parent, 0, len - from_parent);
  if (from_parent == 0) co_return OkStatus();
  IoVector head = qiov.slice(0, from_parent);
  co_return co_await parent->preadv(static_cast<int64_t>(offset),
                                    static_cast<int64_t>(from_parent), head);
}

// Reads grain by grain, but without any lock: lookups that hit the grain
// table cache complete inline, misses wait only for their table, and the
// data reads of concurrent requests are all in flight together. Physically
// contiguous allocated grains are merged into one read.
Task<Status> VmdkNode::co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t) {
  uint64_t pos = static_cast<uint64_t>(offset);
  uint64_t done = 0;
  const uint64_t total = static_cast<uint64_t>(bytes);
  while (done < total) {
    Extent* e = find_extent(pos);
    if (!e && pos >= static_cast<uint64_t>(size())) {
      // Alignment padding past the end of a disk whose size is not a
      // multiple of the request alignment inherited from the files.
      qiov.memset(done, 0, total - done);
      break;
    }
    if (!e) co_return MakeError(EIO, "Offset beyond the last extent");
    const uint64_t in_extent = pos - e->start;
    auto m = co_await e->lookup(in_extent);
    if (!m) co_return std::unexpected(m.error());
    const uint64_t grain = e->grain_bytes();
    // Never past the extent's end: an extent need not be a whole number of
    // grains, and what follows it is the next extent's or padding past the
    // disk's end (the write path cuts at the same place).
    uint64_t n = std::min({total - done, grain - in_extent % grain, e->bytes() - in_extent});

    // Extend over following grains of the same extent that continue the
    // same file range (uncompressed data only) or share the same state.
    while (done + n < total && in_extent + n < e->bytes() && !e->compressed()) {
      GrainMapping next;
      Status err;
      if (!e->try_lookup(in_extent + n, &next, &err) || !err) break;
      if (next.state != m->state) break;
      if (next.state == GrainMapping::kAllocated &&
          next.grain_offset != m->grain_offset + (in_extent + n) / grain * grain -
                                   in_extent / grain * grain)
        break;
      n += std::min({total - done - n, grain, e->bytes() - in_extent - n});
    }

    IoVector part = qiov.slice(done, n);
    Status st;
    switch (m->state) {
      case GrainMapping::kAllocated:
        st = co_await e->read_allocated(*m, in_extent, part);
        break;
      case GrainMapping::kZero:
        part.memset(0, 0, n);
        break;
      case GrainMapping::kUnallocated:
        st = co_await read_unallocated(pos, n, part);
        break;
    }
    if (!st) co_return st;
    pos += n;
    done += n;
  }
  co_return OkStatus();
}

// As QEMU's vmdk_co_block_status: unallocated = 0, zeroed grain = ZERO,
// data = DATA with the file offset unless the grain is compressed. Unlike
// QEMU (one grain per call), one call covers a whole run of grains in the
// same state (a whole ZERO or flat extent, a whole table-less directory
// entry, a table scanned in memory), so map costs what the image holds.
Task<Result<BlockStatus>> VmdkNode::co_block_status(bool, int64_t offset,
                                                    int64_t bytes) {
  const uint64_t pos = static_cast<uint64_t>(offset);
  Extent* e = find_extent(pos);
  if (!e) co_return MakeError(EIO, "Offset beyond the last extent");
  const uint64_t in_extent = pos - e->start;
  auto run = co_await e->lookup_run(in_extent, static_cast<uint64_t>(bytes));
  if (!run) co_return std::unexpected(run.error());
  const GrainMapping& m = run->mapping;
  const uint64_t in_grain = in_extent % e->grain_bytes();
  BlockStatus s;
  s.pnum = static_cast<int64_t>(run->bytes);
  switch (m.state) {
    case GrainMapping::kUnallocated:
      break;
    case GrainMapping::kZero:
      s.status = kStatusZero | kStatusAllocated;
      break;
    case GrainMapping::kAllocated:
      s.status = kStatusData | kStatusAllocated;
      s.file = e->file();
      if (!e->compressed()) {
        s.status |= kStatusOffsetValid;
        s.map = static_cast<int64_t>(m.grain_offset + in_grain);
      }
      // QEMU's BDRV_BLOCK_RECURSE for flat extents only: holes in a flat
      // extent's file read as zeroes, while a sparse extent's grain is
      // data even over a hole of its file (qemu-img map says so).
      if (e->kind() == ExtentKind::kFlat) s.status |= kStatusRecurse;
      break;
  }
  co_return s;
}

Task<Status> VmdkNode::co_flush() {
  Status result;
  // Table updates still being committed, then stream tails, then the files.
  for (const auto& e : extents_) {
    if (e->kind() != ExtentKind::kSparse || !e->writable()) continue;
    if (Status st = co_await e->drain_updates(); !st && result) result = st;
    if (e->stream_layout()) {
      Status st = co_await e->write_stream_tail();
      if (!st && result) result = st;
    }
  }
  for (const auto& c : children_) {
    if (c.role == ChildRole::kBacking) continue;
    Status st = co_await c.node->flush();
    if (!st && result) result = st;
  }
  co_return result;
}

// Files grown ahead of the append point are cut back to their data (the
// flush before close has committed every table entry); stream extents
// written to get their final tail (Extent::finish_writes).
Task<Status> VmdkNode::co_close() {
  Status result;
  for (const auto& e : extents_) {
    if (e->kind() == ExtentKind::kSparse && e->writable() && !read_only()) {
      Status st = co_await e->finish_writes();
      if (st) st = co_await e->file()->flush();
      if (result && !st) result = st;
    }
  }
  co_return result;
}

// VMDK4 sparse extents get the full check and repair (vmdk_check.h);
// VMDK3 and seSparse extents, which coblk never writes, QEMU's lookup walk.
// Repair needs the node to itself (coblk-img check -r holds the image's
// write lock and runs nothing else); extents it wrote to are reopened.
Task<Result<CheckResult>> VmdkNode::co_check(uint32_t fix) {
  CheckResult r;
  std::vector<Extent*> vmdk4;
  std::vector<size_t> vmdk4_index;
  for (size_t i = 0; i < extents_.size(); ++i) {
    Extent& e = *extents_[i];
    if (e.kind() != ExtentKind::kSparse) continue;
    if (e.layout().format == ExtentFormat::kVmdk4) {
      vmdk4.push_back(&e);
      vmdk4_index.push_back(i);
    } else if (fix) {
      // The check walk and the writes of repair are VMDK4's; coblk writes
      // neither VMDK3 nor seSparse (nor does QEMU). check without -r
      // reports their problems.
      co_return MakeError(ENOTSUP, "Repair of VMDK3 (COWD) and seSparse extents is not supported; "
                                   "'check' without -r reports their problems");
    }
  }
  if (fix) {
    if (read_only()) co_return MakeError(EROFS, "Repair needs the image opened read-write");
    for (const auto& e : extents_)
      if (e->kind() == ExtentKind::kSparse) COBLK_CO_RETURN_IF_ERROR(co_await e->drain_updates());
  }
  bool changed = false;
  COBLK_CO_RETURN_IF_ERROR(co_await CheckVmdkExtents(vmdk4, fix, r, &changed));
  for (const auto& e : extents_) {
    if (e->kind() != ExtentKind::kSparse || e->layout().format == ExtentFormat::kVmdk4) continue;
    COBLK_CO_RETURN_IF_ERROR(co_await check_lookup_walk(*e, r));
    // That walk does not compute these (nor does QEMU's): no figures line.
    r.fragmented_clusters = r.compressed_clusters = -1;
  }
  if (changed)
    for (size_t i : vmdk4_index) COBLK_CO_RETURN_IF_ERROR(co_await reopen_extent(i));
  co_return r;
}

Task<Status> VmdkNode::reopen_extent(size_t index) {
  Extent& old = *extents_[index];
  auto e = co_await Extent::OpenSparse(old.file(), old.writable(), cache_bytes);
  if (!e) co_return std::unexpected(e.error());
  (*e)->start = old.start;
  (*e)->set_line_type(old.line_type());
  COBLK_CO_RETURN_IF_ERROR(co_await (*e)->enable_writes(old.writable()));
  extents_[index] = std::move(*e);
  co_return OkStatus();
}

// QEMU's vmdk_co_check walk: a grain table or grain that cannot be looked
// up, or data past the end of its file, is a corruption. A directory entry
// without a table is counted in one step.
Task<Status> VmdkNode::check_lookup_walk(Extent& e, CheckResult& r) {
  const uint64_t grain = e.grain_bytes();
  const uint64_t span = e.table_span_bytes();
  const uint64_t file_size = static_cast<uint64_t>(e.file()->size());
  r.total_clusters += static_cast<int64_t>((e.bytes() + grain - 1) / grain);
  CheckFindings findings(r);
  for (uint64_t off = 0; off < e.bytes(); off += grain) {
    const uint64_t l1 = off / span;
    if (l1 < e.table_count() && e.table_unallocated(static_cast<uint32_t>(l1))) {
      // Every table up to the next one with a grain: unallocated.
      uint64_t end = 0;
      if (!CheckedMul(e.next_table(static_cast<uint32_t>(l1)), span, &end) || end > e.bytes())
        end = e.bytes();
      off = end - grain;
      continue;
    }
    auto m = co_await e.lookup(off);
    if (!m) {
      findings.corruption(StrFormat("ERROR: could not get cluster_offset for sector %" PRIu64,
                                    (e.start + off) / kSectorSize));
      continue;
    }
    if (m->state != GrainMapping::kAllocated) continue;
    ++r.allocated_clusters;
    if (m->grain_offset >= file_size)
      findings.corruption(StrFormat("ERROR: cluster offset for sector %" PRIu64 " points after EOF",
                                    (e.start + off) / kSectorSize));
  }
  if (!e.rgd_mismatch().empty()) findings.corruption("ERROR: " + e.rgd_mismatch());
  findings.finish();
  co_return OkStatus();
}

BlockLimits VmdkNode::driver_limits() {
  BlockLimits l;
  for (const auto& e : extents_)
    if (e->kind() == ExtentKind::kSparse)
      l.pwrite_zeroes_alignment =
          std::max<uint32_t>(l.pwrite_zeroes_alignment, static_cast<uint32_t>(e->grain_bytes()));
  return l;
}

ImageInfo VmdkNode::get_info() {
  ImageInfo info = BlockNode::get_info();
  info.format = "vmdk";
  // Like QEMU's vmdk_get_info: a cluster size only when all extents agree.
  if (!extents_.empty() && extents_[0]->kind() == ExtentKind::kSparse) {
    bool same = std::all_of(extents_.begin(), extents_.end(), [&](const auto& e) {
      return e->kind() == ExtentKind::kSparse && e->grain_bytes() == extents_[0]->grain_bytes() &&
             e->compressed() == extents_[0]->compressed();
    });
    if (same) info.cluster_size = static_cast<int64_t>(extents_[0]->grain_bytes());
  }
  if (!parent_file_name_hint.empty()) {
    info.backing_filename = parent_file_name_hint;
    info.backing_format = "vmdk";
  }
  info.specific = get_specific_info();
  return info;
}

InfoTree VmdkNode::get_specific_info() {
  InfoTree t;
  t.values.emplace_back("cid", std::to_string(cid));
  t.values.emplace_back("parent-cid", std::to_string(parent_cid));
  t.values.emplace_back("create-type", create_type);
  InfoTree list;
  list.is_list = true;
  list.children.reserve(extents_.size());
  for (const auto& e : extents_) list.children.emplace_back("", e->info());
  t.children.emplace_back("extents", std::move(list));
  return t;
}

int64_t VmdkNode::allocated_file_size() {
  int64_t total = file() ? file()->allocated_file_size() : 0;
  if (total < 0) return total;
  for (const auto& c : children_) {
    if (c.role != ChildRole::kData || c.node.get() == file()) continue;
    int64_t r = c.node->allocated_file_size();
    if (r < 0) return r;
    total += r;
  }
  return total;
}

bool VmdkNode::has_zero_init() {
  for (const auto& e : extents_)
    if (e->kind() == ExtentKind::kFlat && !e->file()->has_zero_init()) return false;
  return true;
}

}  // namespace coblk::vmdk
