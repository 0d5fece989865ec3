// IoShell: the command interpreter behind coblk-io, qemu-io's syntax.
//
// Commands return 0 or a negative errno like qemu-io's; any failure makes
// the process exit with status 1 (qemu-io 7.2's rule). Messages go where
// qemu-io sends them (I/O failures to stdout, usage errors to stderr).
// aio_* commands run concurrently on the loop; every synchronous command
// also drives the loop, so their completions are reported as they happen.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "block/block_backend.h"
#include "io/event_loop.h"
#include "tools/image_open.h"

namespace coblk::tools {

class IoShell {
 public:
  using Args = std::vector<std::string>;

  // defaults: cache/aio/read-only settings the `open` command starts from.
  IoShell(EventLoop& loop, ImageSpec defaults);
  ~IoShell();

  // Opens an image as the current one (error message printed on failure).
  bool Open(const ImageSpec& spec);
  // Runs one command line ("read -P 0xab 0 64k"); returns its status.
  int Run(const std::string& line);
  // Waits for every outstanding aio request.
  void Drain();

  bool has_image() const { return blk_ != nullptr; }
  // After `quit`: the caller runs no further commands.
  bool quit_requested() const { return quit_; }

 private:
  struct Command {
    const char* name;
    const char* altname;
    int argmin;
    int argmax;  // -1 = unlimited
    bool needs_file;
    const char* args;  // nullptr: none (qemu-io prints "" and nullptr differently)
    const char* oneline;
    int (IoShell::*fn)(Args& args);
  };
  static const std::vector<Command>& Commands();
  const Command* Find(const std::string& name) const;

  // io_rw_commands.cc
  int ReadCmd(Args& args);
  int WriteCmd(Args& args);
  int AioReadCmd(Args& args);
  int AioWriteCmd(Args& args);
  int AioFlushCmd(Args& args);
  int FlushCmd(Args& args);
  int DiscardCmd(Args& args);
  // io_info_commands.cc
  int LengthCmd(Args& args);
  int MapCmd(Args& args);
  int AllocCmd(Args& args);
  int InfoCmd(Args& args);
  int SleepCmd(Args& args);
  int OpenCmd(Args& args);
  int CloseCmd(Args& args);
  int HelpCmd(Args& args);
  // io_extra_commands.cc
  int ReadvCmd(Args& args);
  int WritevCmd(Args& args);
  int TruncateCmd(Args& args);
  int ReopenCmd(Args& args);
  int AbortCmd(Args& args);
  int SigraiseCmd(Args& args);
  int QuitCmd(Args& args);

  void Close();
  // The image: the backend's root, or below the copy-on-read filter of -C.
  BlockNode& image();
  // The "name args -- oneline" line of help and of usage errors.
  static void PrintOneLine(const char* name, const Command& c);
  int Usage(const Command& c);
  int Usage(const char* name);
  // Write flags every write carries (FUA in write-through cache modes).
  uint32_t write_flags() const { return writethrough_ ? uint32_t{kReqFua} : 0u; }
  // The permission check qemu-io does before write commands.
  bool CheckWritable();

  struct AioRequest;
  Task<void> RunAio(std::unique_ptr<AioRequest> req);

  EventLoop& loop_;
  ImageSpec defaults_;
  std::unique_ptr<BlockBackend> blk_;
  ImageSpec spec_;  // what blk_ was opened from (reopen starts from it)
  bool quit_ = false;
  bool writethrough_ = false;
  bool read_only_ = false;
  int aio_pending_ = 0;
};

// qemu-io's extended help for `help name` (the text after the one-line
// summary), or nullptr for commands qemu-io has none for. io_help.cc.
const char* IoExtendedHelp(const std::string& name);

// getopt() over a command's arguments; resets getopt's state first. argv[0]
// is the command name, so getopt's own messages read "read: invalid option".
class ArgParser {
 public:
  explicit ArgParser(std::vector<std::string>& args);
  int next(const char* optstring);  // getopt(); -1 at the end
  const char* optarg() const;
  // Positional arguments after the options.
  std::vector<std::string> rest() const;

 private:
  std::vector<std::string>& args_;
  std::vector<char*> argv_;
};

}  // namespace coblk::tools
