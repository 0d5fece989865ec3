// BlockDriver: the static description of a driver (QEMU's BlockDriver).
//
// Drivers register once through RegisterBlockDriver(), the single entry
// point used both by built-in drivers (from a static initialiser, see
// COBLK_REGISTER_BLOCK_DRIVER) and by plugins loaded at run time with
// LoadDriverPlugin(), whose coblk_plugin_init() hands their drivers to it
// after the plugin ABI version matched (block/plugin.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "block/block_node.h"
#include "block/options.h"
#include "coroutine/task.h"
#include "util/status.h"

namespace coblk {

class EventLoop;
class BlockGraph;

// One create option, as listed by `coblk-img create -f fmt -o help`.
struct CreateOption {
  enum class Type { kString, kSize, kBool, kNumber };
  std::string name;
  Type type;
  std::string help;
  std::string default_value;  // empty = no default shown
};

// What a driver's open() gets: its own options (children's keys still under
// "file." etc.), flags, and a way to open children through the graph.
struct OpenContext {
  EventLoop& loop;
  Options& options;
  bool read_only;
  std::string filename;          // the "filename" option, if the node has one
  BlockGraph& graph;
  // The format was probed, not given: like QEMU, raw then refuses writes to
  // block 0 that would make the image probe as another format.
  bool probed = false;
  // The open was asked not to open backing files (qemu-img info, -U style):
  // open_child(..., ChildRole::kBacking, ...) returns nullptr. Drivers that
  // check a backing chain before opening it skip the checks too.
  bool no_backing = false;
  // For has_file_child() drivers: the "file" child the generic open already
  // opened. open_child("file", ...) returns it; if the driver does not add it
  // to its node, the generic open does.
  std::shared_ptr<BlockNode> file;
  // OpenFlags::check: opened to be checked or repaired (QEMU's BDRV_O_CHECK).
  bool check = false;
  // Opens (or probes) the child whose options are under "<name>." or, if
  // absent, the filename given. allow_none: a missing child is not an error
  // (returns nullptr).
  Task<Result<std::shared_ptr<BlockNode>>> open_child(const std::string& name,
                                                      ChildRole role,
                                                      const std::string& filename = {},
                                                      bool allow_none = false);
};

class BlockDriver {
 public:
  virtual ~BlockDriver() = default;

  // Format name ("raw", "vmdk") or, for protocol drivers, the driver name.
  virtual std::string_view format_name() const = 0;
  // "file" for host files; empty for format and filter drivers.
  virtual std::string_view protocol_name() const { return {}; }
  // 0..100: how sure the driver is that these first bytes are its format.
  virtual int probe(std::span<const uint8_t> first_bytes, std::string_view filename) const {
    (void)first_bytes;
    (void)filename;
    return 0;
  }
  virtual bool supports_backing() const { return false; }
  virtual bool is_filter() const { return false; }
  // Whether the node wants a "file" child opened for it by the generic open
  // (format drivers) or opens its own storage (protocol drivers).
  virtual bool has_file_child() const { return protocol_name().empty(); }
  // QEMU's own name for that child where it is not "file" (blkdebug's
  // "image"): options under it are taken as the "file" child's.
  virtual std::string_view file_child_alias() const { return {}; }

  virtual const std::vector<CreateOption>& create_options() const;
  // Creates an image. opts holds the create options (size, ...) keyed by name.
  virtual Task<Status> co_create(const std::string& filename, Options& opts, EventLoop& loop) const;

  virtual Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const = 0;
};

// ---- Registry ----

// The one registration entry point. Fails on a duplicate name. origin says
// where the driver came from ("built-in", a plugin's path), for
// `coblk-img --list-drivers`.
Status RegisterBlockDriver(std::unique_ptr<BlockDriver> driver,
                           std::string origin = "program");
// Where a registered driver came from (see RegisterBlockDriver).
std::string DriverOrigin(const BlockDriver* driver);
const BlockDriver* FindFormatDriver(std::string_view name);
const BlockDriver* FindProtocolDriver(std::string_view name);
std::vector<const BlockDriver*> AllBlockDrivers();
// Highest probe score among format drivers; raw when nothing scores.
const BlockDriver* ProbeFormat(std::span<const uint8_t> first_bytes, std::string_view filename);
// Loads a driver plugin (block/plugin.h): reads the plugin ABI version it was
// built for from the file, refuses a mismatch or a missing version before
// loading any of its code, then dlopen()s it and registers its drivers
// through coblk_plugin_init(). Loading the same file again does nothing.
Status LoadDriverPlugin(const std::string& path);
// The plugin ABI version a plugin file declares (without loading it).
Result<uint32_t> ReadPluginAbiVersion(const std::string& path);
// Loads every plugin file (*.so) in the directories of COBLK_PLUGIN_PATH (in
// name order; directories that do not exist are skipped), then every file
// named in COBLK_PLUGINS. Both are ':'-separated. The tools call this at
// startup.
Status LoadDriverPluginsFromEnvironment();
// Loads every *.so file in a directory, in name order.
Status LoadDriverPluginDirectory(const std::string& dir);

namespace detail {
struct DriverRegistrar {
  explicit DriverRegistrar(std::unique_ptr<BlockDriver> d);
};
}  // namespace detail

}  // namespace coblk

// Registers a built-in (or plugin) driver class at static-initialisation time.
#define COBLK_REGISTER_BLOCK_DRIVER(DriverClass)                              \
  namespace {                                                                 \
  const ::coblk::detail::DriverRegistrar coblk_registrar_##DriverClass{       \
      std::make_unique<DriverClass>()};                                       \
  }
