// Error and Result<T>: coblk's Status-style error type.
//
// Every fallible operation returns Result<T> = std::expected<T, Error>.
// Error carries a positive errno value (EIO, EINVAL, ENOTSUP, ...) and a
// human-readable message that follows QEMU's wording where QEMU has one.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <utility>

namespace coblk {

class Error {
 public:
  Error() = default;
  Error(int errnum, std::string message)
      : errno_(errnum), message_(std::move(message)) {}

  int errnum() const { return errno_; }
  const std::string& message() const { return message_; }

  // "message: strerror(errno)" unless the message already says it all.
  std::string ToString() const;

  // Prefixes the message with context, e.g. the file name being opened.
  Error WithContext(const std::string& context) const {
    return Error(errno_, context + ": " + message_);
  }

 private:
  int errno_ = EIO;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Error>;

// Result<void> with a readable name for functions that only succeed or fail.
using Status = Result<void>;

inline std::unexpected<Error> MakeError(int errnum, std::string message) {
  return std::unexpected<Error>(Error(errnum, std::move(message)));
}

// Error from the current errno, prefixed with what was being done.
std::unexpected<Error> ErrnoError(const std::string& what, int errnum = errno);

inline Status OkStatus() { return {}; }

}  // namespace coblk

// Propagates an error from an expression yielding Result<...>.
#define COBLK_RETURN_IF_ERROR(expr)                                  \
  do {                                                               \
    auto coblk_status_ = (expr);                                     \
    if (!coblk_status_) return std::unexpected(coblk_status_.error()); \
  } while (0)

// The coroutine form of COBLK_RETURN_IF_ERROR.
#define COBLK_CO_RETURN_IF_ERROR(expr)                                  \
  do {                                                                  \
    auto coblk_status_ = (expr);                                        \
    if (!coblk_status_) co_return std::unexpected(coblk_status_.error()); \
  } while (0)
