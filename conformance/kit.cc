// Kit configuration: command-line flags, plugin loading, driver lookup.
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>

#include "block/block_driver.h"
#include "block/options.h"
#include "conformance/kit.h"

namespace coblk::conformance {

KitConfig& Config() {
  static KitConfig c;
  return c;
}

std::string KitUsage() {
  return "usage: coblk-conformance [--plugin FILE]... --driver NAME [options] [gtest flags]\n"
         "  --driver NAME          driver under test (format, filter or protocol)\n"
         "  --plugin FILE          load a driver plugin first (repeatable)\n"
         "  -o, --create-options O create options, k=v,... (size is added)\n"
         "  --open-options O       extra open options for the driver, k=v,...\n"
         "  --size BYTES           virtual size of the test image (default 32M)\n"
         "  --no-data              the driver does not keep data (null-co): no\n"
         "                         content, persistence or fault checks\n"
         "  --no-backing           this configuration cannot have a backing file\n"
         "  --no-fault-injection   skip the blkdebug fault-injection test\n"
         "  --depth N              requests in flight in the random tests (default 32)\n"
         "  --write-once BYTES     ranges of this size are written at most once\n"
         "                         (streamOptimized VMDK); no zero writes or discards\n"
         "  --seed N               replay a run (the seed is printed at start)\n"
         "  --rounds N             QD32 rounds of random operations (default 24)\n"
         "  --fault-ops N          fault-injection workload length (default 30, at most 62)\n"
         "  --dir DIR              where test images go (default: $COBLK_TEST_TMPDIR,\n"
         "                         else the current directory)\n"
         "Environment COBLK_PLUGIN_PATH / COBLK_PLUGINS load plugins as in the tools.\n";
}

std::string ParseKitArgs(int argc, char** argv) {
  KitConfig& c = Config();
  bool seeded = false;
  // A test runner may put every suite's files on one scratch filesystem
  // (coblk's scripts/test.sh does); --dir still wins.
  if (const char* dir = std::getenv("COBLK_TEST_TMPDIR"); dir && *dir) c.dir = dir;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string* out) {
      const size_t eq = a.find('=');
      if (a.starts_with("--") && eq != std::string_view::npos) {
        *out = std::string(a.substr(eq + 1));
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    auto is = [&](std::string_view name) {
      return a == name || (name.starts_with("--") && a.starts_with(std::string(name) + "="));
    };
    std::string v;
    auto number = [&](int64_t* out) {
      Options o;
      o.set("n", v);
      auto n = o.get_size("n", 0);  // accepts 64k, 32M, ...
      if (!n) return false;
      *out = static_cast<int64_t>(*n);
      return true;
    };
    int64_t n = 0;
    if (a == "-h" || a == "--help") return "help";
    if (a == "--no-data") {
      c.keeps_data = false;
      continue;
    }
    if (a == "--no-fault-injection") {
      c.faults = false;
      continue;
    }
    if (a == "--no-backing") {
      c.backing = false;
      continue;
    }
    if (!(is("--driver") || is("--plugin") || is("-o") || is("--create-options") ||
          is("--open-options") || is("--size") || is("--write-once") || is("--seed") ||
          is("--rounds") || is("--depth") || is("--fault-ops") || is("--dir"))) {
      return "unknown argument '" + std::string(a) + "'";
    }
    if (!value(&v)) return "option '" + std::string(a) + "' needs a value";
    if (is("--driver")) {
      c.driver = v;
    } else if (is("--plugin")) {
      c.plugins.push_back(v);
    } else if (is("-o") || is("--create-options")) {
      c.create_options = c.create_options.empty() ? v : c.create_options + "," + v;
    } else if (is("--open-options")) {
      c.open_options = c.open_options.empty() ? v : c.open_options + "," + v;
    } else if (is("--dir")) {
      c.dir = v;
    } else if (!number(&n) || n < 0) {
      return "option '" + std::string(a) + "' needs a number, not '" + v + "'";
    } else if (is("--size")) {
      if (n == 0 || n % 512) return "--size must be a positive multiple of 512";
      c.size = n;
    } else if (is("--write-once")) {
      c.write_once = n;
    } else if (is("--seed")) {
      c.seed = static_cast<uint64_t>(n);
      seeded = true;
    } else if (is("--depth")) {
      if (n < 1 || n > 256) return "--depth must be 1..256";
      c.depth = static_cast<int>(n);
    } else if (is("--rounds")) {
      c.rounds = static_cast<int>(n);
    } else if (is("--fault-ops")) {
      c.fault_ops = static_cast<int>(n);
    }
  }
  if (c.driver.empty()) return "--driver is required";
  if (Status s = LoadDriverPluginsFromEnvironment(); !s) return s.error().ToString();
  for (const std::string& p : c.plugins) {
    if (Status s = LoadDriverPlugin(p); !s) return s.error().ToString();
  }
  if (!FindFormatDriver(c.driver)) return "unknown driver '" + c.driver + "'";
  if (!seeded) c.seed = std::random_device{}();
  std::printf("[conformance] driver %s, seed %llu (replay with --seed %llu)\n", c.driver.c_str(),
              static_cast<unsigned long long>(c.seed), static_cast<unsigned long long>(c.seed));
  return "";
}

}  // namespace coblk::conformance
