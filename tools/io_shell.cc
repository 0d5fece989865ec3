#include "tools/io_shell.h"

#include <getopt.h>

#include <cstdio>
#include <cstring>

#include "coroutine/sync_wait.h"

namespace coblk::tools {

// ---- ArgParser ----

ArgParser::ArgParser(std::vector<std::string>& args) : args_(args) {
  for (std::string& a : args_) argv_.push_back(a.data());
  argv_.push_back(nullptr);
  optind = 0;  // glibc: full re-initialisation of getopt's state
}

int ArgParser::next(const char* optstring) {
  return getopt(static_cast<int>(args_.size()), argv_.data(), optstring);
}

const char* ArgParser::optarg() const { return ::optarg; }

std::vector<std::string> ArgParser::rest() const {
  std::vector<std::string> out;
  // getopt permutes argv_, not args_: read the pointers.
  for (size_t i = static_cast<size_t>(optind); i < args_.size(); i++) out.emplace_back(argv_[i]);
  return out;
}

// ---- IoShell ----

const std::vector<IoShell::Command>& IoShell::Commands() {
  // qemu-io 7.2's names, argument counts and texts (its listing is sorted).
  static const std::vector<Command> kCommands = {
      {"abort", nullptr, 0, 0, false, nullptr, "simulate a program crash using abort(3)",
       &IoShell::AbortCmd},
      {"aio_flush", nullptr, 0, 0, true, nullptr, "completes all outstanding aio requests",
       &IoShell::AioFlushCmd},
      {"aio_read", nullptr, 2, -1, true, "[-Ciqv] [-P pattern] off len [len..]",
       "asynchronously reads a number of bytes", &IoShell::AioReadCmd},
      {"aio_write", nullptr, 2, -1, true, "[-Cfiquz] [-P pattern] off len [len..]",
       "asynchronously writes a number of bytes", &IoShell::AioWriteCmd},
      {"alloc", nullptr, 1, 2, true, "offset [count]",
       "checks if offset is allocated in the file", &IoShell::AllocCmd},
      {"close", "c", 0, 0, true, nullptr, "close the current open file", &IoShell::CloseCmd},
      {"discard", "d", 2, -1, true, "[-Cq] off len",
       "discards a number of bytes at a specified offset", &IoShell::DiscardCmd},
      {"flush", "f", 0, 0, true, nullptr, "flush all in-core file state to disk",
       &IoShell::FlushCmd},
      {"help", "?", 0, 1, false, "[command]", "help for one or all commands", &IoShell::HelpCmd},
      {"info", "i", 0, 0, true, nullptr, "prints information about the current file",
       &IoShell::InfoCmd},
      {"length", "l", 0, 0, true, nullptr, "gets the length of the current file",
       &IoShell::LengthCmd},
      {"map", nullptr, 0, 0, true, "", "prints the allocated areas of a file", &IoShell::MapCmd},
      {"open", "o", 1, -1, false, "[-rCnkU] [-f fmt] [-t cache] [-i aio] [-o options] [path]",
       "open the file specified by path", &IoShell::OpenCmd},
      {"quit", "q", 0, -1, false, nullptr, "exit the program", &IoShell::QuitCmd},
      {"read", "r", 2, -1, true, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
       "reads a number of bytes at a specified offset", &IoShell::ReadCmd},
      {"readv", nullptr, 2, -1, true, "[-Cqv] [-P pattern] off len [len..]",
       "reads a number of bytes at a specified offset", &IoShell::ReadvCmd},
      {"reopen", nullptr, 0, -1, true, "[(-r|-w)] [-c cache] [-o options]",
       "reopens an image with new options", &IoShell::ReopenCmd},
      {"sigraise", nullptr, 1, 1, false, "signal", "raises a signal", &IoShell::SigraiseCmd},
      {"sleep", nullptr, 1, 1, false, nullptr, "waits for the given value in milliseconds",
       &IoShell::SleepCmd},
      {"truncate", "t", 1, 3, true, "[-m prealloc_mode] off",
       "truncates the current file at the given offset", &IoShell::TruncateCmd},
      {"write", "w", 2, -1, true, "[-bcCfnquz] [-P pattern | -s source_file] off len",
       "writes a number of bytes at a specified offset", &IoShell::WriteCmd},
      {"writev", nullptr, 2, -1, true, "[-Cfq] [-P pattern] off len [len..]",
       "writes a number of bytes at a specified offset", &IoShell::WritevCmd},
  };
  return kCommands;
}

IoShell::IoShell(EventLoop& loop, ImageSpec defaults)
    : loop_(loop), defaults_(std::move(defaults)) {}

IoShell::~IoShell() { Close(); }

const IoShell::Command* IoShell::Find(const std::string& name) const {
  for (const Command& c : Commands()) {
    if (name == c.name || (c.altname && name == c.altname)) return &c;
  }
  return nullptr;
}

bool IoShell::Open(const ImageSpec& spec) {
  if (blk_) {
    std::fprintf(stderr, "coblk-io: file open already, try 'help close'\n");
    return false;
  }
  auto open_error = [&spec](const std::string& message) {
    std::fprintf(stderr, "coblk-io: can't open%s%s: %s\n", spec.image_opts ? "" : " device ",
                 spec.image_opts ? "" : spec.filename.c_str(), message.c_str());
  };
  if (spec.force_share && !spec.read_only) {
    open_error("force-share=on can only be used with read-only images");
    return false;
  }
  CacheMode mode;
  if (!spec.cache.empty()) {
    Result<CacheMode> m = ParseCacheMode(spec.cache);
    if (!m) {
      std::fprintf(stderr, "coblk-io: %s\n", m.error().message().c_str());
      return false;
    }
    mode = *m;
  }
  Result<std::unique_ptr<BlockBackend>> blk = OpenImage(loop_, spec);
  if (!blk) {
    open_error(blk.error().ToString());
    return false;
  }
  blk_ = std::move(*blk);
  spec_ = spec;
  writethrough_ = mode.writethrough;
  read_only_ = spec.read_only;
  return true;
}

BlockNode& IoShell::image() {
  BlockNode& root = blk_->node();
  return spec_.copy_on_read && root.file() ? *root.file() : root;
}

void IoShell::Drain() {
  while (aio_pending_ > 0) loop_.run_once(/*block=*/true);
}

void IoShell::Close() {
  Drain();
  if (!blk_) return;
  if (Status s = blk_->close(); !s) {
    std::fprintf(stderr, "coblk-io: %s\n", s.error().ToString().c_str());
  }
  blk_.reset();
}

void IoShell::PrintOneLine(const char* name, const Command& c) {
  std::printf("%s ", name);
  if (c.args) std::printf("%s ", c.args);
  std::printf("-- %s\n", c.oneline);
}

int IoShell::Usage(const Command& c) {
  PrintOneLine(c.name, c);
  return -EINVAL;
}

int IoShell::Usage(const char* name) { return Usage(*Find(name)); }

bool IoShell::CheckWritable() {
  if (!read_only_) return true;
  std::fprintf(stderr, "coblk-io: Block node is read-only\n");
  return false;
}

int IoShell::Run(const std::string& line) {
  Args args;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t sp = line.find(' ', pos);
    if (sp == std::string::npos) sp = line.size();
    if (sp > pos) args.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  if (args.empty()) return 0;
  const Command* c = Find(args[0]);
  if (!c) {
    std::fprintf(stderr, "command \"%s\" not found\n", args[0].c_str());
    return -EINVAL;
  }
  if (c->needs_file && !blk_) {
    std::fprintf(stderr, "no file open, try 'help open'\n");
    return -EINVAL;
  }
  const int n = static_cast<int>(args.size()) - 1;
  if (n < c->argmin || (c->argmax != -1 && n > c->argmax)) {
    if (c->argmax == -1) {
      std::fprintf(stderr, "bad argument count %d to %s, expected at least %d arguments\n", n,
                   args[0].c_str(), c->argmin);
    } else if (c->argmin == c->argmax) {
      std::fprintf(stderr, "bad argument count %d to %s, expected %d arguments\n", n,
                   args[0].c_str(), c->argmin);
    } else {
      std::fprintf(stderr, "bad argument count %d to %s, expected between %d and %d arguments\n",
                   n, args[0].c_str(), c->argmin, c->argmax);
    }
    return -EINVAL;
  }
  // qemu-io takes the write (or resize) permission for these before running
  // them, so a read-only image refuses them before their arguments are read.
  static const char* const kWriters[] = {"aio_write", "discard", "truncate", "write", "writev"};
  for (const char* w : kWriters) {
    if (!std::strcmp(c->name, w) && !CheckWritable()) return -EPERM;
  }
  int ret = (this->*(c->fn))(args);
  std::fflush(stdout);
  return ret;
}

int IoShell::HelpCmd(Args& args) {
  if (args.size() == 2) {
    const Command* c = Find(args[1]);
    if (!c) {
      std::printf("command %s not found\n", args[1].c_str());
      return -EINVAL;
    }
    // As qemu-io: the name as typed, then the extended text if any.
    PrintOneLine(args[1].c_str(), *c);
    if (const char* text = IoExtendedHelp(c->name)) std::fputs(text, stdout);
    return 0;
  }
  for (const Command& c : Commands()) PrintOneLine(c.name, c);
  std::printf("\nUse 'help commandname' for extended help.\n");
  return 0;
}

}  // namespace coblk::tools
