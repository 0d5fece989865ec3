// nbdkit-coblk-plugin: exports any coblk node graph over NBD.
//
//   nbdkit ./build/lib/nbdkit-coblk-plugin.so image=disk.vmdk
//   nbdkit ./build/lib/nbdkit-coblk-plugin.so disk.vmdk            (image is the magic key)
//   nbdkit ./build/lib/nbdkit-coblk-plugin.so json='{"driver":"vmdk","file":{...}}'
//   nbdkit ./build/lib/nbdkit-coblk-plugin.so opts=driver=vmdk,file.filename=disk.vmdk
//   extra keys: format=vmdk (skip probing), readonly=true (open the image read-only)
//
// Threads (the invariants this file keeps):
//  * One coblk EventLoop runs on one thread of its own (started in
//    after_fork, so it survives nbdkit's daemonising fork). The image is
//    opened, used and closed only on that thread.
//  * nbdkit's worker threads (thread model PARALLEL: many requests of many
//    connections at once) never touch coblk objects. Each request is a
//    Request on the worker's stack; the worker posts a coroutine that does
//    the I/O to the loop (EventLoop::post is thread-safe) and blocks on the
//    Request's atomic flag until the coroutine has stored the result. The
//    release store / acquire wait orders the I/O's effects (buffer contents,
//    extents) before the worker reads them. The worker's buffer stays valid
//    because the worker waits.
//  * All connections share the one graph, so a flush on any connection covers
//    writes completed on every connection: can_multi_conn is true.
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "block/block_backend.h"
#include "coroutine/spawn.h"
#include "coroutine/sync_wait.h"

#define NBDKIT_API_VERSION 2
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#include <nbdkit-plugin.h>

