// The conformance battery. Each test makes its own image in a fresh
// directory, opens the driver as kit.h describes, and checks it against an
// in-memory model of what the guest wrote.
//
// Threading: everything runs on one EventLoop on the test's thread;
// concurrent requests are coroutines on that loop (when_all), so the model
// is only touched between batches.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "block/block_driver.h"
#include "block/block_graph.h"
#include "block/block_node.h"
#include "conformance/kit.h"
#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "io/event_loop.h"

namespace coblk::conformance {
namespace {

enum class Kind { kFormat, kFilter, kProtocol };

// What the guest expects at each byte: a value, or "anything" after a
// discard (known = 0).
struct Model {
  explicit Model(int64_t size) : data(size, 0), known(size, 1) {}
  std::vector<uint8_t> data;
  std::vector<uint8_t> known;
  void write(int64_t off, const uint8_t* buf, int64_t len) {
    std::memcpy(&data[off], buf, len);
    std::memset(&known[off], 1, len);
  }
  void zero(int64_t off, int64_t len) {
    std::memset(&data[off], 0, len);
    std::memset(&known[off], 1, len);
  }
  void forget(int64_t off, int64_t len) { std::memset(&known[off], 0, len); }
  // "" if buf matches; else where it first differs.
  std::string compare(int64_t off, const uint8_t* buf, int64_t len) const {
    for (int64_t i = 0; i < len; ++i) {
      if (known[off + i] && buf[i] != data[off + i]) {
        char msg[128];
        std::snprintf(msg, sizeof msg, "byte %lld reads 0x%02x, expected 0x%02x",
                      static_cast<long long>(off + i), buf[i], data[off + i]);
        return msg;
      }
    }
    return "";
  }
};

enum class OpKind { kRead, kWrite, kWriteFua, kZero, kZeroUnmap, kZeroUnmapFua, kDiscard, kFlush };

const char* OpName(OpKind k) {
  switch (k) {
    case OpKind::kRead: return "read";
    case OpKind::kWrite: return "write";
    case OpKind::kWriteFua: return "write(FUA)";
    case OpKind::kZero: return "write_zeroes";
    case OpKind::kZeroUnmap: return "write_zeroes(MAY_UNMAP)";
    case OpKind::kZeroUnmapFua: return "write_zeroes(MAY_UNMAP|FUA)";
    case OpKind::kDiscard: return "discard";
    case OpKind::kFlush: return "flush";
  }
  return "?";
}

struct Op {
  OpKind kind;
  int64_t off = 0;
  int64_t len = 0;
  std::vector<uint8_t> buf;
  Status result;
  std::string describe() const {
    return std::string(OpName(kind)) + " " + std::to_string(off) + "+" + std::to_string(len);
  }
};

Task<Status> RunOp(BlockNode* node, Op* op) {
  switch (op->kind) {
    case OpKind::kRead: co_return co_await node->pread(op->off, op->buf.data(), op->len);
    case OpKind::kWrite: co_return co_await node->pwrite(op->off, op->buf.data(), op->len);
    case OpKind::kWriteFua:
      co_return co_await node->pwrite(op->off, op->buf.data(), op->len, kReqFua);
    case OpKind::kZero: co_return co_await node->pwrite_zeroes(op->off, op->len, 0);
    case OpKind::kZeroUnmap: co_return co_await node->pwrite_zeroes(op->off, op->len, kReqMayUnmap);
    case OpKind::kZeroUnmapFua:
      co_return co_await node->pwrite_zeroes(op->off, op->len, kReqMayUnmap | kReqFua);
    case OpKind::kDiscard: co_return co_await node->pdiscard(op->off, op->len);
    case OpKind::kFlush: co_return co_await node->flush();
  }
  co_return MakeError(EINVAL, "bad op");
}

class Kit : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = Config();
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    // Each test draws its own stream from the run's seed.
    rng_.seed(cfg_.seed ^ std::hash<std::string>{}(info->name()));
    trace_ = std::make_unique<::testing::ScopedTrace>(
        __FILE__, __LINE__, "driver " + cfg_.driver + ", replay with --seed " +
                                std::to_string(cfg_.seed));
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop) << loop.error().ToString();
    loop_ = std::move(*loop);
    loop_->make_current();
    driver_ = FindFormatDriver(cfg_.driver);
    ASSERT_NE(driver_, nullptr);
    kind_ = !driver_->protocol_name().empty() ? Kind::kProtocol
            : driver_->is_filter()           ? Kind::kFilter
                                             : Kind::kFormat;
    std::string tmpl = cfg_.dir + "/coblk-kit-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "cannot create a directory in " << cfg_.dir;
    dir_ = std::filesystem::absolute(tmpl).lexically_normal().string();
    image_ = dir_ + "/image";
  }

  void TearDown() override {
    Close();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  template <typename T>
  T Run(Task<T> t) {
    return sync_wait(*loop_, std::move(t));
  }

  bool keeps_data() const { return cfg_.keeps_data; }

  // Makes the image (formats: CreateImage with the create options; filters:
  // a raw file; protocols: nothing).
  Status Create(const std::string& path, const std::string& extra = {}) {
    if (kind_ == Kind::kProtocol) return OkStatus();
    std::string text = kind_ == Kind::kFormat ? cfg_.create_options : std::string();
    if (!extra.empty()) text = text.empty() ? extra : text + "," + extra;
    auto opts = Options::Parse(text);
    if (!opts) return std::unexpected(opts.error());
    opts->set_default("size", std::to_string(cfg_.size));
    return Run(CreateImage(*loop_, kind_ == Kind::kFormat ? cfg_.driver : "raw", path, *opts));
  }

  // Options for the node under test; file_extra are blkdebug rules (then
  // blkdebug sits between the driver and its file).
  std::string OpenString(const std::string& path, bool blkdebug,
                         const std::string& rules = {}) const {
    std::string s = "driver=" + cfg_.driver;
    if (kind_ == Kind::kProtocol) {
      s += ",size=" + std::to_string(cfg_.size);
    } else if (blkdebug) {
      s += ",file.driver=blkdebug,file.image.driver=file,file.image.filename=" + path;
      if (!rules.empty()) s += "," + rules;
    } else {
      s += ",file.driver=file,file.filename=" + path;
    }
    if (!cfg_.open_options.empty()) s += "," + cfg_.open_options;
    return s;
  }

  Result<std::shared_ptr<BlockNode>> OpenNode(const std::string& text, bool read_only) {
    auto opts = Options::Parse(text);
    if (!opts) return std::unexpected(opts.error());
    BlockGraph graph(*loop_);
    OpenFlags flags;
    flags.read_only = read_only;
    flags.probe_warning = false;
    return Run(graph.open(std::move(*opts), flags));
  }

  // Creates and opens image_ read-write as node_.
  void CreateAndOpen() {
    Status s = Create(image_);
    ASSERT_TRUE(s) << "create: " << s.error().ToString();
    Reopen(false);
  }

  void Reopen(bool read_only) {
    Close();
    auto n = OpenNode(OpenString(image_, false), read_only);
    ASSERT_TRUE(n) << "open: " << n.error().ToString();
    node_ = std::move(*n);
  }

  void Close() {
    if (node_) {
      Run(node_->close());
      node_.reset();
    }
  }

  void Fill(std::vector<uint8_t>& buf) {
    for (size_t i = 0; i < buf.size(); i += 8) {
      const uint64_t r = rng_();
      std::memcpy(&buf[i], &r, std::min<size_t>(8, buf.size() - i));
    }
  }

  int64_t Uniform(int64_t lo, int64_t hi) {  // inclusive
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

  // A random range: alignment 1, 512, 4096 or 64 KiB, up to 256 KiB long.
  std::pair<int64_t, int64_t> RandomRange(int64_t size) {
    static constexpr int64_t kAligns[] = {1, 512, 4096, 65536};
    const int64_t align = kAligns[Uniform(0, 3)];
    const int64_t max_units = std::max<int64_t>(1, std::min<int64_t>(256 << 10, size) / align);
    const int64_t len = align * Uniform(1, max_units);
    const int64_t off = align * Uniform(0, (size - len) / align);
    return {off, len};
  }

  // Reads the whole node and compares it with the model, in 1 MiB pieces.
  void VerifyAll(const Model& m, const std::string& when) {
    std::vector<uint8_t> buf(1 << 20);
    for (int64_t off = 0; off < node_->size(); off += static_cast<int64_t>(buf.size())) {
      const int64_t len = std::min<int64_t>(buf.size(), node_->size() - off);
      Status s = Run(node_->pread(off, buf.data(), len));
      ASSERT_TRUE(s) << when << ": read " << off << "+" << len << ": " << s.error().ToString();
      const std::string diff = m.compare(off, buf.data(), len);
      ASSERT_EQ(diff, "") << when;
    }
  }

  // One batch of up to `depth` non-overlapping random operations issued at
  // once; checks reads against the model as it was before the batch and
  // then applies the writes. written: for write-once mode.
  void RandomBatch(Model& m, int depth, std::vector<bool>& written) {
    std::vector<Op> ops;
    std::vector<std::pair<int64_t, int64_t>> taken;
    const int64_t size = node_->size();
    for (int i = 0; i < depth; ++i) {
      Op op;
      const int r = static_cast<int>(Uniform(0, 99));
      op.kind = r < 35 ? OpKind::kRead
                : r < 60 ? OpKind::kWrite
                : r < 66 ? OpKind::kWriteFua
                : r < 74 ? OpKind::kZero
                : r < 82 ? OpKind::kZeroUnmap
                : r < 86 ? OpKind::kZeroUnmapFua
                : r < 96 ? OpKind::kDiscard
                         : OpKind::kFlush;
      if (op.kind != OpKind::kFlush) {
        if (cfg_.write_once > 0 && op.kind != OpKind::kRead) {
          // Whole unwritten units, written once.
          op.kind = OpKind::kWrite;
          const int64_t units = size / cfg_.write_once;
          const int64_t u = Uniform(0, units - 1);
          const int64_t n = std::min<int64_t>(Uniform(1, 4), units - u);
          bool fresh = true;
          for (int64_t k = u; k < u + n; ++k) fresh = fresh && !written[k];
          if (!fresh) continue;
          op.off = u * cfg_.write_once;
          op.len = n * cfg_.write_once;
        } else {
          std::tie(op.off, op.len) = RandomRange(size);
        }
        bool overlaps = false;
        for (auto [o, l] : taken) overlaps = overlaps || (op.off < o + l && o < op.off + op.len);
        if (overlaps) continue;
        taken.emplace_back(op.off, op.len);
        if (cfg_.write_once > 0 && op.kind == OpKind::kWrite) {
          for (int64_t k = op.off / cfg_.write_once; k < (op.off + op.len) / cfg_.write_once; ++k)
            written[k] = true;
        }
      }
      if (op.kind == OpKind::kRead || op.kind == OpKind::kWrite || op.kind == OpKind::kWriteFua) {
        op.buf.resize(op.len);
        if (op.kind != OpKind::kRead) Fill(op.buf);
      }
      ops.push_back(std::move(op));
    }
    std::vector<Task<Status>> tasks;
    for (Op& op : ops) tasks.push_back(RunOp(node_.get(), &op));
    std::vector<Status> results = Run(when_all(std::move(tasks)));
    for (size_t i = 0; i < ops.size(); ++i) {
      Op& op = ops[i];
      ASSERT_TRUE(results[i]) << op.describe() << ": " << results[i].error().ToString();
      switch (op.kind) {
        case OpKind::kRead:
          if (keeps_data()) {
            ASSERT_EQ(m.compare(op.off, op.buf.data(), op.len), "") << op.describe();
          }
          break;
        case OpKind::kWrite:
        case OpKind::kWriteFua: m.write(op.off, op.buf.data(), op.len); break;
        case OpKind::kZero:
        case OpKind::kZeroUnmap:
        case OpKind::kZeroUnmapFua: m.zero(op.off, op.len); break;
        case OpKind::kDiscard: m.forget(op.off, op.len); break;
        case OpKind::kFlush: break;
      }
    }
  }

  void RandomWorkload(Model& m, int rounds) {
    std::vector<bool> written(cfg_.write_once > 0 ? node_->size() / cfg_.write_once + 1 : 0);
    for (int r = 0; r < rounds; ++r) {
      RandomBatch(m, cfg_.depth, written);
      if (HasFatalFailure()) return;
    }
  }

  KitConfig cfg_;
  std::mt19937_64 rng_;
  std::unique_ptr<::testing::ScopedTrace> trace_;
  std::unique_ptr<EventLoop> loop_;
  const BlockDriver* driver_ = nullptr;
  Kind kind_ = Kind::kFormat;
  std::string dir_;
  std::string image_;
  std::shared_ptr<BlockNode> node_;
};

// Random reads, writes (with and without FUA), zero writes (with and without
// MAY_UNMAP / FUA), discards and flushes at random offsets, sizes and
// alignments, 32 in flight (never overlapping), against the model.
TEST_F(Kit, RandomOperationsMatchModelAtQueueDepth32) {
  ASSERT_NO_FATAL_FAILURE(CreateAndOpen());
  ASSERT_EQ(node_->size(), cfg_.size);
  Model m(node_->size());
  ASSERT_NO_FATAL_FAILURE(RandomWorkload(m, cfg_.rounds));
  if (keeps_data()) {
    ASSERT_NO_FATAL_FAILURE(VerifyAll(m, "after the random workload"));
  }
}

// block_status covers the node with contiguous extents; a range reported as
// zero reads as zeros; allocation answers agree with block_status.
TEST_F(Kit, BlockStatusConsistentWithData) {
  ASSERT_NO_FATAL_FAILURE(CreateAndOpen());
  Model m(node_->size());
  ASSERT_NO_FATAL_FAILURE(RandomWorkload(m, std::max(1, cfg_.rounds / 3)));
  std::vector<uint8_t> buf;
  int64_t off = 0;
  int extents = 0;
  while (off < node_->size()) {
    auto st = Run(node_->block_status(true, off, node_->size() - off));
    ASSERT_TRUE(st) << "block_status at " << off << ": " << st.error().ToString();
    ASSERT_GT(st->pnum, 0) << "block_status at " << off;
    ASSERT_LE(st->pnum, node_->size() - off) << "block_status at " << off;
    if (st->status & kStatusZero) {
      // Read (part of) the range: it must be zeros.
      const int64_t len = std::min<int64_t>(st->pnum, 1 << 20);
      buf.assign(len, 0xee);
      ASSERT_TRUE(Run(node_->pread(off, buf.data(), len)));
      ASSERT_EQ(std::count(buf.begin(), buf.end(), 0), len)
          << "block_status says zero at " << off << "+" << st->pnum << " but it reads data";
      if (keeps_data()) {
        // ... and the model agrees wherever it knows the content.
        std::vector<uint8_t> zeros(len, 0);
        ASSERT_EQ(m.compare(off, zeros.data(), len), "") << "zero extent at " << off;
      }
    }
    int64_t pnum = 0;
    auto alloc = Run(node_->is_allocated(off, st->pnum, &pnum));
    ASSERT_TRUE(alloc) << alloc.error().ToString();
    ASSERT_GT(pnum, 0);
    off += st->pnum;
    ++extents;
  }
  EXPECT_GT(extents, 0);
  auto end = Run(node_->block_status(true, node_->size(), 0));
  if (end) {
    EXPECT_EQ(end->pnum, 0) << "block_status at the end must cover nothing";
  }
}

// With a backing file (drivers that support one): unallocated ranges read
// the backing node's data and block_status says they are not allocated here.
TEST_F(Kit, UnallocatedRangesFallThroughToBacking) {
  if (kind_ != Kind::kFormat || !driver_->supports_backing() || !cfg_.backing || !keeps_data()) {
    GTEST_SKIP() << "driver has no backing file support";
  }
  const std::string base = dir_ + "/base";
  Status s = Create(base);
  ASSERT_TRUE(s) << s.error().ToString();
  {
    auto b = OpenNode(OpenString(base, false), false);
    ASSERT_TRUE(b) << b.error().ToString();
    std::vector<uint8_t> pattern(cfg_.size);
    Fill(pattern);
    ASSERT_TRUE(Run((*b)->pwrite(0, pattern.data(), cfg_.size)));
    Run((*b)->close());
    Model m(cfg_.size);
    m.write(0, pattern.data(), cfg_.size);
    // A relative name: relative to the overlay's directory.
    s = Create(image_, "backing_file=base,backing_fmt=" + cfg_.driver);
    ASSERT_TRUE(s) << "create with backing_file: " << s.error().ToString();
    ASSERT_NO_FATAL_FAILURE(Reopen(false));
    ASSERT_NE(node_->backing(), nullptr) << "overlay opened without its backing node";
    // Overwrite a few ranges in the overlay (whole units, each once, in
    // write-once mode).
    std::vector<bool> unit_written(cfg_.write_once > 0 ? cfg_.size / cfg_.write_once : 0);
    for (int i = 0; i < 16; ++i) {
      auto [off, len] = RandomRange(cfg_.size);
      if (cfg_.write_once > 0) {
        const int64_t unit = off / cfg_.write_once;
        if (unit >= static_cast<int64_t>(unit_written.size()) || unit_written[unit]) continue;
        unit_written[unit] = true;
        off = unit * cfg_.write_once;
        len = cfg_.write_once;
      }
      std::vector<uint8_t> buf(len);
      Fill(buf);
      ASSERT_TRUE(Run(node_->pwrite(off, buf.data(), len)));
      m.write(off, buf.data(), len);
    }
    ASSERT_NO_FATAL_FAILURE(VerifyAll(m, "overlay over its backing file"));
    // Every range not allocated in the overlay reads like the base.
    std::vector<uint8_t> buf;
    for (int64_t off = 0; off < cfg_.size;) {
      int64_t pnum = 0;
      auto alloc = Run(node_->is_allocated(off, cfg_.size - off, &pnum));
      ASSERT_TRUE(alloc) << alloc.error().ToString();
      ASSERT_GT(pnum, 0);
      if (!*alloc) {
        const int64_t len = std::min<int64_t>(pnum, 1 << 20);
        buf.resize(len);
        ASSERT_TRUE(Run(node_->pread(off, buf.data(), len)));
        ASSERT_EQ(std::memcmp(buf.data(), &pattern[off], len), 0)
            << "unallocated range " << off << "+" << pnum << " does not read the backing data";
        auto st = Run(node_->block_status(true, off, pnum));
        ASSERT_TRUE(st);
        EXPECT_FALSE(st->status & kStatusAllocated) << "at " << off;
      }
      off += pnum;
    }
  }
}

// Everything written and flushed reads back after close and reopen.
TEST_F(Kit, ReopenKeepsData) {
  if (!keeps_data() || kind_ == Kind::kProtocol) GTEST_SKIP() << "driver keeps no data";
  ASSERT_NO_FATAL_FAILURE(CreateAndOpen());
  Model m(node_->size());
  ASSERT_NO_FATAL_FAILURE(RandomWorkload(m, std::max(1, cfg_.rounds / 2)));
  ASSERT_TRUE(Run(node_->flush()));
  ASSERT_NO_FATAL_FAILURE(Reopen(false));
  ASSERT_EQ(node_->size(), cfg_.size);
  ASSERT_NO_FATAL_FAILURE(VerifyAll(m, "after reopen"));
  // And once more read-only.
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  ASSERT_NO_FATAL_FAILURE(VerifyAll(m, "after read-only reopen"));
}

// A read-only node refuses every kind of write and its data stays as it was.
TEST_F(Kit, ReadOnlyRefusesWrites) {
  ASSERT_NO_FATAL_FAILURE(CreateAndOpen());
  std::vector<uint8_t> data(65536);
  Fill(data);
  ASSERT_TRUE(Run(node_->pwrite(0, data.data(), 65536)));
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  EXPECT_TRUE(node_->read_only());
  std::vector<uint8_t> other(65536, 0x77);
  EXPECT_FALSE(Run(node_->pwrite(0, other.data(), 65536))) << "write on a read-only node";
  EXPECT_FALSE(Run(node_->pwrite_zeroes(0, 65536, kReqMayUnmap))) << "write_zeroes on read-only";
  EXPECT_FALSE(Run(node_->pdiscard(0, 65536))) << "discard on a read-only node";
  std::vector<uint8_t> back(65536);
  ASSERT_TRUE(Run(node_->pread(0, back.data(), 65536)));
  if (keeps_data()) {
    EXPECT_EQ(back, data);
  }
}

// Requests that end at the end of the node work; requests past it fail.
// (Protocols and filters grow on writes past the end, as in QEMU, so only
// their reads are checked there.)
TEST_F(Kit, RequestsAtAndPastTheEnd) {
  ASSERT_NO_FATAL_FAILURE(CreateAndOpen());
  const int64_t size = node_->size();
  std::vector<uint8_t> buf(8192);
  Fill(buf);
  EXPECT_TRUE(Run(node_->pwrite(size - 4096, buf.data(), 4096))) << "write of the last 4 KiB";
  if (cfg_.write_once == 0) {
    EXPECT_TRUE(Run(node_->pwrite(size - 1, buf.data(), 1))) << "write of the last byte";
  }
  EXPECT_TRUE(Run(node_->pread(size - 4096, buf.data(), 4096))) << "read of the last 4 KiB";
  EXPECT_TRUE(Run(node_->pread(size, buf.data(), 0))) << "empty read at the end";
  EXPECT_FALSE(Run(node_->pread(size, buf.data(), 512))) << "read past the end";
  EXPECT_FALSE(Run(node_->pread(size - 512, buf.data(), 1024))) << "read across the end";
  EXPECT_FALSE(Run(node_->pread(-512, buf.data(), 512))) << "read at a negative offset";
  if (kind_ == Kind::kFormat) {
    EXPECT_FALSE(Run(node_->pwrite(size, buf.data(), 512))) << "write past the end";
    EXPECT_FALSE(Run(node_->pwrite(size - 512, buf.data(), 1024))) << "write across the end";
    EXPECT_FALSE(Run(node_->pwrite_zeroes(size, 512, 0))) << "write_zeroes past the end";
    EXPECT_FALSE(Run(node_->pdiscard(size, 512))) << "discard past the end";
  }
  EXPECT_EQ(node_->size(), size);
}

// Growing the node, where the driver supports it: old data stays, the new
// part reads as zeros, and the size survives a reopen.
TEST_F(Kit, ResizeWhereSupported) {
  ASSERT_NO_FATAL_FAILURE(CreateAndOpen());
  std::vector<uint8_t> data(65536);
  Fill(data);
  const int64_t old_size = node_->size();
  ASSERT_TRUE(Run(node_->pwrite(old_size - 65536, data.data(), 65536)));
  const int64_t new_size = old_size + (4 << 20);
  Status s = Run(node_->truncate(new_size, false, PreallocMode::kOff));
  if (!s && s.error().errnum() == ENOTSUP) GTEST_SKIP() << "driver does not resize";
  ASSERT_TRUE(s) << s.error().ToString();
  ASSERT_EQ(node_->size(), new_size);
  std::vector<uint8_t> back(65536);
  ASSERT_TRUE(Run(node_->pread(old_size - 65536, back.data(), 65536)));
  if (keeps_data()) {
    EXPECT_EQ(back, data);
  }
  ASSERT_TRUE(Run(node_->pread(new_size - 65536, back.data(), 65536)));
  if (keeps_data()) {
    EXPECT_EQ(std::count(back.begin(), back.end(), 0), 65536);
  }
  if (kind_ != Kind::kProtocol) {
    ASSERT_NO_FATAL_FAILURE(Reopen(false));
    EXPECT_EQ(node_->size(), new_size);
  }
}

// Fault injection: the Nth write or flush the driver sends to its file
// fails (blkdebug), for every N the workload reaches. After the failure the
// image is reopened without blkdebug: check() finds no corruption, and every
// 512-byte sector holds either its content as of the last successful flush
// or something written after it.
TEST_F(Kit, FaultAtEveryWriteAndFlushLeavesNoCorruption) {
  if (kind_ == Kind::kProtocol || !keeps_data()) GTEST_SKIP() << "driver has no file child";
  if (!cfg_.faults) GTEST_SKIP() << "--no-fault-injection";
  constexpr int64_t kSize = 4 << 20;
  constexpr int64_t kSectors = kSize / 512;
  cfg_.size = kSize;
  // The workload, the same for every N: sector-aligned ops; op i writes the
  // byte value i + 1 (zero writes write 0).
  struct FOp {
    OpKind kind;
    int64_t off, len;
  };
  std::vector<FOp> work;
  for (int i = 0; i < cfg_.fault_ops; ++i) {
    const int r = static_cast<int>(Uniform(0, 99));
    FOp op{r < 65 ? OpKind::kWrite : r < 80 ? OpKind::kZero : OpKind::kFlush, 0, 0};
    if (cfg_.write_once > 0 && op.kind == OpKind::kZero) op.kind = OpKind::kWrite;
    if (op.kind != OpKind::kFlush) {
      if (cfg_.write_once > 0) {
        op.off = (i % (kSize / cfg_.write_once)) * cfg_.write_once;  // distinct units
        op.len = cfg_.write_once;
      } else {
        op.len = 512 * Uniform(1, 32);
        op.off = 512 * Uniform(0, (kSize - op.len) / 512);
      }
    }
    work.push_back(op);
  }
  ASSERT_LE(cfg_.fault_ops, 62) << "--fault-ops must be at most 62";
  {
    // The stack with blkdebug (and no rule) must open at all.
    Status s = Create(image_);
    ASSERT_TRUE(s) << s.error().ToString();
    auto node = OpenNode(OpenString(image_, true), false);
    ASSERT_TRUE(node) << "open through blkdebug: " << node.error().ToString();
    Run((*node)->close());
  }
  int fired_runs = 0;
  for (int n = 0; n < cfg_.fault_limit; ++n) {
    SCOPED_TRACE("failing write/flush number " + std::to_string(n + 1));
    std::filesystem::remove(image_);
    Status s = Create(image_);
    ASSERT_TRUE(s) << s.error().ToString();
    // Per sector: its value as of the last successful flush, the newest
    // value written since, and a bit mask of every value written (or tried)
    // since, any of which may be what reached the disk.
    std::vector<uint8_t> durable(kSectors, 0), latest(kSectors, 0);
    std::vector<uint64_t> since(kSectors, 0);
    bool failed = false;
    {
      auto node = OpenNode(OpenString(image_, true,
                                      "file.inject-error.0.iotype=write|flush,"
                                      "file.inject-error.0.once=on,file.inject-error.0.after=" +
                                          std::to_string(n)),
                           false);
      if (!node) {
        failed = true;  // the fault hit the open itself (e.g. a header update)
      } else {
        for (size_t i = 0; i < work.size() && !failed; ++i) {
          const FOp& op = work[i];
          const uint8_t value = op.kind == OpKind::kZero ? 0 : static_cast<uint8_t>(i + 1);
          if (op.kind != OpKind::kFlush) {
            for (int64_t k = op.off / 512; k < (op.off + op.len) / 512; ++k) {
              since[k] |= uint64_t{1} << value;
              latest[k] = value;
            }
          }
          Status st;
          if (op.kind == OpKind::kWrite) {
            std::vector<uint8_t> buf(op.len, value);
            st = Run((*node)->pwrite(op.off, buf.data(), op.len));
          } else if (op.kind == OpKind::kZero) {
            st = Run((*node)->pwrite_zeroes(op.off, op.len, 0));
          } else {
            st = Run((*node)->flush());
            if (st) {
              for (int64_t k = 0; k < kSectors; ++k) {
                if (since[k]) durable[k] = latest[k];
                since[k] = 0;
              }
            }
          }
          if (!st) failed = true;
        }
        Run((*node)->close());
      }
    }
    if (!failed) break;  // the fault point lies past the workload: done
    ++fired_runs;
    // Reopen without blkdebug and check.
    auto node = OpenNode(OpenString(image_, false), false);
    ASSERT_TRUE(node) << "reopen after the fault: " << node.error().ToString();
    auto check = Run((*node)->check(false));
    if (check) {
      EXPECT_EQ(check->corruptions, 0) << "check finds corruption";
      EXPECT_EQ(check->check_errors, 0);
    } else {
      ASSERT_EQ(check.error().errnum(), ENOTSUP) << check.error().ToString();
    }
    std::vector<uint8_t> chunk(1 << 20);
    for (int64_t base = 0; base < kSize; base += static_cast<int64_t>(chunk.size())) {
      s = Run((*node)->pread(base, chunk.data(), static_cast<int64_t>(chunk.size())));
      ASSERT_TRUE(s) << "read at " << base << " after the fault: " << s.error().ToString();
      for (size_t at = 0; at < chunk.size(); at += 512) {
        const int64_t k = (base + static_cast<int64_t>(at)) / 512;
        const uint8_t v = chunk[at];
        const bool uniform = std::all_of(chunk.begin() + at, chunk.begin() + at + 512,
                                         [v](uint8_t b) { return b == v; });
        const bool allowed = v < 64 && (v == durable[k] || (since[k] >> v & 1));
        ASSERT_TRUE(uniform && allowed)
            << "sector " << k << " reads 0x" << std::hex << int(v) << std::dec
            << (uniform ? "" : " (torn)") << "; flushed value " << int(durable[k])
            << ", written since the last flush: mask 0x" << std::hex << since[k];
      }
    }
    Run((*node)->close());
  }
  EXPECT_GT(fired_runs, 0) << "no write or flush ever reached the file";
}

}  // namespace
}  // namespace coblk::conformance
