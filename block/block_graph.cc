#include "block/block_graph.h"

#include <atomic>
#include <utility>
#include <vector>

#include "io/event_loop.h"

namespace coblk {

namespace {

// QEMU reads this much of an image to probe its format.
constexpr int64_t kProbeBytes = 2048;

// Generic per-node options: every node accepts them and children inherit
// them, as QEMU does with its cache.* runtime options.
const char* const kInheritedOptions[] = {"cache.direct", "cache.no-flush"};

std::string NextNodeName() {
  static std::atomic<uint64_t> counter{0};
  return "#block" + std::to_string(counter.fetch_add(1));
}

// "nbd:host:port" names the protocol before the colon when such a protocol
// is registered; anything else is a host file.
Result<const BlockDriver*> ProtocolForFilename(const std::string& filename) {
  size_t colon = filename.find(':');
  if (colon != std::string::npos && colon > 0 &&
      filename.find('/') > colon) {
    if (const BlockDriver* d = FindProtocolDriver(filename.substr(0, colon))) return d;
  }
  if (const BlockDriver* d = FindProtocolDriver("file")) return d;
  return MakeError(EINVAL, "Unknown protocol 'file'");
}

void CopyInherited(const Options& from, Options& to) {
  for (const char* key : kInheritedOptions) {
    if (auto v = from.peek(key)) to.set_default(key, *v);
  }
}

std::string ProbeWarning(const std::string& filename) {
  return "WARNING: Image format was not specified for '" + filename +
         "' and probing guessed raw.\n"
         "         Automatically detecting the format is dangerous for raw images, "
         "write operations on block 0 will be restricted.\n"
         "         Specify the 'raw' format explicitly to remove the restrictions.";
}

Task<void> CloseIfUnshared(std::shared_ptr<BlockNode> node) {
  if (node && node.use_count() == 1) co_await node->close();
}

}  // namespace

Task<Result<std::shared_ptr<BlockNode>>> OpenContext::open_child(const std::string& name,
                                                                 ChildRole role,
                                                                 const std::string& filename,
                                                                 bool allow_none) {
  if (name == "file" && file) co_return file;
  co_return co_await graph.open_child_node(options, name, role, filename, allow_none, read_only);
}

Task<Result<std::shared_ptr<BlockNode>>> BlockGraph::open(Options options, OpenFlags flags) {
  flags_ = flags;
  check_top_ = flags.check;
  co_return co_await open_node(std::move(options), flags.read_only, /*protocol=*/false);
}

Task<Result<std::shared_ptr<BlockNode>>> BlockGraph::open_file(const std::string& filename,
                                                               const std::string& format,
                                                               OpenFlags flags) {
  Options options;
  options.set("filename", filename);
  if (!format.empty()) options.set("driver", format);
  co_return co_await open(std::move(options), flags);
}

Task<Result<std::shared_ptr<BlockNode>>> BlockGraph::open_child_node(
    Options& parent, const std::string& name, ChildRole role, const std::string& filename,
    bool allow_none, bool read_only) {
  Options child = parent.extract_prefix(name);
  std::string child_filename = filename;
  // "backing=" (empty) means no child; "file=x.img" names the child's file.
  if (std::optional<std::string> v = parent.take_string(name)) {
    if (v->empty() || (role == ChildRole::kBacking && IsNoBackingValue(*v))) co_return nullptr;
    // "file=x,file.filename=y": two names for one file.
    if (child.has("filename")) {
      co_return MakeError(EINVAL, "Option '" + name + "' conflicts with '" + name +
                                      ".filename': give the file's name once");
    }
    child_filename = *v;
  }
  if (role == ChildRole::kBacking && flags_.no_backing) co_return nullptr;
  if (!child_filename.empty()) child.set_default("filename", child_filename);
  if (child.empty()) {
    if (allow_none) co_return nullptr;
    co_return MakeError(EINVAL, "A block device must be specified for \"" + name + "\"");
  }
  CopyInherited(parent, child);
  // Backing files are opened read-only; storage children of a format are
  // protocol nodes (never probed), backing files are probed formats.
  const bool child_ro = read_only || role == ChildRole::kBacking;
  if (role != ChildRole::kBacking) co_return co_await open_node(std::move(child), child_ro, true);
  // A hostile image can name itself (or a cycle) as its backing file: a
  // read-only open would then recurse until it runs out of file descriptors
  // or stack. One BlockGraph opens one chain, so a counter bounds its depth.
  if (backing_depth_ >= kMaxBackingDepth) {
    co_return MakeError(EINVAL, "Backing chain is longer than " + std::to_string(kMaxBackingDepth) +
                                    " images (does it loop?)");
  }
  ++backing_depth_;
  Result<std::shared_ptr<BlockNode>> r = co_await open_node(std::move(child), child_ro, false);
  --backing_depth_;
  co_return r;
}

Task<Result<std::shared_ptr<BlockNode>>> BlockGraph::probe_file(const std::string& filename,
                                                                Options& options,
                                                                bool read_only,
                                                                const BlockDriver** format) {
  // The probed protocol node becomes the format's "file" child, so it takes
  // the "file.*" options (file.cache.direct=on, file.aio=threads, ...).
  Options fopts = options.extract_prefix("file");
  fopts.set_default("filename", filename);
  CopyInherited(options, fopts);
  Result<std::shared_ptr<BlockNode>> file = co_await open_node(std::move(fopts), read_only, true);
  if (!file) co_return file;
  std::shared_ptr<BlockNode> node = std::move(*file);
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(kProbeBytes, node->size())));
  Status s = co_await node->pread(0, buf.data(), static_cast<int64_t>(buf.size()));
  if (!s) {
    co_await node->close();
    co_return std::unexpected(s.error().WithContext("Could not read image for determining its format"));
  }
  *format = ProbeFormat(buf, filename);
  if (!*format) {
    co_await node->close();
    co_return MakeError(ENOENT, "Could not determine image format: No compatible format found");
  }
  co_return node;
}

