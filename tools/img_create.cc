// coblk-img create: qemu-img create's options, messages and output.
#include <getopt.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "block/block_driver.h"
#include "block/block_graph.h"
#include "coroutine/sync_wait.h"
#include "tools/img_commands.h"

namespace coblk::tools {

namespace {

const char* TypeName(CreateOption::Type t) {
  switch (t) {
    case CreateOption::Type::kString: return "str";
    case CreateOption::Type::kSize: return "size";
    case CreateOption::Type::kBool: return "bool (on/off)";
    case CreateOption::Type::kNumber: return "num";
  }
  return "str";
}

bool HasOption(const BlockDriver& drv, const std::string& name) {
  for (const CreateOption& o : drv.create_options()) {
    if (o.name == name) return true;
  }
  return false;
}

// qemu_opts_print as bdrv_img_create uses it: "fmt=vmdk size=1048576
// compat6=off hwversion=undefined": the size first (QEMU's create option
// lists start with it), then every other option in the driver's order, with
// its given value, else its default when the driver declares one (an empty
// default_value means none, like a NULL def_value_str); sizes as byte counts.
std::string DescribeOptions(const BlockDriver& drv, const Options& opts) {
  std::string out = "fmt=" + std::string(drv.format_name());
  auto append = [&](const CreateOption& o) {
    std::optional<std::string> v = opts.peek(o.name);
    if (!v && !o.default_value.empty()) v = o.default_value;
    if (!v) return;
    if (o.type == CreateOption::Type::kSize) {
      if (Result<uint64_t> n = ParseSize(*v)) v = std::to_string(*n);
    }
    out += " " + o.name + "=" + *v;
  };
  const std::vector<CreateOption>& all = drv.create_options();
  for (const CreateOption& o : all) {
    if (o.name == "size") append(o);
  }
  for (const CreateOption& o : all) {
    if (o.name != "size") append(o);
  }
  return out;
}

struct BackingFacts {
  int64_t size = 0;
  std::string format;  // the driver that opened it (probed without -F)
};

// Without a size, qemu-img takes the backing file's; without -F it names
// the format it detected in its refusal.
Result<BackingFacts> OpenBacking(const std::string& backing, const std::string& backing_fmt) {
  auto loop = EventLoop::Create();
  if (!loop) return std::unexpected(loop.error());
  (*loop)->make_current();
  OpenFlags flags;
  flags.read_only = true;
  flags.probe_warning = false;
  Options opts;
  if (!backing_fmt.empty()) opts.set("driver", backing_fmt);
  auto blk = BlockBackend::Open(**loop, backing, std::move(opts), flags);
  if (!blk) return std::unexpected(blk.error());
  BackingFacts facts{(*blk)->size(), std::string((*blk)->node().driver()->format_name())};
  (void)(*blk)->close();
  return facts;
}

}  // namespace

// qemu_opts_print_help: sorted by name, help aligned at column 24.
void PrintCreateHelp(const BlockDriver& drv) {
  std::vector<CreateOption> opts = drv.create_options();
  std::sort(opts.begin(), opts.end(),
            [](const CreateOption& a, const CreateOption& b) { return a.name < b.name; });
  std::printf("Supported %s options:\n", std::string(drv.format_name()).c_str());
  for (const CreateOption& o : opts) {
    std::string line = "  " + o.name + "=<" + TypeName(o.type) + ">";
    if (!o.help.empty()) {
      if (line.size() < 24) line.append(24 - line.size(), ' ');
      line += " - " + o.help;
    }
    std::printf("%s\n", line.c_str());
  }
  std::printf("\nThe protocol level may support further options.\n"
              "Specify the target filename to include those options.\n");
}

int ImgCreate(int argc, char** argv) {
  std::string fmt = "raw", backing, backing_fmt, options;
  bool quiet = false, unsafe = false;
  optind = 0;
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  for (int c; (c = getopt_long(argc, argv, ":F:b:f:ho:qu", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'F': backing_fmt = optarg; break;
      case 'b': backing = optarg; break;
      case 'f': fmt = optarg; break;
      case 'o':
        if (!options.empty()) options += ",";
        options += optarg;
        break;
      case 'q': quiet = true; break;
      case 'u': unsafe = true; break;  // do not open the backing file (given a size)
      case 'h': return ImgHelp();
      default: return ImgBadOption(c, argv);
    }
  }
  const BlockDriver* drv = FindFormatDriver(fmt);
  const bool want_help = options == "help" || options == "?" ||
                         options.ends_with(",help") || options.ends_with(",?");
  if (want_help) {
    if (!drv) {
      ImgError("Unknown file format '%s'", fmt.c_str());
      return 1;
    }
    PrintCreateHelp(*drv);
    return 0;
  }
  if (optind >= argc) return ImgErrorExit("Expecting image file name");
  const std::string filename = argv[optind++];
  if (!drv) {
    ImgError("%s: Unknown file format '%s'", filename.c_str(), fmt.c_str());
    return 1;
  }
  Result<Options> opts = options.empty() ? Result<Options>(Options()) : Options::Parse(options);
  if (!opts) {
    ImgError("Invalid option list: %s", options.c_str());
    return 1;
  }
  std::optional<uint64_t> size_arg;
  if (optind < argc) {
    Result<uint64_t> size = ParseSize(argv[optind++]);
    if (!size || *size > static_cast<uint64_t>(INT64_MAX)) {
      ImgError("Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
      ImgError("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
      return 1;
    }
    size_arg = *size;
  }
  if (optind < argc) return ImgErrorExit("Unexpected argument: %s", argv[optind]);
  // Like qemu-img, options are checked against the driver's list before
  // anything is printed or created.
  if (!drv->create_options().empty()) {
    for (const auto& [key, value] : opts->values()) {
      if (!HasOption(*drv, key)) {
        ImgError("%s: Invalid parameter '%s'", filename.c_str(), key.c_str());
        return 1;
      }
    }
  }
  // qemu-img's bdrv_img_create: a size in -o and one as an argument is an
  // error, even when both say the same.
  if (size_arg) {
    if (opts->has("size")) {
      ImgError("%s: The image size must be specified only once", filename.c_str());
      return 1;
    }
    opts->set("size", std::to_string(*size_arg));
  }
  if (!backing.empty()) {
    if (!HasOption(*drv, "backing_file")) {
      ImgError("%s: Backing file not supported for file format '%s'", filename.c_str(),
               fmt.c_str());
      return 1;
    }
    opts->set("backing_file", backing);
    if (!backing_fmt.empty()) opts->set("backing_fmt", backing_fmt);
  }
  // -o backing_file=... is the same request as -b.
  if (backing.empty() && opts->has("backing_file")) {
    backing = *opts->peek("backing_file");
    if (backing_fmt.empty() && opts->has("backing_fmt")) backing_fmt = *opts->peek("backing_fmt");
  }
  // qemu-img 7.2 refuses a backing file without its format (probing it is
  // unsafe); with -u it does not even open the backing file to say which
  // format it found.
  if (!backing.empty() && backing_fmt.empty() && unsafe) {
    ImgError("%s: Backing file specified without backing format", filename.c_str());
    return 1;
  }
  if (!opts->has("size") && backing.empty()) {
    ImgError("%s: Image creation needs a size parameter", filename.c_str());
    return 1;
  }
  // qemu-img opens the backing file before formatting (to take its size, or
  // to make sure it exists) unless -u is given with a size.
  if (!backing.empty() && !(unsafe && opts->has("size"))) {
    // A relative backing name is relative to the new image's directory.
    std::string backing_path = backing;
    if (const size_t slash = filename.rfind('/');
        slash != std::string::npos && !backing.starts_with('/') && !backing.starts_with("json:")) {
      backing_path = filename.substr(0, slash + 1) + backing;
    }
    Result<BackingFacts> facts = OpenBacking(backing_path, backing_fmt);
    if (!facts) {
      ImgError("%s: %s", filename.c_str(), facts.error().ToString().c_str());
      std::fprintf(stderr, "Could not open backing image.\n");
      return 1;
    }
    if (backing_fmt.empty()) {
      ImgError("%s: Backing file specified without backing format", filename.c_str());
      // qemu-img 7.2 ends this hint without a newline.
      std::fprintf(stderr, "Detected format of %s.", facts->format.c_str());
      return 1;
    }
    if (!opts->has("size")) opts->set("size", std::to_string(facts->size));
  }

  if (!quiet) {
    std::printf("Formatting '%s', %s\n", filename.c_str(), DescribeOptions(*drv, *opts).c_str());
    std::fflush(stdout);
  }
  auto loop = EventLoop::Create();
  if (!loop) {
    ImgError("%s", loop.error().ToString().c_str());
    return 1;
  }
  (*loop)->make_current();
  Status s = sync_wait(**loop, CreateImage(**loop, fmt, filename, *opts));
  if (!s) {
    ImgError("%s: %s", filename.c_str(), s.error().ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace coblk::tools
