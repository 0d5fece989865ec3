// VmdkNode: an open VMDK disk — its descriptor facts and its extents.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block/block_node.h"
#include "coroutine/co_mutex.h"
#include "drivers/vmdk/allocation_order.h"
#include "drivers/vmdk/descriptor.h"
#include "drivers/vmdk/extent.h"

namespace coblk::vmdk {

class VmdkNode final : public BlockNode {
 public:
  VmdkNode(const BlockDriver* driver, EventLoop& loop) : BlockNode(driver, loop) {}

  // Appends an extent after the current last one.
  void add_extent(std::unique_ptr<Extent> e);
  // Room for n extents in all (a descriptor's count: no doubling slack).
  void reserve_extents(size_t n) { extents_.reserve(n); }
  const std::vector<std::unique_ptr<Extent>>& extents() const { return extents_; }

  std::string create_type;
  uint32_t cid = 0;
  uint32_t parent_cid = kNoParentCid;
  std::string parent_file_name_hint;

  // Where the descriptor lives, for the CID update on first write: a
  // standalone descriptor file (rewritten whole) or the area embedded in a
  // sparse extent (rewritten in place, never beyond its sectors).
  BlockNode* descriptor_file = nullptr;
  uint64_t descriptor_offset = 0;
  uint64_t descriptor_capacity = 0;  // 0 = standalone file
  // l2-cache-size, for extents reopened after a repair.
  uint64_t cache_bytes = 4 << 20;

  ImageInfo get_info() override;
  InfoTree get_specific_info() override;
  int64_t allocated_file_size() override;
  bool has_zero_init() override;
  std::string backing_filename() const override { return parent_file_name_hint; }

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override;
  Task<Result<BlockStatus>> co_block_status(bool want_zero, int64_t offset, int64_t bytes) override;
  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override;
  Task<Status> co_pwritev_compressed(int64_t offset, int64_t bytes, IoVector& qiov) override;
  Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) override;
  Task<Status> co_flush() override;
  Task<Status> co_close() override;
  Task<Result<CheckResult>> co_check(uint32_t fix) override;
  BlockLimits driver_limits() override;
  // vmdk_rebase.cc: parentFileNameHint and parentCID rewritten.
  Task<Status> co_change_backing_file(const std::string& name, const std::string& format,
                                      BlockNode* new_backing) override;

 private:
  // The extent holding virtual offset `offset` (< size()).
  Extent* find_extent(uint64_t offset) const;
  // Reads [offset, offset+len) of an unallocated range: from the backing
  // node if there is one (and the parent CID matches), else zeros.
  Task<Status> read_unallocated(uint64_t offset, uint64_t len, IoVector& qiov);
  // QEMU's vmdk_is_cid_valid: the backing image must still be the parent
  // this image was made from.
  bool parent_cid_valid();

  // ---- write side (vmdk_write.cc) ----
  Task<Status> write_range(int64_t offset, int64_t bytes, IoVector& qiov);
  // Writes [pos, pos+n) inside one grain (or one flat extent piece).
  Task<Status> write_piece(Extent& e, uint64_t in_extent, uint64_t n, IoVector& data,
                           PieceOrder order = {nullptr, 0});
  Task<Status> write_piece_in_order(Extent& e, uint64_t in_extent, uint64_t n, IoVector& data,
                                    PieceOrder order);
  // Allocates a whole grain: old content (backing or zeros) merged with the
  // new bytes (compressed on the thread pool for stream extents), written in
  // one request, then its table entry committed.
  Task<Status> allocate_grain(Extent& e, uint64_t in_extent, uint64_t n, IoVector& data,
                              GrainMapping::State old_state, PieceOrder order);
  // QEMU's vmdk_write_cid: a new CID once per open, before the first write.
  Task<Status> update_cid_once();
  // The descriptor's text (embedded area or descriptor file) and its
  // rewrite; callers hold cid_lock_. `why` ends the ENOSPC message when the
  // new text does not fit an embedded area; keep_tail: see
  // DescriptorFileBytes (a descriptor file's bytes after the new text).
  Task<Result<std::string>> read_descriptor_text();
  Task<Status> write_descriptor_text(const std::string& text, const char* why, bool keep_tail);
  Task<Status> zero_grain(Extent& e, uint64_t in_extent);
  // check of VMDK3 and seSparse extents (read-only formats): every grain
  // can be looked up and lies inside the file, as QEMU's check.
  Task<Status> check_lookup_walk(Extent& e, CheckResult& r);
  // After a repair wrote to an extent file: the extent opened again, so
  // its directory, caches and append point are those on disk.
  Task<Status> reopen_extent(size_t index);

  std::vector<std::unique_ptr<Extent>> extents_;
  bool cid_checked_ = false;
  bool cid_updated_ = false;
  CoMutex cid_lock_;
};

}  // namespace coblk::vmdk