namespace coblk::nbdkit_export {
namespace {

struct Config {
  std::string image;
  std::string json;
  std::string opts;
  std::string format;
  bool read_only = false;
};

struct Server {
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<BlockBackend> blk;  // created, used and destroyed on the loop thread
  std::thread thread;
  int64_t size = 0;
  bool writable = false;
};

Config g_config;
Server* g_server = nullptr;

// One request handed from an nbdkit worker to the loop.
struct Request {
  enum class Op { kRead, kWrite, kFlush, kTrim, kZero, kExtents };
  Op op;
  void* buf = nullptr;
  int64_t count = 0;
  int64_t offset = 0;
  uint32_t flags = 0;        // coblk request flags
  bool req_one = false;      // extents: one is enough
  Status result;
  std::vector<std::pair<int64_t, uint32_t>> extents;  // (length, NBDKIT_EXTENT_*)
  std::atomic<bool> done{false};
};

Task<Status> Extents(BlockBackend& blk, Request& r) {
  int64_t pos = r.offset;
  const int64_t end = r.offset + r.count;
  while (pos < end) {
    Result<BlockStatus> st = co_await blk.node().block_status_above(nullptr, true, pos, end - pos);
    if (!st) co_return std::unexpected(st.error());
    if (st->pnum <= 0) break;
    // QEMU's nbd server mapping: no data = hole, zero bit = reads as zeroes.
    uint32_t type = 0;
    if (!(st->status & kStatusData)) type |= NBDKIT_EXTENT_HOLE;
    if (st->status & kStatusZero) type |= NBDKIT_EXTENT_ZERO;
    if (!r.extents.empty() && r.extents.back().second == type) {
      r.extents.back().first += st->pnum;
    } else {
      r.extents.emplace_back(st->pnum, type);
    }
    pos += st->pnum;
    if (r.req_one) break;
  }
  co_return OkStatus();
}

Task<Status> Dispatch(BlockBackend& blk, Request& r) {
  switch (r.op) {
    case Request::Op::kRead:
      co_return co_await blk.co_read(r.offset, r.buf, r.count);
    case Request::Op::kWrite:
      co_return co_await blk.co_write(r.offset, r.buf, r.count, r.flags);
    case Request::Op::kFlush:
      co_return co_await blk.co_flush();
    case Request::Op::kTrim: {
      Status s = co_await blk.co_discard(r.offset, r.count);
      if (s && (r.flags & kReqFua)) s = co_await blk.co_flush();
      co_return s;
    }
    case Request::Op::kZero:
      co_return co_await blk.co_write_zeroes(r.offset, r.count, r.flags);
    case Request::Op::kExtents:
      co_return co_await Extents(blk, r);
  }
  co_return MakeError(EINVAL, "unknown request");
}

// Runs on the loop thread.
Task<void> Serve(Request* r) {
  r->result = co_await Dispatch(*g_server->blk, *r);
  r->done.store(true, std::memory_order_release);
  r->done.notify_one();
}

// Called on an nbdkit worker thread; returns 0 or -1 with the error set.
int Run(Request& r) {
  spawn(*g_server->loop, Serve(&r));
  r.done.wait(false, std::memory_order_acquire);
  if (r.result) return 0;
  nbdkit_error("%s", r.result.error().ToString().c_str());
  nbdkit_set_error(r.result.error().errnum());
  return -1;
}

Task<Result<std::unique_ptr<BlockBackend>>> OpenImage(EventLoop& loop, bool read_only) {
  Options options;
  std::string filename;
  if (!g_config.opts.empty()) {
    Result<Options> o = Options::Parse(g_config.opts);
    if (!o) co_return std::unexpected(o.error());
    options = std::move(*o);
  } else if (!g_config.json.empty()) {
    filename = g_config.json.starts_with("json:") ? g_config.json : "json:" + g_config.json;
  } else {
    filename = g_config.image;
  }
  if (!g_config.format.empty()) options.set("driver", g_config.format);
  OpenFlags flags;
  flags.read_only = read_only;
  flags.probe_warning = false;
  co_return co_await BlockBackend::co_open(loop, filename, std::move(options), flags);
}

// ---- nbdkit callbacks ----

int Config(const char* key, const char* value) {
  const std::string k = key;
  if (k == "image") {
    g_config.image = value;
  } else if (k == "json") {
    g_config.json = value;
  } else if (k == "opts") {
    g_config.opts = value;
  } else if (k == "format") {
    g_config.format = value;
  } else if (k == "readonly") {
    int b = nbdkit_parse_bool(value);
    if (b == -1) return -1;
    g_config.read_only = b;
  } else {
    nbdkit_error("unknown parameter '%s'", key);
    return -1;
  }
  return 0;
}

int ConfigComplete() {
  const int given = !g_config.image.empty() + !g_config.json.empty() + !g_config.opts.empty();
  if (given != 1) {
    nbdkit_error("give exactly one of image=FILE, json=JSON or opts=OPTIONS");
    return -1;
  }
  return 0;
}

// Before nbdkit forks into the background: a read-only trial open on a
// throw-away loop, so a bad image is reported on the terminal.
int GetReady() {
  auto loop = EventLoop::Create();
  if (!loop) {
    nbdkit_error("%s", loop.error().ToString().c_str());
    return -1;
  }
  (*loop)->make_current();
  auto blk = sync_wait(**loop, OpenImage(**loop, true));
  if (!blk) {
    nbdkit_error("%s", blk.error().ToString().c_str());
    return -1;
  }
  Status s = (*blk)->close();
  blk->reset();
  return s ? 0 : -1;
}

// After the fork: the real open, on the loop's own thread.
int AfterFork() {
  auto loop = EventLoop::Create();
  if (!loop) {
    nbdkit_error("%s", loop.error().ToString().c_str());
    return -1;
  }
  auto* server = new Server;
  server->loop = std::move(*loop);
  std::atomic<bool> opened{false};
  Status open_status;
  server->thread = std::thread([server, &opened, &open_status] {
    EventLoop& l = *server->loop;
    l.make_current();
    auto blk = sync_wait(l, OpenImage(l, g_config.read_only));
    if (blk) {
      server->blk = std::move(*blk);
      server->size = server->blk->size();
      server->writable = !server->blk->node().read_only();
    } else {
      open_status = std::unexpected(blk.error());
    }
    opened.store(true, std::memory_order_release);
    opened.notify_one();
    if (server->blk) l.run();  // until Cleanup stops it
  });
  opened.wait(false, std::memory_order_acquire);
  if (!open_status) {
    server->thread.join();
    delete server;
    nbdkit_error("%s", open_status.error().ToString().c_str());
    return -1;
  }
  g_server = server;
  return 0;
}

// Once every connection is gone: close (flushing metadata) on the loop thread.
void Cleanup() {
  Server* server = std::exchange(g_server, nullptr);
  if (!server) return;
  std::atomic<bool> closed{false};
  Status close_status;
  auto do_close = [server, &closed, &close_status]() -> Task<void> {
    close_status = co_await server->blk->co_close();
    server->blk.reset();
    closed.store(true, std::memory_order_release);
    closed.notify_one();
  };
  spawn(*server->loop, do_close());
  closed.wait(false, std::memory_order_acquire);
  if (!close_status) nbdkit_error("closing the image: %s", close_status.error().ToString().c_str());
  server->loop->stop();
  server->thread.join();
  delete server;
}

struct Handle {
  bool read_only;
};

void* Open(int readonly) { return new Handle{readonly != 0}; }
void Close(void* h) { delete static_cast<Handle*>(h); }

int64_t GetSize(void*) { return g_server->size; }
int CanWrite(void* h) { return g_server->writable && !static_cast<Handle*>(h)->read_only; }
int CanFlush(void*) { return 1; }
int CanTrim(void*) { return 1; }
int CanZero(void*) { return 1; }
// Write-zeroes with NO_FALLBACK fails with ENOTSUP where coblk would write
// zeroes as data, which is what NBD's FAST_ZERO asks for.
int CanFastZero(void*) { return 1; }
int CanFua(void*) { return NBDKIT_FUA_NATIVE; }
int CanMultiConn(void*) { return 1; }
int CanExtents(void*) { return 1; }

int Pread(void*, void* buf, uint32_t count, uint64_t offset, uint32_t) {
  Request r{.op = Request::Op::kRead, .buf = buf, .count = count,
            .offset = static_cast<int64_t>(offset)};
  return Run(r);
}

int Pwrite(void*, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  Request r{.op = Request::Op::kWrite, .buf = const_cast<void*>(buf), .count = count,
            .offset = static_cast<int64_t>(offset),
            .flags = (flags & NBDKIT_FLAG_FUA) ? kReqFua : 0u};
  return Run(r);
}

int Flush(void*, uint32_t) {
  Request r{.op = Request::Op::kFlush};
  return Run(r);
}

int Trim(void*, uint32_t count, uint64_t offset, uint32_t flags) {
  Request r{.op = Request::Op::kTrim, .count = count, .offset = static_cast<int64_t>(offset),
            .flags = (flags & NBDKIT_FLAG_FUA) ? kReqFua : 0u};
  return Run(r);
}

int Zero(void*, uint32_t count, uint64_t offset, uint32_t flags) {
  uint32_t f = 0;
  if (flags & NBDKIT_FLAG_MAY_TRIM) f |= kReqMayUnmap;
  if (flags & NBDKIT_FLAG_FUA) f |= kReqFua;
  if (flags & NBDKIT_FLAG_FAST_ZERO) f |= kReqNoFallback;
  Request r{.op = Request::Op::kZero, .count = count, .offset = static_cast<int64_t>(offset),
            .flags = f};
  return Run(r);
}

int Extents(void*, uint32_t count, uint64_t offset, uint32_t flags,
            struct nbdkit_extents* extents) {
  Request r{.op = Request::Op::kExtents, .count = count, .offset = static_cast<int64_t>(offset),
            .req_one = (flags & NBDKIT_FLAG_REQ_ONE) != 0};
  if (Run(r) == -1) return -1;
  uint64_t pos = offset;
  for (const auto& [len, type] : r.extents) {
    if (nbdkit_add_extent(extents, pos, static_cast<uint64_t>(len), type) == -1) return -1;
    pos += static_cast<uint64_t>(len);
  }
  return 0;
}

struct nbdkit_plugin MakePlugin() {
  struct nbdkit_plugin p{};
  p.name = "coblk";
  p.longname = "coblk block layer (raw, vmdk, ... node graphs)";
  p.version = "1.0";
  p.description = "Exports any image coblk opens: a file name, json:{...} or an option string";
  p.config = Config;
  p.config_complete = ConfigComplete;
  p.config_help =
      "image=<FILE>         (required unless json/opts) image to export, format probed\n"
      "json=<JSON>          a coblk/QEMU json:{...} node description\n"
      "opts=<OPTIONS>       a flat option string: driver=vmdk,file.filename=x.vmdk\n"
      "format=<DRIVER>      the format driver (no probing)\n"
      "readonly=<BOOL>      open the image read-only";
  p.magic_config_key = "image";
  p.get_ready = GetReady;
  p.after_fork = AfterFork;
  p.cleanup = Cleanup;
  p.open = Open;
  p.close = Close;
  p.get_size = GetSize;
  p.can_write = CanWrite;
  p.can_flush = CanFlush;
  p.can_trim = CanTrim;
  p.can_zero = CanZero;
  p.can_fast_zero = CanFastZero;
  p.can_fua = CanFua;
  p.can_multi_conn = CanMultiConn;
  p.can_extents = CanExtents;
  p.pread = Pread;
  p.pwrite = Pwrite;
  p.flush = Flush;
  p.trim = Trim;
  p.zero = Zero;
  p.extents = Extents;
  p.errno_is_preserved = 0;
  return p;
}

}  // namespace
}  // namespace coblk::nbdkit_export

static struct nbdkit_plugin plugin = coblk::nbdkit_export::MakePlugin();

NBDKIT_REGISTER_PLUGIN(plugin)
