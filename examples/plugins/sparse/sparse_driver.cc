// "exsparse": a small, real sparse image format as a coblk driver plugin,
// the template for prototyping a new format (layout in sparse_format.h).
//
//   coblk-img --plugin coblk-plugin-sparse.so create -f exsparse disk.exs 1G
//   coblk-io --plugin coblk-plugin-sparse.so -c "write -P 1 0 64k" disk.exs
//   coblk-img --plugin coblk-plugin-sparse.so check disk.exs
//
// Create options: size, cluster_size (4k..2M, default 64k), backing_file.
// Open options: none of its own (file.* and backing.* go to the children).
//
// What a format driver does, in the order a request meets it:
//  * The generic layer has already checked bounds and alignment
//    (request_alignment = 512 here), so co_* see whole sectors in the node.
//  * Requests are cut at cluster boundaries; each piece looks up its L2
//    entry and reads/writes the file child, the backing child, or zeros.
//  * Metadata changes (allocating a cluster or an L2 table, zeroing or
//    discarding whole clusters) take lock_, so two requests never allocate
//    the same cluster. Reads and writes of allocated clusters never take it.
//
// Threading: every method runs on the node's EventLoop thread (coblk's rule);
// the lock is a CoMutex (coroutines wait, the thread does not block).
#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "block/block_graph.h"
#include "block/plugin.h"
#include "coroutine/co_mutex.h"
#include "io/aligned_buffer.h"
#include "sparse_format.h"

namespace exsparse {
namespace {

using coblk::BlockNode;
using coblk::IoVector;
using coblk::MakeError;
using coblk::OkStatus;
using coblk::Result;
using coblk::Status;
using coblk::Task;

int64_t RoundUp(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

class SparseNode final : public BlockNode {
 public:
  using BlockNode::BlockNode;

  // Reads and validates the header and L1 table. Every field read from the
  // file is checked before it is used (the image may be hostile).
  Task<Status> Load() {
    Header h{};
    COBLK_CO_RETURN_IF_ERROR(co_await file()->pread(0, &h, sizeof h));
    if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
      co_return MakeError(EINVAL, "exsparse: not an exsparse image");
    if (h.version != kVersion)
      co_return MakeError(ENOTSUP, "exsparse: unsupported version " + std::to_string(h.version));
    if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits)
      co_return MakeError(EINVAL, "exsparse: invalid cluster size");
    cluster_bits_ = h.cluster_bits;
    cluster_size_ = int64_t{1} << cluster_bits_;
    l2_entries_ = cluster_size_ / 8;
    if (h.size == 0 || h.size % 512 || h.size > (uint64_t{1} << 50))
      co_return MakeError(EINVAL, "exsparse: invalid virtual size");
    const uint64_t needed = L1EntriesFor(static_cast<int64_t>(h.size));
    if (h.l1_entries != needed || h.l1_capacity < h.l1_entries || h.l1_capacity > (1u << 24) ||
        h.l1_offset % cluster_size_ || h.l1_offset < static_cast<uint64_t>(cluster_size_) ||
        h.l1_offset + uint64_t{h.l1_capacity} * 8 > static_cast<uint64_t>(file()->size()))
      co_return MakeError(EINVAL, "exsparse: invalid L1 table");
    if (h.backing_len > kMaxBackingName || sizeof h + h.backing_len > static_cast<uint64_t>(cluster_size_))
      co_return MakeError(EINVAL, "exsparse: invalid backing file name");
    header_ = h;
    if (h.backing_len) {
      backing_name_.resize(h.backing_len);
      COBLK_CO_RETURN_IF_ERROR(co_await file()->pread(sizeof h, backing_name_.data(), h.backing_len));
    }
    l1_.assign(h.l1_entries, 0);
    COBLK_CO_RETURN_IF_ERROR(co_await file()->pread(static_cast<int64_t>(h.l1_offset), l1_.data(),
                                                    static_cast<int64_t>(l1_.size() * 8)));
    next_free_ = RoundUp(file()->size(), cluster_size_);
    for (uint64_t e : l1_) {
      if (e && !ValidHostOffset(e)) co_return MakeError(EINVAL, "exsparse: L1 entry out of range");
    }
    set_size(static_cast<int64_t>(h.size));
    co_return OkStatus();
  }

  const std::string& backing_name() const { return backing_name_; }
  std::string backing_filename() const override { return backing_name_; }
  bool has_zero_init() override { return backing() == nullptr; }

  coblk::ImageInfo get_info() override {
    coblk::ImageInfo info = BlockNode::get_info();
    info.cluster_size = cluster_size_;
    info.backing_filename = backing_name_;
    return info;
  }

 protected:
  // ---- Reads: per cluster, the file, the backing node, or zeros ----
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t) override {
    int64_t done = 0;
    while (done < bytes) {
      const int64_t pos = offset + done;
      const int64_t n = std::min(bytes - done, cluster_size_ - pos % cluster_size_);
      auto entry = co_await LookUp(pos);
      if (!entry) co_return std::unexpected(entry.error());
      IoVector part = qiov.slice(static_cast<size_t>(done), static_cast<size_t>(n));
      if (*entry == 0 && backing()) {
        COBLK_CO_RETURN_IF_ERROR(co_await ReadBacking(pos, n, part));
      } else if (*entry == 0 || *entry == kZeroEntry) {
        part.memset(0, 0, static_cast<size_t>(n));
      } else {
        file()->debug_event("read_aio");
        COBLK_CO_RETURN_IF_ERROR(
            co_await file()->preadv(static_cast<int64_t>(*entry) + pos % cluster_size_, n, part));
      }
      done += n;
    }
    co_return OkStatus();
  }

