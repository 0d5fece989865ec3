// Argument parsing shared by coblk-io's data commands, with qemu-io 7.2's
// messages (all printed on stdout, as qemu-io prints them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/aligned_buffer.h"
#include "io/io_vector.h"

namespace coblk::tools {

// QEMU's BDRV_REQUEST_MAX_BYTES: the largest request qemu-io accepts.
inline constexpr int64_t kMaxRequestBytes = 2147483136;

// A pattern byte ("0xab", "171"); -1 after printing
// "<arg> is not a valid pattern byte".
int ParsePattern(const char* arg);

// qemu-io's cvtnum + print_cvtnum_err.
bool ParseNum(const std::string& arg, int64_t* out);

// "length cannot exceed ..., given <arg>" past kMaxRequestBytes.
bool CheckLength(int64_t count, const std::string& arg);

// qemu-io's create_iovec: the lengths of a vectored request ("1k 512 3"),
// each checked, and one buffer of their total filled with `fill`, exposed
// as one iovec entry per (non-empty) length. False after printing the
// message for the first bad length.
struct IoVectorBuffer {
  AlignedBuffer buf;
  IoVector qiov;
  int64_t size = 0;
};
bool MakeIoVector(const std::vector<std::string>& lengths, int fill, IoVectorBuffer* out);

}  // namespace coblk::tools
