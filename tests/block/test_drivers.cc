#include "tests/block/test_drivers.h"

#include <algorithm>
#include <cstring>

#include "coroutine/sleep.h"

namespace coblk::test {

// ---- testmem ----

size_t TestMemNode::count(char op) const {
  return static_cast<size_t>(
      std::count_if(reqs.begin(), reqs.end(), [op](const Req& r) { return r.op == op; }));
}

void TestMemNode::fill(int64_t offset, int64_t bytes, uint8_t byte) {
  for (int64_t i = offset; i < offset + bytes; i++) {
    data[static_cast<size_t>(i)] = byte;
    allocated[static_cast<size_t>(i)] = true;
  }
}

void TestMemNode::record(char op, int64_t offset, int64_t bytes, uint32_t flags,
                         const IoVector* qiov) {
  reqs.push_back({op, offset, bytes, flags});
  if (op != 'f' && (offset % align || bytes % align || bytes <= 0)) violation = true;
  if (qiov && !qiov->is_aligned(mem_align)) violation = true;
  if (qiov && max_transfer && static_cast<uint64_t>(bytes) > max_transfer) violation = true;
  if (offset + bytes > (size() + align - 1) / align * align) violation = true;
}

Task<void> TestMemNode::enter() {
  in_flight++;
  max_in_flight = std::max(max_in_flight, in_flight);
  if (delay.count()) co_await co_sleep(delay);
}

Task<Status> TestMemNode::read_unallocated(int64_t pos, int64_t end, int64_t offset,
                                           IoVector& qiov) {
  BlockNode* b = backing();
  int64_t from_backing = b ? std::max<int64_t>(0, std::min(end, b->size()) - pos) : 0;
  if (from_backing) {
    std::vector<uint8_t> tmp(static_cast<size_t>(from_backing));
    COBLK_CO_RETURN_IF_ERROR(co_await b->pread(pos, tmp.data(), from_backing));
    qiov.copy_from(static_cast<size_t>(pos - offset), tmp.data(), tmp.size());
  }
  qiov.memset(static_cast<size_t>(pos + from_backing - offset), 0,
              static_cast<size_t>(end - pos - from_backing));
  co_return OkStatus();
}

Task<Status> TestMemNode::co_preadv(int64_t offset, int64_t bytes, IoVector& qiov,
                                    uint32_t flags) {
  record('r', offset, bytes, flags, &qiov);
  co_await enter();
  const int64_t end = offset + bytes;
  for (int64_t pos = offset; pos < end;) {
    if (pos >= size()) {
      qiov.memset(static_cast<size_t>(pos - offset), 0, static_cast<size_t>(end - pos));
      break;
    }
    const bool a = allocated[static_cast<size_t>(pos)];
    int64_t run = pos;
    while (run < std::min(end, size()) && allocated[static_cast<size_t>(run)] == a) run++;
    if (a) {
      qiov.copy_from(static_cast<size_t>(pos - offset), &data[static_cast<size_t>(pos)],
                     static_cast<size_t>(run - pos));
    } else {
      Status s = co_await read_unallocated(pos, run, offset, qiov);
      if (!s) {
        leave();
        co_return s;
      }
    }
    pos = run;
  }
  leave();
  co_return OkStatus();
}

Task<Status> TestMemNode::co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov,
                                     uint32_t flags) {
  record('w', offset, bytes, flags, &qiov);
  co_await enter();
  const int64_t n = std::max<int64_t>(0, std::min(bytes, size() - offset));
  qiov.copy_to(0, &data[static_cast<size_t>(offset)], static_cast<size_t>(n));
  for (int64_t i = offset; i < offset + n; i++) allocated[static_cast<size_t>(i)] = true;
  leave();
  co_return OkStatus();
}

Task<Status> TestMemNode::co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) {
  if (!zeroes) co_return MakeError(ENOTSUP, "no write_zeroes");
  record('z', offset, bytes, flags, nullptr);
  co_await enter();
  fill(offset, std::min(bytes, size() - offset), 0);
  leave();
  co_return OkStatus();
}

Task<Status> TestMemNode::co_pdiscard(int64_t offset, int64_t bytes) {
  if (!discard) co_return MakeError(ENOTSUP, "no discard");
  record('d', offset, bytes, 0, nullptr);
  for (int64_t i = offset; i < std::min(offset + bytes, size()); i++) {
    allocated[static_cast<size_t>(i)] = false;
  }
  co_return OkStatus();
}

