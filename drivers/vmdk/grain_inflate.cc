#include "drivers/vmdk/grain_inflate.h"

#include <algorithm>
#include <cinttypes>
#include <limits>

#include "drivers/vmdk/strfmt.h"

namespace coblk::vmdk {

RangeInflater::RangeInflater(uint64_t skip, std::span<uint8_t> out, uint64_t grain_bytes)
    : skip_(skip), out_(out), grain_bytes_(grain_bytes) {
  initialised_ = inflateInit(&zs_) == Z_OK;
  if (skip_) window_.resize(static_cast<size_t>(std::min<uint64_t>(skip_, kWindow)));
}

RangeInflater::~RangeInflater() {
  if (initialised_) inflateEnd(&zs_);
}

Result<bool> RangeInflater::feed(std::span<const uint8_t> in, bool last) {
  if (!initialised_) return MakeError(ENOMEM, "Could not initialise zlib");
  const uint64_t end = skip_ + out_.size();
  if (done_ || produced_ >= end) return done_ = true;
  // zlib counts in uInt: feed at most 1 GiB at a time.
  constexpr size_t kMaxStep = size_t{1} << 30;
  while (!in.empty() || last) {
    const size_t step_in = std::min(in.size(), kMaxStep);
    zs_.next_in = const_cast<Bytef*>(in.data());
    zs_.avail_in = static_cast<uInt>(step_in);
    uint8_t* dst;
    uint64_t room;
    if (produced_ < skip_) {
      dst = window_.data();
      room = std::min<uint64_t>(window_.size(), skip_ - produced_);
    } else {
      dst = out_.data() + (produced_ - skip_);
      room = std::min<uint64_t>(end - produced_, kMaxStep);
    }
    zs_.next_out = dst;
    zs_.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&zs_, Z_NO_FLUSH);
    const size_t used_in = step_in - zs_.avail_in;
    const uint64_t made = room - zs_.avail_out;
    produced_ += made;
    in = in.subspan(used_in);
    if (produced_ >= end) {
      done_ = true;
      if (end == grain_bytes_ && rc != Z_STREAM_END) {
        // One byte more than a grain, from the input at hand?
        uint8_t extra = 0;
        zs_.next_in = const_cast<Bytef*>(in.data());
        zs_.avail_in = static_cast<uInt>(std::min(in.size(), kMaxStep));
        zs_.next_out = &extra;
        zs_.avail_out = 1;
        (void)inflate(&zs_, Z_NO_FLUSH);
        if (zs_.avail_out == 0)
          return MakeError(EINVAL, "Compressed grain inflates beyond the grain size");
      }
      return true;
    }
    if (rc == Z_STREAM_END)
      return MakeError(EINVAL, StrFormat("Compressed grain too short: %" PRIu64 " of %" PRIu64
                                         " bytes",
                                         produced_, end));
    if (rc != Z_OK && rc != Z_BUF_ERROR) return MakeError(EINVAL, "Invalid compressed grain data");
    if (used_in == 0 && made == 0) {
      // No progress: all input taken. More may come unless this was the last.
      if (in.empty() && last) return MakeError(EINVAL, "Invalid compressed grain data");
      if (in.empty()) return false;
      if (rc == Z_BUF_ERROR) return MakeError(EINVAL, "Invalid compressed grain data");
    }
    if (in.empty() && !last) return false;
  }
  return done_;
}

}  // namespace coblk::vmdk