  // ---- Writes: in place when allocated, else allocate the cluster ----
  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    int64_t done = 0;
    while (done < bytes) {
      const int64_t pos = offset + done;
      const int64_t n = std::min(bytes - done, cluster_size_ - pos % cluster_size_);
      IoVector part = qiov.slice(static_cast<size_t>(done), static_cast<size_t>(n));
      COBLK_CO_RETURN_IF_ERROR(co_await WriteCluster(pos, n, part, flags));
      done += n;
    }
    co_return OkStatus();
  }

  // Whole clusters become zero entries (their old data is leaked); partial
  // clusters are written with zeros.
  Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) override {
    co_return co_await ZeroOrDiscard(offset, bytes, flags, false);
  }

  // Discard is advisory: whole clusters become zero entries, partial
  // clusters are left alone.
  Task<Status> co_pdiscard(int64_t offset, int64_t bytes) override {
    co_return co_await ZeroOrDiscard(offset, bytes, 0, true);
  }

  Task<Status> co_flush() override { co_return co_await file()->flush(); }

  // Growing within the L1 area's capacity: only the header changes.
  Task<Status> co_truncate(int64_t size, bool, coblk::PreallocMode prealloc) override {
    if (prealloc != coblk::PreallocMode::kOff)
      co_return MakeError(ENOTSUP, "exsparse: preallocation is not supported");
    if (size < this->size()) co_return MakeError(ENOTSUP, "exsparse: cannot shrink images");
    if (size % 512) co_return MakeError(EINVAL, "exsparse: size must be a multiple of 512");
    const uint64_t entries = L1EntriesFor(size);
    if (entries > header_.l1_capacity)
      co_return MakeError(ENOTSUP, "exsparse: cannot grow beyond the L1 table's capacity");
    auto guard = co_await lock_.scoped_lock();
    Header h = header_;
    h.size = static_cast<uint64_t>(size);
    h.l1_entries = static_cast<uint32_t>(entries);
    // The new L1 entries are already zero on disk (the area was zeroed at
    // create), so only the header is written.
    COBLK_CO_RETURN_IF_ERROR(co_await file()->pwrite(0, &h, sizeof h));
    COBLK_CO_RETURN_IF_ERROR(co_await file()->flush());
    header_ = h;
    l1_.resize(entries, 0);
    set_size(size);
    co_return OkStatus();
  }

  // Runs of clusters with the same kind of entry (and, for data, adjacent
  // file offsets) are one answer.
  Task<Result<coblk::BlockStatus>> co_block_status(bool, int64_t offset, int64_t bytes) override {
    coblk::BlockStatus out;
    auto first = co_await LookUp(offset);
    if (!first) co_return std::unexpected(first.error());
    const int64_t in_cluster = offset % cluster_size_;
    int64_t pnum = std::min(bytes, cluster_size_ - in_cluster);
    while (pnum < bytes) {
      auto next = co_await LookUp(offset + pnum);
      if (!next) co_return std::unexpected(next.error());
      const bool same = (*first <= kZeroEntry)
                            ? *next == *first
                            : *next > kZeroEntry &&
                                  *next == *first + static_cast<uint64_t>(in_cluster + pnum) -
                                               static_cast<uint64_t>(in_cluster);
      if (!same) break;
      pnum = std::min(bytes, pnum + cluster_size_);
    }
    out.pnum = pnum;
    if (*first == 0) {
      out.status = 0;  // unallocated: the generic layer asks the backing node
    } else if (*first == kZeroEntry) {
      out.status = coblk::kStatusZero | coblk::kStatusAllocated;
    } else {
      out.status = coblk::kStatusData | coblk::kStatusAllocated | coblk::kStatusOffsetValid;
      out.map = static_cast<int64_t>(*first) + in_cluster;
      out.file = file();
    }
    co_return out;
  }

  // Walks every table: entries must point inside the file at cluster
  // boundaries, and no cluster may be used twice (corruptions); clusters
  // nothing points at are leaks.
  Task<Result<coblk::CheckResult>> co_check(uint32_t fix) override {
    if (fix) co_return MakeError(ENOTSUP, "exsparse: check cannot repair images");
    coblk::CheckResult r;
    const int64_t clusters = RoundUp(file()->size(), cluster_size_) / cluster_size_;
    std::vector<uint8_t> used(static_cast<size_t>(clusters), 0);
    auto mark = [&](uint64_t off, const std::string& what) {
      if (!ValidHostOffset(off)) {
        ++r.corruptions;
        r.messages.push_back("ERROR " + what + " points outside the image: " + std::to_string(off));
        return false;
      }
      if (used[off >> cluster_bits_]++) {
        ++r.corruptions;
        r.messages.push_back("ERROR cluster " + std::to_string(off) + " is used twice");
        return false;
      }
      return true;
    };
    // Header and L1 area.
    const int64_t meta_end = RoundUp(static_cast<int64_t>(header_.l1_offset) + header_.l1_capacity * 8,
                                     cluster_size_);
    for (int64_t c = 0; c < meta_end / cluster_size_ && c < clusters; ++c) used[c] = 1;
    for (size_t i = 0; i < l1_.size(); ++i) {
      if (!l1_[i] || !mark(l1_[i], "L1 entry " + std::to_string(i))) continue;
      auto l2 = co_await LoadL2(i);
      if (!l2) co_return std::unexpected(l2.error());
      for (size_t j = 0; j < (*l2)->size(); ++j) {
        const uint64_t e = (**l2)[j];
        if (e > kZeroEntry) mark(e, "L2 entry " + std::to_string(i) + "." + std::to_string(j));
      }
    }
    for (int64_t c = 0; c < clusters; ++c) {
      if (!used[c]) ++r.leaks;
      if (used[c]) ++r.allocated_clusters;
    }
    if (r.leaks) r.messages.push_back(std::to_string(r.leaks) + " leaked clusters");
    r.total_clusters = size() / cluster_size_;
    r.image_end_offset = clusters * cluster_size_;
    co_return r;
  }

  coblk::BlockLimits driver_limits() override {
    coblk::BlockLimits l;
    l.request_alignment = 512;
    return l;
  }

 private:
  uint64_t L1EntriesFor(int64_t size) const {
    const int64_t span = cluster_size_ * l2_entries_;  // bytes one L2 table maps
    return static_cast<uint64_t>((size + span - 1) / span);
  }

  bool ValidHostOffset(uint64_t off) const {
    return off % cluster_size_ == 0 && off >= static_cast<uint64_t>(cluster_size_) &&
           off + cluster_size_ <= static_cast<uint64_t>(next_free_);
  }

  // The L2 table for L1 index i, loaded (and validated) on first use.
  // Loading takes lock_ so that a table is read once.
  Task<Result<std::vector<uint64_t>*>> LoadL2(size_t i) {
    if (auto it = l2_.find(i); it != l2_.end()) co_return it->second.get();
    auto guard = co_await lock_.scoped_lock();
    if (auto it = l2_.find(i); it != l2_.end()) co_return it->second.get();
    auto table = std::make_unique<std::vector<uint64_t>>(static_cast<size_t>(l2_entries_), 0);
    if (l1_[i]) {
      COBLK_CO_RETURN_IF_ERROR(
          co_await file()->pread(static_cast<int64_t>(l1_[i]), table->data(), cluster_size_));
      for (uint64_t& e : *table) {
        if (e > kZeroEntry && !ValidHostOffset(e))
          co_return MakeError(EIO, "exsparse: L2 entry out of range (image is corrupt)");
      }
    }
    auto* p = table.get();
    l2_.emplace(i, std::move(table));
    co_return p;
  }

  // The L2 entry for the cluster holding virtual offset pos.
  Task<Result<uint64_t>> LookUp(int64_t pos) {
    const uint64_t c = static_cast<uint64_t>(pos) >> cluster_bits_;
    const size_t i = static_cast<size_t>(c / l2_entries_);
    if (!l1_[i]) co_return uint64_t{0};
    auto l2 = co_await LoadL2(i);
    if (!l2) co_return std::unexpected(l2.error());
    co_return (**l2)[c % l2_entries_];
  }

  // Reads from the backing node; beyond its end reads zeros.
  Task<Status> ReadBacking(int64_t pos, int64_t n, IoVector& part) {
    const int64_t bsize = backing()->size();
    const int64_t avail = std::clamp<int64_t>(bsize - pos, 0, n);
    if (avail < n) part.memset(static_cast<size_t>(avail), 0, static_cast<size_t>(n - avail));
    if (avail == 0) co_return OkStatus();
    IoVector head = part.slice(0, static_cast<size_t>(avail));
    co_return co_await backing()->preadv(pos, avail, head);
  }

  // Writes one in-cluster piece.
  Task<Status> WriteCluster(int64_t pos, int64_t n, IoVector& part, uint32_t flags) {
    auto entry = co_await LookUp(pos);
    if (!entry) co_return std::unexpected(entry.error());
    if (*entry > kZeroEntry) {  // allocated: in place, no lock
      file()->debug_event("write_aio");
      co_return co_await file()->pwritev(static_cast<int64_t>(*entry) + pos % cluster_size_, n,
                                         part, flags & coblk::kReqFua);
    }
    auto guard = co_await lock_.scoped_lock();
    entry = co_await LookUpLocked(pos);
    if (!entry) co_return std::unexpected(entry.error());
    if (*entry > kZeroEntry) {  // someone allocated it while we waited
      co_return co_await file()->pwritev(static_cast<int64_t>(*entry) + pos % cluster_size_, n,
                                         part, flags & coblk::kReqFua);
    }
    // Build the whole new cluster: old content (backing data or zeros)
    // around the new bytes.
    const int64_t start = pos - pos % cluster_size_;
    coblk::AlignedBuffer buf(static_cast<size_t>(cluster_size_), 4096);
    IoVector whole(buf.data(), buf.size());
    if (*entry == 0 && backing()) {
      COBLK_CO_RETURN_IF_ERROR(co_await ReadBacking(start, cluster_size_, whole));
    } else {
      whole.memset(0, 0, buf.size());
    }
    whole.copy_from(static_cast<size_t>(pos - start), part, 0, static_cast<size_t>(n));
    // Ordering: the L2 table exists on disk, the data is on disk, then the
    // entry is written.
    auto l2_off = co_await EnsureL2(static_cast<size_t>((static_cast<uint64_t>(pos) >> cluster_bits_) / l2_entries_));
    if (!l2_off) co_return std::unexpected(l2_off.error());
    const int64_t host = Allocate();
    file()->debug_event("cluster_alloc");
    COBLK_CO_RETURN_IF_ERROR(co_await file()->pwritev(host, cluster_size_, whole));
    COBLK_CO_RETURN_IF_ERROR(co_await file()->flush());
    co_return co_await SetEntry(pos, static_cast<uint64_t>(host), flags);
  }

  // LookUp while lock_ is held (LoadL2 would take it again).
  Task<Result<uint64_t>> LookUpLocked(int64_t pos) {
    const uint64_t c = static_cast<uint64_t>(pos) >> cluster_bits_;
    const size_t i = static_cast<size_t>(c / l2_entries_);
    if (auto it = l2_.find(i); it != l2_.end()) co_return (*it->second)[c % l2_entries_];
    if (!l1_[i]) co_return uint64_t{0};
    co_return MakeError(EIO, "exsparse: L2 table not loaded");  // LookUp loaded it
  }

  int64_t Allocate() {
    const int64_t host = next_free_;
    next_free_ += cluster_size_;
    return host;
  }

  // Makes sure L1 entry i points at an L2 table on disk (lock_ held): a new
  // table is written zeroed and flushed before the L1 entry names it.
  Task<Result<uint64_t>> EnsureL2(size_t i) {
    if (l1_[i]) co_return l1_[i];
    const int64_t host = Allocate();
    coblk::AlignedBuffer zeros(static_cast<size_t>(cluster_size_), 4096);
    std::memset(zeros.data(), 0, zeros.size());
    file()->debug_event("l2_alloc");
    COBLK_CO_RETURN_IF_ERROR(co_await file()->pwrite(host, zeros.data(), cluster_size_));
    COBLK_CO_RETURN_IF_ERROR(co_await file()->flush());
    uint64_t e = static_cast<uint64_t>(host);
    file()->debug_event("l1_update");
    COBLK_CO_RETURN_IF_ERROR(co_await file()->pwrite(
        static_cast<int64_t>(header_.l1_offset + i * 8), &e, 8));
    l1_[i] = e;
    if (!l2_.contains(i))
      l2_.emplace(i, std::make_unique<std::vector<uint64_t>>(static_cast<size_t>(l2_entries_), 0));
    co_return e;
  }

  // Writes one L2 entry (lock_ held, table present) and updates the cache.
  Task<Status> SetEntry(int64_t pos, uint64_t value, uint32_t flags) {
    const uint64_t c = static_cast<uint64_t>(pos) >> cluster_bits_;
    const size_t i = static_cast<size_t>(c / l2_entries_);
    auto l2_off = co_await EnsureL2(i);
    if (!l2_off) co_return std::unexpected(l2_off.error());
    file()->debug_event("l2_update");
    COBLK_CO_RETURN_IF_ERROR(co_await file()->pwrite(
        static_cast<int64_t>(*l2_off + (c % l2_entries_) * 8), &value, 8, flags & coblk::kReqFua));
    (*l2_.at(i))[c % l2_entries_] = value;
    co_return OkStatus();
  }

  Task<Status> ZeroOrDiscard(int64_t offset, int64_t bytes, uint32_t flags, bool discard) {
    int64_t done = 0;
    while (done < bytes) {
      const int64_t pos = offset + done;
      const int64_t n = std::min(bytes - done, cluster_size_ - pos % cluster_size_);
      if (n == cluster_size_) {
        // Load the table first (LookUp takes lock_ for a miss).
        auto entry = co_await LookUp(pos);
        if (!entry) co_return std::unexpected(entry.error());
        // Already zero, or unallocated with nothing below: nothing to do.
        if (*entry != kZeroEntry && (*entry != 0 || backing())) {
          auto guard = co_await lock_.scoped_lock();
          COBLK_CO_RETURN_IF_ERROR(co_await SetEntry(pos, kZeroEntry, flags));
        }
      } else if (!discard) {
        coblk::AlignedBuffer zeros(static_cast<size_t>(n), 4096);
        std::memset(zeros.data(), 0, zeros.size());
        IoVector part(zeros.data(), zeros.size());
        COBLK_CO_RETURN_IF_ERROR(co_await WriteCluster(pos, n, part, flags));
      }
      done += n;
    }
    co_return OkStatus();
  }

  Header header_{};
  int cluster_bits_ = 16;
  int64_t cluster_size_ = 65536;
  int64_t l2_entries_ = 8192;
  std::vector<uint64_t> l1_;
  std::map<size_t, std::unique_ptr<std::vector<uint64_t>>> l2_;  // loaded tables
  int64_t next_free_ = 0;  // end of the file: where the next cluster goes
  coblk::CoMutex lock_;    // metadata changes and L2 loads
  std::string backing_name_;
};

