#include "drivers/vmdk/vmdk_open.h"

#include <sys/stat.h>

#include <array>
#include <cinttypes>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/format.h"
#include "drivers/vmdk/layout.h"
#include "drivers/vmdk/strfmt.h"

namespace coblk::vmdk {

namespace {

struct OpenSettings {
  uint64_t cache_bytes = kDefaultL2CacheBytes;
  bool confine = false;
  bool read_write = false;
  bool check = false;  // OpenFlags::check: see Extent::OpenSparse
};

// Reads descriptor text at `offset`, at most `limit` bytes and never past the
// end of the file; the text ends at the first NUL (embedded descriptors are
// zero-padded).
Task<Result<std::string>> ReadDescriptorText(BlockNode& file, uint64_t offset, uint64_t limit) {
  const uint64_t size = static_cast<uint64_t>(file.size());
  if (offset >= size) co_return std::string();
  const uint64_t n = std::min({limit, size - offset, kMaxDescriptorBytes});
  std::string text(n, '\0');
  Status st = co_await file.pread(static_cast<int64_t>(offset), text.data(), static_cast<int64_t>(n));
  if (!st) co_return MakeError(st.error().errnum(), "Could not read from file");
  text.resize(std::strlen(text.c_str()));
  co_return text;
}

void TakeDescriptorFacts(VmdkNode& node, const Descriptor& d) {
  node.cid = d.cid;
  node.parent_cid = d.parent_cid;
  if (d.parent_file_name_hint) node.parent_file_name_hint = *d.parent_file_name_hint;
}

// Symlinks may point anywhere: compare canonical paths too.
Status CheckConfined(const std::string& descriptor_path, const std::string& extent_path) {
  char dir_buf[PATH_MAX], ext_buf[PATH_MAX];
  std::string dir = descriptor_path.substr(0, descriptor_path.rfind('/') + 1);
  if (dir.empty()) dir = ".";
  if (!realpath(dir.c_str(), dir_buf)) return ErrnoError("Could not resolve '" + dir + "'");
  if (!realpath(extent_path.c_str(), ext_buf))
    return ErrnoError("Could not open '" + extent_path + "'");
  std::string d = std::string(dir_buf) + "/";
  if (std::strncmp(ext_buf, d.c_str(), d.size()) != 0)
    return MakeError(EACCES, "Extent file '" + extent_path +
                                 "' is outside the descriptor's directory");
  return OkStatus();
}

// A file's identity (device, inode), to find backing loops whatever names
// the layers use (symlinks, hard links, "./a.vmdk" vs "a.vmdk").
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileId&) const = default;
};