Task<Result<BlockStatus>> TestMemNode::co_block_status(bool, int64_t offset, int64_t bytes) {
  const int64_t end = std::min(offset + bytes, size());
  const bool a = allocated[static_cast<size_t>(offset)];
  int64_t run = offset;
  while (run < end && allocated[static_cast<size_t>(run)] == a) run++;
  co_return BlockStatus{a ? uint32_t{kStatusData} : 0u, run - offset, 0, nullptr};
}

BlockLimits TestMemNode::driver_limits() {
  BlockLimits l;
  l.request_alignment = align;
  l.min_mem_alignment = mem_align;
  l.pwrite_zeroes_alignment = zero_align;
  l.max_transfer = max_transfer;
  return l;
}

Task<Status> TestMemNode::co_flush() {
  record('f', 0, 0, 0, nullptr);
  co_return co_await BlockNode::co_flush();
}

Task<Status> TestMemNode::co_close() {
  closed = true;
  co_return OkStatus();
}

namespace {

template <typename T>
Status Check(const Result<T>& r) {
  if (!r) return std::unexpected(r.error());
  return OkStatus();
}

Status Configure(TestMemNode& n, Options& o) {
  auto size = o.get_size("size", 1 << 20);
  auto align = o.get_int("align", 1);
  auto mem_align = o.get_int("mem_align", 1);
  auto zero_align = o.get_int("zero_align", 0);
  auto max_transfer = o.get_size("max_transfer", 0);
  auto zeroes = o.get_bool("zeroes", true);
  auto discard = o.get_bool("discard", false);
  auto delay = o.get_int("delay_us", 0);
  auto fua = o.get_bool("fua", false);
  for (const Status& s : {Check(size), Check(align), Check(mem_align), Check(zero_align),
                          Check(max_transfer), Check(zeroes), Check(discard), Check(delay),
                          Check(fua)}) {
    COBLK_RETURN_IF_ERROR(s);
  }
  n.set_size(static_cast<int64_t>(*size));
  n.data.assign(*size, 0);
  n.allocated.assign(*size, false);
  n.align = static_cast<uint32_t>(*align);
  n.mem_align = static_cast<uint32_t>(*mem_align);
  n.zero_align = static_cast<uint32_t>(*zero_align);
  n.max_transfer = *max_transfer;
  n.zeroes = *zeroes;
  n.discard = *discard;
  n.delay = std::chrono::microseconds(*delay);
  // fua=on: the node claims to honour FUA itself (it records the flag).
  if (*fua) n.set_supported_flags(kReqFua, kReqFua | kReqMayUnmap | kReqNoFallback);
  else n.set_supported_flags(0, kReqMayUnmap | kReqNoFallback);
  return OkStatus();
}

class TestMemDriver : public BlockDriver {
 public:
  std::string_view format_name() const override { return "testmem"; }
  bool supports_backing() const override { return true; }
  bool has_file_child() const override { return false; }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    auto node = std::make_shared<TestMemNode>(this, ctx.loop);
    COBLK_CO_RETURN_IF_ERROR(Configure(*node, ctx.options));
    auto backing = co_await ctx.open_child("backing", ChildRole::kBacking, {}, true);
    if (!backing) co_return std::unexpected(backing.error());
    if (*backing) node->add_child("backing", ChildRole::kBacking, *backing);
    co_return node;
  }
};

// ---- testproto ----

class TestProtoNode : public BlockNode {
 public:
  TestProtoNode(const BlockDriver* d, EventLoop& loop, std::vector<uint8_t>& disk, uint32_t align)
      : BlockNode(d, loop), disk_(disk), align_(align) {
    set_size(static_cast<int64_t>(disk.size()));
  }

  std::chrono::microseconds flush_delay{0};
  int flush_errno = 0;
  int close_errno = 0;

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t) override {
    const int64_t n = std::max<int64_t>(0, std::min<int64_t>(bytes, size() - offset));
    qiov.copy_from(0, disk_.data() + offset, static_cast<size_t>(n));
    qiov.memset(static_cast<size_t>(n), 0, static_cast<size_t>(bytes - n));
    co_return OkStatus();
  }
  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t) override {
    if (offset % align_ || bytes % align_) co_return MakeError(EINVAL, "unaligned");
    const int64_t n = std::max<int64_t>(0, std::min<int64_t>(bytes, size() - offset));
    qiov.copy_to(0, disk_.data() + offset, static_cast<size_t>(n));
    co_return OkStatus();
  }
  BlockLimits driver_limits() override {
    BlockLimits l;
    l.request_alignment = align_;
    return l;
  }
  Task<Status> co_flush() override {
    ProtoLog().push_back("flush");
    if (flush_delay.count()) co_await co_sleep(flush_delay);
    ProtoLog().push_back("flushed");
    if (flush_errno) co_return MakeError(flush_errno, "testproto: flush failed");
    co_return OkStatus();
  }
  Task<Status> co_close() override {
    ProtoCloseCount()++;
    ProtoLog().push_back("close");
    if (close_errno) co_return MakeError(close_errno, "testproto: close failed");
    co_return OkStatus();
  }

 private:
  std::vector<uint8_t>& disk_;
  uint32_t align_;
};

