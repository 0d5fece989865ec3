// The "nbd" protocol driver: a remote export through libnbd, fully
// asynchronous on the node's EventLoop (see nbd_connection.h).
//
// Names, as QEMU takes them:
//   nbd://host[:port]/export          nbd+tcp://... (same)
//   nbd+unix:///export?socket=PATH
//   nbd:unix:PATH[:exportname=E]      nbd:HOST:PORT[:exportname=E] (legacy)
//   driver=nbd,server.type=unix,server.path=PATH,export=E
//   driver=nbd,server.type=inet,server.host=H,server.port=P,export=E
// so a format can sit on an export:
//   json:{"driver":"vmdk","file":{"driver":"nbd","server":{...},"export":"x"}}
//
// What the server offers is honoured: a read-only export cannot be opened
// read-write ("NBD export is read-only", QEMU's wording); FUA is sent when the
// server supports it (otherwise write + flush); write_zeroes uses NO_HOLE
// unless the caller allows unmapping and FAST_ZERO for NO_FALLBACK requests;
// block status comes from base:allocation (all data without it); the
// server's minimum block size becomes the request alignment and its maximum
// (capped at 32 MiB, like QEMU) the transfer limit.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "block/block_driver.h"
#include "block/block_node.h"
#include "drivers/nbd/nbd_connection.h"
#include "io/aligned_buffer.h"

namespace coblk::nbd {

namespace {

constexpr uint64_t kMaxBuffer = 32u << 20;  // QEMU's NBD_MAX_BUFFER_SIZE
// Trim / zero / block-status lengths are 32-bit on the wire.
constexpr int64_t kMaxLengthCommand = int64_t{1} << 30;

int64_t RoundDownTo(int64_t v, int64_t a) { return v / a * a; }

// What the server told us at negotiation.
struct ServerCaps {
  bool read_only = false;
  bool flush = false;
  bool fua = false;
  bool trim = false;
  bool zero = false;
  bool fast_zero = false;
  bool base_allocation = false;
  bool multi_conn = false;
  uint32_t min_block = 1;
  uint64_t max_block = kMaxBuffer;
};

class NbdNode final : public BlockNode {
 public:
  NbdNode(const BlockDriver* driver, EventLoop& loop, std::unique_ptr<NbdConnection> conn,
          ServerCaps caps)
      : BlockNode(driver, loop), conn_(std::move(conn)), caps_(caps) {}

  int64_t allocated_file_size() override { return -1; }

