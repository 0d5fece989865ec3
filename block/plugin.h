// Driver plugins: shared objects that add block drivers at run time.
//
// A plugin is built against coblk's public headers (coblk::plugin in CMake,
// coblk_add_plugin()) and ends with one line naming its driver classes:
//
//   COBLK_PLUGIN_DRIVERS(MyFormatDriver, MyFilterDriver)
//
// That line records the plugin ABI the plugin was built for, in an ELF
// section (.coblk_plugin_abi) and in the exported symbol
// coblk_plugin_abi_version, and defines the exported entry point
// coblk_plugin_init(), which registers the drivers. LoadDriverPlugin() reads
// the version from the file before it dlopen()s anything, refuses a mismatch
// (naming both versions), and only then loads the plugin and calls
// coblk_plugin_init(). Drivers in a plugin must not use
// COBLK_REGISTER_BLOCK_DRIVER (a static initialiser), which is for built-in
// drivers only.
//
// The plugin's coblk symbols resolve against the program that loads it, so
// the program must export them (coblk::coblk links with -rdynamic).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "block/block_driver.h"

// The plugin ABI version. A plugin loads only into a coblk with the same
// number. It is bumped whenever a public header changes in a way that a
// plugin built against the old headers would misbehave with: the layout or
// virtual functions of BlockDriver, BlockNode or any type they use by value
// (Options, IoVector, Task, Status/Error, BlockStatus, BlockLimits, ...), the
// signature of a function a plugin calls, or this entry-point protocol.
// Additions that change no existing layout or signature keep the number.
// History: 1 first versioned ABI; 2 BlockNode::co_check takes CheckFix bits
// (was bool), and driver reads may carry kReqPaddedPastEnd. Within 2:
// kStatusRecurse added (an addition: the generic layer now refines a data
// answer with its file's holes only where the driver sets it; a plugin
// that does not still answers correctly, only without that refinement);
// OpenContext::check added (opened for check; a plugin may ignore it).
#define COBLK_PLUGIN_ABI_VERSION 2

namespace coblk {

inline constexpr uint32_t kPluginAbiVersion = COBLK_PLUGIN_ABI_VERSION;

// The record in a plugin's .coblk_plugin_abi section.
struct PluginAbiNote {
  static constexpr uint64_t kMagic = 0x6962616b6c626f63ULL;  // "coblkabi" (little-endian)
  uint64_t magic;
  uint32_t abi_version;
  uint32_t reserved;
};
static_assert(sizeof(PluginAbiNote) == 16);

// What coblk_plugin_init() registers its drivers with. The loader checks
// every driver (name given, no clash with a registered one or each other)
// before it registers any, so a failed plugin adds nothing.
class PluginRegistrar {
 public:
  virtual ~PluginRegistrar() = default;
  virtual void add(std::unique_ptr<BlockDriver> driver) = 0;
};

namespace detail {
template <class... Drivers>
void AddPluginDrivers(PluginRegistrar& r) {
  (r.add(std::make_unique<Drivers>()), ...);
}
}  // namespace detail

}  // namespace coblk

// The entry point's type, as looked up by LoadDriverPlugin.
using coblk_plugin_init_fn = void (*)(coblk::PluginRegistrar&);

#define COBLK_PLUGIN_DRIVERS(...)                                                    \
  extern "C" __attribute__((visibility("default"), used,                            \
                            section(".coblk_plugin_abi"))) const ::coblk::PluginAbiNote \
      coblk_plugin_abi_note = {::coblk::PluginAbiNote::kMagic, COBLK_PLUGIN_ABI_VERSION, 0}; \
  extern "C" __attribute__((visibility("default"))) const uint32_t                  \
      coblk_plugin_abi_version = COBLK_PLUGIN_ABI_VERSION;                          \
  extern "C" __attribute__((visibility("default"))) void coblk_plugin_init(         \
      ::coblk::PluginRegistrar& registrar) {                                        \
    ::coblk::detail::AddPluginDrivers<__VA_ARGS__>(registrar);                      \
  }
