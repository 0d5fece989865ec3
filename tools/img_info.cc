// coblk-img info: qemu-img info's human and JSON output.
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "block/block_driver.h"
#include "tools/human_size.h"
#include "tools/img_commands.h"
#include "tools/info_dump.h"

namespace coblk::tools {

namespace {

// The backing file as the image resolves it (relative to the image's
// directory), for "backing file: x (actual path: y)".
std::string FullBackingName(const std::string& image, const std::string& backing) {
  if (backing.empty() || backing.front() == '/') return backing;
  size_t slash = image.rfind('/');
  if (slash == std::string::npos) return backing;
  return image.substr(0, slash + 1) + backing;
}

void PrintHuman(const ImageInfo& info) {
  std::printf("image: %s\n", info.filename.c_str());
  std::printf("file format: %s\n", info.format.c_str());
  std::printf("virtual size: %s (%lld bytes)\n",
              ImgSizeString(static_cast<uint64_t>(info.virtual_size)).c_str(),
              static_cast<long long>(info.virtual_size));
  std::printf("disk size: %s\n",
              info.actual_size < 0
                  ? "unavailable"
                  : ImgSizeString(static_cast<uint64_t>(info.actual_size)).c_str());
  if (info.encrypted) std::printf("encrypted: yes\n");
  if (info.cluster_size > 0) std::printf("cluster_size: %lld\n", static_cast<long long>(info.cluster_size));
  if (!info.backing_filename.empty()) {
    std::printf("backing file: %s", info.backing_filename.c_str());
    std::string full = FullBackingName(info.filename, info.backing_filename);
    if (full != info.backing_filename) std::printf(" (actual path: %s)", full.c_str());
    std::printf("\n");
    if (!info.backing_format.empty()) {
      std::printf("backing file format: %s\n", info.backing_format.c_str());
    }
  }
  if (!info.specific.values.empty() || !info.specific.children.empty()) {
    std::printf("Format specific information:\n");
    DumpInfoTree(info.specific, 1);
  }
}

// Key order of qemu-img 7.2's QAPI ImageInfo output.
void PrintJson(const ImageInfo& info, bool has_dirty_flag) {
  nlohmann::ordered_json j;
  if (!info.backing_filename.empty() && !info.backing_format.empty()) {
    j["backing-filename-format"] = info.backing_format;
  }
  j["virtual-size"] = info.virtual_size;
  j["filename"] = info.filename;
  if (info.cluster_size > 0) j["cluster-size"] = info.cluster_size;
  j["format"] = info.format;
  if (info.actual_size >= 0) j["actual-size"] = info.actual_size;
  if (info.encrypted) j["encrypted"] = true;
  if (!info.specific.values.empty() || !info.specific.children.empty()) {
    nlohmann::ordered_json spec;
    spec["type"] = info.format;
    spec["data"] = InfoTreeToJson(info.specific);
    j["format-specific"] = spec;
  }
  if (!info.backing_filename.empty()) {
    j["full-backing-filename"] = FullBackingName(info.filename, info.backing_filename);
    j["backing-filename"] = info.backing_filename;
  }
  if (has_dirty_flag) j["dirty-flag"] = false;
  std::printf("%s\n", JsonPretty(j).c_str());
}

}  // namespace

bool ParseImageQueryArgs(int argc, char** argv, const char* usage, ImageSpec* spec,
                         std::string* output) {
  enum { kOutput = 256, kImageOpts };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"format", required_argument, nullptr, 'f'},
      {"output", required_argument, nullptr, kOutput},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"force-share", no_argument, nullptr, 'U'},
      {nullptr, 0, nullptr, 0},
  };
  spec->read_only = true;
  *output = "human";
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, "+f:hU", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'f': spec->format = optarg; break;
      case 'U': spec->force_share = true; break;
      case kOutput: *output = optarg; break;
      case kImageOpts: spec->image_opts = true; break;
      case 'h':
      default:
        std::fprintf(stderr, "%s", usage);
        return false;
    }
  }
  if (*output != "human" && *output != "json") {
    ImgError("--output must be used with human or json as argument.");
    return false;
  }
  if (optind != argc - 1) {
    ImgError("Expecting one image file name");
    return false;
  }
  spec->filename = argv[optind];
  return true;
}

int ImgInfo(int argc, char** argv) {
  ImageSpec spec;
  std::string output;
  if (!ParseImageQueryArgs(argc, argv,
                           "usage: coblk-img info [-f fmt] [--output=ofmt] [-U] "
                           "[--image-opts] filename\n",
                           &spec, &output))
    return 1;
  auto img = ImgOpen(spec, /*no_backing=*/true);
  if (!img) return 1;
  BlockNode& node = img->blk->node();
  ImageInfo info = node.get_info();
  if (info.filename.empty()) info.filename = node.filename();
  if (info.format.empty()) info.format = std::string(node.driver()->format_name());
  // QEMU reports dirty-flag only for drivers with bdrv_get_info: formats.
  const bool has_dirty_flag = node.driver()->protocol_name().empty();
  if (output == "json") {
    PrintJson(info, has_dirty_flag);
  } else {
    PrintHuman(info);
  }
  return 0;
}

}  // namespace coblk::tools