  InfoTree get_specific_info() override {
    InfoTree t;
    t.values.emplace_back("server", conn_->where());
    t.values.emplace_back("read-only", caps_.read_only ? "true" : "false");
    t.values.emplace_back("fua", caps_.fua ? "true" : "false");
    t.values.emplace_back("base-allocation", caps_.base_allocation ? "true" : "false");
    t.values.emplace_back("multi-conn", caps_.multi_conn ? "true" : "false");
    return t;
  }

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t) override {
    const size_t n = static_cast<size_t>(bytes);
    if (qiov.count() == 1 && qiov.entries()[0].iov_len >= n) {
      co_return co_await Read(qiov.entries()[0].iov_base, n, offset);
    }
    // libnbd reads into one buffer: gather scattered vectors through a bounce.
    AlignedBuffer bounce(n);
    COBLK_CO_RETURN_IF_ERROR(co_await Read(bounce.data(), n, offset));
    qiov.copy_from(0, bounce.data(), n);
    co_return OkStatus();
  }

  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    const size_t n = static_cast<size_t>(bytes);
    const bool fua = (flags & kReqFua) != 0;
    const uint32_t nbd_flags = fua && caps_.fua ? LIBNBD_CMD_FLAG_FUA : 0;
    if (qiov.count() == 1 && qiov.entries()[0].iov_len >= n) {
      COBLK_CO_RETURN_IF_ERROR(co_await Write(qiov.entries()[0].iov_base, n, offset, nbd_flags));
    } else {
      AlignedBuffer bounce(n);
      qiov.copy_to(0, bounce.data(), n);
      COBLK_CO_RETURN_IF_ERROR(co_await Write(bounce.data(), n, offset, nbd_flags));
    }
    if (fua && !caps_.fua) co_return co_await co_flush();
    co_return OkStatus();
  }

  Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) override {
    if (!caps_.zero) co_return MakeError(ENOTSUP, "NBD server does not support write zeroes");
    uint32_t nbd_flags = 0;
    if (!(flags & kReqMayUnmap)) nbd_flags |= LIBNBD_CMD_FLAG_NO_HOLE;
    if (flags & kReqNoFallback) {
      // Without FAST_ZERO the server might zero slowly by writing: the
      // caller asked to be told instead (QEMU does the same).
      if (!caps_.fast_zero) co_return MakeError(ENOTSUP, "NBD server does not support fast zero");
      nbd_flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
    }
    if ((flags & kReqFua) && caps_.fua) nbd_flags |= LIBNBD_CMD_FLAG_FUA;
    const int64_t chunk = RoundDownTo(kMaxLengthCommand, limits().request_alignment);
    for (int64_t done = 0; done < bytes;) {
      const int64_t n = std::min(chunk, bytes - done);
      NbdOp op(loop());
      const int64_t cookie = nbd_aio_zero(conn_->handle(), static_cast<uint64_t>(n),
                                          static_cast<uint64_t>(offset + done), op.callback(),
                                          nbd_flags);
      COBLK_CO_RETURN_IF_ERROR(co_await conn_->Finish(op, cookie, "write zeroes"));
      done += n;
    }
    if ((flags & kReqFua) && !caps_.fua) co_return co_await co_flush();
    co_return OkStatus();
  }

  Task<Status> co_pdiscard(int64_t offset, int64_t bytes) override {
    if (!caps_.trim) co_return MakeError(ENOTSUP, "NBD server does not support trim");
    const int64_t chunk = RoundDownTo(kMaxLengthCommand, limits().request_alignment);
    for (int64_t done = 0; done < bytes;) {
      const int64_t n = std::min(chunk, bytes - done);
      NbdOp op(loop());
      const int64_t cookie = nbd_aio_trim(conn_->handle(), static_cast<uint64_t>(n),
                                          static_cast<uint64_t>(offset + done), op.callback(), 0);
      COBLK_CO_RETURN_IF_ERROR(co_await conn_->Finish(op, cookie, "trim"));
      done += n;
    }
    co_return OkStatus();
  }

  Task<Status> co_flush() override {
    if (!caps_.flush) co_return OkStatus();  // the server has no volatile cache
    NbdOp op(loop());
    const int64_t cookie = nbd_aio_flush(conn_->handle(), op.callback(), 0);
    co_return co_await conn_->Finish(op, cookie, "flush");
  }

  Task<Result<BlockStatus>> co_block_status(bool, int64_t offset, int64_t bytes) override {
    if (!caps_.base_allocation) {
      co_return BlockStatus{kStatusData | kStatusOffsetValid, bytes, offset, this};
    }
    const int64_t want =
        std::min(bytes, RoundDownTo(kMaxLengthCommand, limits().request_alignment));
    ExtentReply reply;
    nbd_extent_callback extent{&NbdNode::OnExtent, &reply, nullptr};
    NbdOp op(loop());
    const int64_t cookie =
        nbd_aio_block_status(conn_->handle(), static_cast<uint64_t>(want),
                             static_cast<uint64_t>(offset), extent, op.callback(),
                             LIBNBD_CMD_FLAG_REQ_ONE);
    COBLK_CO_RETURN_IF_ERROR(co_await conn_->Finish(op, cookie, "block status"));
    if (reply.length == 0) {
      co_return MakeError(EIO, "NBD server sent no base:allocation extent for offset " +
                                   std::to_string(offset));
    }
    // QEMU's mapping: a hole has no data, ZERO means reads return zeroes.
    uint32_t status = kStatusOffsetValid;
    if (!(reply.flags & LIBNBD_STATE_HOLE)) status |= kStatusData;
    if (reply.flags & LIBNBD_STATE_ZERO) status |= kStatusZero;
    const int64_t pnum = static_cast<int64_t>(std::min<uint64_t>(reply.length, want));
    co_return BlockStatus{status, pnum, offset, this};
  }

  BlockLimits driver_limits() override {
    BlockLimits l;
    l.request_alignment = std::max<uint32_t>(1, caps_.min_block);
    const uint64_t max = std::min<uint64_t>(caps_.max_block ? caps_.max_block : kMaxBuffer,
                                            kMaxBuffer);
    l.max_transfer = static_cast<uint64_t>(
        RoundDownTo(static_cast<int64_t>(max), l.request_alignment));
    l.max_pwrite_zeroes =
        static_cast<uint64_t>(RoundDownTo(kMaxLengthCommand, l.request_alignment));
    l.pdiscard_alignment = l.request_alignment;
    // libnbd copies through its own socket buffers: any address works.
    l.min_mem_alignment = 1;
    return l;
  }

  Task<Status> co_close() override {
    co_await conn_->Disconnect();
    co_return OkStatus();
  }

 private:
  struct ExtentReply {
    uint64_t length = 0;
    uint32_t flags = 0;
  };

  // Called by libnbd (inside notify_read, on the loop thread) per context.
  static int OnExtent(void* user_data, const char* context, uint64_t, uint32_t* entries,
                      size_t nr_entries, int* error) {
    if (*error != 0 || std::strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
    auto* r = static_cast<ExtentReply*>(user_data);
    if (nr_entries >= 2 && r->length == 0) {
      r->length = entries[0];
      r->flags = entries[1];
    }
    return 0;
  }

  Task<Status> Read(void* buf, size_t n, int64_t offset) {
    NbdOp op(loop());
    const int64_t cookie = nbd_aio_pread(conn_->handle(), buf, n, static_cast<uint64_t>(offset),
                                         op.callback(), 0);
    co_return co_await conn_->Finish(op, cookie, "read");
  }

  Task<Status> Write(const void* buf, size_t n, int64_t offset, uint32_t flags) {
    NbdOp op(loop());
    const int64_t cookie = nbd_aio_pwrite(conn_->handle(), buf, n, static_cast<uint64_t>(offset),
                                          op.callback(), flags);
    co_return co_await conn_->Finish(op, cookie, "write");
  }

  std::unique_ptr<NbdConnection> conn_;
  ServerCaps caps_;
};