std::optional<FileId> IdentityOf(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

// Extent files already opened for this descriptor, by identity: a file
// named by many extent lines is opened once (each open of the same file
// adds OFD locks the kernel scans linearly, so per-line opens made a
// descriptor of thousands of lines quadratic).
struct FileIdHash {
  size_t operator()(const FileId& f) const {
    return std::hash<uint64_t>()(static_cast<uint64_t>(f.dev) * 1000003u ^ static_cast<uint64_t>(f.ino));
  }
};
using OpenedExtentFiles = std::unordered_map<FileId, BlockNode*, FileIdHash>;

Task<Result<std::unique_ptr<Extent>>> OpenExtentLine(OpenContext& ctx, VmdkNode& node,
                                                     const ExtentLine& line, size_t index,
                                                     const std::string& descriptor_path,
                                                     const OpenSettings& s,
                                                     OpenedExtentFiles& opened) {
  if (line.type == ExtentType::kZero) co_return Extent::Zero(line.sectors);
  COBLK_CO_RETURN_IF_ERROR(ValidateExtentFilename(line.filename, s.confine));
  auto path = ResolveExtentPath(descriptor_path, line.filename);
  if (!path) co_return std::unexpected(path.error());
  if (s.confine) COBLK_CO_RETURN_IF_ERROR(CheckConfined(descriptor_path, *path));

  const std::string child_name = "extents." + std::to_string(index);
  // Options given for this extent's child (extents.N.*) open it on its own.
  const bool own_options = ctx.options.has(child_name) || ctx.options.has_prefix(child_name);
  const std::optional<FileId> id = own_options ? std::nullopt : IdentityOf(*path);
  BlockNode* file = nullptr;
  if (id) {
    if (auto it = opened.find(*id); it != opened.end()) file = it->second;
  }
  if (!file) {
    auto child = co_await ctx.open_child(child_name, ChildRole::kData, *path);
    if (!child) co_return std::unexpected(child.error());
    if (!*child) co_return MakeError(EINVAL, "Could not open extent '" + *path + "'");
    file = child->get();
    node.add_child(child_name, ChildRole::kData, std::move(*child));
    if (id) opened.emplace(*id, file);
  }

  const bool extent_rw = line.access == ExtentAccess::kReadWrite;
  if (IsFlatType(line.type)) {
    auto flat = Extent::Flat(file, line.sectors, line.offset, line.type);
    if (s.read_write) COBLK_CO_RETURN_IF_ERROR(co_await flat->enable_writes(extent_rw));
    co_return flat;
  }
  // SPARSE/VMFSSPARSE hold VMDK4 or VMDK3 headers; SESPARSE its own. As in
  // QEMU, a sparse extent's size comes from its header.
  if (line.type == ExtentType::kSeSparse) {
    // QEMU's message for any other file under a SESPARSE line.
    std::array<uint8_t, 8> magic{};
    COBLK_CO_RETURN_IF_ERROR(co_await file->pread(0, magic.data(), magic.size()));
    if (const uint64_t m = LoadLe64(magic, 0); m != kSeSparseConstMagic)
      co_return MakeError(EINVAL, StrFormat("Bad const header magic: 0x%016" PRIx64, m));
  }
  const bool rw = s.read_write && extent_rw;
  auto e = co_await Extent::OpenSparse(file, rw, s.cache_bytes, s.check);
  if (!e) co_return std::unexpected(e.error());
  // QEMU opens SPARSE/VMFSSPARSE lines as VMDK3 or VMDK4 only.
  if (line.type != ExtentType::kSeSparse && (*e)->layout().format == ExtentFormat::kSeSparse)
    co_return MakeError(EINVAL, "Image not in VMDK format");
  (*e)->set_line_type(line.type);
  if (s.read_write) COBLK_CO_RETURN_IF_ERROR(co_await (*e)->enable_writes(extent_rw));
  co_return std::move(*e);
}

Task<Status> OpenDescriptorFile(OpenContext& ctx, VmdkNode& node, const std::string& text,
                                const std::string& descriptor_path, const OpenSettings& s) {
  // QEMU looks for createType (strstr) before anything else in a descriptor
  // file, so any file that is not a descriptor fails with this message.
  if (text.find("createType") == std::string::npos)
    co_return MakeError(EINVAL, "invalid VMDK image descriptor");
  // Every line is checked here, but extent lines are only counted: they
  // are parsed again one at a time below, so that no copy of each line is
  // held while the extents are opened (issue 10: 100,000 lines).
  auto d = ParseDescriptor(text, /*keep_extent_lines=*/false);
  if (!d) co_return std::unexpected(d.error());
  if (d->create_type.empty()) co_return MakeError(EINVAL, "invalid VMDK image descriptor");
  COBLK_CO_RETURN_IF_ERROR(CheckDescriptorFileCreateType(d->create_type));
  node.create_type = d->create_type;
  TakeDescriptorFacts(node, *d);
  if (d->extent_count == 0) co_return MakeError(EINVAL, "VMDK descriptor has no extents");
  node.reserve_extents(d->extent_count);
  OpenSettings per_extent = s;
  per_extent.cache_bytes = ExtentCacheBytes(s.cache_bytes, d->extent_count);
  node.cache_bytes = per_extent.cache_bytes;  // extents reopened after a repair
  OpenedExtentFiles opened;
  ExtentLineReader lines(text);
  for (size_t i = 0;; ++i) {
    auto line = lines.next();
    if (!line) co_return std::unexpected(line.error());
    if (!*line) break;
    auto e = co_await OpenExtentLine(ctx, node, **line, i, descriptor_path, per_extent, opened);
    if (!e) co_return std::unexpected(e.error());
    node.add_extent(std::move(*e));
  }
  co_return OkStatus();
}

Task<Status> OpenMonolithic(OpenContext& ctx, VmdkNode& node, BlockNode& file, uint32_t magic,
                            const OpenSettings& s) {
  if (magic == kVmdk4Magic) {
    Sector header_bytes{};
    COBLK_CO_RETURN_IF_ERROR(co_await file.pread(0, header_bytes.data(),
                                                 std::min<int64_t>(kSectorSize, file.size())));
    auto h = Vmdk4Header::Decode(header_bytes);
    if (!h) co_return std::unexpected(h.error());
    // A sparse header with capacity 0 may wrap a descriptor (QEMU does this too).
    if (auto wrapped = WrappedDescriptorOffset(*h)) {
      auto text = co_await ReadDescriptorText(file, *wrapped * kSectorSize, kMaxDescriptorBytes);
      if (!text) co_return std::unexpected(text.error());
      node.descriptor_file = &file;
      node.descriptor_offset = *wrapped * kSectorSize;
      node.descriptor_capacity = std::min<uint64_t>(h->desc_size * kSectorSize, kMaxDescriptorBytes);
      co_return co_await OpenDescriptorFile(ctx, node, *text, file.filename(), s);
    }
    auto range = Vmdk4DescriptorRange(*h, static_cast<uint64_t>(file.size()));
    if (range && range->length) {
      // The CID rewrite stays inside the header's own descriptor area
      // (QEMU always writes 10 KiB, over whatever follows a smaller area).
      uint64_t area_offset = 0;
      const uint64_t area_bytes = h->desc_size * kSectorSize;  // checked below
      if (h->desc_offset != 0 && h->desc_size != 0 &&
          h->desc_size <= kMaxDescriptorBytes / kSectorSize &&
          CheckedMul(h->desc_offset, kSectorSize, &area_offset) &&
          area_offset < static_cast<uint64_t>(file.size())) {
        node.descriptor_file = &file;
        node.descriptor_offset = area_offset;
        node.descriptor_capacity = area_bytes;
      }
      auto text = co_await ReadDescriptorText(file, range->offset, range->length);
      if (!text) co_return std::unexpected(text.error());
      auto d = ParseEmbeddedDescriptor(*text);
      // QEMU refuses images whose embedded descriptor has no CID.
      if (!d) co_return std::unexpected(d.error());
      TakeDescriptorFacts(node, *d);
    }
  }
  auto e = co_await Extent::OpenSparse(&file, s.read_write, s.cache_bytes, s.check);
  if (!e) co_return std::unexpected(e.error());
  (*e)->set_line_type(std::nullopt);  // no extent line names a type
  if (magic == kVmdk3Magic) {
    node.create_type = "vmfsSparse";
  } else if ((*e)->layout().format == ExtentFormat::kSeSparse) {
    node.create_type = "seSparse";
  } else {
    node.create_type = (*e)->compressed() ? "streamOptimized" : "monolithicSparse";
  }
  if (s.read_write) COBLK_CO_RETURN_IF_ERROR(co_await (*e)->enable_writes(true));
  node.add_extent(std::move(*e));
  co_return OkStatus();
}

// The file a backing layer's options will open: an explicit filename wins
// over the name derived from the hint.
std::string BackingFileName(const Options& mine, const std::string& path) {
  if (auto f = mine.peek("file.filename")) return *f;
  if (auto f = mine.peek("filename")) return *f;
  if (auto f = mine.peek("file")) return *f;
  return path;
}

// Opens the backing chain below `top` one layer at a time, without one
// nested open per level (a long chain must not grow the native stack, and
// each layer is checked against all the layers above it):
//   * every layer is opened with "backing=" (empty), so its own open stops
//     at itself; this loop then reads its parentFileNameHint and goes on;
//   * with confine-extents=on the hint obeys the extent-name rules (relative,
//     no "..", no json:/protocol names, no symlink out of the directory of the
//     layer naming it) and every layer is opened with confine-extents=on;
//   * a layer whose file is (same device and inode) a file of a layer above
//     it is a loop: an error naming the chain;
//   * at most kMaxBackingDepth layers below the top (reads of unallocated
//     data still recurse once per layer).
// Options the user gave for the chain (backing.file.filename=...,
// backing.backing.driver=...) are handed to the layer they name.
Task<Status> OpenBackingChain(OpenContext& ctx, VmdkNode& top, const OpenSettings& s) {
  // A layer opened by this loop on behalf of the layer above it.
  if (auto v = ctx.options.peek("backing");
      v && IsNoBackingValue(*v) && !ctx.options.has_prefix("backing")) {
    ctx.options.take_string("backing");
    co_return OkStatus();
  }
  // Without a parentFileNameHint the image has no backing file unless the
  // options name one (QEMU opens backing.* options whatever the hint says).
  if (top.parent_file_name_hint.empty() && !ctx.options.has("backing") &&
      !ctx.options.has_prefix("backing"))
    co_return OkStatus();
  if (ctx.no_backing) {
    // Backing options are accepted and unused, as open_child would do.
    ctx.options.extract_prefix("backing");
    ctx.options.take_string("backing");
    co_return OkStatus();
  }

  std::vector<std::pair<std::string, std::optional<FileId>>> chain;  // layers so far
  chain.emplace_back(top.file()->filename(), IdentityOf(top.file()->filename()));
  Options* level_opts = &ctx.options;  // options of the current layer (its "backing.*")
  Options deeper_storage;
  VmdkNode* cur = &top;
  for (size_t depth = 1;; ++depth) {
    if (cur->parent_file_name_hint.empty() && !level_opts->has("backing") &&
        !level_opts->has_prefix("backing"))
      break;
    std::optional<std::string> plain = level_opts->take_string("backing");
    if (plain && IsNoBackingValue(*plain)) break;  // "backing=" / "backing=null": none
    Options mine = level_opts->extract_prefix("backing");
    const bool user_named =
        plain || mine.has("filename") || mine.has("file") || mine.has("file.filename");
    const bool user_opts = plain || !mine.empty();
    if (cur->parent_file_name_hint.empty() && !user_named)
      co_return MakeError(EINVAL, "'" + cur->file()->filename() +
                                      "' has no backing file: the backing options must name "
                                      "one (backing.file.filename=...)");

    const std::string& hint = cur->parent_file_name_hint;
    const std::string& cur_path = cur->file()->filename();
    std::string path;
    if (plain) {
      path = *plain;
    } else if (hint.empty()) {
      // Named only by the options (user_named above).
    } else if (s.confine) {
      // The hint names a file like an extent line does, and obeys the same
      // rules: relative, inside the directory of the layer that names it.
      if (Status st = ValidateExtentFilename(hint, true); !st)
        co_return MakeError(st.error().errnum(),
                            "Backing file of '" + cur_path + "': " + st.error().message());
      auto resolved = ResolveExtentPath(cur_path, hint);
      if (!resolved) co_return std::unexpected(resolved.error());
      path = *resolved;
    } else {
      path = hint;
      if (path.front() != '/') {
        size_t slash = cur_path.rfind('/');
        if (slash != std::string::npos) path = cur_path.substr(0, slash + 1) + path;
      }
    }
    if (s.confine && !user_named)
      if (Status st = CheckConfined(cur_path, path); !st)
        co_return MakeError(st.error().errnum(), "Backing file of '" + cur_path + "': " +
                                                     st.error().message());
    if (depth > kMaxBackingDepth)
      co_return MakeError(EMLINK, StrFormat("Backing chain of '%s' is too deep: more than %zu "
                                            "backing files",
                                            top.file()->filename().c_str(), kMaxBackingDepth));

    // The loop check comes before the open: a layer that is the top image
    // itself (opened read-write) must not be reported as a lock conflict.
    const std::string next_name = BackingFileName(mine, path);
    if (auto id = IdentityOf(next_name)) {
      for (const auto& [name, seen] : chain) {
        if (seen != id) continue;
        std::string loop;
        for (const auto& layer : chain) loop += "'" + layer.first + "' -> ";
        loop += "'" + next_name + "'";
        if (next_name != name) loop += " (the same file as '" + name + "')";
        co_return MakeError(ELOOP, "Backing file loop: " + loop);
      }
    }

    // QEMU records backing_format "vmdk" for parentFileNameHint.
    // A confined chain is VMDK throughout (no probing of what a hint names).
    if (!user_opts || s.confine) mine.set_default("driver", "vmdk");
    const bool next_is_vmdk = mine.peek("driver") == std::optional<std::string>("vmdk");
    Options deeper;
    std::optional<std::string> deeper_plain;
    if (next_is_vmdk) {
      if (s.confine) mine.set("confine-extents", "on");
      // The next layer's own "backing.*" options, still under that prefix
      // (this loop reads them as the next level's options).
      const Options next_level = mine.extract_prefix("backing");
      for (const auto& [k, v] : next_level.values()) deeper.set("backing." + k, v);
      deeper_plain = mine.take_string("backing");
      mine.set("backing", "");
    }
    Options wrapped;
    for (const auto& [k, v] : mine.values()) wrapped.set("backing." + k, v);
    OpenContext sub{ctx.loop, wrapped, /*read_only=*/true, {}, ctx.graph};
    auto child = co_await sub.open_child("backing", ChildRole::kBacking, path, true);
    if (!child) co_return std::unexpected(child.error().WithContext("Could not open backing file"));
    if (!*child) break;  // backing files not wanted (-U style open)
    std::shared_ptr<BlockNode> node = std::move(*child);
    cur->add_child("backing", ChildRole::kBacking, node);
    auto* next = next_is_vmdk ? dynamic_cast<VmdkNode*>(node.get()) : nullptr;
    if (!next) break;
    const std::string opened = node->file() ? node->file()->filename() : next_name;
    chain.emplace_back(opened, IdentityOf(opened));
    cur = next;
    if (deeper_plain) deeper.set("backing", *deeper_plain);
    deeper_storage = std::move(deeper);
    level_opts = &deeper_storage;
  }
  // Options naming layers below the end of the chain were not used.
  if (level_opts != &ctx.options)
    COBLK_CO_RETURN_IF_ERROR(level_opts->check_all_consumed("Block format 'vmdk'"));
  co_return OkStatus();
}

}  // namespace

