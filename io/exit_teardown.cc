#include "io/exit_teardown.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <string_view>

namespace coblk {

namespace {

std::atomic<bool> opted_in{false};
std::atomic<int> kept{0};

// The holder runs on this stack, in the program's address space, and only
// makes raw system calls: it shares the program's memory (and, lacking
// CLONE_SETTLS, its thread pointer), so it must not touch the C library's
// state. The stack is static: the program never unmaps it.
alignas(64) char holder_stack[64 * 1024];

struct HolderPipes {
  int exit_read;  // EOF once the program has exited (it holds the write end)
  int ack_write;  // one byte: the holder has dropped every other file
};
HolderPipes holder_pipes;

// Closes every descriptor but keep_a and keep_b (keep_a < keep_b); false if
// the kernel lacks close_range (then the holder gives up).
bool CloseAllBut(int keep_a, int keep_b) {
  const auto range = [](unsigned lo, unsigned hi) {
    return lo > hi || syscall(SYS_close_range, lo, hi, 0) == 0;
  };
  return range(0, keep_a - 1) && range(keep_a + 1, keep_b - 1) &&
         range(keep_b + 1, UINT_MAX);
}

int Holder(void*) {
  // Signals stay blocked: a handler of the program's would run on this stack
  // with the program's thread pointer. SIGKILL still ends the holder, which
  // only costs the program its fast exit.
  sigset_t all;
  sigfillset(&all);
  syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, nullptr, _NSIG / 8);
  const HolderPipes p = holder_pipes;
  int lo = p.exit_read < p.ack_write ? p.exit_read : p.ack_write;
  int hi = p.exit_read < p.ack_write ? p.ack_write : p.exit_read;
  // The holder's copies of the program's files would keep them open (and
  // their OFD locks held) after the program's exit: drop them first.
  if (!CloseAllBut(lo, hi)) return 1;
  const char ready = 1;
  if (syscall(SYS_write, p.ack_write, &ready, 1) != 1) return 1;
  syscall(SYS_close, p.ack_write);
  char byte;
  syscall(SYS_read, p.exit_read, &byte, 1);  // blocks until the program is gone
  return 0;  // the address space, and the AIO contexts in it, go with us
}

// At exit, after main() has returned (so every image is closed) and only
// when contexts were kept: start the holder and wait until it has dropped
// its copies of the program's files. On any failure the program just exits
// the usual way and waits for the teardown itself.
void StartHolderAtExit() {
  if (kept.load() == 0) return;
  int exit_pipe[2], ack_pipe[2];
  if (pipe2(exit_pipe, O_CLOEXEC) != 0) return;
  if (pipe2(ack_pipe, O_CLOEXEC) != 0) {
    close(exit_pipe[0]);
    close(exit_pipe[1]);
    return;
  }
  holder_pipes = {exit_pipe[0], ack_pipe[1]};
  const pid_t pid = clone(Holder, holder_stack + sizeof holder_stack, CLONE_VM | SIGCHLD, nullptr);
  close(exit_pipe[0]);
  close(ack_pipe[1]);
  if (pid > 0) {
    char byte;
    while (read(ack_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
  }
  close(ack_pipe[0]);
  // exit_pipe[1] stays open until the process ends: its closing wakes the
  // holder. (If clone failed, nothing reads it.)
}

}  // namespace

bool DeferAioTeardownPastExit() {
  if (!kAioTeardownDeferralSupported || opted_in.load()) return opted_in.load();
  if (const char* off = std::getenv("COBLK_NO_FAST_EXIT"); off && *off && std::string_view(off) != "0") {
    return false;
  }
  if (std::atexit(StartHolderAtExit) != 0) return false;
  opted_in.store(true);
  return true;
}

bool KeepAioContextUntilExit() {
  if (!opted_in.load()) return false;
  if (kept.fetch_add(1) >= kMaxKeptAioContexts) {
    kept.fetch_sub(1);
    return false;
  }
  return true;
}

int KeptAioContexts() { return kept.load(); }

}  // namespace coblk