class SparseDriver final : public coblk::BlockDriver {
 public:
  std::string_view format_name() const override { return "exsparse"; }
  bool supports_backing() const override { return true; }

  int probe(std::span<const uint8_t> first, std::string_view) const override {
    return first.size() >= 8 && std::memcmp(first.data(), kMagic, 8) == 0 ? 100 : 0;
  }

  const std::vector<coblk::CreateOption>& create_options() const override {
    static const std::vector<coblk::CreateOption> kOpts = {
        {"size", coblk::CreateOption::Type::kSize, "Virtual disk size", ""},
        {"cluster_size", coblk::CreateOption::Type::kSize, "Cluster size (4k to 2M)", "65536"},
        {"backing_file", coblk::CreateOption::Type::kString, "File name of a base image", ""},
        {"backing_fmt", coblk::CreateOption::Type::kString, "Image format of the base image", ""},
    };
    return kOpts;
  }

  Task<Status> co_create(const std::string& filename, coblk::Options& opts,
                         coblk::EventLoop& loop) const override {
    auto size = opts.get_size("size", 0);
    if (!size) co_return std::unexpected(size.error());
    auto cluster = opts.get_size("cluster_size", 65536);
    if (!cluster) co_return std::unexpected(cluster.error());
    const std::string backing = opts.get_string("backing_file");
    (void)opts.get_string("backing_fmt");  // any format: the backing file is probed
    COBLK_CO_RETURN_IF_ERROR(opts.check_all_consumed("exsparse create"));
    const int bits = std::countr_zero(*cluster);
    if (std::popcount(*cluster) != 1 || bits < static_cast<int>(kMinClusterBits) ||
        bits > static_cast<int>(kMaxClusterBits))
      co_return MakeError(EINVAL, "exsparse: cluster_size must be a power of two from 4k to 2M");
    if (*size == 0 || *size % 512) co_return MakeError(EINVAL, "exsparse: size must be a positive multiple of 512");
    if (backing.size() > kMaxBackingName || sizeof(Header) + backing.size() > *cluster)
      co_return MakeError(EINVAL, "exsparse: backing file name too long");
    const uint64_t span = *cluster * (*cluster / 8);
    const uint64_t entries = (*size + span - 1) / span;
    // Room to grow: the L1 area is at least one cluster, and 4x the need.
    const uint64_t capacity = std::max<uint64_t>(*cluster / 8, entries * 4);
    if (capacity > (1u << 24)) co_return MakeError(EINVAL, "exsparse: image too large");
    Header h{};
    std::memcpy(h.magic, kMagic, sizeof kMagic);
    h.version = kVersion;
    h.cluster_bits = static_cast<uint32_t>(bits);
    h.size = *size;
    h.l1_offset = *cluster;
    h.l1_entries = static_cast<uint32_t>(entries);
    h.l1_capacity = static_cast<uint32_t>(capacity);
    h.backing_len = static_cast<uint32_t>(backing.size());
    const int64_t l1_bytes = RoundUp(static_cast<int64_t>(capacity * 8), static_cast<int64_t>(*cluster));
    std::vector<uint8_t> image(static_cast<size_t>(*cluster + l1_bytes), 0);
    std::memcpy(image.data(), &h, sizeof h);
    std::memcpy(image.data() + sizeof h, backing.data(), backing.size());
    // The file protocol makes the file; then header and zeroed L1 go in.
    const coblk::BlockDriver* proto = coblk::FindProtocolDriver("file");
    if (!proto) co_return MakeError(ENOTSUP, "exsparse: the 'file' protocol is not available");
    coblk::Options file_opts;
    file_opts.set("size", "0");
    COBLK_CO_RETURN_IF_ERROR(co_await proto->co_create(filename, file_opts, loop));
    coblk::Options o;
    o.set("driver", "file");
    o.set("filename", filename);
    coblk::BlockGraph graph(loop);
    auto file = co_await graph.open(std::move(o), coblk::OpenFlags{});
    if (!file) co_return std::unexpected(file.error());
    Status st = co_await (*file)->pwrite(0, image.data(), static_cast<int64_t>(image.size()));
    if (st) st = co_await (*file)->flush();
    co_await (*file)->close();
    co_return st;
  }

