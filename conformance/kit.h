// The driver conformance kit: one GoogleTest battery that any block driver
// (built in or a plugin) must pass, given its name and create options.
//
//   coblk-conformance [--plugin FILE]... --driver NAME [-o CREATE_OPTS]
//                     [--open-options OPTS] [--size BYTES] [--seed N] ...
//   (coblk-conformance --help lists every flag; gtest flags work too)
//
// or from CMake, one line per driver:
//   coblk_add_conformance_test(mysparse DRIVER mysparse PLUGIN mysparse-plugin)
//
// How the driver is stacked depends on its kind (BlockDriver):
//   format    image made by CreateImage(driver, create options), opened as
//             driver=NAME,file.driver=file,file.filename=IMG[,open options]
//   filter    a raw file, opened as driver=NAME,file.filename=...[,open options]
//   protocol  no file: driver=NAME,size=SIZE[,open options]
// Fault injection puts blkdebug between the driver and its file.
//
// Every random test draws from one seed, printed at start and in every
// failure; --seed N replays a run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace coblk::conformance {

struct KitConfig {
  std::string driver;
  std::vector<std::string> plugins;
  std::string create_options;  // k=v,... for CreateImage (size is added)
  std::string open_options;    // extra k=v,... for the driver node
  int64_t size = 32 << 20;     // virtual size of the test image
  bool keeps_data = true;      // false (--no-data): writes are not stored (null-co)
  // >0: each range of this size may be written only once (streamOptimized
  // VMDK): writes go to unwritten ranges only, whole ranges at a time.
  int64_t write_once = 0;
  uint64_t seed = 0;
  bool backing = true;         // false (--no-backing): this configuration
                               // cannot have a backing file (flat VMDK)
  bool faults = true;          // false (--no-fault-injection): skip that test
  int depth = 32;              // requests in flight in the random tests
  int rounds = 24;             // QD32 rounds of the random-operations test
  int fault_ops = 30;          // workload length of the fault-injection test
  int fault_limit = 400;       // most fault points tried
  std::string dir = ".";       // where images are created
};

// The configuration the battery runs with (set by ParseKitArgs).
KitConfig& Config();

// Parses the kit's own flags (after InitGoogleTest took gtest's), loads the
// plugins and checks the driver exists. Returns an error message, or "".
std::string ParseKitArgs(int argc, char** argv);
std::string KitUsage();

}  // namespace coblk::conformance
