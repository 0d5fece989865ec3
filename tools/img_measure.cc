// coblk-img measure: qemu-img 7.2's measure, arguments, checks and messages
// in its order. The figures come from the output format:
//   raw: required = fully allocated = the virtual size (--size rounded up to
//        a sector, or the input's size), QEMU's raw_measure;
//   vmdk: QEMU 7.2's vmdk driver has no size measurement, so coblk-img
//        refuses with QEMU's message, for every subformat.
#include <getopt.h>

#include <cstdio>
#include <string>

#include "block/block_driver.h"
#include "tools/img_commands.h"

namespace coblk::tools {

namespace {

bool IsCreateOption(const BlockDriver* drv, const std::string& name) {
  if (!drv) return false;
  for (const CreateOption& o : drv->create_options()) {
    if (o.name == name) return true;
  }
  return false;
}

}  // namespace

int ImgMeasure(int argc, char** argv) {
  enum { kImageOpts = 256, kOutput, kSize, kObject };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"object", required_argument, nullptr, kObject},
      {"output", required_argument, nullptr, kOutput},
      {"size", required_argument, nullptr, kSize},
      {"force-share", no_argument, nullptr, 'U'},
      {nullptr, 0, nullptr, 0},
  };
  ImageSpec in;
  in.read_only = true;
  std::string out_fmt = "raw", options, snapshot;
  bool json = false;
  int64_t img_size = -1;
  optind = 0;
  // qemu-img measure lets getopt print its own message for an unknown
  // option, then prints the help and exits 0.
  opterr = 1;
  for (int c; (c = getopt_long(argc, argv, "hf:O:o:l:U", kLong, nullptr)) != -1;) {
    switch (c) {
      case '?':
      case 'h': return ImgHelp();
      case 'f': in.format = optarg; break;
      case 'O': out_fmt = optarg; break;
      case 'o': options += (options.empty() ? "" : ",") + std::string(optarg); break;
      case 'l': snapshot = optarg; break;
      case 'U': in.force_share = true; break;
      case kImageOpts: in.image_opts = true; break;
      case kObject: ImgError("--object is not supported by coblk-img"); return 1;
      case kOutput:
        if (std::string(optarg) == "json") {
          json = true;
        } else if (std::string(optarg) == "human") {
          json = false;
        } else {
          ImgError("--output must be used with human or json as argument.");
          return 1;
        }
        break;
      case kSize:
        if (!ImgCvtNum("image size", optarg, 0, INT64_MAX, &img_size)) return 1;
        break;
    }
  }
  if (argc - optind > 1) {
    ImgError("At most one filename argument is allowed.");
    return 1;
  }
  const bool have_file = argc - optind == 1;
  if (have_file) in.filename = argv[optind];
  if (!have_file && (in.image_opts || !in.format.empty() || !snapshot.empty())) {
    ImgError("--image-opts, -f, and -l require a filename argument.");
    return 1;
  }
  if (have_file && img_size >= 0) {
    ImgError("--size N cannot be used together with a filename.");
    return 1;
  }
  if (!have_file && img_size < 0) {
    ImgError("Either --size N or one filename must be specified.");
    return 1;
  }

  std::unique_ptr<OpenedImage> src;
  if (have_file) {
    src = ImgOpen(in);
    if (!src) return 1;
    if (!snapshot.empty()) {
      // No coblk format has internal snapshots (nor has QEMU's vmdk or raw).
      ImgError("Failed to load snapshot: Block format '%s' used by device '' does not support "
               "temporarily loading internal snapshots",
               std::string(src->blk->node().driver()->format_name()).c_str());
      return 1;
    }
  }
  const BlockDriver* drv = FindFormatDriver(out_fmt);
  if (!drv) drv = FindProtocolDriver(out_fmt);
  if (!drv) {
    ImgError("Unknown file format '%s'", out_fmt.c_str());
    return 1;
  }
  // Protocols can create (a file of a size); formats without create
  // options (filters) cannot.
  if (drv->protocol_name().empty() && drv->create_options().empty()) {
    ImgError("Format driver '%s' does not support image creation", out_fmt.c_str());
    return 1;
  }
  Options opts;
  if (!options.empty()) {
    Result<Options> parsed = Options::Parse(options);
    if (!parsed) {
      ImgError("%s", parsed.error().message().c_str());
      ImgError("Invalid options for file format '%s'", out_fmt.c_str());
      return 1;
    }
    opts = std::move(*parsed);
    const BlockDriver* proto = FindProtocolDriver("file");
    for (const auto& [key, value] : opts.values()) {
      if (!IsCreateOption(drv, key) && !IsCreateOption(proto, key)) {
        ImgError("Invalid parameter '%s'", key.c_str());
        ImgError("Invalid options for file format '%s'", out_fmt.c_str());
        return 1;
      }
    }
  }
  if (out_fmt != "raw") {
    ImgError("Block driver '%s' does not support size measurement", out_fmt.c_str());
    return 1;
  }
  // --size rounds up to a sector, in 64 bits (INT64_MAX gives 2^63, as
  // with qemu-img); an input counts with its virtual size.
  const uint64_t required = src ? static_cast<uint64_t>(src->blk->size())
                                : (static_cast<uint64_t>(img_size) + 511) / 512 * 512;
  // Unallocated sectors count towards a raw file's size.
  const uint64_t fully_allocated = required;
  if (json) {
    std::printf("{\n    \"required\": %llu,\n    \"fully-allocated\": %llu\n}\n",
                static_cast<unsigned long long>(required),
                static_cast<unsigned long long>(fully_allocated));
  } else {
    std::printf("required size: %llu\nfully allocated size: %llu\n",
                static_cast<unsigned long long>(required),
                static_cast<unsigned long long>(fully_allocated));
  }
  return 0;
}

}  // namespace coblk::tools