  Task<Result<std::shared_ptr<BlockNode>>> open(coblk::OpenContext& ctx) const override {
    auto file = co_await ctx.open_child("file", coblk::ChildRole::kFile);
    if (!file) co_return std::unexpected(file.error());
    auto node = std::make_shared<SparseNode>(this, ctx.loop);
    node->add_child("file", coblk::ChildRole::kFile, *file);
    node->set_filename((*file)->filename());
    node->set_read_only(ctx.read_only);
    node->refresh_limits();
    COBLK_CO_RETURN_IF_ERROR(co_await node->Load());
    if (!node->backing_name().empty()) {
      // A relative name is relative to the image's directory.
      std::string path = node->backing_name();
      const std::string& base = (*file)->filename();
      if (path.front() != '/' && base.find('/') != std::string::npos)
        path = base.substr(0, base.rfind('/') + 1) + path;
      auto backing = co_await ctx.open_child("backing", coblk::ChildRole::kBacking, path, true);
      if (!backing) co_return std::unexpected(backing.error().WithContext("Could not open backing file"));
      if (*backing) node->add_child("backing", coblk::ChildRole::kBacking, std::move(*backing));
    }
    co_return std::shared_ptr<BlockNode>(std::move(node));
  }
};

}  // namespace
}  // namespace exsparse

COBLK_PLUGIN_DRIVERS(exsparse::SparseDriver)