// QEMU's legacy "nbd:unix:PATH[:exportname=E]" / "nbd:HOST:PORT[:exportname=E]".
Result<NbdTarget> ParseLegacy(const std::string& name) {
  std::string rest = name.substr(4);
  NbdTarget t;
  if (size_t p = rest.find(":exportname="); p != std::string::npos) {
    t.export_name = rest.substr(p + 12);
    rest.resize(p);
  }
  if (rest.starts_with("unix:")) {
    t.unix_path = rest.substr(5);
    if (t.unix_path.empty()) return MakeError(EINVAL, "No socket path given in '" + name + "'");
    return t;
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos) {
    t.host = rest.substr(0, colon);
    t.port = rest.substr(colon + 1);
  }
  if (t.host.empty() || t.port.empty()) {
    return MakeError(EINVAL, "Invalid NBD name '" + name +
                                 "': expected nbd:HOST:PORT or nbd:unix:PATH");
  }
  return t;
}

Result<NbdTarget> ParseTarget(Options& o) {
  const std::optional<std::string> filename = o.take_string("filename");
  const std::optional<std::string> type = o.take_string("server.type");
  const std::optional<std::string> host = o.take_string("server.host");
  const std::optional<std::string> port = o.take_string("server.port");
  const std::optional<std::string> path = o.take_string("server.path");
  const std::optional<std::string> exp = o.take_string("export");
  const bool server_opts = type || host || port || path;
  if (filename && !filename->empty()) {
    if (server_opts) {
      return MakeError(EINVAL, "An NBD server is given either as a filename or as server.* "
                               "options, not both");
    }
    NbdTarget t;
    if (filename->starts_with("nbd:") && !filename->starts_with("nbd://")) {
      Result<NbdTarget> legacy = ParseLegacy(*filename);
      if (!legacy) return legacy;
      t = std::move(*legacy);
      if (exp) {
        if (!t.export_name.empty() && *exp != t.export_name)
          return MakeError(EINVAL, "The export name is given twice");
        t.export_name = *exp;
      }
      return t;
    }
    if (exp) return MakeError(EINVAL, "An NBD URI names its export: 'export' cannot be used");
    t.uri = *filename;
    // QEMU's nbd+tcp:// is nbd://; libnbd knows only the latter.
    if (t.uri.starts_with("nbd+tcp://")) t.uri = "nbd://" + t.uri.substr(10);
    return t;
  }
  if (!type) return MakeError(EINVAL, "NBD server address missing (server.type or a filename)");
  NbdTarget t;
  t.export_name = exp.value_or("");
  if (*type == "unix") {
    if (!path || path->empty()) return MakeError(EINVAL, "server.path is required for server.type=unix");
    if (host || port) return MakeError(EINVAL, "server.host/server.port do not apply to server.type=unix");
    t.unix_path = *path;
  } else if (*type == "inet") {
    if (!host || host->empty()) return MakeError(EINVAL, "server.host is required for server.type=inet");
    if (path) return MakeError(EINVAL, "server.path does not apply to server.type=inet");
    t.host = *host;
    if (port) {
      if (port->empty()) return MakeError(EINVAL, "server.port is empty");
      t.port = *port;
    }
  } else {
    return MakeError(EINVAL, "Invalid server.type '" + *type + "' (expected inet or unix)");
  }
  return t;
}

