// Image locking for the file protocol, byte-compatible with QEMU's
// file-posix so that coblk and qemu-img/qemu-io see each other's locks.
//
// Each permission P (numbered like QEMU's BLK_PERM_*) has two lock bytes:
//   100 + P  held (shared) by every opener that USES P,
//   200 + P  held (shared) by every opener that does NOT SHARE P.
// An opener first takes its own bytes, then tests the others' bytes with
// F_OFD_GETLK: using P while someone holds 200+P, or refusing to share P
// while someone holds 100+P, is a conflict. OFD locks belong to the open
// file description, so closing the fd releases them.
//
// A read-write open uses {consistent read, write} and shares only
// {consistent read, write unchanged}; a read-only open uses {consistent
// read} and shares the same set (qemu-img's defaults without -U). So two
// writers conflict ("Failed to get \"write\" lock"), two readers do not,
// and a reader next to a writer fails ("Failed to get shared \"write\"
// lock") unless it was opened with force-share=on.
#pragma once

#include <cstdint>
#include <string>

#include "util/status.h"

namespace coblk::file_proto {

enum LockPerm : uint32_t {
  kPermConsistentRead = 1u << 0,
  kPermWrite = 1u << 1,
  kPermWriteUnchanged = 1u << 2,
  kPermResize = 1u << 3,
  kPermAll = (1u << 4) - 1,
};

enum class LockMode { kAuto, kOn, kOff };

Result<LockMode> ParseLockMode(const std::string& text);

// Takes the lock bytes for (perm, shared) on fd and checks for conflicts.
// Returns EAGAIN with QEMU's message on a conflict. With kAuto, a kernel or
// filesystem without OFD locks silently disables locking; with kOn it is an
// error. On failure the fd keeps no lock bytes.
Status ApplyImageLock(int fd, LockMode mode, uint32_t perm, uint32_t shared,
                      const std::string& filename);

}  // namespace coblk::file_proto
