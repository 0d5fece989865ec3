#include "drivers/vmdk/vmdk_create.h"

#include <random>

#include "block/block_graph.h"
#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/create.h"
#include "drivers/vmdk/descriptor.h"
#include "drivers/vmdk/layout.h"
#include "drivers/vmdk/vmdk_node.h"

namespace coblk::vmdk {

namespace {

// streamOptimized images made by coblk follow the stream layout: header
// (grain directory "at end"), descriptor, grains from this sector on, then
// grain tables, grain directory, footer and end-of-stream marker.
constexpr uint64_t kStreamGrainStart = 128;

struct CreateRequest {
  int64_t size = 0;
  Subformat subformat = Subformat::kMonolithicSparse;
  AdapterType adapter = AdapterType::kIde;
  std::optional<std::string> backing_file;
  std::string hw_version;
  std::optional<std::string> tools_version;
  bool zeroed_grain = false;
};

Result<CreateRequest> ParseCreateOptions(Options& opts) {
  CreateRequest r;
  auto size = opts.get_size("size", 0);
  if (!size) return std::unexpected(size.error());
  if (*size > static_cast<uint64_t>(INT64_MAX) - 511) return MakeError(EFBIG, "Image size too big");
  // Whole sectors, as QEMU's vmdk_co_create_opts rounds the size up.
  r.size = static_cast<int64_t>((*size + 511) / 512 * 512);
  if (auto a = opts.take_string("adapter_type")) {
    auto parsed = ParseAdapterType(*a);
    if (!parsed) return MakeError(EINVAL, "invalid parameter value: " + *a);
    r.adapter = *parsed;
  }
  if (auto f = opts.take_string("subformat")) {
    auto parsed = ParseSubformat(*f);
    if (!parsed) return MakeError(EINVAL, "invalid parameter value: " + *f);
    r.subformat = *parsed;
  }
  r.backing_file = opts.take_string("backing_file");
  if (r.backing_file && r.backing_file->empty()) r.backing_file.reset();
  if (auto fmt = opts.take_string("backing_fmt"); fmt && *fmt != "vmdk")
    return MakeError(EINVAL, "backing_file must be a vmdk image");
  auto compat6 = opts.get_bool("compat6", false);
  if (!compat6) return std::unexpected(compat6.error());
  std::optional<std::string> hw = opts.take_string("hwversion");
  if (hw && *hw == "undefined") hw.reset();
  auto hw_version = ResolveHwVersion(*compat6, hw);
  if (!hw_version) return std::unexpected(hw_version.error());
  r.hw_version = *hw_version;
  r.tools_version = opts.take_string("toolsversion");
  if (!r.tools_version) r.tools_version = kDefaultToolsVersion;
  auto zg = opts.get_bool("zeroed_grain", false);
  if (!zg) return std::unexpected(zg.error());
  r.zeroed_grain = *zg;
  COBLK_RETURN_IF_ERROR(CheckCreateOptions(r.subformat, r.size, r.backing_file.has_value(), r.zeroed_grain));
  return r;
}

uint32_t RandomCid() {
  std::random_device rd;
  return static_cast<uint32_t>(rd());
}

// Creates (truncating) a host file and opens it read-write as a node.
Task<Result<std::shared_ptr<BlockNode>>> CreateHostFile(EventLoop& loop, const std::string& path) {
  const BlockDriver* file_drv = FindProtocolDriver("file");
  if (!file_drv) co_return MakeError(ENOTSUP, "The file protocol driver is not available");
  Options fopts;
  fopts.set("size", "0");
  COBLK_CO_RETURN_IF_ERROR(co_await file_drv->co_create(path, fopts, loop));
  BlockGraph graph(loop);
  Options o;
  o.set("driver", "file");
  o.set("filename", path);
  co_return co_await graph.open(std::move(o), OpenFlags{});
}

// QEMU's vmdk_init_extent for a sparse extent: header, then the redundant
// and primary grain directories; the grain tables stay zero (sparse file).
Task<Status> InitSparseExtent(BlockNode& f, int64_t size, bool zeroed_grain) {
  auto plan = PlanSparseExtent(size, false, zeroed_grain);
  if (!plan) co_return std::unexpected(plan.error());
  Sector header = plan->header.Encode();
  COBLK_CO_RETURN_IF_ERROR(co_await f.truncate(static_cast<int64_t>(plan->file_bytes()), true,
                                               PreallocMode::kOff));
  COBLK_CO_RETURN_IF_ERROR(co_await f.pwrite(0, header.data(), kSectorSize));
  auto rgd = BuildGrainDirectory(*plan, true);
  auto gd = BuildGrainDirectory(*plan, false);
  COBLK_CO_RETURN_IF_ERROR(co_await f.pwrite(static_cast<int64_t>(plan->header.rgd_offset * kSectorSize),
                                             rgd.data(), static_cast<int64_t>(rgd.size())));
  co_return co_await f.pwrite(static_cast<int64_t>(plan->header.gd_offset * kSectorSize), gd.data(),
                              static_cast<int64_t>(gd.size()));
}

// An empty stream: header, (descriptor written later), and at sector 128
// an empty grain directory, footer and end-of-stream marker.
Task<Status> InitStreamExtent(BlockNode& f, int64_t size) {
  auto plan = PlanSparseExtent(size, true, false);
  if (!plan) co_return std::unexpected(plan.error());
  Vmdk4Header h = plan->header;
  h.flags = kFlagNlDetect | kFlagCompress | kFlagMarker;
  h.rgd_offset = 0;
  h.gd_offset = kGdAtEnd;
  h.grain_offset = kStreamGrainStart;
  const uint64_t gd_sectors = plan->gd_sectors;
  std::vector<uint8_t> tail;
  Sector marker = EncodeMetadataMarker(MarkerType::kGrainDirectory, gd_sectors);
  tail.insert(tail.end(), marker.begin(), marker.end());
  tail.resize(tail.size() + gd_sectors * kSectorSize, 0);
  Vmdk4Header footer_header = h;
  footer_header.gd_offset = kStreamGrainStart + 1;
  auto footer = EncodeFooter(footer_header);
  tail.insert(tail.end(), footer.begin(), footer.end());
  Sector header = h.Encode();
  COBLK_CO_RETURN_IF_ERROR(co_await f.truncate(
      static_cast<int64_t>(kStreamGrainStart * kSectorSize + tail.size()), true, PreallocMode::kOff));
  COBLK_CO_RETURN_IF_ERROR(co_await f.pwrite(0, header.data(), kSectorSize));
  const int64_t end = static_cast<int64_t>(kStreamGrainStart * kSectorSize + tail.size());
  COBLK_CO_RETURN_IF_ERROR(co_await f.pwrite(static_cast<int64_t>(kStreamGrainStart * kSectorSize),
                                             tail.data(), static_cast<int64_t>(tail.size())));
  // O_DIRECT padding may have extended the file; the footer must end it.
  if (f.size() != end) COBLK_CO_RETURN_IF_ERROR(co_await f.truncate(end, true, PreallocMode::kOff));
  co_return OkStatus();
}

// The parent's CID, read through coblk's own vmdk driver.
Task<Result<uint32_t>> ParentCid(EventLoop& loop, const std::string& image_filename,
                                 const std::string& backing) {
  std::string path = backing;
  if (!path.empty() && path.front() != '/') {
    size_t slash = image_filename.rfind('/');
    if (slash != std::string::npos) path = image_filename.substr(0, slash + 1) + path;
  }
  BlockGraph graph(loop);
  Options o;
  o.set("filename", path);
  auto node = co_await graph.open(std::move(o), OpenFlags{.read_only = true, .probe_warning = false,
                                                          .no_backing = true});
  // The open's own error as it is (QEMU's blk_co_new_open): it already names
  // the file where that helps ("Could not open 'x': No such file ...").
  if (!node) co_return std::unexpected(node.error());
  auto* vmdk = dynamic_cast<VmdkNode*>(node->get());
  uint32_t cid = vmdk ? vmdk->cid : 0;
  std::string fmt((*node)->driver() ? (*node)->driver()->format_name() : "?");
  co_await (*node)->close();
  if (!vmdk) co_return MakeError(EINVAL, "Invalid backing file format: " + fmt + ". Must be vmdk");
  co_return cid;
}

}  // namespace

// In QEMU 7.2's order (its "Formatting" line follows it; -o help sorts).
const std::vector<CreateOption>& VmdkCreateOptions() {
  using T = CreateOption::Type;
  static const std::vector<CreateOption> opts = {
      {"adapter_type", T::kString,
       "Virtual adapter type, can be one of ide (default), lsilogic, buslogic or legacyESX", ""},
      {"backing_file", T::kString, "File name of a base image", ""},
      {"backing_fmt", T::kString, "Must be 'vmdk' if present", ""},
      {"compat6", T::kBool, "VMDK version 6 image", "off"},
      {"hwversion", T::kString, "VMDK hardware version", "undefined"},
      {"size", T::kSize, "Virtual disk size", ""},
      {"toolsversion", T::kString, "VMware guest tools version", ""},
      {"subformat", T::kString,
       "VMDK flat extent format, can be one of {monolithicSparse (default) | monolithicFlat | "
       "twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized} ",
       ""},
      {"zeroed_grain", T::kBool, "Enable efficient zero writes using the zeroed-grain GTE feature",
       ""},
  };
  return opts;
}

Task<Status> CreateVmdk(const std::string& filename, Options& opts, EventLoop& loop) {
  auto req = ParseCreateOptions(opts);
  if (!req) co_return std::unexpected(req.error());
  COBLK_CO_RETURN_IF_ERROR(opts.check_all_consumed("vmdk create"));
  auto parts = DecomposeFilename(filename);
  if (!parts) co_return std::unexpected(parts.error());

  uint32_t parent_cid = kNoParentCid;
  if (req->backing_file) {
    auto cid = co_await ParentCid(loop, filename, *req->backing_file);
    if (!cid) co_return std::unexpected(cid.error());
    parent_cid = *cid;
  }

  const bool flat = IsFlatSubformat(req->subformat);
  const bool split = IsSplitSubformat(req->subformat);
  const bool stream = req->subformat == Subformat::kStreamOptimized;
  const CreatePlan plan = PlanExtents(req->size, req->subformat);

  DescriptorSpec spec;
  spec.cid = RandomCid();
  spec.parent_cid = parent_cid;
  spec.subformat = req->subformat;
  spec.parent_file_name_hint = req->backing_file;
  spec.hw_version = req->hw_version;
  spec.size_bytes = req->size;
  spec.adapter = req->adapter;
  spec.tools_version = req->tools_version;

  // Every extent's name and size is known now: generate the descriptor
  // before any file exists, so that a name it cannot hold (a quote, a
  // control character) is refused without leaving files behind.
  if (plan.descriptor_is_extent) spec.extents.push_back({req->size, filename});
  for (size_t i = 0; i < plan.extent_sizes.size(); ++i) {
    spec.extents.push_back({plan.extent_sizes[i],
                            ExtentFileName(*parts, static_cast<int>(i + 1), flat, split)});
  }
  auto text = GenerateDescriptor(spec);
  if (!text) {
    co_return std::unexpected(
        text.error().WithContext("Could not create '" + filename + "'"));
  }
  if (plan.descriptor_is_extent && text->size() > kEmbeddedDescriptorBytes) {
    co_return MakeError(EINVAL, "Could not create '" + filename +
                                    "': Descriptor too large for the embedded descriptor area");
  }

  auto main = co_await CreateHostFile(loop, filename);
  if (!main) co_return std::unexpected(main.error());
  std::shared_ptr<BlockNode> main_node = *main;
  Status st;
  if (plan.descriptor_is_extent) {
    // (No co_await inside ?: — GCC 12 destroys such temporaries twice.)
    if (stream)
      st = co_await InitStreamExtent(*main_node, req->size);
    else
      st = co_await InitSparseExtent(*main_node, req->size, req->zeroed_grain);
  }
  for (size_t i = 0; st && i < plan.extent_sizes.size(); ++i) {
    const std::string path = ExtentFileName(*parts, static_cast<int>(i + 1), flat, split);
    auto ext = co_await CreateHostFile(loop, path);
    if (!ext) {
      st = std::unexpected(ext.error());
      break;
    }
    const int64_t size = plan.extent_sizes[i];
    if (flat)
      st = co_await (*ext)->truncate(size, true, PreallocMode::kOff);
    else
      st = co_await InitSparseExtent(**ext, size, req->zeroed_grain);
    if (st) st = co_await (*ext)->flush();
    co_await (*ext)->close();
  }
  if (st) {
    if (plan.descriptor_is_extent) {
      // Embedded at sector 1, in the 20-sector area the header reserves.
      st = co_await main_node->pwrite(static_cast<int64_t>(kEmbeddedDescriptorOffset),
                                      text->data(), static_cast<int64_t>(text->size()));
    } else {
      st = co_await main_node->truncate(static_cast<int64_t>(text->size()), true,
                                        PreallocMode::kOff);
      if (st) st = co_await main_node->pwrite(0, text->data(), static_cast<int64_t>(text->size()));
    }
  }
  if (st) st = co_await main_node->flush();
  co_await main_node->close();
  if (!st) co_return std::unexpected(st.error().WithContext("Could not create '" + filename + "'"));
  co_return OkStatus();
}

}  // namespace coblk::vmdk
