// Opening node graphs from options, like QEMU's bdrv_open.
//
//   driver=vmdk,file.driver=file,file.filename=a.vmdk,backing.file.filename=b
//   a.vmdk                         (plain filename: probe the format)
//   json:{"driver":"raw","file":{"driver":"file","filename":"x.img"}}
//
// Nodes are reference counted (shared_ptr); closing the root closes children
// after their parents.
#pragma once

#include <memory>
#include <string>

#include "block/block_driver.h"
#include "block/block_node.h"
#include "block/options.h"

namespace coblk {

class EventLoop;

struct OpenFlags {
  bool read_only = false;
  bool probe_warning = true;   // print qemu-img's "WARNING: Image format was not specified"
  bool no_backing = false;     // -U style: do not open backing files
  // Opened to be checked or repaired (qemu-img check; QEMU's BDRV_O_CHECK):
  // a driver may then accept a damaged image that a normal open refuses,
  // so that its check can report and repair it. The top node only: its
  // children and backing files open normally.
  bool check = false;
};

class BlockGraph {
 public:
  explicit BlockGraph(EventLoop& loop) : loop_(loop) {}

  // Opens a node from options. A "filename" without "driver" is probed; a
  // filename "json:{...}" is parsed into options.
  Task<Result<std::shared_ptr<BlockNode>>> open(Options options, OpenFlags flags);
  // Convenience: open a filename, optionally forcing a format.
  Task<Result<std::shared_ptr<BlockNode>>> open_file(const std::string& filename,
                                                     const std::string& format,
                                                     OpenFlags flags);

  // Opens a filter driver (copy-on-read, blkdebug, ...) with `options` over
  // an already open node, which becomes its "file" child (jobs insert
  // filters into a running graph this way).
  Task<Result<std::shared_ptr<BlockNode>>> open_filter(const std::string& driver, Options options,
                                                       std::shared_ptr<BlockNode> child);

  EventLoop& loop() { return loop_; }
  // Warnings produced while opening (e.g. the probe warning).
  std::vector<std::string>& warnings() { return warnings_; }

 private:
  friend struct OpenContext;
  // protocol: open as a protocol node (a "file"/data child of a format):
  // without "driver", the filename's "proto:" prefix or "file" decides.
  // Otherwise a filename without "driver" is probed.
  Task<Result<std::shared_ptr<BlockNode>>> open_node(Options options, bool read_only,
                                                     bool protocol);
  Task<Result<std::shared_ptr<BlockNode>>> open_child_node(Options& parent,
                                                           const std::string& name,
                                                           ChildRole role,
                                                           const std::string& filename,
                                                           bool allow_none, bool read_only);
  // Opens the protocol node for filename, reads its first bytes and picks
  // the format driver.
  Task<Result<std::shared_ptr<BlockNode>>> probe_file(const std::string& filename,
                                                      Options& options, bool read_only,
                                                      const BlockDriver** format);

  EventLoop& loop_;
  std::vector<std::string> warnings_;
  OpenFlags flags_;
  // Backing files being opened below the current node (see open_child_node).
  static constexpr int kMaxBackingDepth = 64;
  int backing_depth_ = 0;
  // OpenFlags::check, until the top node's open takes it.
  bool check_top_ = false;
};

// Creates an image file with a format driver (and the file protocol).
Task<Status> CreateImage(EventLoop& loop, const std::string& format,
                         const std::string& filename, Options& create_opts);

}  // namespace coblk
