// Lets a short-lived program (coblk-img, coblk-io) exit without waiting for
// the kernel to tear down its AIO contexts.
//
// Freeing a kernel AIO context waits for two RCU grace periods, 30-50 ms on
// a typical VM, whether io_destroy() or the process's exit does it: a
// one-second `coblk-img info` spent most of its time there. When a program
// opts in, AioEngine keeps the (idle) context of an engine it destroys
// instead of calling io_destroy(), and a holder process sharing the
// program's address space (clone(CLONE_VM), no files of its own) stays
// alive until the program has exited. The program's exit then drops only
// one user of its address space and returns at once; the contexts are freed
// when the holder, woken by the program's end, exits in turn.
//
// Not installed, not part of the embedding API: an embedder's process lives
// long, and its engines free their contexts as they always did.
#pragma once

namespace coblk {

// Sanitizer runtimes do not follow a CLONE_VM child: there the normal
// teardown stays.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kAioTeardownDeferralSupported = false;
#else
inline constexpr bool kAioTeardownDeferralSupported = true;
#endif

// Opts the process in, unless COBLK_NO_FAST_EXIT is set in the environment
// (for a process whose orphans nobody reaps: the holder is reparented when
// the program exits). Call once from main() while the process has one
// thread and before any EventLoop exists. Returns false (and the process
// keeps the normal teardown) when not supported or disabled. The holder is
// only started at exit, and only if a context was kept.
bool DeferAioTeardownPastExit();

// Called by AioEngine's destructor, on any thread, for an idle context:
// true when the context may be left to the process's exit (opted in, holder
// alive, fewer than kMaxKeptAioContexts kept so far), false when the caller
// must io_destroy() it.
bool KeepAioContextUntilExit();

// Bounds the contexts (and their share of the system's aio-max-nr) a
// program that makes many event loops keeps alive until its exit.
inline constexpr int kMaxKeptAioContexts = 16;

// How many contexts are kept (for tests).
int KeptAioContexts();

}  // namespace coblk