Task<Result<std::shared_ptr<BlockNode>>> BlockGraph::open_node(Options options, bool read_only,
                                                               bool protocol) {
  // The first node opened (the top one, before its children) only.
  const bool check = std::exchange(check_top_, false);
  // json:{...} pseudo-filename: its keys join the options (explicit ones win).
  if (std::optional<std::string> f = options.peek("filename"); f && f->starts_with("json:")) {
    Result<Options> json = Options::ParseJson(std::string_view(*f).substr(5));
    if (!json) co_return std::unexpected(json.error());
    options.erase("filename");
    for (const auto& [k, v] : json->values()) options.set_default(k, v);
  }
  const std::string filename = options.get_string("filename");
  const std::optional<std::string> driver_name = options.take_string("driver");
  std::string node_name = options.get_string("node-name");
  Result<bool> ro = options.get_bool("read-only", read_only);
  if (!ro) co_return std::unexpected(ro.error());
  read_only = *ro;

  const BlockDriver* drv = nullptr;
  std::shared_ptr<BlockNode> probed_file;
  if (driver_name) {
    drv = FindFormatDriver(*driver_name);
    if (!drv) drv = FindProtocolDriver(*driver_name);
    if (!drv) co_return MakeError(EINVAL, "Unknown driver '" + *driver_name + "'");
  } else if (filename.empty()) {
    co_return MakeError(EINVAL, "Must specify either driver or filename");
  } else if (protocol) {
    Result<const BlockDriver*> p = ProtocolForFilename(filename);
    if (!p) co_return std::unexpected(p.error());
    drv = *p;
  } else {
    Result<std::shared_ptr<BlockNode>> f = co_await probe_file(filename, options, read_only, &drv);
    if (!f) co_return f;
    probed_file = std::move(*f);
  }

  OpenContext ctx{loop_, options, read_only, filename, *this};
  ctx.probed = probed_file != nullptr;
  ctx.no_backing = flags_.no_backing;
  ctx.check = check;
  if (drv->has_file_child()) {
    if (const std::string alias(drv->file_child_alias()); !alias.empty() && options.has_prefix(alias)) {
      if (options.has_prefix("file"))
        co_return MakeError(EINVAL, "Give either '" + alias + "' or 'file' options, not both");
      options.rename_prefix(alias, "file");
    }
    if (probed_file) {
      ctx.file = std::move(probed_file);
    } else {
      Result<std::shared_ptr<BlockNode>> f =
          co_await open_child_node(options, "file", ChildRole::kFile, filename, false, read_only);
      if (!f) co_return f;
      ctx.file = std::move(*f);
    }
  } else if (probed_file) {
    co_await CloseIfUnshared(std::move(probed_file));
  }

  Result<std::shared_ptr<BlockNode>> opened = co_await drv->open(ctx);
  if (!opened) {
    co_await CloseIfUnshared(std::move(ctx.file));
    co_return opened;
  }
  std::shared_ptr<BlockNode> node = std::move(*opened);
  if (ctx.file && !node->file()) node->add_child("file", ChildRole::kFile, ctx.file);
  ctx.file.reset();
  if (read_only) node->set_read_only(true);
  if (node->filename().empty()) {
    node->set_filename(!filename.empty() || !node->file() ? filename : node->file()->filename());
  }
  node->set_node_name(node_name.empty() ? NextNodeName() : node_name);
  node->refresh_limits();

  for (const char* key : kInheritedOptions) options.take_string(key);
  const std::string what = std::string(drv->protocol_name().empty() ? "Block format '"
                                                                     : "Block protocol '") +
                           std::string(drv->format_name()) + "'";
  if (Status s = options.check_all_consumed(what); !s) {
    co_await node->close();
    co_return std::unexpected(s.error());
  }
  if (ctx.probed && drv->format_name() == "raw" && !read_only && flags_.probe_warning) {
    warnings_.push_back(ProbeWarning(filename));
  }
  co_return node;
}

