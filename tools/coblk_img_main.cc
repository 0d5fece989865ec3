// coblk-img: qemu-img's command-line front end over coblk.
//
//   coblk-img create [-f fmt] [-o opts] [-b backing [-F fmt]] filename [size]
//   coblk-img info [-f fmt] [--output=human|json] [-U] [--image-opts] filename
//   coblk-img map [-f fmt] [--output=human|json] [-U] [--image-opts] filename
//   coblk-img check [-f fmt] [-r leaks|all] [-U] [--image-opts] filename
//   coblk-img bench [qemu-img bench flags] [-r|--random] filename
//   coblk-img convert [qemu-img convert flags] filename [filename2 ...] output_filename
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include <getopt.h>

#include "coroutine/sync_wait.h"
#include "block/block_driver.h"
#include "io/exit_teardown.h"
#include "tools/img_commands.h"

namespace coblk::tools {

void ImgError(const char* fmt, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "coblk-img: ");
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
}

int ImgErrorExit(const char* fmt, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "coblk-img: ");
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\nTry 'coblk-img --help' for more information\n");
  return 1;
}

int ImgBadOption(int c, char** argv) {
  const char* opt = optind > 0 ? argv[optind - 1] : "";
  if (c == ':') return ImgErrorExit("missing argument for option '%s'", opt);
  return ImgErrorExit("unrecognized option '%s'", opt);
}

int64_t QemuStatusGrain(BlockNode* node, BlockNode* base) {
  int64_t grain = 0;
  for (; node && node != base; node = node->backing()) {
    const int64_t g = node->get_info().cluster_size;
    if (node->driver() && node->driver()->format_name() == "vmdk" && g > 0) {
      grain = grain ? std::min(grain, g) : g;
    }
  }
  return grain;
}

std::unique_ptr<OpenedImage> ImgOpen(const ImageSpec& spec, bool no_backing) {
  auto img = std::make_unique<OpenedImage>();
  auto loop = EventLoop::Create();
  if (!loop) {
    ImgError("%s", loop.error().ToString().c_str());
    return nullptr;
  }
  img->loop = std::move(*loop);
  img->loop->make_current();
  if (spec.filename.empty() && !spec.image_opts) {
    // QEMU's file-posix message for an empty name (e.g. dd's "if=").
    ImgError("Could not open '': The 'file' block driver requires a file name");
    return nullptr;
  }
  Result<Options> opts = ImageOptions(spec);
  if (!opts) {
    ImgError("%s", opts.error().ToString().c_str());
    return nullptr;
  }
  OpenFlags flags;
  flags.read_only = spec.read_only;
  flags.no_backing = no_backing;
  flags.check = spec.check;
  auto blk = BlockBackend::Open(*img->loop, "", std::move(*opts), flags);
  if (!blk) {
    ImgError("Could not open '%s': %s", spec.filename.c_str(), blk.error().ToString().c_str());
    return nullptr;
  }
  img->blk = std::move(*blk);
  return img;
}

}  // namespace coblk::tools

namespace {

struct Subcommand {
  const char* name;
  int (*fn)(int argc, char** argv);
  const char* synopsis;
};

const Subcommand kSubcommands[] = {
    {"amend", coblk::tools::ImgAmend,
     "amend [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename"},
    {"bench", coblk::tools::ImgBench,
     "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] "
     "[--no-drain] [-o offset] [--pattern=pattern] [-q] [-r|--random] [-s buffer_size] "
     "[-S step_size] [-t cache] [-U] [-w] [--image-opts] filename"},
    {"commit", coblk::tools::ImgCommit,
     "commit [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] "
     "filename"},
    {"compare", coblk::tools::ImgCompare,
     "compare [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] "
     "filename1 filename2"},
    {"bitmap", coblk::tools::ImgBitmap,
     "bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... "
     "[-b source_file [-F source_fmt]] [-g granularity] [--image-opts | -f fmt] filename bitmap"},
    {"check", coblk::tools::ImgCheck,
     "check [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] "
     "filename"},
    {"convert", coblk::tools::ImgConvert,
     "convert [-c] [-f fmt] [-n] [-O output_fmt] [-o options] [-p] [-q] [-m num_coroutines] "
     "[-W] [-S sparse_size] [-t cache] [-T src_cache] [-B backing_file [-F backing_fmt]] [-U] "
     "[--image-opts] [--target-is-zero] [--bitmaps] [-C] [-l snapshot_param] [-r rate_limit] "
     "[--salvage] filename [filename2 [...]] output_filename"},
    {"create", coblk::tools::ImgCreate,
     "create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]"},
    {"dd", coblk::tools::ImgDd,
     "dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] "
     "[skip=blocks] if=input of=output"},
    {"rebase", coblk::tools::ImgRebase,
     "rebase [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] "
     "-b backing_file [-F backing_fmt] filename"},
    {"resize", coblk::tools::ImgResize,
     "resize [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] [--shrink] "
     "filename [+ | -]size"},
    {"info", coblk::tools::ImgInfo,
     "info [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename"},
    {"map", coblk::tools::ImgMap,
     "map [--image-opts] [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] "
     "[-U] filename"},
    {"measure", coblk::tools::ImgMeasure,
     "measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--image-opts] [-f fmt] "
     "[-l snapshot_param] filename]"},
    {"snapshot", coblk::tools::ImgSnapshot,
     "snapshot [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename"},
};

const char* OptionType(coblk::CreateOption::Type t) {
  switch (t) {
    case coblk::CreateOption::Type::kString: return "str";
    case coblk::CreateOption::Type::kSize: return "size";
    case coblk::CreateOption::Type::kBool: return "bool";
    case coblk::CreateOption::Type::kNumber: return "num";
  }
  return "?";
}

// coblk-img --list-drivers: every registered driver with its kind, where it
// came from and its create options.
void ListDrivers() {
  std::printf("Drivers (name, kind, origin; then create options):\n");
  for (const coblk::BlockDriver* d : coblk::AllBlockDrivers()) {
    const char* kind = !d->protocol_name().empty() ? "protocol"
                       : d->is_filter()           ? "filter"
                                                  : "format";
    const std::string name(d->format_name());
    std::printf("%-14s %-9s %s\n", name.c_str(), kind, coblk::DriverOrigin(d).c_str());
    for (const coblk::CreateOption& o : d->create_options()) {
      std::printf("    %-18s %-5s %s%s%s\n", o.name.c_str(), OptionType(o.type), o.help.c_str(),
                  o.default_value.empty() ? "" : " (default: ",
                  o.default_value.empty() ? "" : (o.default_value + ")").c_str());
    }
  }
}

}  // namespace

