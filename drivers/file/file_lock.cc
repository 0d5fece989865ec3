#include "drivers/file/file_lock.h"

#include <fcntl.h>

#include <cerrno>

namespace coblk::file_proto {

namespace {

constexpr int kPermBase = 100;    // QEMU's RAW_LOCK_PERM_BASE
constexpr int kSharedBase = 200;  // QEMU's RAW_LOCK_SHARED_BASE
constexpr int kPermCount = 4;
constexpr const char* kPermNames[kPermCount] = {"consistent read", "write",
                                                "write unchanged", "resize"};

struct flock MakeLock(short type, int byte) {
  struct flock fl = {};
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  fl.l_type = type;
  return fl;
}

// 0, or -errno (EAGAIN when another description holds a conflicting lock).
int LockByte(int fd, int byte, short type) {
  struct flock fl = MakeLock(type, byte);
  return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

// 1 if another open file description holds a lock on byte, 0 if not, -errno.
int ByteLockedByOthers(int fd, int byte) {
  struct flock fl = MakeLock(F_WRLCK, byte);
  if (fcntl(fd, F_OFD_GETLK, &fl) < 0) return -errno;
  return fl.l_type != F_UNLCK ? 1 : 0;
}

void UnlockAll(int fd) {
  struct flock fl = MakeLock(F_UNLCK, kPermBase);
  fl.l_len = kSharedBase + kPermCount - kPermBase;
  fcntl(fd, F_OFD_SETLK, &fl);
}

std::string Hint(const std::string& filename) {
  return "\nIs another process using the image [" + filename + "]?";
}

int TakeBytes(int fd, uint32_t perm, uint32_t shared) {
  for (int i = 0; i < kPermCount; ++i) {
    const uint32_t bit = 1u << i;
    if (perm & bit) {
      if (int r = LockByte(fd, kPermBase + i, F_RDLCK)) return r;
    }
    if (!(shared & bit)) {
      if (int r = LockByte(fd, kSharedBase + i, F_RDLCK)) return r;
    }
  }
  return 0;
}

Status CheckBytes(int fd, uint32_t perm, uint32_t shared, const std::string& filename) {
  for (int i = 0; i < kPermCount; ++i) {
    const uint32_t bit = 1u << i;
    if (perm & bit) {
      int r = ByteLockedByOthers(fd, kSharedBase + i);
      if (r < 0) return ErrnoError("Failed to check lock", -r);
      if (r > 0)
        return MakeError(EAGAIN, std::string("Failed to get \"") + kPermNames[i] +
                                     "\" lock" + Hint(filename));
    }
    if (!(shared & bit)) {
      int r = ByteLockedByOthers(fd, kPermBase + i);
      if (r < 0) return ErrnoError("Failed to check lock", -r);
      if (r > 0)
        return MakeError(EAGAIN, std::string("Failed to get shared \"") + kPermNames[i] +
                                     "\" lock" + Hint(filename));
    }
  }
  return OkStatus();
}

}  // namespace

Result<LockMode> ParseLockMode(const std::string& text) {
  if (text == "auto") return LockMode::kAuto;
  if (text == "on") return LockMode::kOn;
  if (text == "off") return LockMode::kOff;
  return MakeError(EINVAL, "Parameter 'locking' does not accept value '" + text + "'");
}

Status ApplyImageLock(int fd, LockMode mode, uint32_t perm, uint32_t shared,
                      const std::string& filename) {
  if (mode == LockMode::kOff) return OkStatus();
  int r = TakeBytes(fd, perm, shared);
  if (r == -EINVAL || r == -ENOTSUP || r == -ENOLCK) {
    UnlockAll(fd);
    // No OFD locks here (old kernel, some network filesystems).
    if (mode == LockMode::kAuto) return OkStatus();
    return ErrnoError("OFD lock is not supported on '" + filename + "'", -r);
  }
  Status st = OkStatus();
  if (r == -EAGAIN) {
    // Someone holds an exclusive lock on our byte: find out which one.
    st = CheckBytes(fd, perm, shared, filename);
    if (st) st = MakeError(EAGAIN, "Failed to lock byte" + Hint(filename));
  } else if (r < 0) {
    st = ErrnoError("Failed to lock '" + filename + "'", -r);
  } else {
    st = CheckBytes(fd, perm, shared, filename);
  }
  if (!st) UnlockAll(fd);
  return st;
}

}  // namespace coblk::file_proto
