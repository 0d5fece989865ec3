// coblk-img resize: qemu-img resize's arguments and messages. Formats that
// cannot change size (VMDK, as in QEMU) refuse with QEMU's message.
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "coroutine/sync_wait.h"
#include "tools/img_commands.h"

namespace coblk::tools {

int ImgResize(int argc, char** argv) {
  enum { kObject = 256, kImageOpts, kPreallocation, kShrink };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"object", required_argument, nullptr, kObject},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"preallocation", required_argument, nullptr, kPreallocation},
      {"shrink", no_argument, nullptr, kShrink},
      {nullptr, 0, nullptr, 0},
  };
  // As qemu-img: the size is taken off the end first, so "-4M" is not an
  // option to getopt.
  if (argc < 3) {
    for (int i = 1; i < argc; ++i) {
      if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) return ImgHelp();
    }
    return ImgErrorExit("Not enough arguments");
  }
  const std::string size_text = argv[--argc];
  ImageSpec spec;
  bool quiet = false, shrink = false;
  PreallocMode prealloc = PreallocMode::kOff;
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, ":f:hq", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'h': return ImgHelp();
      case 'f': spec.format = optarg; break;
      case 'q': quiet = true; break;
      case kImageOpts: spec.image_opts = true; break;
      case kShrink: shrink = true; break;
      case kPreallocation:
        if (!std::strcmp(optarg, "off")) {
          prealloc = PreallocMode::kOff;
        } else if (!std::strcmp(optarg, "metadata")) {
          prealloc = PreallocMode::kMetadata;
        } else if (!std::strcmp(optarg, "falloc")) {
          prealloc = PreallocMode::kFalloc;
        } else if (!std::strcmp(optarg, "full")) {
          prealloc = PreallocMode::kFull;
        } else {
          ImgError("Invalid preallocation mode '%s'", optarg);
          return 1;
        }
        break;
      case kObject: return ImgErrorExit("--object is not supported by coblk-img");
      default: return ImgBadOption(c, argv);
    }
  }
  if (optind != argc - 1) return ImgErrorExit("Expecting image file name and size");
  spec.filename = argv[optind];

  int relative = 0;
  std::string number = size_text;
  if (!number.empty() && (number[0] == '+' || number[0] == '-')) {
    relative = number[0] == '-' ? -1 : 1;
    number.erase(0, 1);
  }
  Result<uint64_t> n = ParseSize(number);
  if (!n || *n > static_cast<uint64_t>(INT64_MAX)) {
    ImgError("Parameter 'size' expects a non-negative number below 2^64");
    std::fprintf(stderr, "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
                         "peta-\nand exabytes, respectively.\n");
    return 1;
  }
  auto img = ImgOpen(spec);
  if (!img) return 1;
  BlockBackend& blk = *img->blk;
  const int64_t current = blk.size();
  int64_t total = static_cast<int64_t>(*n);
  if (relative) total = current + relative * total;
  if (total <= 0) {
    ImgError("New image size must be positive");
    return 1;
  }
  if (total < current && !shrink) {
    ImgError("Use the --shrink option to perform a shrink operation.");
    std::fprintf(stderr, "coblk-img: warning: Shrinking an image will delete all data beyond the "
                         "shrunken image's end. Before performing such an operation, make sure "
                         "there is no important data there.\n");
    return 1;
  }
  if (total < current && prealloc != PreallocMode::kOff) {
    ImgError("Preallocation can only be used for growing images");
    return 1;
  }
  Status st = sync_wait(*img->loop, blk.node().truncate(total, false, prealloc));
  if (!st) {
    if (st.error().errnum() == ENOTSUP &&
        blk.node().driver()->format_name() != "raw") {
      ImgError("Image format driver does not support resize");
    } else {
      ImgError("%s", st.error().ToString().c_str());
    }
    return 1;
  }
  Status closed = blk.close();
  if (!closed) {
    ImgError("%s", closed.error().ToString().c_str());
    return 1;
  }
  if (!quiet) std::printf("Image resized.\n");
  return 0;
}

}  // namespace coblk::tools
