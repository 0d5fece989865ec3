// The ordering behind crash-safe allocating writes, checked on the request
// stream itself: a grain-table sector may name a new grain only after that
// grain's data write has completed and a flush issued after it has
// completed (extent_write.cc: data -> fdatasync -> table sectors).
//
// Content checks after a simulated crash cannot see a missing flush:
// blkdebug applies writes in order, and a lost new grain reads as zeros
// just like an unallocated one. So a recording filter sits between the
// vmdk node and its file and checks every table write as it is issued.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>

#include "block/block_driver.h"
#include "coroutine/sleep.h"
#include "coroutine/when_all.h"
#include "tests/drivers/vmdk/vmdk_write_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kGrain = 65536;
constexpr int64_t kTableBytes = 512 * 4;

class OrderRecorderNode final : public BlockNode {
 public:
  using BlockNode::BlockNode;

  std::vector<std::pair<uint64_t, uint64_t>> tables;  // [begin, end) of every grain table
  std::vector<std::string> violations;
  int table_writes = 0, flushes = 0;
  Bytes initial;  // the image file when it was opened: table entries start from it

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    co_return co_await file()->preadv(offset, bytes, qiov, flags);
  }

  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    const uint64_t begin = static_cast<uint64_t>(offset), end = begin + static_cast<uint64_t>(bytes);
    if (overlaps_table(begin, end)) {
      ++table_writes;
      check_table_write(begin, end, qiov);
      co_return co_await file()->pwritev(offset, bytes, qiov, flags);
    }
    COBLK_CO_RETURN_IF_ERROR(co_await file()->pwritev(offset, bytes, qiov, flags));
    // A new grain is written whole, in one request, at a grain-aligned offset.
    if (bytes >= kGrain && begin % kGrain == 0) {
      for (uint64_t g = begin; g + kGrain <= end; g += kGrain) {
        written_.insert(g);
        unflushed_.insert(g);
        since_flush_.insert(g);
      }
    }
    co_return OkStatus();
  }

  Task<Status> co_flush() override {
    // Only writes completed before the flush was issued are made durable.
    std::set<uint64_t> covered = std::move(since_flush_);
    since_flush_.clear();
    COBLK_CO_RETURN_IF_ERROR(co_await file()->flush());
    ++flushes;
    for (uint64_t g : covered) unflushed_.erase(g);
    co_return OkStatus();
  }

  Task<Status> co_truncate(int64_t size, bool exact, PreallocMode prealloc) override {
    COBLK_CO_RETURN_IF_ERROR(co_await file()->truncate(size, exact, prealloc));
    set_size(file()->size());
    co_return OkStatus();
  }

  Task<Result<BlockStatus>> co_block_status(bool, int64_t offset, int64_t bytes) override {
    co_return BlockStatus{kStatusRaw | kStatusOffsetValid, bytes, offset, file()};
  }

 private:
  bool overlaps_table(uint64_t begin, uint64_t end) const {
    for (const auto& [b, e] : tables)
      if (begin < e && b < end) return true;
    return false;
  }

  // Every entry that changes must name a grain that is written and flushed.
  // A write padded to a large request alignment (4 KiB on tmpfs or 4K-sector
  // disks) also covers the header, directories and unchanged entries: only
  // entries inside a table that differ from their last value count.
  void check_table_write(uint64_t begin, uint64_t end, IoVector& qiov) {
    Bytes data(end - begin);
    qiov.copy_to(0, data.data(), data.size());
    for (uint64_t at = begin; at + 4 <= end; at += 4) {
      if (at % 4 != 0 || !overlaps_table(at, at + 4)) continue;
      const uint32_t value = LoadLe32(data, at - begin);
      auto [it, fresh] = entries_.try_emplace(at, 0);
      uint32_t& before = it->second;
      if (fresh && at + 4 <= initial.size()) before = LoadLe32(initial, at);
      if (value == before) continue;
      before = value;
      if (value <= kGteZeroed) continue;
      const uint64_t grain = uint64_t{value} * 512;
      if (!written_.contains(grain))
        violations.push_back("entry at " + std::to_string(at) + " names unwritten grain " +
                             std::to_string(grain));
      else if (unflushed_.contains(grain))
        violations.push_back("entry at " + std::to_string(at) + " names grain " +
                             std::to_string(grain) + " before a flush made its data durable");
    }
  }

  std::set<uint64_t> written_, unflushed_, since_flush_;
  std::map<uint64_t, uint32_t> entries_;  // table entries as last written
};

