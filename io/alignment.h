// O_DIRECT alignment detection, the way QEMU's raw_probe_alignment does it.
#pragma once

#include <cstddef>

namespace coblk {

struct DirectAlignment {
  size_t request = 1;  // offsets and lengths must be multiples of this
  size_t buffer = 1;   // memory addresses must be multiples of this
};

// For a file opened with O_DIRECT: the block device's logical sector size if
// it has one, otherwise the smallest of 512..4096 that a test read accepts.
// Files opened without O_DIRECT need no alignment: {1, 1}.
DirectAlignment ProbeDirectAlignment(int fd, bool direct);

}  // namespace coblk
