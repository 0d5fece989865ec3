#include "util/status.h"

#include <cstring>

namespace coblk {

std::string Error::ToString() const {
  if (message_.empty()) return std::strerror(errno_);
  return message_;
}

std::unexpected<Error> ErrnoError(const std::string& what, int errnum) {
  return std::unexpected<Error>(
      Error(errnum, what + ": " + std::strerror(errnum)));
}

}  // namespace coblk