bool Can(int r) { return r == 1; }

// Registered three times, as in QEMU: "nbd" and the URI schemes "nbd+tcp"
// and "nbd+unix", so "nbd+unix:///x?socket=s" finds its protocol driver.
template <const char* kName>
class NbdDriverT final : public BlockDriver {
 public:
  std::string_view format_name() const override { return kName; }
  std::string_view protocol_name() const override { return kName; }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    Result<NbdTarget> target = ParseTarget(ctx.options);
    if (!target) co_return std::unexpected(target.error());
    Result<std::unique_ptr<NbdConnection>> conn =
        co_await NbdConnection::Connect(ctx.loop, *target);
    if (!conn) co_return std::unexpected(conn.error());
    nbd_handle* h = (*conn)->handle();
    ServerCaps caps;
    caps.read_only = Can(nbd_is_read_only(h));
    caps.flush = Can(nbd_can_flush(h));
    caps.fua = Can(nbd_can_fua(h));
    caps.trim = Can(nbd_can_trim(h));
    caps.zero = Can(nbd_can_zero(h));
    caps.fast_zero = Can(nbd_can_fast_zero(h));
    caps.multi_conn = Can(nbd_can_multi_conn(h));
    caps.base_allocation = Can(nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION));
    const int64_t min_block = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
    const int64_t max_block = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
    // The protocol allows minimums of 1..64 KiB (powers of two).
    if (min_block > 0 && min_block <= 65536 && (min_block & (min_block - 1)) == 0)
      caps.min_block = static_cast<uint32_t>(min_block);
    if (max_block >= caps.min_block) caps.max_block = static_cast<uint64_t>(max_block);
    const int64_t size = nbd_get_size(h);
    if (size < 0) {
      co_await (*conn)->Disconnect();
      co_return MakeError(EIO, "NBD server did not report the export size");
    }
    if (caps.read_only && !ctx.read_only) {
      co_await (*conn)->Disconnect();
      co_return MakeError(EACCES, "NBD export is read-only");
    }
    const std::string where = (*conn)->where();
    auto node = std::make_shared<NbdNode>(this, ctx.loop, std::move(*conn), caps);
    node->set_size(size);
    node->set_read_only(ctx.read_only || caps.read_only);
    node->set_filename(where);
    node->refresh_limits();
    co_return std::shared_ptr<BlockNode>(std::move(node));
  }
};

constexpr char kNbd[] = "nbd";
constexpr char kNbdTcp[] = "nbd+tcp";
constexpr char kNbdUnix[] = "nbd+unix";
using NbdDriver = NbdDriverT<kNbd>;
using NbdTcpDriver = NbdDriverT<kNbdTcp>;
using NbdUnixDriver = NbdDriverT<kNbdUnix>;

}  // namespace

COBLK_REGISTER_BLOCK_DRIVER(NbdDriver)
COBLK_REGISTER_BLOCK_DRIVER(NbdTcpDriver)
COBLK_REGISTER_BLOCK_DRIVER(NbdUnixDriver)

}  // namespace coblk::nbd
