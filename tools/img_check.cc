// coblk-img check: runs the driver's check (optionally repairing) and
// reports like qemu-img check, with its exit codes (0 clean, 2 corruptions,
// 3 leaks or check errors, 63 unsupported, 1 other failure).
#include <getopt.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "coroutine/sync_wait.h"
#include "tools/img_commands.h"

namespace coblk::tools {

namespace {

bool HasClusterStats(const CheckResult& r) {
  return r.total_clusters != 0 && r.allocated_clusters != 0 && r.fragmented_clusters >= 0 &&
         r.compressed_clusters >= 0;
}

void PrintCheck(const CheckResult& r, bool quiet) {
  if (quiet) return;
  if (!(r.corruptions || r.leaks || r.check_errors)) {
    std::printf("No errors were found on the image.\n");
  } else {
    if (r.corruptions) {
      std::printf("\n%" PRId64 " errors were found on the image.\n"
                  "Data may be corrupted, or further writes to the image may corrupt it.\n",
                  r.corruptions);
    }
    if (r.leaks) {
      std::printf("\n%" PRId64 " leaked clusters were found on the image.\n"
                  "This means waste of disk space, but no harm to data.\n",
                  r.leaks);
    }
    if (r.check_errors) {
      std::printf("\n%" PRId64 " internal errors have occurred during the check.\n",
                  r.check_errors);
    }
  }
  // QEMU's line needs all four figures; drivers that do not compute the
  // fragmented and compressed counts (vmdk, like QEMU's) get no line.
  if (HasClusterStats(r)) {
    auto percent = [&](int64_t n) {
      return static_cast<double>(n) * 100.0 / static_cast<double>(r.total_clusters);
    };
    std::printf("%" PRId64 "/%" PRId64 " = %0.2f%% allocated, %0.2f%% fragmented, "
                "%0.2f%% compressed clusters\n",
                r.allocated_clusters, r.total_clusters, percent(r.allocated_clusters),
                percent(r.fragmented_clusters), percent(r.compressed_clusters));
  }
  if (r.image_end_offset) std::printf("Image end offset: %" PRId64 "\n", r.image_end_offset);
}

}  // namespace

int ImgCheck(int argc, char** argv) {
  enum { kOutput = 256, kImageOpts };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"format", required_argument, nullptr, 'f'},
      {"repair", required_argument, nullptr, 'r'},
      {"output", required_argument, nullptr, kOutput},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"force-share", no_argument, nullptr, 'U'},
      {nullptr, 0, nullptr, 0},
  };
  ImageSpec spec;
  spec.read_only = true;
  bool fix = false, quiet = false;
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, "+f:hr:qU", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'f': spec.format = optarg; break;
      case 'r':
        if (std::strcmp(optarg, "leaks") && std::strcmp(optarg, "all")) {
          ImgError("Unknown option value for -r (expecting 'leaks' or 'all'): %s", optarg);
          return 1;
        }
        fix = true;  // coblk's check has one repair level
        spec.read_only = false;
        break;
      case 'q': quiet = true; break;
      case 'U': spec.force_share = true; break;
      case kOutput:
        if (std::strcmp(optarg, "human")) {
          ImgError("--output must be used with human as argument.");
          return 1;
        }
        break;
      case kImageOpts: spec.image_opts = true; break;
      case 'h':
      default:
        std::fprintf(stderr, "usage: coblk-img check [-f fmt] [-r [leaks | all]] [-q] [-U] "
                             "[--image-opts] filename\n");
        return 1;
    }
  }
  if (optind != argc - 1) {
    ImgError("Expecting one image file name");
    return 1;
  }
  spec.filename = argv[optind];
  auto img = ImgOpen(spec);
  if (!img) return 1;
  BlockNode& node = img->blk->node();
  Result<CheckResult> r = sync_wait(*img->loop, node.check(fix));
  if (!r) {
    if (r.error().errnum() == ENOTSUP) {
      ImgError("This image format does not support checks");
      return 63;
    }
    ImgError("Check failed: %s", std::strerror(r.error().errnum()));
    return 1;
  }
  for (const std::string& m : r->messages) std::fprintf(stderr, "%s\n", m.c_str());
  if (r->corruptions_fixed || r->leaks_fixed) {
    if (!quiet) {
      std::printf("The following inconsistencies were found and repaired:\n\n"
                  "    %" PRId64 " leaked clusters\n"
                  "    %" PRId64 " corruptions\n\n"
                  "Double checking the fixed image now...\n",
                  r->leaks_fixed, r->corruptions_fixed);
    }
    Result<CheckResult> again = sync_wait(*img->loop, node.check(false));
    if (!again) {
      ImgError("Check failed: %s", std::strerror(again.error().errnum()));
      return 1;
    }
    for (const std::string& m : again->messages) std::fprintf(stderr, "%s\n", m.c_str());
    r = std::move(again);
  }
  PrintCheck(*r, quiet);
  if (r->check_errors) return 3;
  if (r->corruptions) return 2;
  if (r->leaks) return 3;
  return 0;
}

}  // namespace coblk::tools