Task<Result<std::shared_ptr<BlockNode>>> OpenVmdk(const BlockDriver* driver, OpenContext& ctx) {
  OpenSettings s;
  s.read_write = !ctx.read_only;
  s.check = ctx.check;
  auto cache = ctx.options.get_size("l2-cache-size", kDefaultL2CacheBytes);
  if (!cache) co_return std::unexpected(cache.error());
  s.cache_bytes = *cache;
  auto confine = ctx.options.get_bool("confine-extents", false);
  if (!confine) co_return std::unexpected(confine.error());
  s.confine = *confine;

  auto file = co_await ctx.open_child("file", ChildRole::kFile);
  if (!file) co_return std::unexpected(file.error());
  auto node = std::make_shared<VmdkNode>(driver, ctx.loop);
  node->cache_bytes = s.cache_bytes;
  node->add_child("file", ChildRole::kFile, *file);
  BlockNode& f = **file;

  if (f.size() < 4) co_return MakeError(EINVAL, "File is too small, not a valid image");
  uint8_t first[8] = {};
  COBLK_CO_RETURN_IF_ERROR(co_await f.pread(0, first, std::min<int64_t>(8, f.size())));
  const uint32_t magic = LoadBe32(first, 0);
  Status st;
  if (magic == kVmdk4Magic || magic == kVmdk3Magic || LoadLe64(first, 0) == kSeSparseConstMagic) {
    st = co_await OpenMonolithic(ctx, *node, f, magic, s);
  } else {
    auto text = co_await ReadDescriptorText(f, 0, kMaxDescriptorBytes);
    if (!text) co_return std::unexpected(text.error());
    node->descriptor_file = &f;
    st = co_await OpenDescriptorFile(ctx, *node, *text, f.filename(), s);
  }
  // QEMU's BDRV_MAX_LENGTH (INT64_MAX aligned down to 1 GiB): larger disks
  // overflow the generic layer's alignment arithmetic.
  constexpr int64_t kMaxDiskBytes = INT64_MAX & ~((int64_t{1} << 30) - 1);
  if (st && node->size() > kMaxDiskBytes)
    st = MakeError(EFBIG, "Image size too big: " + std::to_string(node->size()) + " bytes");
  if (st) st = co_await OpenBackingChain(ctx, *node, s);
  if (!st) {
    co_await node->close();
    co_return std::unexpected(st.error());
  }
  co_return node;
}

}  // namespace coblk::vmdk
