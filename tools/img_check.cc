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
#include "tools/info_dump.h"

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

// qemu-img's ImageCheck in JSON: optional members only when non-zero; the
// cluster statistics only when the driver computes them all (see PrintCheck).
nlohmann::ordered_json CheckJson(const CheckResult& r, const std::string& filename,
                                 const std::string& format) {
  nlohmann::ordered_json j;
  j["filename"] = filename;
  j["format"] = format;
  j["check-errors"] = r.check_errors;
  auto optional = [&](const char* key, int64_t v) {
    if (v != 0) j[key] = v;
  };
  optional("image-end-offset", r.image_end_offset);
  optional("corruptions", r.corruptions);
  optional("leaks", r.leaks);
  optional("corruptions-fixed", r.corruptions_fixed);
  optional("leaks-fixed", r.leaks_fixed);
  if (HasClusterStats(r)) {
    optional("total-clusters", r.total_clusters);
    optional("allocated-clusters", r.allocated_clusters);
    optional("fragmented-clusters", r.fragmented_clusters);
    optional("compressed-clusters", r.compressed_clusters);
  }
  return j;
}

int ImgCheck(int argc, char** argv) {
  enum { kOutput = 256, kImageOpts, kObject };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"format", required_argument, nullptr, 'f'},
      {"repair", required_argument, nullptr, 'r'},
      {"output", required_argument, nullptr, kOutput},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"force-share", no_argument, nullptr, 'U'},
      {"object", required_argument, nullptr, kObject},
      {nullptr, 0, nullptr, 0},
  };
  ImageSpec spec;
  spec.read_only = true;
  // qemu-img check's default cache mode (-T): the walk's many small table
  // reads go through the page cache instead of O_DIRECT.
  spec.cache = "writeback";
  // As qemu-img check (BDRV_O_CHECK): a VMDK stream cut before its footer
  // opens for the check to report and repair it.
  spec.check = true;
  uint32_t fix = 0;
  bool quiet = false;
  std::string output = "human";
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, ":hf:r:T:qU", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'h': return ImgHelp();
      case 'f': spec.format = optarg; break;
      case 'r':
        if (std::strcmp(optarg, "leaks") && std::strcmp(optarg, "all")) {
          return ImgErrorExit("Unknown option value for -r (expecting 'leaks' or 'all'): %s",
                              optarg);
        }
        fix = std::strcmp(optarg, "all") ? kCheckFixLeaks : kCheckFixAll;
        spec.read_only = false;
        break;
      case 'T': spec.cache = optarg; break;
      case 'q': quiet = true; break;
      case 'U': spec.force_share = true; break;
      case kOutput: output = optarg; break;
      case kImageOpts: spec.image_opts = true; break;
      case kObject: return ImgErrorExit("--object is not supported by coblk-img");
      default: return ImgBadOption(c, argv);
    }
  }
  if (optind != argc - 1) return ImgErrorExit("Expecting one image file name");
  if (output != "human" && output != "json") {
    ImgError("--output must be used with human or json as argument.");
    return 1;
  }
  const bool json = output == "json";
  spec.filename = argv[optind];
  auto img = ImgOpen(spec);
  if (!img) return 1;
  BlockNode& node = img->blk->node();
  Result<CheckResult> r = sync_wait(*img->loop, node.check(fix));
  if (!r) {
    if (r.error().errnum() == ENOTSUP) {
      // "This image format does not support checks" (qemu-img's words,
      // from BlockNode's default), or what the driver cannot repair.
      ImgError("%s", r.error().message().c_str());
      return 63;
    }
    ImgError("Check failed: %s", std::strerror(r.error().errnum()));
    return 1;
  }
  for (const std::string& m : r->messages) std::fprintf(stderr, "%s\n", m.c_str());
  if (r->corruptions_fixed || r->leaks_fixed) {
    if (!quiet && !json) {
      std::printf("The following inconsistencies were found and repaired:\n\n"
                  "    %" PRId64 " leaked clusters\n"
                  "    %" PRId64 " corruptions\n\n"
                  "Double checking the fixed image now...\n",
                  r->leaks_fixed, r->corruptions_fixed);
    }
    Result<CheckResult> again = sync_wait(*img->loop, node.check(0));
    if (!again) {
      ImgError("Check failed: %s", std::strerror(again.error().errnum()));
      return 1;
    }
    for (const std::string& m : again->messages) std::fprintf(stderr, "%s\n", m.c_str());
    again->corruptions_fixed = r->corruptions_fixed;
    again->leaks_fixed = r->leaks_fixed;
    r = std::move(again);
  }
  if (json) {
    if (!quiet) {
      std::printf("%s\n", JsonPretty(CheckJson(*r, spec.filename,
                                               std::string(node.driver()->format_name())))
                               .c_str());
    }
  } else {
    PrintCheck(*r, quiet);
  }
  // qemu-img: internal errors during the check mean it did not complete.
  if (r->check_errors) {
    ImgError("Check failed");
    return 1;
  }
  if (r->corruptions) return 2;
  if (r->leaks) return 3;
  return 0;
}

}  // namespace coblk::tools
