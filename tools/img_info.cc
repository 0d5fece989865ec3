// coblk-img info: qemu-img info's human and JSON output.
#include <getopt.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

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

// qemu-img 7.2's QAPI ImageInfo (JsonPretty puts the keys in QEMU's order).
nlohmann::ordered_json InfoJson(const ImageInfo& info, bool has_dirty_flag) {
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
  return j;
}

}  // namespace

int ParseImageQueryArgs(int argc, char** argv, ImageSpec* spec, std::string* output,
                        QueryExtras* extra) {
  enum { kOutput = 256, kImageOpts, kBackingChain, kStartOffset, kMaxLength, kObject };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"format", required_argument, nullptr, 'f'},
      {"output", required_argument, nullptr, kOutput},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"force-share", no_argument, nullptr, 'U'},
      {"backing-chain", no_argument, nullptr, kBackingChain},
      {"start-offset", required_argument, nullptr, kStartOffset},
      {"max-length", required_argument, nullptr, kMaxLength},
      {"object", required_argument, nullptr, kObject},
      {nullptr, 0, nullptr, 0},
  };
  spec->read_only = true;
  *output = "human";
  // A size as qemu-img's cvtnum takes it: k, M, G, ... suffixes, hex,
  // 0 to INT64_MAX.
  auto number = [](const char* what, const char* text, int64_t* out) {
    return ImgCvtNum(what, text, 0, INT64_MAX, out);
  };
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, ":f:hU", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'f': spec->format = optarg; break;
      case 'U': spec->force_share = true; break;
      case 'h': return ImgHelp();
      case kOutput: *output = optarg; break;
      case kImageOpts: spec->image_opts = true; break;
      case kBackingChain:
        if (!extra->allow_backing_chain) return ImgBadOption('?', argv);
        extra->backing_chain = true;
        break;
      case kStartOffset:
        if (!extra->allow_range) return ImgBadOption('?', argv);
        if (!number("start offset", optarg, &extra->start_offset)) return 1;
        break;
      case kMaxLength:
        if (!extra->allow_range) return ImgBadOption('?', argv);
        if (!number("max length", optarg, &extra->max_length)) return 1;
        break;
      case kObject: return ImgErrorExit("--object is not supported by coblk-img");
      default: return ImgBadOption(c, argv);
    }
  }
  if (optind != argc - 1) return ImgErrorExit("Expecting one image file name");
  if (*output != "human" && *output != "json") {
    ImgError("--output must be used with human or json as argument.");
    return 1;
  }
  // qemu-img map computes start + length in int64_t: past INT64_MAX the sum
  // overflows (to a negative end: an empty map, whatever the image holds).
  if (extra->max_length != -1 && extra->max_length > INT64_MAX - extra->start_offset) {
    ImgError("Invalid max length specified. The start offset plus the max length must not be "
             "more than %" PRId64 ".",
             INT64_MAX);
    return 1;
  }
  spec->filename = argv[optind];
  return -1;
}

int ImgInfo(int argc, char** argv) {
  ImageSpec spec;
  std::string output;
  QueryExtras extra;
  extra.allow_backing_chain = true;
  if (int r = ParseImageQueryArgs(argc, argv, &spec, &output, &extra); r >= 0) return r;
  // Without --backing-chain the backing file is not opened (a missing one
  // is no error), as qemu-img info does.
  auto img = ImgOpen(spec, /*no_backing=*/!extra.backing_chain);
  if (!img) return 1;
  std::vector<ImageInfo> chain;
  std::vector<bool> dirty_flag;
  for (BlockNode* node = &img->blk->node(); node;) {
    ImageInfo info = node->get_info();
    if (info.filename.empty()) info.filename = node->filename();
    if (info.format.empty()) info.format = std::string(node->driver()->format_name());
    // QEMU reports dirty-flag only for drivers with bdrv_get_info: formats.
    dirty_flag.push_back(node->driver()->protocol_name().empty());
    chain.push_back(std::move(info));
    if (!extra.backing_chain) break;
    node = node->backing();
  }
  if (output == "json") {
    if (!extra.backing_chain) {
      std::printf("%s\n", JsonPretty(InfoJson(chain[0], dirty_flag[0])).c_str());
    } else {
      nlohmann::ordered_json all = nlohmann::ordered_json::array();
      for (size_t i = 0; i < chain.size(); ++i) all.push_back(InfoJson(chain[i], dirty_flag[i]));
      std::printf("%s\n", JsonPretty(all).c_str());
    }
  } else {
    for (size_t i = 0; i < chain.size(); ++i) {
      if (i > 0) std::printf("\n");
      PrintHuman(chain[i]);
    }
  }
  return 0;
}

}  // namespace coblk::tools
