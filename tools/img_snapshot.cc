// coblk-img snapshot, amend and bitmap: qemu-img's arguments, opening and
// messages. No coblk driver has internal snapshots, amendable options or
// persistent dirty bitmaps (the driver interface has no call for them, as
// QEMU's raw and vmdk have none), so after the image opens every action
// but listing fails the way qemu-img 7.2 fails on a VMDK or raw image;
// `snapshot -l` lists nothing.
#include <getopt.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/img_commands.h"
#include "tools/progress.h"

namespace coblk::tools {

namespace {

bool IsHelpOption(const std::string& options) {
  // qemu's has_help_option: "help" or "?" as any of the comma-separated keys.
  size_t start = 0;
  while (start <= options.size()) {
    size_t end = options.find(',', start);
    if (end == std::string::npos) end = options.size();
    const std::string key = options.substr(start, end - start);
    if (key == "help" || key == "?") return true;
    start = end + 1;
  }
  return false;
}

// print_amend_option_help for a format none of whose drivers can amend.
int NoAmendment(const std::string& format) {
  if (!FindFormatDriver(format)) {
    ImgError("Unknown file format '%s'", format.c_str());
  } else {
    ImgError("Format driver '%s' does not support option amendment", format.c_str());
  }
  return 1;
}

}  // namespace

int ImgSnapshot(int argc, char** argv) {
  enum { kObject = 256, kImageOpts };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"object", required_argument, nullptr, kObject},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"force-share", no_argument, nullptr, 'U'},
      {nullptr, 0, nullptr, 0},
  };
  enum Action { kNone, kList, kApply, kCreate, kDelete } action = kNone;
  std::string name;
  ImageSpec spec;
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, ":la:c:d:hqU", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'h': return ImgHelp();
      case 'l':
      case 'a':
      case 'c':
      case 'd':
        if (action != kNone) return ImgErrorExit("Cannot mix '-l', '-a', '-c', '-d'");
        action = c == 'l' ? kList : c == 'a' ? kApply : c == 'c' ? kCreate : kDelete;
        if (c != 'l') name = optarg;
        break;
      case 'q': break;  // nothing is printed on success anyway
      case 'U': spec.force_share = true; break;
      case kImageOpts: spec.image_opts = true; break;
      case kObject: return ImgErrorExit("--object is not supported by coblk-img");
      default: return ImgBadOption(c, argv);
    }
  }
  if (optind != argc - 1) return ImgErrorExit("Expecting one image file name");
  spec.filename = argv[optind];
  spec.read_only = action == kList;  // the other actions open read-write
  if (spec.force_share && !spec.read_only) {
    ImgError("Could not open '%s': force-share=on can only be used with read-only images",
             spec.filename.c_str());
    return 1;
  }
  auto img = ImgOpen(spec);
  if (!img) return 1;
  int ret = 0;
  switch (action) {
    case kNone:
    case kList:
      break;  // no snapshots: qemu-img prints nothing
    case kCreate:
      ImgError("Could not create snapshot '%s': %d (%s)", name.c_str(), -ENOTSUP,
               std::strerror(ENOTSUP));
      ret = 1;
      break;
    case kApply:
      ImgError("Could not apply snapshot '%s': Block driver does not support snapshots",
               name.c_str());
      ret = 1;
      break;
    case kDelete:
      ImgError("Could not delete snapshot '%s': snapshot not found", name.c_str());
      ret = 1;
      break;
  }
  Status closed = img->blk->close();
  if (!closed && ret == 0) {
    ImgError("%s", closed.error().ToString().c_str());
    ret = 1;
  }
  return ret;
}

