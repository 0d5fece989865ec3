#include "io/alignment.h"

#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "io/aligned_buffer.h"

namespace coblk {

namespace {

// EINVAL is how O_DIRECT rejects misalignment; anything else (including
// reading 0 bytes past EOF) means the alignment is acceptable.
bool ReadAccepted(int fd, void* buf, size_t len) {
  ssize_t r = pread(fd, buf, len, 0);
  return r >= 0 || errno != EINVAL;
}

}  // namespace

DirectAlignment ProbeDirectAlignment(int fd, bool direct) {
  if (!direct) return {1, 1};
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t max_align = std::max<size_t>(4096, page);
  DirectAlignment a{0, 0};

  int sector_size = 0;
  if (ioctl(fd, BLKSSZGET, &sector_size) == 0 && sector_size > 0)
    a.request = static_cast<size_t>(sector_size);

  AlignedBuffer buf(2 * max_align, max_align);
  static constexpr size_t kCandidates[] = {1, 512, 1024, 2048, 4096};
  if (a.request == 0) {
    for (size_t align : kCandidates) {
      if (ReadAccepted(fd, buf.data(), align)) {
        // "1 works" means the check is not enforced here; stay safe.
        a.request = align == 1 ? max_align : align;
        break;
      }
    }
  }
  for (size_t align : kCandidates) {
    if (ReadAccepted(fd, buf.data() + align, max_align)) {
      a.buffer = align == 1 ? max_align : align;
      break;
    }
  }
  if (a.request == 0) a.request = max_align;
  if (a.buffer == 0) a.buffer = max_align;
  return a;
}

}  // namespace coblk