class OrderRecorderDriver final : public BlockDriver {
 public:
  std::string_view format_name() const override { return "order-recorder"; }
  bool is_filter() const override { return true; }
  bool has_file_child() const override { return true; }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    auto child = co_await ctx.open_child("file", ChildRole::kFile, ctx.filename);
    if (!child) co_return std::unexpected(child.error());
    auto node = std::make_shared<OrderRecorderNode>(this, ctx.loop);
    node->attach_file(*child, ctx.read_only);
    node->refresh_limits();
    co_return std::shared_ptr<BlockNode>(std::move(node));
  }
};

COBLK_REGISTER_BLOCK_DRIVER(OrderRecorderDriver)

class WriteOrder : public VmdkWriteTest {
 protected:
  // Grain tables (and redundant ones) of a coblk-created image: fixed at
  // creation, read from both directories.
  std::vector<std::pair<uint64_t, uint64_t>> TableRanges() {
    Bytes f = ReadFile(img_);
    const uint64_t capacity = LoadLe64(f, 12);
    const uint64_t tables = (capacity + 512 * 128 - 1) / (512 * 128);
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (uint64_t dir : {LoadLe64(f, 48) * 512, LoadLe64(f, 56) * 512})
      for (uint64_t i = 0; i < tables; ++i) {
        const uint64_t gt = uint64_t{LoadLe32(f, dir + i * 4)} * 512;
        if (gt) out.push_back({gt, gt + kTableBytes});
      }
    return out;
  }

  ScratchDir dir_;
  std::string img_ = dir_ / "img.vmdk";
};

TEST_F(WriteOrder, TableEntriesFollowDataAndFlush) {
  ASSERT_TRUE(Create(img_, "size=256M"));
  const auto tables = TableRanges();
  ASSERT_EQ(tables.size(), 2u * 8);
  auto opened = OpenRw(img_, ",file.driver=order-recorder");
  ASSERT_TRUE(opened) << opened.error().ToString();
  std::shared_ptr<BlockNode> node = *opened;
  auto* rec = dynamic_cast<OrderRecorderNode*>(node->file());
  ASSERT_NE(rec, nullptr);
  rec->tables = tables;
  rec->initial = ReadFile(img_);

  // Rounds of concurrent allocating writes (partial grains, whole grains,
  // requests over many grains) into every table, then a flush, a pause long
  // enough for the background commit, or nothing.
  Shadow shadow;
  for (int round = 0; round < 12; ++round) {
    std::vector<Bytes> bufs;
    std::vector<std::pair<int64_t, size_t>> at;
    for (int k = 0; k < 24; ++k) {
      const int64_t grain = (round * 24 + k) * 7 % 4096;  // spread over all 8 tables
      const int64_t len = k % 3 == 0 ? 4096 : k % 3 == 1 ? kGrain : 3 * kGrain + 512;
      at.push_back({grain * kGrain + (k % 3 == 0 ? 8192 : 0), static_cast<size_t>(len)});
      bufs.push_back(testing_util::Pattern(static_cast<size_t>(len), static_cast<uint8_t>(round * 24 + k)));
    }
    std::vector<Task<Status>> tasks;
    for (size_t k = 0; k < bufs.size(); ++k) {
      shadow.Apply(at[k].first, bufs[k]);
      tasks.push_back(node->pwrite(at[k].first, bufs[k].data(), static_cast<int64_t>(at[k].second)));
    }
    for (auto& st : sync_wait(loop(), when_all(std::move(tasks)))) ASSERT_TRUE(st) << st.error().ToString();
    if (round % 3 == 0) {
      ASSERT_TRUE(sync_wait(loop(), node->flush()));
    } else if (round % 3 == 1) {
      sync_wait(loop(), co_sleep_task(std::chrono::milliseconds(700)));
    }
  }
  ASSERT_TRUE(sync_wait(loop(), node->flush()));
  ExpectContent(*node, shadow);
  EXPECT_GT(rec->table_writes, 8) << "the workload did not exercise table writes";
  std::cerr << rec->table_writes << " table writes, " << rec->flushes << " flushes checked\n";
  for (const std::string& v : rec->violations) ADD_FAILURE() << v;
  Close(node);
  ExpectCoblkCheckClean(img_);
}

}  // namespace
}  // namespace coblk::vmdk::test