int ImgAmend(int argc, char** argv) {
  enum { kObject = 256, kImageOpts, kForce };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"object", required_argument, nullptr, kObject},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"force", no_argument, nullptr, kForce},
      {nullptr, 0, nullptr, 0},
  };
  ImageSpec spec;
  std::string options, cache = "writeback";
  bool progress = false, quiet = false;
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, ":ho:f:t:pq", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'h': return ImgHelp();
      case 'o':
        if (!options.empty()) options += ",";
        options += optarg;
        break;
      case 'f': spec.format = optarg; break;
      case 't': cache = optarg; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case kForce: break;
      case kImageOpts: spec.image_opts = true; break;
      case kObject: return ImgErrorExit("--object is not supported by coblk-img");
      default: return ImgBadOption(c, argv);
    }
  }
  if (options.empty()) return ImgErrorExit("Must specify options (-o)");
  if (quiet) progress = false;
  Progress prog(progress, 1.0f);
  // Every exit from here on ends the progress line, as qemu-img's "out:".
  auto finish = [&prog](int ret) {
    prog.end();
    return ret;
  };
  // With -f, option help needs no image.
  if (!spec.format.empty() && IsHelpOption(options)) return finish(NoAmendment(spec.format));
  if (optind != argc - 1) {
    ImgError("Expecting one image file name");
    return finish(1);
  }
  if (!ParseCacheMode(cache)) {
    ImgError("Invalid cache option: %s", cache.c_str());
    return finish(1);
  }
  spec.filename = argv[optind];
  spec.cache = cache;
  auto img = ImgOpen(spec);
  if (!img) return finish(1);
  const std::string format(img->blk->node().driver()->format_name());
  (void)img->blk->close();  // nothing was written
  return finish(NoAmendment(format));
}

int ImgBitmap(int argc, char** argv) {
  enum { kObject = 256, kImageOpts, kAdd, kRemove, kClear, kEnable, kDisable, kMerge };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"object", required_argument, nullptr, kObject},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"add", no_argument, nullptr, kAdd},
      {"remove", no_argument, nullptr, kRemove},
      {"clear", no_argument, nullptr, kClear},
      {"enable", no_argument, nullptr, kEnable},
      {"disable", no_argument, nullptr, kDisable},
      {"merge", required_argument, nullptr, kMerge},
      {nullptr, 0, nullptr, 0},
  };
  ImageSpec spec;
  std::vector<const char*> actions;  // in the order given
  bool add = false, merge = false;
  std::string source, source_fmt, granularity;
  optind = 0;
  for (int c; (c = getopt_long(argc, argv, ":b:f:F:g:h", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'h': return ImgHelp();
      case 'b': source = optarg; break;
      case 'f': spec.format = optarg; break;
      case 'F': source_fmt = optarg; break;
      case 'g': {
        int64_t g = 0;
        if (!ImgCvtNum("granularity", optarg, 0, INT64_MAX, &g)) return 1;
        granularity = optarg;
        break;
      }
      case kAdd: actions.push_back("add"); add = true; break;
      case kRemove: actions.push_back("remove"); break;
      case kClear: actions.push_back("clear"); break;
      case kEnable: actions.push_back("enable"); break;
      case kDisable: actions.push_back("disable"); break;
      case kMerge: actions.push_back("merge"); merge = true; break;
      case kImageOpts: spec.image_opts = true; break;
      case kObject: return ImgErrorExit("--object is not supported by coblk-img");
      default: return ImgBadOption(c, argv);
    }
  }
  // qemu-img 7.2's checks, in its order.
  if (actions.empty()) {
    ImgError("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
    return 1;
  }
  if (!granularity.empty() && !add) {
    ImgError("granularity only supported with --add");
    return 1;
  }
  if (!source_fmt.empty() && source.empty()) {
    ImgError("-F only supported with -b");
    return 1;
  }
  if (!source.empty() && !merge) {
    ImgError("Merge bitmap source file only supported with --merge");
    return 1;
  }
  if (optind != argc - 2) {
    ImgError("Expecting filename and bitmap name");
    return 1;
  }
  spec.filename = argv[optind];
  const std::string bitmap = argv[optind + 1];
  auto img = ImgOpen(spec);
  if (!img) return 1;
  // The first action fails: nothing can store a persistent bitmap, so none
  // exists to remove, clear, enable, disable or merge into.
  const std::string node = img->blk->node().node_name();
  (void)img->blk->close();
  if (!std::strcmp(actions.front(), "add")) {
    ImgError("Operation add on bitmap %s failed: Can't store persistent bitmaps to %s: %s",
             bitmap.c_str(), node.c_str(), std::strerror(ENOTSUP));
  } else {
    ImgError("Operation %s on bitmap %s failed: Dirty bitmap '%s' not found", actions.front(),
             bitmap.c_str(), bitmap.c_str());
  }
  return 1;
}

}  // namespace coblk::tools