int coblk::tools::ImgHelp() {
  std::printf("coblk-img -- a qemu-img compatible image utility\n"
              "usage: coblk-img [--plugin FILE]... command [command options]\n"
              "       coblk-img [--plugin FILE]... --list-drivers\n\n"
              "Command syntax:\n");
  for (const Subcommand& s : kSubcommands) std::printf("  %s\n", s.synopsis);
  std::printf("\nThe bench extension -r/--random reads or writes at random offsets "
              "(aligned to 4 KiB) instead of qemu-img bench's sequential pattern.\n");
  std::printf("\nParameters to dd subcommand:\n"
              "  'bs=BYTES' read and write up to BYTES bytes at a time (default: 512)\n"
              "  'count=N' copy only N input blocks\n"
              "  'if=FILE' read from FILE\n"
              "  'of=FILE' write to FILE\n"
              "  'skip=N' skip N bs-sized blocks at the start of input\n");
  return 0;
}

int main(int argc, char** argv) {
  // A tool's run is short: don't make every command wait 30-50 ms at exit
  // for the kernel to free its AIO contexts (io/exit_teardown.h).
  coblk::DeferAioTeardownPastExit();
  if (coblk::Status s = coblk::LoadDriverPluginsFromEnvironment(); !s) {
    coblk::tools::ImgError("%s", s.error().ToString().c_str());
    return 1;
  }
  // Global options before the command: --plugin FILE (repeatable) and
  // --list-drivers.
  int first = 1;
  while (first < argc) {
    const std::string_view arg = argv[first];
    const char* plugin = nullptr;
    if (arg == "--plugin") {
      if (first + 1 >= argc) {
        coblk::tools::ImgError("option '--plugin' requires an argument");
        return 1;
      }
      plugin = argv[first + 1];
      first += 2;
    } else if (arg.starts_with("--plugin=")) {
      plugin = argv[first] + 9;
      first += 1;
    } else {
      break;
    }
    if (coblk::Status s = coblk::LoadDriverPlugin(plugin); !s) {
      coblk::tools::ImgError("%s", s.error().ToString().c_str());
      return 1;
    }
  }
  argv[first - 1] = argv[0];  // drop the global options: argv[1] is the command
  argv += first - 1;
  argc -= first - 1;
  if (argc >= 2 && !std::strcmp(argv[1], "--list-drivers")) {
    ListDrivers();
    return 0;
  }
  if (argc < 2) return coblk::tools::ImgErrorExit("Not enough arguments");
  const char* cmd = argv[1];
  if (!std::strcmp(cmd, "-h") || !std::strcmp(cmd, "--help")) return coblk::tools::ImgHelp();
  if (!std::strcmp(cmd, "-V") || !std::strcmp(cmd, "--version")) {
    std::printf("coblk-img version " COBLK_VERSION "\n");
    return 0;
  }
  for (const Subcommand& s : kSubcommands) {
    if (!std::strcmp(cmd, s.name)) return s.fn(argc - 1, argv + 1);
  }
  return coblk::tools::ImgErrorExit("Command not found: %s", cmd);
}
