// Inflating part of a compressed grain: only the bytes a read asks for.
//
// A streamOptimized grain is one zlib stream of up to one grain (QEMU's
// limit: 1 GiB grains). A read of 512 bytes must not allocate or zero-fill
// the whole grain: RangeInflater takes the stream in input pieces, throws
// away the output before the requested range through a small window, writes
// the range into the caller's buffer and stops there (zlib can stop
// anywhere), so memory is the request plus two fixed-size windows.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <span>
#include <vector>

#include "util/status.h"

namespace coblk::vmdk {

class RangeInflater {
 public:
  // Output bytes [skip, skip + out.size()) of the stream go to `out`.
  // grain_bytes: when the range ends there, output beyond it (in the input
  // already fed) is an error, as in QEMU, which inflates into one grain.
  RangeInflater(uint64_t skip, std::span<uint8_t> out, uint64_t grain_bytes);
  ~RangeInflater();
  RangeInflater(const RangeInflater&) = delete;
  RangeInflater& operator=(const RangeInflater&) = delete;

  // Feeds the next piece of input (consumed before feed returns). `last`:
  // no input follows. Returns true once the range is complete; an error if
  // the data is not zlib, or the stream or the input ends before the range
  // (QEMU: the range must lie inside the inflated grain).
  Result<bool> feed(std::span<const uint8_t> in, bool last);
  bool done() const { return done_; }
  // Bytes of output produced so far (skipped ones included).
  uint64_t produced() const { return produced_; }

  // Size of the window for skipped output.
  static constexpr size_t kWindow = 64 << 10;

 private:
  z_stream zs_{};
  bool initialised_ = false;
  bool done_ = false;
  uint64_t skip_;
  std::span<uint8_t> out_;
  uint64_t grain_bytes_;
  uint64_t produced_ = 0;
  std::vector<uint8_t> window_;
};

}  // namespace coblk::vmdk
