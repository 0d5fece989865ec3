// coblk-io: qemu-io's command-line front end over coblk.
//
//   coblk-io [-f fmt] [-n] [-t cache] [-i aio] [-r] [-C] [-U] [--image-opts]
//            [-c 'cmd' ...] [file]
//
// Without -c, commands are read from standard input, one per line. The
// default cache mode is qemu-io's: writethrough (page cache, every write
// stable on return); -n selects cache=none (O_DIRECT).
#include "block/block_driver.h"
#include <getopt.h>
#include <signal.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "io/event_loop.h"
#include "io/exit_teardown.h"
#include "tools/io_shell.h"

namespace {

void Usage(const char* name) {
  std::printf(
      "Usage: %s [OPTIONS]... [-c STRING]... [file]\n"
      "coblk-io -- a qemu-io compatible block layer exerciser\n"
      "\n"
      "  -c, --cmd STRING     execute command with its arguments\n"
      "                       from the given string\n"
      "  -f, --format FMT     specifies the block driver to use\n"
      "  -r, --read-only      export read-only\n"
      "  -n, --nocache        disable host cache, short for -t none\n"
      "  -C, --copy-on-read   enable copy-on-read\n"
      "  -t, --cache=MODE     use the given cache mode for the image\n"
      "                       (none, writeback, writethrough, directsync, unsafe)\n"
      "  -i, --aio=MODE       use AIO mode (threads, native)\n"
      "  -U, --force-share    force shared permissions\n"
      "  --image-opts         treat file as option string\n"
      "  --plugin FILE        load a driver plugin (repeatable; also COBLK_PLUGIN_PATH\n"
      "                       directories and COBLK_PLUGINS files)\n"
      "  -h, --help           display this help and exit\n"
      "\n"
      "Commands: see 'help' inside coblk-io.\n",
      name);
}

}  // namespace

int main(int argc, char** argv) {
  // A tool's run is short: don't make every command wait 30-50 ms at exit
  // for the kernel to free its AIO contexts (io/exit_teardown.h).
  coblk::DeferAioTeardownPastExit();
  // qemu-io's signal dispositions (visible through `sigraise`): SIGPIPE is
  // ignored, and SIGUSR1, SIGALRM, SIGIO and SIGBUS are blocked by its main
  // loop. Set here, before any thread exists, so that every thread has them.
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t blocked;
  sigemptyset(&blocked);
  for (int sig : {SIGUSR1, SIGALRM, SIGIO, SIGBUS}) sigaddset(&blocked, sig);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);

  if (coblk::Status s = coblk::LoadDriverPluginsFromEnvironment(); !s) {
    std::fprintf(stderr, "coblk-io: %s\n", s.error().ToString().c_str());
    return 1;
  }
  enum { kImageOpts = 256, kPlugin };
  static const option kLong[] = {
      {"cmd", required_argument, nullptr, 'c'},
      {"format", required_argument, nullptr, 'f'},
      {"read-only", no_argument, nullptr, 'r'},
      {"nocache", no_argument, nullptr, 'n'},
      {"copy-on-read", no_argument, nullptr, 'C'},
      {"cache", required_argument, nullptr, 't'},
      {"aio", required_argument, nullptr, 'i'},
      {"force-share", no_argument, nullptr, 'U'},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"plugin", required_argument, nullptr, kPlugin},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  coblk::tools::ImageSpec spec;
  spec.cache = "writethrough";  // qemu-io's default
  std::vector<std::string> commands;
  for (int c; (c = getopt_long(argc, argv, "+c:f:rCnt:i:Uh", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'c': commands.emplace_back(optarg); break;
      case 'f': spec.format = optarg; break;
      case 'r': spec.read_only = true; break;
      case 'n': spec.cache = "none"; break;
      case 'C': spec.copy_on_read = true; break;
      case 't': spec.cache = optarg; break;
      case 'i': spec.aio = optarg; break;
      case 'U': spec.force_share = true; break;
      case kImageOpts: spec.image_opts = true; break;
      case kPlugin:
        if (coblk::Status s = coblk::LoadDriverPlugin(optarg); !s) {
          std::fprintf(stderr, "coblk-io: %s\n", s.error().ToString().c_str());
          return 1;
        }
        break;
      case 'h': Usage(argv[0]); return 0;
      default: Usage(argv[0]); return 1;
    }
  }
  if (argc - optind > 1) {
    Usage(argv[0]);
    return 1;
  }
  if (spec.image_opts && spec.format.size()) {
    std::fprintf(stderr, "coblk-io: --image-opts and -f are mutually exclusive\n");
    return 1;
  }

  auto loop = coblk::EventLoop::Create();
  if (!loop) {
    std::fprintf(stderr, "coblk-io: %s\n", loop.error().ToString().c_str());
    return 1;
  }
  (*loop)->make_current();
  coblk::tools::ImageSpec open_defaults;
  open_defaults.cache = "writethrough";
  int status = 0;
  {
    coblk::tools::IoShell shell(**loop, open_defaults);
    if (optind < argc) {
      spec.filename = argv[optind];
      if (!shell.Open(spec)) return 1;
    }
    if (commands.empty()) {
      for (std::string line; !shell.quit_requested() && std::getline(std::cin, line);) {
        if (shell.Run(line) < 0) status = 1;
      }
    } else {
      for (const std::string& cmd : commands) {
        if (shell.Run(cmd) < 0) status = 1;
        if (shell.quit_requested()) break;
      }
    }
    shell.Drain();
  }
  std::fflush(stdout);
  return status;
}