class TestProtoDriver : public BlockDriver {
 public:
  std::string_view format_name() const override { return "testproto"; }
  std::string_view protocol_name() const override { return "testproto"; }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    std::string name = ctx.filename;
    if (name.starts_with("testproto:")) name = name.substr(10);
    auto it = Disks().find(name);
    if (it == Disks().end()) co_return MakeError(ENOENT, "Could not open '" + name + "'");
    Result<int64_t> align = ctx.options.get_int("align", 1);
    Result<int64_t> flush_delay = ctx.options.get_int("flush_delay_us", 0);
    Result<int64_t> flush_errno = ctx.options.get_int("flush_errno", 0);
    Result<int64_t> close_errno = ctx.options.get_int("close_errno", 0);
    for (const Status& s : {Check(align), Check(flush_delay), Check(flush_errno),
                            Check(close_errno)}) {
      COBLK_CO_RETURN_IF_ERROR(s);
    }
    auto node = std::make_shared<TestProtoNode>(this, ctx.loop, it->second,
                                                static_cast<uint32_t>(*align));
    node->flush_delay = std::chrono::microseconds(*flush_delay);
    node->flush_errno = static_cast<int>(*flush_errno);
    node->close_errno = static_cast<int>(*close_errno);
    co_return node;
  }
};

// ---- testfmt ----

class TestFmtNode : public BlockNode {
 public:
  using BlockNode::BlockNode;
  // What block status answers (option status=): "raw" passes the query to
  // the file; "data" is data at the same offset of the file; "recurse" the
  // same with kStatusRecurse; "badrecurse" kStatusRecurse without a mapping.
  std::string status_kind = "raw";

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    co_return co_await file()->preadv(offset, bytes, qiov, flags);
  }
  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    co_return co_await file()->pwritev(offset, bytes, qiov, flags);
  }
  Task<Result<BlockStatus>> co_block_status(bool, int64_t offset, int64_t bytes) override {
    if (status_kind == "data") {
      co_return BlockStatus{kStatusData | kStatusOffsetValid, bytes, offset, file()};
    }
    if (status_kind == "recurse") {
      co_return BlockStatus{kStatusData | kStatusOffsetValid | kStatusRecurse, bytes, offset,
                            file()};
    }
    if (status_kind == "badrecurse") co_return BlockStatus{kStatusData | kStatusRecurse, bytes};
    co_return BlockStatus{kStatusRaw | kStatusOffsetValid, bytes, offset, file()};
  }
};

class TestFmtDriver : public BlockDriver {
 public:
  std::string_view format_name() const override { return "testfmt"; }
  int probe(std::span<const uint8_t> first, std::string_view) const override {
    return first.size() >= 8 && std::memcmp(first.data(), "TESTFMT!", 8) == 0 ? 100 : 0;
  }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    auto file = co_await ctx.open_child("file", ChildRole::kFile, ctx.filename);
    if (!file) co_return std::unexpected(file.error());
    auto node = std::make_shared<TestFmtNode>(this, ctx.loop);
    node->status_kind = ctx.options.get_string("status", "raw");
    node->add_child("file", ChildRole::kFile, *file);
    node->set_size((*file)->size());
    co_return node;
  }
};

}  // namespace

std::map<std::string, std::vector<uint8_t>>& Disks() {
  static std::map<std::string, std::vector<uint8_t>> disks;
  return disks;
}

int& ProtoCloseCount() {
  static int count = 0;
  return count;
}

std::vector<std::string>& ProtoLog() {
  static std::vector<std::string> log;
  return log;
}

}  // namespace coblk::test

namespace coblk::test {
COBLK_REGISTER_BLOCK_DRIVER(TestMemDriver)
COBLK_REGISTER_BLOCK_DRIVER(TestProtoDriver)
COBLK_REGISTER_BLOCK_DRIVER(TestFmtDriver)
}  // namespace coblk::test