Task<Result<std::shared_ptr<BlockNode>>> BlockGraph::open_filter(const std::string& driver,
                                                                 Options options,
                                                                 std::shared_ptr<BlockNode> child) {
  const BlockDriver* drv = FindFormatDriver(driver);
  if (!drv || !drv->is_filter() || !drv->has_file_child())
    co_return MakeError(EINVAL, "'" + driver + "' is not a filter driver");
  const std::string node_name = options.get_string("node-name");
  OpenContext ctx{loop_, options, child->read_only(), {}, *this};
  ctx.file = std::move(child);
  Result<std::shared_ptr<BlockNode>> opened = co_await drv->open(ctx);
  if (!opened) co_return opened;
  std::shared_ptr<BlockNode> node = std::move(*opened);
  if (ctx.file && !node->file()) node->add_child("file", ChildRole::kFile, ctx.file);
  node->set_node_name(node_name.empty() ? NextNodeName() : node_name);
  node->refresh_limits();
  if (Status s = options.check_all_consumed("Block format '" + driver + "'"); !s) {
    // The child stays open: the caller holds it too.
    co_await node->close();
    co_return std::unexpected(s.error());
  }
  co_return node;
}

Task<Status> CreateImage(EventLoop& loop, const std::string& format,
                         const std::string& filename, Options& create_opts) {
  const BlockDriver* drv = FindFormatDriver(format);
  if (!drv) co_return MakeError(EINVAL, "Unknown file format '" + format + "'");
  // Reject options the driver does not declare, like qemu-img's -o parsing.
  const std::vector<CreateOption>& known = drv->create_options();
  if (!known.empty()) {
    for (const auto& [key, value] : create_opts.values()) {
      bool found = false;
      for (const CreateOption& o : known) found = found || o.name == key;
      if (!found) co_return MakeError(EINVAL, "Invalid parameter '" + key + "'");
    }
  }
  co_return co_await drv->co_create(filename, create_opts, loop);
}

}  // namespace coblk
